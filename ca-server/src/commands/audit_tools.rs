//! `tpa-ca audit verify`, `tpa-ca audit export` and `tpa-ca audit checkpoint`.

use std::io::{BufRead as _, BufWriter, Write as _};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use chrono::{DateTime, Utc};
use ssh_key::PublicKey;

use super::held_checkpoints::{CHECKPOINT_PREFIX, Checkpoints, read_checkpoint_file};
use crate::audit::checkpoint::{self, AuditKey};
use crate::config::Config;
use crate::store::sql::Sql;
use crate::store::{self, StoreError};
use tpa_core::audit::{ChainBreak, ChainVerifier, Event, canonical_json, format_time};

/// The result of a successful verification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyReport {
    /// Events in the chain.
    pub events: i64,
    /// Hash of the last event.
    pub head: String,
    /// Signed checkpoints checked against the chain.
    pub checkpoints: usize,
    /// The latest signed checkpoint inside the verified range, matched
    /// against its event: (seq, signing time). Checkpoints outside the range
    /// authenticate none of its events (issue 18).
    pub latest_checkpoint: Option<(i64, String)>,
    /// The first seq of a partial export (1 for a whole trail).
    pub first_seq: i64,
    /// How many events at the end no signature covers: those after the
    /// latest checkpoint in the range (all of them without one). Anyone who
    /// can write the trail could have cut, replaced or invented them.
    pub unsigned_tail: i64,
}

impl VerifyReport {
    fn new(first_seq: i64, verifier: &ChainVerifier, checkpoints: &Checkpoints) -> Self {
        let last_seq = verifier.count();
        let latest_checkpoint = checkpoints.latest_in(first_seq, last_seq);
        let signed_through = latest_checkpoint
            .as_ref()
            .map_or(first_seq - 1, |(seq, _)| *seq);
        VerifyReport {
            events: last_seq - first_seq + 1,
            head: verifier.head().to_owned(),
            checkpoints: checkpoints.len(),
            latest_checkpoint,
            first_seq,
            unsigned_tail: last_seq - signed_through,
        }
    }

    /// The last seq verified.
    pub fn last_seq(&self) -> i64 {
        self.first_seq + self.events - 1
    }
}

/// Verifies the chain in a database, and that every certificate's issuance
/// event is present (a truncated tail loses them). Checkpoints are not
/// checked; see [`verify_database_with`].
pub fn verify_database(conn: &impl Sql) -> Result<Result<VerifyReport, ChainBreak>, StoreError> {
    verify_database_with(conn, &Checkpoints::default(), None)
}

/// Verifies the chain in a database against `checkpoints` (whose signatures
/// are checked with `key`, required when there are any) and the certificates.
pub fn verify_database_with(
    conn: &impl Sql,
    checkpoints: &Checkpoints,
    key: Option<&PublicKey>,
) -> Result<Result<VerifyReport, ChainBreak>, StoreError> {
    if let Some(key) = key
        && let Err(b) = checkpoints.check_signatures(key)
    {
        return Ok(Err(b));
    }
    let mut verifier = ChainVerifier::default();
    let mut broken: Option<ChainBreak> = None;
    store::audit::for_each(conn, |event| {
        if broken.is_none() {
            broken = verifier
                .push(&event)
                .and_then(|()| checkpoints.check_event(&event))
                .err();
        }
        Ok(())
    })?;
    if let Some(b) = broken {
        return Ok(Err(b));
    }
    if let Err(b) = checkpoints.check_end(verifier.count()) {
        return Ok(Err(b));
    }
    if key.is_some()
        && let Err(b) = checkpoints.require_inside(1, verifier.count())
    {
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
    Ok(Ok(VerifyReport::new(1, &verifier, checkpoints)))
}

/// Verifies an export file: its events (a partial export starts where it
/// starts, anchored on its first event's `prev_hash`) and the checkpoints in
/// it and in `checkpoints`.
fn verify_file(
    path: &Path,
    mut checkpoints: Checkpoints,
    key: Option<&PublicKey>,
) -> anyhow::Result<Result<VerifyReport, ChainBreak>> {
    read_checkpoint_file(path, &mut checkpoints)?;
    if !checkpoints.is_empty() && key.is_none() {
        anyhow::bail!(
            "{} holds signed checkpoints; pass --public-key audit_key.pub to check them",
            path.display()
        );
    }
    if let Some(key) = key
        && let Err(b) = checkpoints.check_signatures(key)
    {
        return Ok(Err(b));
    }
    let file =
        std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let mut verifier: Option<ChainVerifier> = None;
    let mut first_seq = 1;
    for (index, line) in std::io::BufReader::new(file).lines().enumerate() {
        let line = line.with_context(|| format!("cannot read {}", path.display()))?;
        if line.trim().is_empty() || line.starts_with(CHECKPOINT_PREFIX) {
            continue;
        }
        let next = verifier.as_ref().map_or(1, ChainVerifier::next_seq);
        let event = match Event::from_export_line(&line) {
            Ok(event) => event,
            Err(problem) => {
                return Ok(Err(ChainBreak {
                    seq: next,
                    problem: format!("line {}: {problem}", index + 1),
                }));
            }
        };
        let v = verifier.get_or_insert_with(|| {
            // A partial export (--since) starts after seq 1.
            first_seq = event.seq.max(1);
            if event.seq > 1 {
                ChainVerifier::starting_at(event.seq, &event.prev_hash)
            } else {
                ChainVerifier::default()
            }
        });
        if let Err(b) = v
            .push(&event)
            .and_then(|()| checkpoints.check_event(&event))
        {
            return Ok(Err(b));
        }
    }
    let verifier = verifier.unwrap_or_default();
    if let Err(b) = checkpoints.check_end(verifier.count()) {
        return Ok(Err(b));
    }
    if key.is_some()
        && let Err(b) = checkpoints.require_inside(first_seq, verifier.count())
    {
        return Ok(Err(b));
    }
    Ok(Ok(VerifyReport::new(first_seq, &verifier, &checkpoints)))
}

/// Exit status when the trail could not be read at all (1 means it was read and is broken).
const EXIT_CANNOT_VERIFY: u8 = 2;

/// What `tpa-ca audit verify` was given.
#[derive(Debug)]
pub(super) struct VerifyArgs<'a> {
    pub config: Option<&'a Path>,
    pub file: Option<&'a Path>,
    pub public_key: Option<&'a Path>,
    pub checkpoints: &'a [PathBuf],
    /// Fail when any event at the end is covered by no signature.
    pub require_signed_tail: bool,
}

fn load_and_verify(args: &VerifyArgs<'_>) -> anyhow::Result<Result<VerifyReport, ChainBreak>> {
    let mut checkpoints = Checkpoints::default();
    for path in args.checkpoints {
        read_checkpoint_file(path, &mut checkpoints)?;
    }
    let explicit_key = args
        .public_key
        .map(checkpoint::read_public_key)
        .transpose()?;
    match (args.config, args.file) {
        (_, Some(file)) => verify_file(file, checkpoints, explicit_key.as_ref()),
        (Some(config), None) => {
            let config = Config::load(config)?;
            let conn = super::database::open(&config)?;
            for c in store::audit_checkpoints::in_range(&conn, 1, i64::MAX)? {
                checkpoints.add(c, "the database");
            }
            // The configured external checkpoint file. It is the defence
            // against an older copy of the database put back: missing while
            // the database holds checkpoints, it fails the check rather than
            // being skipped.
            if let Some(file) = config
                .audit
                .as_ref()
                .and_then(|a| a.checkpoint_file.as_ref())
            {
                if file.exists() {
                    read_checkpoint_file(file, &mut checkpoints)?;
                } else if !checkpoints.is_empty() {
                    anyhow::bail!(
                        "the checkpoint file {} (audit.checkpoint_file) is missing although the database holds signed checkpoints; without it an older copy of the database would pass unnoticed: restore the file from where it is kept and verify again",
                        file.display()
                    );
                }
            }
            let key = match explicit_key {
                Some(key) => Some(key),
                None => match &config.audit {
                    Some(audit) if !checkpoints.is_empty() => Some(
                        checkpoint::read_public_key(&audit.public_key_file())
                            .context("pass --public-key audit_key.pub")?,
                    ),
                    _ => None,
                },
            };
            if !checkpoints.is_empty() && key.is_none() {
                anyhow::bail!(
                    "the trail has signed checkpoints; pass --public-key audit_key.pub to check them"
                );
            }
            Ok(verify_database_with(&conn, &checkpoints, key.as_ref())?)
        }
        (None, None) => Err(anyhow::anyhow!("give --config FILE or --file EXPORT")),
    }
}

pub(super) fn verify(args: &VerifyArgs<'_>) -> anyhow::Result<ExitCode> {
    match load_and_verify(args) {
        Ok(Ok(report)) => {
            for line in report_lines(&report) {
                println!("{line}");
            }
            if args.require_signed_tail && report.unsigned_tail > 0 {
                eprintln!(
                    "audit trail NOT FULLY SIGNED: {} events at the end are covered by no signature (--require-signed-tail); sign the head with `tpa-ca audit checkpoint` and export again",
                    report.unsigned_tail
                );
                return Ok(ExitCode::from(1));
            }
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

/// What `audit verify` prints for a trail it could verify: the hash chain,
/// what the signed checkpoints cover, and, never left out, how many events
/// at the end no signature covers (issue 18: "OK" alone read as if every
/// event were authenticated).
pub fn report_lines(report: &VerifyReport) -> Vec<String> {
    let partial = if report.first_seq > 1 {
        format!(" (partial export from seq {})", report.first_seq)
    } else {
        String::new()
    };
    let mut lines = vec![format!(
        "audit trail OK: {} events, head {}{partial}",
        report.events, report.head
    )];
    let last = report.last_seq();
    match &report.latest_checkpoint {
        Some((seq, time)) => lines.push(format!(
            "checkpoints OK: {} signed checkpoints match the trail; the latest covers seq {seq} (signed {time}), so seq {}..{seq} is signed",
            report.checkpoints, report.first_seq
        )),
        None if report.events > 0 => lines.push(
            "checkpoints: none checked; the hash chain alone shows only that the events agree with each other, not who wrote them (give --public-key with a trail that has signed checkpoints)".to_owned(),
        ),
        None => {}
    }
    if report.unsigned_tail > 0 {
        lines.push(format!(
            "UNSIGNED: the last {} events (seq {}..{last}) are covered by no signature: whoever could write the trail could have cut, replaced or invented them",
            report.unsigned_tail,
            last - report.unsigned_tail + 1
        ));
    } else if report.events > 0 {
        lines.push("unsigned events at the end: 0".to_owned());
    }
    lines
}

fn parse_time(flag: &str, value: Option<&str>) -> anyhow::Result<Option<DateTime<Utc>>> {
    value
        .map(|v| {
            DateTime::parse_from_rfc3339(v)
                .map(|t| t.with_timezone(&Utc))
                .with_context(|| {
                    format!("{flag} {v:?} is not an RFC 3339 time such as 2026-11-24T09:00:00Z")
                })
        })
        .transpose()
}

/// `tpa-ca audit export [--since T] [--until T]`: events with `since <= time <
/// until` as JSON lines, then the signed checkpoints inside that range.
pub(super) fn export(
    config: &Path,
    since: Option<&str>,
    until: Option<&str>,
) -> anyhow::Result<ExitCode> {
    let since = parse_time("--since", since)?.map(format_time);
    let until = parse_time("--until", until)?.map(format_time);
    if let (Some(s), Some(u)) = (&since, &until)
        && u <= s
    {
        anyhow::bail!("--until must be after --since");
    }
    let config = Config::load(config)?;
    let conn = super::database::open(&config)?;
    let stdout = std::io::stdout();
    let mut out = BufWriter::new(stdout.lock());
    let (mut first, mut last) = (None, None);
    store::audit::for_each(&conn, |event| {
        // Stored times are RFC 3339 UTC with microseconds: they compare as text.
        let inside = since.as_ref().is_none_or(|s| event.time >= *s)
            && until.as_ref().is_none_or(|u| event.time < *u);
        if !inside {
            return Ok(());
        }
        first.get_or_insert(event.seq);
        last = Some(event.seq);
        let line =
            canonical_json(&event.to_json(true)).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        writeln!(out, "{line}")
            .map_err(|e| StoreError::Corrupt(format!("cannot write to stdout: {e}")))
    })?;
    if let (Some(first), Some(last)) = (first, last) {
        for c in store::audit_checkpoints::in_range(&conn, first, last)? {
            writeln!(out, "{}", c.to_json()).context("cannot write to stdout")?;
        }
    }
    out.flush().context("cannot write to stdout")?;
    Ok(ExitCode::SUCCESS)
}

/// `tpa-ca audit checkpoint`: signs the chain head now.
pub(super) fn checkpoint(config: &Path) -> anyhow::Result<ExitCode> {
    let config = Config::load(config)?;
    let audit = config
        .audit
        .as_ref()
        .context("no audit key is configured: add [audit] key_file (see docs/configuration.md)")?;
    let key = AuditKey::load(&audit.key_file).context("cannot load the audit key")?;
    let mut conn = super::database::open(&config)?;
    match checkpoint::make(
        &mut conn,
        &key,
        audit.checkpoint_file.as_deref(),
        Utc::now(),
    )? {
        None => println!("the audit trail is empty; nothing to sign"),
        Some((c, true)) => println!(
            "signed checkpoint: seq {} hash {} at {} with audit key {}",
            c.seq, c.hash, c.time, c.key_fingerprint
        ),
        Some((c, false)) => println!(
            "the latest checkpoint already covers the head: seq {} hash {} (signed {})",
            c.seq, c.hash, c.time
        ),
    }
    Ok(ExitCode::SUCCESS)
}
