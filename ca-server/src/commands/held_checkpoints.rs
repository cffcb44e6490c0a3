//! The signed checkpoints `tpa-ca audit verify` holds a trail against (from
//! the database, the checkpoint file, exports and `--checkpoints` files), and
//! what they must cover.

use std::collections::BTreeMap;
use std::io::BufRead as _;
use std::path::Path;

use anyhow::Context as _;
use ssh_key::PublicKey;

use crate::audit::checkpoint::Checkpoint;
use tpa_core::audit::{ChainBreak, Event};

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
    pub(super) fn check_signatures(&self, key: &PublicKey) -> Result<(), ChainBreak> {
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
    pub(super) fn check_event(&self, event: &Event) -> Result<(), ChainBreak> {
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
    pub(super) fn check_end(&self, last_seq: i64) -> Result<(), ChainBreak> {
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

    /// With a public key given, a signed checkpoint must lie inside the
    /// verified range `first_seq..=last_seq`: a trail without one is
    /// authenticated by nothing. A checkpoint before the range covers none of
    /// its events, so one genuine checkpoint line plus invented events
    /// chained from its hash must not pass (issue 18), nor an export with
    /// its checkpoint lines removed (security review 2026-11-24).
    pub(super) fn require_inside(&self, first_seq: i64, last_seq: i64) -> Result<(), ChainBreak> {
        if self.latest_in(first_seq, last_seq).is_none() {
            let around = if self.is_empty() {
                "none was found (none in the trail or its range, or they were removed)".to_owned()
            } else {
                format!(
                    "the {} held cover only seqs outside {first_seq}..{last_seq}",
                    self.len()
                )
            };
            return Err(ChainBreak {
                seq: first_seq,
                problem: format!(
                    "no signed checkpoint covers an event of this trail ({around}), so the \
                     audit key authenticates none of its events; verify without --public-key \
                     to check the hash chain alone, or add --checkpoints FILE"
                ),
            });
        }
        Ok(())
    }

    /// The latest checkpoint at a seq in `first..=last`: (seq, signing time).
    pub(super) fn latest_in(&self, first: i64, last: i64) -> Option<(i64, String)> {
        if first > last {
            return None;
        }
        self.by_seq
            .range(first..=last)
            .next_back()
            .and_then(|(seq, list)| list.first().map(|(c, _)| (*seq, c.time.clone())))
    }
}

/// How every checkpoint line starts ([`Checkpoint::to_json`]).
pub(super) const CHECKPOINT_PREFIX: &str = "{\"checkpoint\":";

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
