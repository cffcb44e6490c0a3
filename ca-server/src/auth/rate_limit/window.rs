//! The sliding window every limiter counts in: event times per key with
//! bounded memory ([`Failures`]), and the refusal it answers ([`Limited`]).

use std::collections::{HashMap, VecDeque};
use std::hash::Hash;
use std::time::{Duration, Instant};

/// Event times of one kind of key (failed logins, decisions).
#[derive(Debug)]
pub(in crate::auth) struct Failures<K> {
    limit: usize,
    window: Duration,
    max_keys: usize,
    /// Visible to the limiters' memory tests.
    pub(super) keys: HashMap<K, VecDeque<Instant>>,
}

impl<K: Hash + Eq + Clone> Failures<K> {
    pub(in crate::auth) fn new(limit: usize, window: Duration, max_keys: usize) -> Self {
        Self {
            limit,
            window,
            max_keys,
            keys: HashMap::new(),
        }
    }

    /// The events of `key` still inside the window (at most the limit).
    pub(in crate::auth) fn count(&mut self, key: &K, now: Instant) -> usize {
        let Some(times) = self.keys.get_mut(key) else {
            return 0;
        };
        while times
            .front()
            .is_some_and(|t| now.saturating_duration_since(*t) >= self.window)
        {
            times.pop_front();
        }
        times.len()
    }

    /// How long until `key` may try again, when it is at its limit.
    pub(in crate::auth) fn retry_after(&mut self, key: &K, now: Instant) -> Option<Duration> {
        if self.count(key, now) < self.limit {
            return None;
        }
        let times = self.keys.get_mut(key)?;
        if times.len() < self.limit {
            return None;
        }
        let oldest = *times.front()?;
        Some(
            self.window
                .saturating_sub(now.saturating_duration_since(oldest)),
        )
    }

    /// Removes one event of `key` at exactly `at` (a released reservation).
    pub(in crate::auth) fn forget(&mut self, key: &K, at: Instant) {
        if let Some(times) = self.keys.get_mut(key)
            && let Some(position) = times.iter().rposition(|t| *t == at)
        {
            times.remove(position);
        }
    }

    pub(in crate::auth) fn record(&mut self, key: K, now: Instant) {
        if !self.keys.contains_key(&key) && self.keys.len() >= self.max_keys {
            let window = self.window;
            self.keys.retain(|_, times| {
                times
                    .back()
                    .is_some_and(|t| now.saturating_duration_since(*t) < window)
            });
            if self.keys.len() >= self.max_keys {
                let least_recent = self
                    .keys
                    .iter()
                    .min_by_key(|(_, times)| times.back().copied())
                    .map(|(k, _)| k.clone());
                if let Some(k) = least_recent {
                    self.keys.remove(&k);
                }
            }
        }
        let times = self.keys.entry(key).or_default();
        times.push_back(now);
        while times.len() > self.limit {
            times.pop_front();
        }
    }
}

/// Why an attempt was refused by a limiter: how long to wait, and whether
/// this is the first refusal of its key in the window (only that one is
/// audited, so a flood cannot fill the audit trail).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limited {
    /// Until the next attempt may pass (at least one second).
    pub retry_after: Duration,
    /// The first refusal of this key in the window.
    pub first: bool,
}

impl Limited {
    /// The refusal of `key` that must wait `wait`; it is the first one when
    /// `noted` has not seen `key` in its window (and now has).
    pub(super) fn of<K: Hash + Eq + Clone>(
        noted: &mut Failures<K>,
        key: K,
        wait: Duration,
        now: Instant,
    ) -> Self {
        let first = noted.retry_after(&key, now).is_none();
        if first {
            noted.record(key, now);
        }
        Limited {
            retry_after: wait.max(Duration::from_secs(1)),
            first,
        }
    }
}
