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

use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

mod attempts;
mod window;

pub(in crate::auth) use attempts::{Attempts, username_key};
pub use attempts::{LoginRateLimiter, Reservation};
pub(in crate::auth) use window::Failures;
pub use window::Limited;

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
