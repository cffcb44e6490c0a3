//! `tpa-ca audit verify`, `tpa-ca audit export` and `tpa-ca audit checkpoint`.

use std::collections::BTreeMap;
use std::io::{BufRead as _, BufWriter, Write as _};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use chrono::{DateTime, Utc};
use rusqlite::Connection;
use ssh_key::PublicKey;

use crate::audit::{ChainBreak, ChainVerifier, Event, canonical_json, format_time};
use crate::audit_checkpoint::{self, AuditKey, Checkpoint};
use crate::config::Config;
use crate::store::{self, Create, StoreError};

/// The result of a successful verification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyReport {
    /// Events in the chain.
    pub events: i64,
    /// Hash of the last event.
    pub head: String,
    /// Signed checkpoints checked against the chain.
    pub checkpoints: usize,
    /// The latest checkpoint checked: (seq, signing time).
    pub latest_checkpoint: Option<(i64, String)>,
    /// The first seq of a partial export (1 for a whole trail).
    pub first_seq: i64,
}

/// Signed checkpoints to hold a chain against, each with where it came from.
#[derive(Debug, Default)]
pub struct Checkpoints {
    by_seq: BTreeMap<i64, Vec<(Checkpoint, String)>>,
}

impl Checkpoints {
    /// Adds a checkpoint found in `origin` (a file name or "the database");
    /// the same checkpoint found twice is held once.
    pub fn add(&mut self, checkpoint: Checkpoint, origin: &str) {
        let held = self.by_seq.entry(checkpoint.seq).or_default();
        if !held.iter().any(|(c, _)| *c == checkpoint) {
            held.push((checkpoint, origin.to_owned()));
        }
    }

    /// How many checkpoints are held.
    pub fn len(&self) -> usize {
        self.by_seq.values().map(Vec::len).sum()
    }

    /// Whether none are held.
    pub fn is_empty(&self) -> bool {
        self.by_seq.is_empty()
    }

    /// Checks every signature with `key`; the first bad one is a break.
    fn check_signatures(&self, key: &PublicKey) -> Result<(), ChainBreak> {
        for (seq, list) in &self.by_seq {
            for (c, origin) in list {
                c.verify(key).map_err(|problem| ChainBreak {
                    seq: *seq,
                    problem: format!("{problem} (from {origin}): forged or altered checkpoint"),
                })?;
            }
        }
        Ok(())
    }

    /// Checks `event` against the checkpoints at its seq.
    fn check_event(&self, event: &Event) -> Result<(), ChainBreak> {
        for (c, origin) in self.by_seq.get(&event.seq).into_iter().flatten() {
            if c.hash != event.hash {
                return Err(ChainBreak {
                    seq: event.seq,
                    problem: format!(
                        "the event's hash differs from the checkpoint signed {} (from {origin}): \
                         the trail was rewritten at or before this event",
                        c.time
                    ),
                });
            }
        }
        Ok(())
    }

    /// After the last event (`last_seq`): a checkpoint beyond it means events
    /// were cut off or an older copy is being verified.
    fn check_end(&self, last_seq: i64) -> Result<(), ChainBreak> {
        if let Some((seq, list)) = self.by_seq.range(last_seq + 1..).next_back()
            && let Some((c, origin)) = list.first()
        {
            return Err(ChainBreak {
                seq: last_seq + 1,
                problem: format!(
                    "the trail ends at seq {last_seq} but a checkpoint signed {} (from {origin}) \
                     covers seq {seq}: events truncated or an older copy restored",
                    c.time
                ),
            });
        }
        Ok(())
    }

    /// With a public key given, at least one signed checkpoint must be held:
    /// a trail without any is authenticated by nothing (a forged or rewritten
    /// export with its checkpoint lines removed would otherwise pass).
    fn require_some(&self, first_seq: i64) -> Result<(), ChainBreak> {
        if self.is_empty() {
            return Err(ChainBreak {
                seq: first_seq,
                problem: "no signed checkpoint was found (none in the trail or its range, or \
                          they were removed), so the audit key authenticates none of these \
                          events; verify without --public-key to check the hash chain alone, \
                          or add --checkpoints FILE"
                    .to_owned(),
            });
        }
        Ok(())
    }

    fn latest(&self) -> Option<(i64, String)> {
        self.by_seq
            .iter()
            .next_back()
            .and_then(|(seq, list)| list.first().map(|(c, _)| (*seq, c.time.clone())))
    }
}

/// How every checkpoint line starts ([`Checkpoint::to_json`]).
const CHECKPOINT_PREFIX: &str = "{\"checkpoint\":";

/// Reads the checkpoint lines of a checkpoint file or an export (other lines
/// are ignored). A line that starts like a checkpoint but is not valid JSON is
/// an error, never skipped.
pub fn read_checkpoint_file(path: &Path, into: &mut Checkpoints) -> anyhow::Result<()> {
    let file =
        std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let origin = path.display().to_string();
    for (index, line) in std::io::BufReader::new(file).lines().enumerate() {
        let line = line.with_context(|| format!("cannot read {}", path.display()))?;
        if line.trim().is_empty() {
            continue;
        }
        let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) else {
            // A damaged checkpoint must not silently drop out of the check
            // (events after an earlier checkpoint could then be rewritten).
            if line.trim_start().starts_with(CHECKPOINT_PREFIX) {
                anyhow::bail!(
                    "{origin} line {}: a checkpoint line that is not valid JSON (damaged or altered)",
                    index + 1
                );
            }
            continue;
        };
        if let Some(c) = Checkpoint::from_json(&v) {
            let c = c.map_err(|e| anyhow::anyhow!("{origin} line {}: {e}", index + 1))?;
            into.add(c, &origin);
        }
    }
    Ok(())
}

/// Verifies the chain in a database, and that every certificate's issuance
/// event is present (a truncated tail loses them). Checkpoints are not
/// checked; see [`verify_database_with`].
pub fn verify_database(conn: &Connection) -> Result<Result<VerifyReport, ChainBreak>, StoreError> {
    verify_database_with(conn, &Checkpoints::default(), None)
}

/// Verifies the chain in a database against `checkpoints` (whose signatures
/// are checked with `key`, required when there are any) and the certificates.
pub fn verify_database_with(
    conn: &Connection,
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
        checkpoints: checkpoints.len(),
        latest_checkpoint: checkpoints.latest(),
        first_seq: 1,
    }))
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
        && let Err(b) = checkpoints.require_some(first_seq)
    {
        return Ok(Err(b));
    }
    Ok(Ok(VerifyReport {
        events: verifier.count() - first_seq + 1,
        head: verifier.head().to_owned(),
        checkpoints: checkpoints.len(),
        latest_checkpoint: checkpoints.latest(),
        first_seq,
    }))
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
}

fn load_and_verify(args: &VerifyArgs<'_>) -> anyhow::Result<Result<VerifyReport, ChainBreak>> {
    let mut checkpoints = Checkpoints::default();
    for path in args.checkpoints {
        read_checkpoint_file(path, &mut checkpoints)?;
    }
    let explicit_key = args
        .public_key
        .map(audit_checkpoint::read_public_key)
        .transpose()?;
    match (args.config, args.file) {
        (_, Some(file)) => verify_file(file, checkpoints, explicit_key.as_ref()),
        (Some(config), None) => {
            let config = Config::load(config)?;
            let conn = store::open(&config.database_path, Create::Never)
                .context("cannot open the database")?;
            for c in store::audit_checkpoints::in_range(&conn, 1, i64::MAX)? {
                checkpoints.add(c, "the database");
            }
            // The configured external checkpoint file, when it exists.
            if let Some(file) = config
                .audit
                .as_ref()
                .and_then(|a| a.checkpoint_file.as_ref())
                && file.exists()
            {
                read_checkpoint_file(file, &mut checkpoints)?;
            }
            if explicit_key.is_some()
                && let Err(b) = checkpoints.require_some(1)
            {
                return Ok(Err(b));
            }
            let key = match explicit_key {
                Some(key) => Some(key),
                None => match &config.audit {
                    Some(audit) if !checkpoints.is_empty() => Some(
                        audit_checkpoint::read_public_key(&audit.public_key_file())
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
            let partial = if report.first_seq > 1 {
                format!(" (partial export from seq {})", report.first_seq)
            } else {
                String::new()
            };
            println!(
                "audit trail OK: {} events, head {}{partial}",
                report.events, report.head
            );
            if let Some((seq, time)) = &report.latest_checkpoint {
                println!(
                    "checkpoints OK: {} signed checkpoints match the trail; the latest covers seq {seq} (signed {time})",
                    report.checkpoints
                );
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
    let conn =
        store::open(&config.database_path, Create::Never).context("cannot open the database")?;
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
    let mut conn =
        store::open(&config.database_path, Create::Never).context("cannot open the database")?;
    match audit_checkpoint::make(
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
