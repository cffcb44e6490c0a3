//! The revocation feed: polls the CA (`GET /api/v1/bastion/revocations`) and
//! publishes what it learns into the shared [`Trust`]: revoked key ids,
//! serials and CA keys (new connections are refused, live ones are cut at once
//! by their connection task; a revoked CA key's live certificates are in the
//! serial list) and each active grant's window end (live connections are cut
//! then).
//!
//! The first poll takes a full snapshot; later polls ask only for changes
//! since the previous cursor. While the CA is unreachable the last known state
//! stays in force and the poller retries at the same interval.
//!
//! The state is kept in a local file (`revocation_state_file`, written
//! atomically after every poll that changed it, as one full
//! [`RevocationFeed`]) and loaded at start, so a restart while the CA is down
//! does not forget revocations. A bastion that starts with a feed but without
//! that file (or with a corrupt one) does not know what has been revoked: it
//! refuses every login until its first successful poll
//! ([`Trust::revocations_pending`]).

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Notify, watch};
use tokio::time::Instant;
use tpa_core::api::{ActiveGrant, RevocationFeed, RevokedGrant};

use crate::auth::Trust;
use crate::ca_client::CaClient;

/// What the feed has told the bastion so far.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct FeedState {
    /// The cursor to send next, once a poll succeeded.
    pub cursor: Option<u64>,
    /// Revoked key id → its entry (forgotten after `forget_after`).
    pub revoked: HashMap<String, RevokedGrant>,
    /// Active key id → its entry, with its request's window end (Unix seconds).
    pub active: HashMap<String, ActiveGrant>,
    /// Revoked serials (the feed always sends the complete list).
    pub serials: HashSet<u64>,
    /// Revoked CA key fingerprints (complete list too).
    pub ca_keys: HashSet<String>,
    /// Subject keys of the CA's unexpired certificates (complete list;
    /// `None` from a CA that does not send it).
    pub certified_keys: Option<HashSet<String>>,
}

impl FeedState {
    /// Applies one answer of the feed; `now` is Unix seconds (for pruning).
    ///
    /// An answer with a revoked serial that is not a decimal number is refused
    /// as a whole and changes nothing: dropping that one entry would let its
    /// certificate in (fail closed).
    pub fn apply(&mut self, feed: &RevocationFeed, now: u64) -> Result<(), String> {
        let serials = feed
            .revoked_serials
            .iter()
            .map(|s| {
                s.parse::<u64>()
                    .map_err(|_| format!("revoked serial {s:?} is not a decimal number"))
            })
            .collect::<Result<HashSet<u64>, String>>()?;
        if feed.full {
            self.revoked.clear();
            self.active.clear();
        }
        for grant in &feed.active {
            self.revoked.remove(&grant.key_id);
            self.active.insert(grant.key_id.clone(), grant.clone());
        }
        for grant in &feed.revoked {
            self.active.remove(&grant.key_id);
            self.revoked.insert(grant.key_id.clone(), grant.clone());
        }
        self.serials = serials;
        self.ca_keys = feed.revoked_ca_keys.iter().cloned().collect();
        self.certified_keys = feed
            .certified_keys
            .as_ref()
            .map(|keys| keys.iter().cloned().collect());
        self.revoked.retain(|_, g| g.forget_after > now);
        self.active.retain(|_, g| g.window_end > now);
        self.cursor = Some(feed.cursor);
        Ok(())
    }

    /// Writes this state into `trust` (keeping its trusted CA keys); the feed
    /// is the source of every revocation. Returns whether anything changed.
    pub fn publish_into(&self, trust: &mut Trust) -> bool {
        let key_ids = self.revoked.keys().cloned().collect();
        let windows: HashMap<String, u64> = self
            .active
            .iter()
            .map(|(k, g)| (k.clone(), g.window_end))
            .collect();
        let changed = trust.revocations.key_ids != key_ids
            || trust.windows != windows
            || trust.revocations.serials != self.serials
            || trust.revocations.ca_fingerprints != self.ca_keys
            || trust.certified_keys != self.certified_keys
            || trust.revocations_pending;
        trust.revocations.key_ids = key_ids;
        trust.revocations.serials = self.serials.clone();
        trust.revocations.ca_fingerprints = self.ca_keys.clone();
        trust.windows = windows;
        trust.certified_keys = self.certified_keys.clone();
        trust.revocations_pending = false;
        changed
    }

    /// The state as one full snapshot (what the state file holds), sorted.
    pub fn to_feed(&self) -> RevocationFeed {
        let mut revoked: Vec<RevokedGrant> = self.revoked.values().cloned().collect();
        revoked.sort_by(|a, b| a.key_id.cmp(&b.key_id));
        let mut active: Vec<ActiveGrant> = self.active.values().cloned().collect();
        active.sort_by(|a, b| a.key_id.cmp(&b.key_id));
        let mut revoked_serials: Vec<u64> = self.serials.iter().copied().collect();
        revoked_serials.sort_unstable();
        let mut revoked_ca_keys: Vec<String> = self.ca_keys.iter().cloned().collect();
        revoked_ca_keys.sort();
        let certified_keys = self.certified_keys.as_ref().map(|keys| {
            let mut keys: Vec<String> = keys.iter().cloned().collect();
            keys.sort();
            keys
        });
        RevocationFeed {
            cursor: self.cursor.unwrap_or(0),
            full: true,
            revoked,
            active,
            revoked_serials: revoked_serials.iter().map(u64::to_string).collect(),
            revoked_ca_keys,
            certified_keys,
        }
    }
}

/// Why the state file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum StateFileError {
    /// It cannot be read or written.
    #[error("revocation state file {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// It is not a saved feed.
    #[error("revocation state file {path} is corrupt: {message}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What the parser said.
        message: String,
    },
}

/// Loads the saved state; `Ok(None)` when the file does not exist.
pub fn load_state(path: &Path, now: u64) -> Result<Option<FeedState>, StateFileError> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(StateFileError::Io {
                path: path.to_owned(),
                source,
            });
        }
    };
    let feed: RevocationFeed =
        serde_json::from_str(&text).map_err(|e| StateFileError::Corrupt {
            path: path.to_owned(),
            message: e.to_string(),
        })?;
    if !feed.full {
        return Err(StateFileError::Corrupt {
            path: path.to_owned(),
            message: "not a full snapshot".to_owned(),
        });
    }
    let mut state = FeedState::default();
    state
        .apply(&feed, now)
        .map_err(|message| StateFileError::Corrupt {
            path: path.to_owned(),
            message,
        })?;
    Ok(Some(state))
}

/// Saves `state` atomically (temporary file, `fsync`, rename, directory
/// `fsync`), readable by the bastion's user only.
pub fn save_state(path: &Path, state: &FeedState) -> Result<(), StateFileError> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let io = |source| StateFileError::Io {
        path: path.to_owned(),
        source,
    };
    let text = serde_json::to_string(&state.to_feed()).map_err(|e| StateFileError::Corrupt {
        path: path.to_owned(),
        message: e.to_string(),
    })?;
    let mut tmp_name = path.file_name().unwrap_or_default().to_os_string();
    tmp_name.push(".tmp");
    let tmp = path.with_file_name(tmp_name);
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(io)?;
    file.write_all(text.as_bytes()).map_err(io)?;
    file.sync_all().map_err(io)?;
    std::fs::rename(&tmp, path).map_err(io)?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(io)?;
    }
    Ok(())
}

/// Unix seconds now.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The least time between the starts of two polls that logins asked for: a
/// flood of probes with unknown keys costs the CA at most one poll per spacing.
pub const ASKED_POLL_SPACING: Duration = Duration::from_millis(500);

/// Polls of the feed asked for by logins, coalesced: however many connections
/// ask, at most one poll is in flight and asked polls start at least
/// [`ASKED_POLL_SPACING`] apart.
#[derive(Debug)]
pub struct PollRequests {
    wanted: Notify,
    /// When the latest finished poll (answered or not) started; its answer is
    /// in the trust by the time this changes.
    finished: watch::Sender<Option<Instant>>,
}

impl Default for PollRequests {
    fn default() -> Self {
        Self {
            wanted: Notify::new(),
            finished: watch::Sender::new(None),
        }
    }
}

impl PollRequests {
    /// Asks for a poll soon.
    pub fn ask(&self) {
        self.wanted.notify_one();
    }

    /// Asks for a poll and waits until one that started at or after `since`
    /// has finished, or until `deadline`. Returns whether one did.
    pub async fn finished_since(&self, since: Instant, deadline: Instant) -> bool {
        let mut finished = self.finished.subscribe();
        self.ask();
        loop {
            if finished
                .borrow_and_update()
                .is_some_and(|start| start >= since)
            {
                return true;
            }
            match tokio::time::timeout_at(deadline, finished.changed()).await {
                Ok(Ok(())) => {}
                _ => return false,
            }
        }
    }
}

/// Polls every `interval`, and soon when `polls` is asked, until
/// `shutdown` completes, starting from `state` (loaded from `state_file`),
/// publishing changes to `trust` and saving them to `state_file`.
pub async fn run(
    client: CaClient,
    trust: watch::Sender<Arc<Trust>>,
    interval: Duration,
    polls: Arc<PollRequests>,
    mut state: FeedState,
    state_file: PathBuf,
    shutdown: impl std::future::Future<Output = ()>,
) {
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut failing = false;
    let mut last_start: Option<Instant> = None;
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => return,
            _ = ticker.tick() => {}
            () = polls.wanted.notified() => {
                if let Some(last) = last_start {
                    tokio::select! {
                        () = &mut shutdown => return,
                        () = tokio::time::sleep_until(last + ASKED_POLL_SPACING) => {}
                    }
                }
                ticker.reset();
            }
        }
        let start = Instant::now();
        last_start = Some(start);
        poll_once(&client, &trust, &mut state, &state_file, &mut failing).await;
        polls.finished.send_replace(Some(start));
    }
}

/// One poll of the feed: applies and publishes its answer, saves the state.
async fn poll_once(
    client: &CaClient,
    trust: &watch::Sender<Arc<Trust>>,
    state: &mut FeedState,
    state_file: &Path,
    failing: &mut bool,
) {
    {
        match client.revocations(state.cursor).await {
            Ok(feed) => {
                let before = state.clone();
                if let Err(e) = state.apply(&feed, unix_now()) {
                    // Keep the last known state; a pending bastion stays closed.
                    tracing::error!(error = %e, "the CA's revocation feed answer is invalid; keeping the last known revocations");
                    *failing = true;
                    state.cursor = None;
                    return;
                }
                if *failing {
                    tracing::info!("revocation feed reachable again");
                    *failing = false;
                }
                trust.send_if_modified(|current| {
                    let mut next = Trust::clone(current);
                    let was_pending = current.revocations_pending;
                    let changed = state.publish_into(&mut next);
                    if changed {
                        if was_pending {
                            tracing::info!("revocation state known; accepting logins");
                        }
                        tracing::info!(
                            revoked = state.revoked.len(),
                            active = state.active.len(),
                            "revocation feed updated"
                        );
                        *current = Arc::new(next);
                    }
                    changed
                });
                if *state != before {
                    let (path, snapshot) = (state_file.to_owned(), state.clone());
                    let saved =
                        tokio::task::spawn_blocking(move || save_state(&path, &snapshot)).await;
                    match saved {
                        Ok(Ok(())) => {}
                        Ok(Err(e)) => {
                            tracing::error!(error = %e, "cannot save the revocation state")
                        }
                        Err(e) => tracing::error!(error = %e, "cannot save the revocation state"),
                    }
                }
            }
            Err(e) => {
                if !*failing {
                    if trust.borrow().revocations_pending {
                        tracing::error!(error = %e, "revocation feed unavailable and no saved revocation state: refusing every login until the CA answers");
                    } else {
                        tracing::warn!(error = %e, "revocation feed unavailable; keeping the last known revocations");
                    }
                    *failing = true;
                }
                if !e.is_transient() {
                    // A refused cursor: start again from a full snapshot.
                    state.cursor = None;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tpa_core::api::{ActiveGrant, RevokedGrant};

    fn feed(full: bool, active: &[(&str, u64)], revoked: &[(&str, u64)]) -> RevocationFeed {
        RevocationFeed {
            cursor: 9,
            full,
            active: active
                .iter()
                .map(|(k, end)| ActiveGrant {
                    key_id: (*k).to_owned(),
                    request: "req_x".to_owned(),
                    window_end: *end,
                })
                .collect(),
            revoked: revoked
                .iter()
                .map(|(k, forget)| RevokedGrant {
                    key_id: (*k).to_owned(),
                    request: "req_x".to_owned(),
                    state: "revoked".to_owned(),
                    forget_after: *forget,
                })
                .collect(),
            revoked_serials: vec![],
            revoked_ca_keys: vec![],
            certified_keys: None,
        }
    }

    #[test]
    fn deltas_move_key_ids_between_active_and_revoked() {
        let mut s = FeedState::default();
        s.apply(&feed(true, &[("a", 200), ("b", 300)], &[("c", 150)]), 100)
            .unwrap();
        assert_eq!(s.cursor, Some(9));
        assert_eq!(s.active.len(), 2);
        assert!(s.revoked.contains_key("c"));
        s.apply(&feed(false, &[], &[("a", 400)]), 110).unwrap();
        assert!(s.revoked.contains_key("a"));
        assert!(!s.active.contains_key("a"));
        assert_eq!(s.active.get("b").map(|g| g.window_end), Some(300));
        // Entries past their time are forgotten; a full snapshot replaces all.
        s.apply(&feed(false, &[], &[]), 160).unwrap();
        assert!(!s.revoked.contains_key("c"));
        s.apply(&feed(true, &[("d", 500)], &[]), 170).unwrap();
        assert!(s.revoked.is_empty());
        assert_eq!(s.active.keys().collect::<Vec<_>>(), ["d"]);
    }

    #[test]
    fn publishing_reports_changes() {
        let mut s = FeedState::default();
        s.apply(&feed(true, &[("a", 200)], &[("c", 150)]), 100)
            .unwrap();
        let mut trust = Trust::default();
        assert!(s.publish_into(&mut trust));
        assert!(trust.revocations.key_ids.contains("c"));
        assert_eq!(trust.windows.get("a"), Some(&200));
        assert!(!s.publish_into(&mut trust));
        // A bastion waiting for its first poll accepts logins once it is applied.
        trust.revocations_pending = true;
        assert!(s.publish_into(&mut trust));
        assert!(!trust.revocations_pending);
    }

    /// Issue #7: serials and CA keys from the feed reach the trust, and a
    /// later answer replaces them.
    #[test]
    fn serials_and_ca_keys_are_published_and_replaced() {
        let mut s = FeedState::default();
        let mut f = feed(true, &[], &[]);
        f.revoked_serials = vec!["7".into()];
        f.revoked_ca_keys = vec!["SHA256:abc".into()];
        s.apply(&f, 100).unwrap();
        let mut trust = Trust::default();
        assert!(s.publish_into(&mut trust));
        assert!(trust.revocations.serials.contains(&7));
        assert_eq!(trust.revocations.serials.len(), 1);
        // Security review (rev-bastion): an answer with a serial that does not
        // parse is refused whole; it used to drop that serial (and un-revoke
        // the serials it replaced).
        let before = s.clone();
        let mut bad = feed(true, &[], &[]);
        bad.revoked_serials = vec!["8".into(), "0x9".into()];
        assert!(s.apply(&bad, 105).unwrap_err().contains("0x9"));
        assert_eq!(s, before, "a refused answer changes nothing");
        assert!(trust.revocations.ca_fingerprints.contains("SHA256:abc"));
        s.apply(&feed(false, &[], &[]), 110).unwrap();
        assert!(s.publish_into(&mut trust));
        assert!(trust.revocations.serials.is_empty());
        assert!(trust.revocations.ca_fingerprints.is_empty());
    }

    /// Issue 13 (finding 5): the keys the probe accepts come from the feed,
    /// are replaced by every answer, and survive a restart; a CA without the
    /// field leaves the bastion answering every probe.
    #[test]
    fn certified_keys_are_published_replaced_and_saved() {
        let mut s = FeedState::default();
        let mut f = feed(true, &[], &[]);
        f.certified_keys = Some(vec!["SHA256:a".into(), "SHA256:b".into()]);
        s.apply(&f, 100).unwrap();
        let mut trust = Trust::default();
        assert!(s.publish_into(&mut trust));
        let keys = trust.certified_keys.clone().unwrap();
        assert!(keys.contains("SHA256:a") && keys.contains("SHA256:b"));
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("revocations.json");
        save_state(&path, &s).unwrap();
        assert_eq!(
            load_state(&path, 100).unwrap().unwrap().certified_keys,
            s.certified_keys
        );
        let mut delta = feed(false, &[], &[]);
        delta.certified_keys = Some(vec!["SHA256:c".into()]);
        s.apply(&delta, 110).unwrap();
        assert!(s.publish_into(&mut trust));
        assert_eq!(trust.certified_keys.as_ref().map(|k| k.len()), Some(1));
        s.apply(&feed(false, &[], &[]), 120).unwrap();
        assert!(s.publish_into(&mut trust));
        assert_eq!(trust.certified_keys, None);
    }

    #[test]
    fn state_file_round_trips_and_refuses_garbage() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("revocations.json");
        assert_eq!(load_state(&path, 100).unwrap(), None);
        let mut s = FeedState::default();
        let mut f = feed(true, &[("a", 200)], &[("c", 150)]);
        f.revoked_serials = vec!["42".into()];
        f.revoked_ca_keys = vec!["SHA256:old".into()];
        s.apply(&f, 100).unwrap();
        save_state(&path, &s).unwrap();
        assert_eq!(load_state(&path, 100).unwrap(), Some(s.clone()));
        // Entries past their time are dropped at load.
        let later = load_state(&path, 160).unwrap().unwrap();
        assert!(later.revoked.is_empty());
        // Serials and revoked CA keys survive a restart too.
        assert!(later.serials.contains(&42));
        assert!(later.ca_keys.contains("SHA256:old"));
        assert_eq!(later.cursor, Some(9));
        std::fs::write(&path, "{\"cursor\":").unwrap();
        assert!(matches!(
            load_state(&path, 100),
            Err(StateFileError::Corrupt { .. })
        ));
        let delta = serde_json::to_string(&feed(false, &[], &[])).unwrap();
        std::fs::write(&path, delta).unwrap();
        assert!(matches!(
            load_state(&path, 100),
            Err(StateFileError::Corrupt { .. })
        ));
    }
}
