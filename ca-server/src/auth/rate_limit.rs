//! In-memory rate limits in sliding windows: wrong user codes of device and
//! CLI logins (per person and per client IP; counted before verification,
//! successes given back), unauthenticated SSO work per client address, and decisions
//! (approve, deny, cancel: per user, web and API alike). Memory is bounded: each key
//! keeps at most its limit of timestamps, and each map at most `max_keys` keys
//! (stale keys go first, then the least recently used).
//!
//! Hand-written rather than `governor`: its GCRA admits one cell every
//! `window / limit` and cannot give a cell back, while these limits are
//! exact sliding windows (the sixth wrong code in five minutes waits for the
//! first one to leave the window), count an attempt before its slow check and
//! give it back on success ([`Attempts`]), and report only the first refusal
//! of a key per window; the tests below pin those semantics.

use std::collections::{HashMap, VecDeque};
use std::hash::Hash;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Wrong user codes allowed per person in a window.
pub const PER_USERNAME: usize = 5;
/// Wrong user codes allowed per client IP in a window.
pub const PER_IP: usize = 20;
/// The window of the login limits (user codes and passwords).
pub const WINDOW: Duration = Duration::from_secs(5 * 60);
/// Decisions (approve, deny, cancel) allowed per user in [`DECISION_WINDOW`].
pub const DECISIONS_PER_USER: usize = 30;
/// The window of the decision limit.
pub const DECISION_WINDOW: Duration = Duration::from_secs(60);
/// Keys kept per map.
pub(super) const MAX_KEYS: usize = 10_000;
/// Username keys are cut to this many bytes.
const MAX_USERNAME_KEY: usize = 128;

/// Event times of one kind of key (failed logins, decisions).
#[derive(Debug)]
pub(super) struct Failures<K> {
    limit: usize,
    window: Duration,
    max_keys: usize,
    keys: HashMap<K, VecDeque<Instant>>,
}

impl<K: Hash + Eq + Clone> Failures<K> {
    pub(super) fn new(limit: usize, window: Duration, max_keys: usize) -> Self {
        Self {
            limit,
            window,
            max_keys,
            keys: HashMap::new(),
        }
    }

    /// The events of `key` still inside the window (at most the limit).
    pub(super) fn count(&mut self, key: &K, now: Instant) -> usize {
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
    pub(super) fn retry_after(&mut self, key: &K, now: Instant) -> Option<Duration> {
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
    pub(super) fn forget(&mut self, key: &K, at: Instant) {
        if let Some(times) = self.keys.get_mut(key)
            && let Some(position) = times.iter().rposition(|t| *t == at)
        {
            times.remove(position);
        }
    }

    pub(super) fn record(&mut self, key: K, now: Instant) {
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
    fn of<K: Hash + Eq + Clone>(
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

/// An attempt counted in advance by a login limiter's `reserve`; a success
/// gives it back with its `release`.
#[derive(Debug)]
#[must_use = "a reservation counts as a failure unless released"]
pub struct Reservation {
    username: String,
    ip: Option<IpAddr>,
    at: Instant,
    /// How long to wait before checking the secret (password logins only;
    /// zero for user codes).
    pub delay: Duration,
}

/// The one login limiter both login limits are built on: attempts per
/// subject `K` and per client address, each in its own sliding window,
/// counted before the (slow) verification so parallel attempts cannot pass
/// the limits, and given back on success. Only the first refusal of a
/// (username, address) in the window is reported.
#[derive(Debug)]
pub(super) struct Attempts<K> {
    subjects: Failures<K>,
    addresses: Failures<IpAddr>,
    noted: Failures<(String, Option<IpAddr>)>,
}

impl<K: Hash + Eq + Clone> Attempts<K> {
    /// `per_subject` and `per_address` attempts in [`WINDOW`].
    pub(super) fn new(per_subject: usize, per_address: usize, max_keys: usize) -> Self {
        Self {
            subjects: Failures::new(per_subject, WINDOW, max_keys),
            addresses: Failures::new(per_address, WINDOW, max_keys),
            noted: Failures::new(1, WINDOW, max_keys),
        }
    }

    /// `Err` (nothing counted) when `subject` or `ip` is at its limit.
    pub(super) fn check(
        &mut self,
        subject: &K,
        username: &str,
        ip: Option<IpAddr>,
        now: Instant,
    ) -> Result<(), Limited> {
        let subject_wait = self.subjects.retry_after(subject, now);
        let address_wait = ip.and_then(|ip| self.addresses.retry_after(&ip, now));
        match subject_wait.max(address_wait) {
            None => Ok(()),
            Some(wait) => Err(Limited::of(
                &mut self.noted,
                (username.to_owned(), ip),
                wait,
                now,
            )),
        }
    }

    /// The attempts of `subject` in the window.
    pub(super) fn count(&mut self, subject: &K, now: Instant) -> usize {
        self.subjects.count(subject, now)
    }

    /// Counts one attempt; the reservation gives it back on success.
    pub(super) fn record(
        &mut self,
        subject: K,
        username: String,
        ip: Option<IpAddr>,
        now: Instant,
        delay: Duration,
    ) -> Reservation {
        self.subjects.record(subject, now);
        if let Some(ip) = ip {
            self.addresses.record(ip, now);
        }
        Reservation {
            username,
            ip,
            at: now,
            delay,
        }
    }

    /// Gives back the attempt of `reservation`, whose subject is `subject`.
    pub(super) fn forget(&mut self, subject: &K, reservation: &Reservation) {
        self.subjects.forget(subject, reservation.at);
        if let Some(ip) = reservation.ip {
            self.addresses.forget(&ip, reservation.at);
        }
    }
}

impl Reservation {
    /// The username key and address the attempt was counted for.
    pub(super) fn key(&self) -> (&str, Option<IpAddr>, Instant) {
        (&self.username, self.ip, self.at)
    }
}

/// The wrong-user-code limiter of the device-code and CLI consent forms,
/// keyed by the logged-in person's identity (password logins have their own,
/// [`super::login_limit::PasswordLimiter`], which cannot lock a user out). An attempt is counted
/// before the (slow) verification, so parallel attempts cannot exceed the
/// limit; a success gives its count back.
#[derive(Debug)]
pub struct LoginRateLimiter {
    inner: Mutex<Attempts<String>>,
}

impl Default for LoginRateLimiter {
    fn default() -> Self {
        Self::with_max_keys(MAX_KEYS)
    }
}

pub(super) fn username_key(username: &str) -> String {
    let mut end = username.len().min(MAX_USERNAME_KEY);
    while !username.is_char_boundary(end) {
        end -= 1;
    }
    username.get(..end).unwrap_or_default().to_owned()
}

impl LoginRateLimiter {
    fn with_max_keys(max_keys: usize) -> Self {
        Self {
            inner: Mutex::new(Attempts::new(PER_USERNAME, PER_IP, max_keys)),
        }
    }

    /// Counts one attempt for this username and IP before it is verified, or
    /// `Err` without counting when either has used up its failures.
    pub fn reserve(
        &self,
        username: &str,
        ip: Option<IpAddr>,
        now: Instant,
    ) -> Result<Reservation, Limited> {
        let mut attempts = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let key = username_key(username);
        attempts.check(&key, &key, ip, now)?;
        Ok(attempts.record(key.clone(), key, ip, now, Duration::ZERO))
    }

    /// Gives back the count of a successful attempt.
    pub fn release(&self, reservation: Reservation) {
        let mut attempts = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        attempts.forget(&reservation.username, &reservation);
    }
}

/// A per-address limit on unauthenticated work (starting SSO logins,
/// device logins, failed callbacks and code exchanges): at most `limit`
/// events per client address in `window`. Callers without a known address
/// (in-process tests) share one key.
#[derive(Debug)]
pub struct AddressRateLimiter {
    /// (events per address, addresses whose refusal was already reported).
    inner: Mutex<(AddressEvents, AddressEvents)>,
}

/// Event times per client address (`None`: unknown address).
type AddressEvents = Failures<Option<IpAddr>>;

/// SSO and device logins an address may start in [`WINDOW`].
pub const STARTS_PER_IP: usize = 30;
/// Failed SSO callbacks, CLI code exchanges and device polls with an
/// unknown code an address may cause in [`WINDOW`].
pub const SSO_FAILURES_PER_IP: usize = 20;

impl AddressRateLimiter {
    /// At most `limit` events per address in `window`.
    pub fn new(limit: usize, window: Duration) -> Self {
        Self {
            inner: Mutex::new((
                Failures::new(limit, window, MAX_KEYS),
                Failures::new(1, window, MAX_KEYS),
            )),
        }
    }

    /// `Err` when `ip` is at its limit (nothing counted), else `Ok` without counting.
    pub fn check(&self, ip: Option<IpAddr>, now: Instant) -> Result<(), Limited> {
        let mut guard = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let (events, noted) = &mut *guard;
        match events.retry_after(&ip, now) {
            None => Ok(()),
            Some(wait) => Err(Limited::of(noted, ip, wait, now)),
        }
    }

    /// Counts one event for `ip`.
    pub fn record(&self, ip: Option<IpAddr>, now: Instant) {
        let mut guard = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        guard.0.record(ip, now);
    }

    /// [`Self::check`], then counts the event when it passes.
    pub fn acquire(&self, ip: Option<IpAddr>, now: Instant) -> Result<(), Limited> {
        let mut guard = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let (events, noted) = &mut *guard;
        if let Some(wait) = events.retry_after(&ip, now) {
            return Err(Limited::of(noted, ip, wait, now));
        }
        events.record(ip, now);
        Ok(())
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

    fn wait(r: Result<Reservation, Limited>) -> Duration {
        r.unwrap_err().retry_after
    }

    #[test]
    fn five_failures_per_username_then_wait_for_the_window() {
        let limiter = LoginRateLimiter::default();
        let t0 = Instant::now();
        for i in 0..5u8 {
            // Reserved and never released: each counts as a failure.
            let _failed = limiter.reserve("alice", ip(i), t0).unwrap();
        }
        let refused = limiter.reserve("alice", ip(99), t0).unwrap_err();
        assert_eq!(refused.retry_after, WINDOW);
        assert!(refused.first, "the first refusal is reported");
        assert!(!limiter.reserve("alice", ip(99), t0).unwrap_err().first);
        assert!(
            limiter.reserve("bob", ip(0), t0).is_ok(),
            "other users unaffected"
        );
        let later = t0 + Duration::from_secs(60);
        assert_eq!(
            wait(limiter.reserve("alice", ip(1), later)),
            WINDOW - Duration::from_secs(60)
        );
        assert!(limiter.reserve("alice", ip(1), t0 + WINDOW).is_ok());
    }

    #[test]
    fn released_reservations_do_not_count() {
        let limiter = LoginRateLimiter::default();
        let t0 = Instant::now();
        for i in 0..50u32 {
            let t = t0 + Duration::from_millis(u64::from(i));
            let ok = limiter.reserve("alice", ip(1), t).unwrap();
            limiter.release(ok);
        }
        assert!(limiter.reserve("alice", ip(1), t0).is_ok());
    }

    #[test]
    fn parallel_attempts_cannot_exceed_the_limit() {
        // Issue 4: the limit is taken before the slow verification, so
        // attempts in flight at once are counted.
        let limiter = std::sync::Arc::new(LoginRateLimiter::default());
        let t0 = Instant::now();
        let passed: usize = (0..32)
            .map(|_| {
                let limiter = limiter.clone();
                std::thread::spawn(move || limiter.reserve("alice", ip(1), t0).is_ok())
            })
            .collect::<Vec<_>>()
            .into_iter()
            .map(|h| usize::from(h.join().unwrap()))
            .sum();
        assert_eq!(passed, PER_USERNAME);
    }

    #[test]
    fn twenty_failures_per_ip_across_usernames() {
        let limiter = LoginRateLimiter::default();
        let t0 = Instant::now();
        for i in 0..20 {
            let user = format!("user{i}");
            assert!(limiter.reserve(&user, ip(1), t0).is_ok(), "{i}");
        }
        assert!(limiter.reserve("fresh", ip(1), t0).is_err());
        assert!(limiter.reserve("fresh", ip(2), t0).is_ok());
        assert!(limiter.reserve("fresh2", None, t0).is_ok());
    }

    #[test]
    fn memory_is_bounded_and_recent_keys_survive() {
        let limiter = LoginRateLimiter::with_max_keys(100);
        let t0 = Instant::now();
        for _ in 0..5 {
            let _ = limiter.reserve("target", ip(1), t0);
        }
        for i in 0..1000 {
            let t = t0 + Duration::from_millis(i + 1);
            let _ = limiter.reserve(&format!("spray{i}"), None, t);
        }
        let guard = limiter.inner.lock().unwrap();
        assert!(guard.subjects.keys.len() <= 100);
        assert!(
            guard
                .subjects
                .keys
                .values()
                .all(|t| t.len() <= PER_USERNAME)
        );
        drop(guard);
        // The oldest key was evicted first; the sprayer cannot keep its own
        // latest keys from being counted.
        assert!(
            limiter
                .reserve("spray999", None, t0 + Duration::from_secs(1))
                .is_ok()
        );
        let long = "é".repeat(200);
        let _ = limiter.reserve(&long, None, t0);
        assert!(username_key(&long).len() <= MAX_USERNAME_KEY);
    }

    #[test]
    fn addresses_are_limited_each_on_its_own() {
        let limiter = AddressRateLimiter::new(3, WINDOW);
        let t0 = Instant::now();
        for _ in 0..3 {
            assert!(limiter.acquire(ip(1), t0).is_ok());
        }
        let refused = limiter.acquire(ip(1), t0).unwrap_err();
        assert!(refused.first);
        assert_eq!(refused.retry_after, WINDOW);
        assert!(!limiter.acquire(ip(1), t0).unwrap_err().first);
        assert!(limiter.acquire(ip(2), t0).is_ok());
        assert!(limiter.check(ip(3), t0).is_ok());
        for _ in 0..3 {
            limiter.record(ip(3), t0);
        }
        assert!(limiter.check(ip(3), t0).is_err());
        assert!(limiter.acquire(ip(1), t0 + WINDOW).is_ok());
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
