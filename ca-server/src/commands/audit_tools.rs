//! `tpa-ca audit verify` and `tpa-ca audit export`.

use std::io::{BufRead as _, BufWriter, Write as _};
use std::path::Path;
use std::process::ExitCode;

use anyhow::Context as _;
use rusqlite::Connection;

use crate::audit::{ChainBreak, ChainVerifier, Event, canonical_json};
use crate::config::Config;
use crate::store::{self, Create, StoreError};

/// The result of a successful verification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyReport {
    /// Events in the chain.
    pub events: i64,
    /// Hash of the last event.
    pub head: String,
}

/// Verifies the chain in a database, and that every certificate's issuance
/// event is present (a truncated tail loses them).
pub fn verify_database(conn: &Connection) -> Result<Result<VerifyReport, ChainBreak>, StoreError> {
    let mut verifier = ChainVerifier::default();
    let mut broken: Option<ChainBreak> = None;
    store::audit::for_each(conn, |event| {
        if broken.is_none()
            && let Err(b) = verifier.push(&event)
        {
            broken = Some(b);
        }
        Ok(())
    })?;
    if let Some(b) = broken {
        return Ok(Err(b));
    }
    if let Some((serial, seq)) = store::certificates::without_matching_audit(conn)?
        .into_iter()
        .next()
    {
        let problem = if seq > verifier.count() {
            format!(
                "the trail ends at seq {} but certificate {serial} was recorded at seq {seq} (events truncated)",
                verifier.count()
            )
        } else {
            format!(
                "certificate {serial} is not the object of its issuance event seq {seq} (event replaced)"
            )
        };
        return Ok(Err(ChainBreak {
            seq: seq.min(verifier.count() + 1),
            problem,
        }));
    }
    Ok(Ok(VerifyReport {
        events: verifier.count(),
        head: verifier.head().to_owned(),
    }))
}

fn verify_file(path: &Path) -> anyhow::Result<Result<VerifyReport, ChainBreak>> {
    let file =
        std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let mut verifier = ChainVerifier::default();
    for (index, line) in std::io::BufReader::new(file).lines().enumerate() {
        let line = line.with_context(|| format!("cannot read {}", path.display()))?;
        if line.trim().is_empty() {
            continue;
        }
        let event = match Event::from_export_line(&line) {
            Ok(event) => event,
            Err(problem) => {
                return Ok(Err(ChainBreak {
                    seq: verifier.count() + 1,
                    problem: format!("line {}: {problem}", index + 1),
                }));
            }
        };
        if let Err(b) = verifier.push(&event) {
            return Ok(Err(b));
        }
    }
    Ok(Ok(VerifyReport {
        events: verifier.count(),
        head: verifier.head().to_owned(),
    }))
}

/// Exit status when the trail could not be read at all (1 means it was read and is broken).
const EXIT_CANNOT_VERIFY: u8 = 2;

pub(super) fn verify(config: Option<&Path>, file: Option<&Path>) -> anyhow::Result<ExitCode> {
    let loaded = match (config, file) {
        (_, Some(file)) => verify_file(file),
        (Some(config), None) => {
            Config::load(config)
                .map_err(anyhow::Error::from)
                .and_then(|config| {
                    let conn = store::open(&config.database_path, Create::Never)
                        .context("cannot open the database")?;
                    Ok(verify_database(&conn)?)
                })
        }
        (None, None) => Err(anyhow::anyhow!("give --config FILE or --file EXPORT")),
    };
    match loaded {
        Ok(Ok(report)) => {
            println!(
                "audit trail OK: {} events, head {}",
                report.events, report.head
            );
            Ok(ExitCode::SUCCESS)
        }
        Ok(Err(b)) => {
            eprintln!("audit trail BROKEN at seq {}: {}", b.seq, b.problem);
            Ok(ExitCode::from(1))
        }
        Err(e) => {
            eprintln!("tpa-ca: error: cannot verify the audit trail: {e:#}");
            Ok(ExitCode::from(EXIT_CANNOT_VERIFY))
        }
    }
}

pub(super) fn export(config: &Path) -> anyhow::Result<ExitCode> {
    let config = Config::load(config)?;
    let conn =
        store::open(&config.database_path, Create::Never).context("cannot open the database")?;
    let stdout = std::io::stdout();
    let mut out = BufWriter::new(stdout.lock());
    store::audit::for_each(&conn, |event| {
        let line =
            canonical_json(&event.to_json(true)).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        writeln!(out, "{line}")
            .map_err(|e| StoreError::Corrupt(format!("cannot write to stdout: {e}")))
    })?;
    out.flush().context("cannot write to stdout")?;
    Ok(ExitCode::SUCCESS)
}
