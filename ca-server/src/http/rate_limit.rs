//! In-memory rate limits in sliding windows: failed logins (per attempted
//! username and per client IP; successes do not count) and decisions (approve,
//! deny, cancel: per user, web and API alike). Memory is bounded: each key
//! keeps at most its limit of timestamps, and each map at most `max_keys` keys
//! (stale keys go first, then the least recently used).

use std::collections::{HashMap, VecDeque};
use std::hash::Hash;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Failed logins allowed per username in a window.
pub const PER_USERNAME: usize = 5;
/// Failed logins allowed per client IP in a window.
pub const PER_IP: usize = 20;
/// The window of the login limits.
pub const WINDOW: Duration = Duration::from_secs(5 * 60);
/// Decisions (approve, deny, cancel) allowed per user in [`DECISION_WINDOW`].
pub const DECISIONS_PER_USER: usize = 30;
/// The window of the decision limit.
pub const DECISION_WINDOW: Duration = Duration::from_secs(60);
/// Keys kept per map.
const MAX_KEYS: usize = 10_000;
/// Username keys are cut to this many bytes.
const MAX_USERNAME_KEY: usize = 128;

/// Event times of one kind of key (failed logins, decisions).
#[derive(Debug)]
struct Failures<K> {
    limit: usize,
    window: Duration,
    max_keys: usize,
    keys: HashMap<K, VecDeque<Instant>>,
}

impl<K: Hash + Eq + Clone> Failures<K> {
    fn new(limit: usize, window: Duration, max_keys: usize) -> Self {
        Self {
            limit,
            window,
            max_keys,
            keys: HashMap::new(),
        }
    }

    /// How long until `key` may try again, when it is at its limit.
    fn retry_after(&mut self, key: &K, now: Instant) -> Option<Duration> {
        let times = self.keys.get_mut(key)?;
        while times
            .front()
            .is_some_and(|t| now.saturating_duration_since(*t) >= self.window)
        {
            times.pop_front();
        }
        if times.len() < self.limit {
            return None;
        }
        let oldest = *times.front()?;
        Some(
            self.window
                .saturating_sub(now.saturating_duration_since(oldest)),
        )
    }

    fn record(&mut self, key: K, now: Instant) {
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

/// The failed-login limiter shared by the API and the web login.
#[derive(Debug)]
pub struct LoginRateLimiter {
    inner: Mutex<(Failures<String>, Failures<IpAddr>)>,
}

impl Default for LoginRateLimiter {
    fn default() -> Self {
        Self::with_max_keys(MAX_KEYS)
    }
}

fn username_key(username: &str) -> String {
    let mut end = username.len().min(MAX_USERNAME_KEY);
    while !username.is_char_boundary(end) {
        end -= 1;
    }
    username.get(..end).unwrap_or_default().to_owned()
}

impl LoginRateLimiter {
    fn with_max_keys(max_keys: usize) -> Self {
        Self {
            inner: Mutex::new((
                Failures::new(PER_USERNAME, WINDOW, max_keys),
                Failures::new(PER_IP, WINDOW, max_keys),
            )),
        }
    }

    /// `Err(retry_after)` when this username or this IP has used up its failures.
    pub fn check(&self, username: &str, ip: Option<IpAddr>, now: Instant) -> Result<(), Duration> {
        let mut guard = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let (users, ips) = &mut *guard;
        let user_wait = users.retry_after(&username_key(username), now);
        let ip_wait = ip.and_then(|ip| ips.retry_after(&ip, now));
        match user_wait.max(ip_wait) {
            Some(wait) => Err(wait.max(Duration::from_secs(1))),
            None => Ok(()),
        }
    }

    /// Counts one failed login.
    pub fn record_failure(&self, username: &str, ip: Option<IpAddr>, now: Instant) {
        let mut guard = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let (users, ips) = &mut *guard;
        users.record(username_key(username), now);
        if let Some(ip) = ip {
            ips.record(ip, now);
        }
    }
}

/// The decision limiter shared by the API and the web forms: at most
/// [`DECISIONS_PER_USER`] decisions per user in [`DECISION_WINDOW`], refused
/// ones included (a refusal costs a transaction and an audit row too).
#[derive(Debug)]
pub struct DecisionRateLimiter {
    inner: Mutex<Failures<String>>,
}

impl Default for DecisionRateLimiter {
    fn default() -> Self {
        Self {
            inner: Mutex::new(Failures::new(DECISIONS_PER_USER, DECISION_WINDOW, MAX_KEYS)),
        }
    }
}

impl DecisionRateLimiter {
    /// Counts one decision by `user_key` (the user's identity), or
    /// `Err(retry_after)` without counting when the user is at the limit.
    pub fn check_and_record(&self, user_key: &str, now: Instant) -> Result<(), Duration> {
        let mut guard = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let key = user_key.to_owned();
        if let Some(wait) = guard.retry_after(&key, now) {
            return Err(wait.max(Duration::from_secs(1)));
        }
        guard.record(key, now);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(last: u8) -> Option<IpAddr> {
        Some(IpAddr::from([192, 0, 2, last]))
    }

    #[test]
    fn five_failures_per_username_then_wait_for_the_window() {
        let limiter = LoginRateLimiter::default();
        let t0 = Instant::now();
        for i in 0..5u8 {
            assert_eq!(limiter.check("alice", ip(i), t0), Ok(()));
            limiter.record_failure("alice", ip(i), t0);
        }
        let wait = limiter.check("alice", ip(99), t0).unwrap_err();
        assert_eq!(wait, WINDOW);
        assert_eq!(
            limiter.check("bob", ip(0), t0),
            Ok(()),
            "other users unaffected"
        );
        let later = t0 + Duration::from_secs(60);
        assert_eq!(
            limiter.check("alice", ip(1), later),
            Err(WINDOW - Duration::from_secs(60))
        );
        assert_eq!(limiter.check("alice", ip(1), t0 + WINDOW), Ok(()));
    }

    #[test]
    fn twenty_failures_per_ip_across_usernames() {
        let limiter = LoginRateLimiter::default();
        let t0 = Instant::now();
        for i in 0..20 {
            let user = format!("user{i}");
            assert_eq!(limiter.check(&user, ip(1), t0), Ok(()), "{i}");
            limiter.record_failure(&user, ip(1), t0);
        }
        assert!(limiter.check("fresh", ip(1), t0).is_err());
        assert_eq!(limiter.check("fresh", ip(2), t0), Ok(()));
        assert_eq!(limiter.check("fresh", None, t0), Ok(()));
    }

    #[test]
    fn memory_is_bounded_and_recent_keys_survive() {
        let limiter = LoginRateLimiter::with_max_keys(100);
        let t0 = Instant::now();
        for _ in 0..5 {
            limiter.record_failure("target", ip(1), t0);
        }
        for i in 0..1000 {
            let t = t0 + Duration::from_millis(i + 1);
            limiter.record_failure(&format!("spray{i}"), None, t);
        }
        let guard = limiter.inner.lock().unwrap();
        assert!(guard.0.keys.len() <= 100);
        assert!(guard.0.keys.values().all(|t| t.len() <= PER_USERNAME));
        drop(guard);
        // The oldest key was evicted first; the sprayer cannot keep its own
        // latest keys from being counted.
        assert!(
            limiter
                .check("spray999", None, t0 + Duration::from_secs(1))
                .is_ok()
        );
        let long = "é".repeat(200);
        limiter.record_failure(&long, None, t0);
        assert!(username_key(&long).len() <= MAX_USERNAME_KEY);
    }

    #[test]
    fn thirty_decisions_per_user_per_minute() {
        let limiter = DecisionRateLimiter::default();
        let t0 = Instant::now();
        for i in 0..DECISIONS_PER_USER {
            assert_eq!(limiter.check_and_record("tpa:local/bob", t0), Ok(()), "{i}");
        }
        assert_eq!(
            limiter.check_and_record("tpa:local/bob", t0),
            Err(DECISION_WINDOW)
        );
        assert_eq!(limiter.check_and_record("tpa:local/carol", t0), Ok(()));
        assert_eq!(
            limiter.check_and_record("tpa:local/bob", t0 + DECISION_WINDOW),
            Ok(())
        );
    }
}
