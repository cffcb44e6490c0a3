//! Login attempts counted before their (slow) verification and given back
//! on success: [`Attempts`], which both login limits are built on, and the
//! wrong-user-code limiter [`LoginRateLimiter`].

use std::hash::Hash;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::{Failures, Limited, MAX_KEYS, MAX_USERNAME_KEY, PER_IP, PER_USERNAME, WINDOW};

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
pub(in crate::auth) struct Attempts<K> {
    subjects: Failures<K>,
    addresses: Failures<IpAddr>,
    noted: Failures<(String, Option<IpAddr>)>,
}

impl<K: Hash + Eq + Clone> Attempts<K> {
    /// `per_subject` and `per_address` attempts in [`WINDOW`].
    pub(in crate::auth) fn new(per_subject: usize, per_address: usize, max_keys: usize) -> Self {
        Self {
            subjects: Failures::new(per_subject, WINDOW, max_keys),
            addresses: Failures::new(per_address, WINDOW, max_keys),
            noted: Failures::new(1, WINDOW, max_keys),
        }
    }

    /// `Err` (nothing counted) when `subject` or `ip` is at its limit.
    pub(in crate::auth) fn check(
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
    pub(in crate::auth) fn count(&mut self, subject: &K, now: Instant) -> usize {
        self.subjects.count(subject, now)
    }

    /// Counts one attempt; the reservation gives it back on success.
    pub(in crate::auth) fn record(
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
    pub(in crate::auth) fn forget(&mut self, subject: &K, reservation: &Reservation) {
        self.subjects.forget(subject, reservation.at);
        if let Some(ip) = reservation.ip {
            self.addresses.forget(&ip, reservation.at);
        }
    }
}

impl Reservation {
    /// The username key and address the attempt was counted for.
    pub(in crate::auth) fn key(&self) -> (&str, Option<IpAddr>, Instant) {
        (&self.username, self.ip, self.at)
    }
}

/// The wrong-user-code limiter of the device-code and CLI consent forms,
/// keyed by the logged-in person's identity (password logins have their own,
/// [`crate::auth::login_limit::PasswordLimiter`], which cannot lock a user out). An attempt is counted
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

pub(in crate::auth) fn username_key(username: &str) -> String {
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
}
