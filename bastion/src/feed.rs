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

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tpa_core::api::RevocationFeed;

use crate::auth::Trust;
use crate::ca_client::CaClient;

/// What the feed has told the bastion so far.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct FeedState {
    /// The cursor to send next, once a poll succeeded.
    pub cursor: Option<u64>,
    /// Revoked key id → Unix second after which it can be forgotten.
    pub revoked: HashMap<String, u64>,
    /// Active key id → its request's window end (Unix seconds).
    pub windows: HashMap<String, u64>,
    /// Revoked serials (the feed always sends the complete list).
    pub serials: HashSet<u64>,
    /// Revoked CA key fingerprints (complete list too).
    pub ca_keys: HashSet<String>,
}

impl FeedState {
    /// Applies one answer of the feed; `now` is Unix seconds (for pruning).
    pub fn apply(&mut self, feed: &RevocationFeed, now: u64) {
        if feed.full {
            self.revoked.clear();
            self.windows.clear();
        }
        for grant in &feed.active {
            self.revoked.remove(&grant.key_id);
            self.windows.insert(grant.key_id.clone(), grant.window_end);
        }
        for grant in &feed.revoked {
            self.windows.remove(&grant.key_id);
            self.revoked
                .insert(grant.key_id.clone(), grant.forget_after);
        }
        self.serials = feed
            .revoked_serials
            .iter()
            .filter_map(|s| s.parse().ok())
            .collect();
        self.ca_keys = feed.revoked_ca_keys.iter().cloned().collect();
        self.revoked.retain(|_, forget_after| *forget_after > now);
        self.windows.retain(|_, end| *end > now);
        self.cursor = Some(feed.cursor);
    }

    /// Writes this state into `trust` (keeping its trusted CA keys); the feed
    /// is the source of every revocation. Returns whether anything changed.
    pub fn publish_into(&self, trust: &mut Trust) -> bool {
        let key_ids = self.revoked.keys().cloned().collect();
        let changed = trust.revocations.key_ids != key_ids
            || trust.windows != self.windows
            || trust.revocations.serials != self.serials
            || trust.revocations.ca_fingerprints != self.ca_keys;
        trust.revocations.key_ids = key_ids;
        trust.revocations.serials = self.serials.clone();
        trust.revocations.ca_fingerprints = self.ca_keys.clone();
        trust.windows = self.windows.clone();
        changed
    }
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Polls every `interval` until `shutdown` completes, publishing changes to
/// `trust`.
pub async fn run(
    client: CaClient,
    trust: watch::Sender<Arc<Trust>>,
    interval: Duration,
    shutdown: impl std::future::Future<Output = ()>,
) {
    let mut state = FeedState::default();
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut failing = false;
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => return,
            _ = ticker.tick() => {}
        }
        match client.revocations(state.cursor).await {
            Ok(feed) => {
                if failing {
                    tracing::info!("revocation feed reachable again");
                    failing = false;
                }
                state.apply(&feed, unix_now());
                trust.send_if_modified(|current| {
                    let mut next = Trust::clone(current);
                    let changed = state.publish_into(&mut next);
                    if changed {
                        tracing::info!(
                            revoked = state.revoked.len(),
                            active = state.windows.len(),
                            "revocation feed updated"
                        );
                        *current = Arc::new(next);
                    }
                    changed
                });
            }
            Err(e) => {
                if !failing {
                    tracing::warn!(error = %e, "revocation feed unavailable; keeping the last known revocations");
                    failing = true;
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
        }
    }

    #[test]
    fn deltas_move_key_ids_between_active_and_revoked() {
        let mut s = FeedState::default();
        s.apply(&feed(true, &[("a", 200), ("b", 300)], &[("c", 150)]), 100);
        assert_eq!(s.cursor, Some(9));
        assert_eq!(s.windows.len(), 2);
        assert!(s.revoked.contains_key("c"));
        s.apply(&feed(false, &[], &[("a", 400)]), 110);
        assert!(s.revoked.contains_key("a"));
        assert!(!s.windows.contains_key("a"));
        assert_eq!(s.windows.get("b"), Some(&300));
        // Entries past their time are forgotten; a full snapshot replaces all.
        s.apply(&feed(false, &[], &[]), 160);
        assert!(!s.revoked.contains_key("c"));
        s.apply(&feed(true, &[("d", 500)], &[]), 170);
        assert!(s.revoked.is_empty());
        assert_eq!(s.windows.keys().collect::<Vec<_>>(), ["d"]);
    }

    #[test]
    fn publishing_reports_changes() {
        let mut s = FeedState::default();
        s.apply(&feed(true, &[("a", 200)], &[("c", 150)]), 100);
        let mut trust = Trust::default();
        assert!(s.publish_into(&mut trust));
        assert!(trust.revocations.key_ids.contains("c"));
        assert_eq!(trust.windows.get("a"), Some(&200));
        assert!(!s.publish_into(&mut trust));
    }

    /// Issue #7: serials and CA keys from the feed reach the trust, and a
    /// later answer replaces them.
    #[test]
    fn serials_and_ca_keys_are_published_and_replaced() {
        let mut s = FeedState::default();
        let mut f = feed(true, &[], &[]);
        f.revoked_serials = vec!["7".into(), "not-a-number".into()];
        f.revoked_ca_keys = vec!["SHA256:abc".into()];
        s.apply(&f, 100);
        let mut trust = Trust::default();
        assert!(s.publish_into(&mut trust));
        assert!(trust.revocations.serials.contains(&7));
        assert_eq!(trust.revocations.serials.len(), 1);
        assert!(trust.revocations.ca_fingerprints.contains("SHA256:abc"));
        s.apply(&feed(false, &[], &[]), 110);
        assert!(s.publish_into(&mut trust));
        assert!(trust.revocations.serials.is_empty());
        assert!(trust.revocations.ca_fingerprints.is_empty());
    }
}
