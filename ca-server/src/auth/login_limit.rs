//! The password-login limits, built so that they cannot be turned into a
//! lockout: wrong passwords are limited per (username, client address) and
//! per client address, never per username alone. Across addresses a username
//! only slows down: an attempt from an address that already failed for that
//! username in the window waits before its password is checked, longer the
//! more the username failed everywhere. An address that did not fail is never
//! slowed or refused because of other addresses, so the right password from
//! it still logs in while someone guesses elsewhere. The counting is the
//! shared [`Attempts`] limiter, keyed here by (username, address).

use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::rate_limit::{Attempts, Failures, Limited, MAX_KEYS, Reservation, WINDOW, username_key};

/// Wrong passwords allowed per (username, client address) in [`WINDOW`].
pub const PER_USERNAME_AND_ADDRESS: usize = 5;
/// Wrong passwords allowed per client address in [`WINDOW`], all usernames.
pub const PER_ADDRESS: usize = 20;
/// The first wait of an address that failed for a username.
pub const FIRST_DELAY: Duration = Duration::from_millis(250);
/// The longest wait: the delay doubles with every failure of the username
/// (any address) in the window up to this.
pub const MAX_DELAY: Duration = Duration::from_secs(5);
/// Username-wide failures counted (enough to reach [`MAX_DELAY`]).
const USERNAME_COUNT: usize = 16;

/// The limiter of password logins, shared by the API and the web form.
/// Attempts are counted before the (slow) verification, so parallel
/// attempts cannot pass the limits; a success gives its count back.
#[derive(Debug)]
pub struct PasswordLimiter {
    inner: Mutex<Limits>,
}

#[derive(Debug)]
struct Limits {
    /// Per (username, address) and per address.
    attempts: Attempts<(String, Option<IpAddr>)>,
    /// Per username, any address: only to lengthen the delay.
    usernames: Failures<String>,
}

impl Default for PasswordLimiter {
    fn default() -> Self {
        Self {
            inner: Mutex::new(Limits {
                attempts: Attempts::new(PER_USERNAME_AND_ADDRESS, PER_ADDRESS, MAX_KEYS),
                usernames: Failures::new(USERNAME_COUNT, WINDOW, MAX_KEYS),
            }),
        }
    }
}

/// The wait of an address that failed before, after `failures` failures of
/// the username anywhere: 250 ms, doubling, at most [`MAX_DELAY`].
fn delay_after(failures: usize) -> Duration {
    let doublings = u32::try_from(failures.saturating_sub(1)).unwrap_or(u32::MAX);
    FIRST_DELAY
        .checked_mul(1u32.checked_shl(doublings.min(16)).unwrap_or(u32::MAX))
        .unwrap_or(MAX_DELAY)
        .min(MAX_DELAY)
}

impl PasswordLimiter {
    /// Counts one attempt of `username` from `ip` before it is verified, or
    /// `Err` without counting when the pair or the address has used up its
    /// failures. The reservation says how long to wait before verifying:
    /// zero unless this pair already failed in the window.
    pub fn reserve(
        &self,
        username: &str,
        ip: Option<IpAddr>,
        now: Instant,
    ) -> Result<Reservation, Limited> {
        let mut guard = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let limits = &mut *guard;
        let key = username_key(username);
        let pair = (key.clone(), ip);
        limits.attempts.check(&pair, &key, ip, now)?;
        let delay = if limits.attempts.count(&pair, now) == 0 {
            Duration::ZERO
        } else {
            delay_after(limits.usernames.count(&key, now))
        };
        limits.usernames.record(key.clone(), now);
        Ok(limits.attempts.record(pair, key, ip, now, delay))
    }

    /// Gives back the count of a successful attempt.
    pub fn release(&self, reservation: Reservation) {
        let mut guard = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let limits = &mut *guard;
        let (username, ip, at) = reservation.key();
        let pair = (username.to_owned(), ip);
        limits.attempts.forget(&pair, &reservation);
        limits.usernames.forget(&pair.0, at);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(last: u8) -> Option<IpAddr> {
        Some(IpAddr::from([192, 0, 2, last]))
    }

    // issue 11: five wrong passwords for carol from anywhere locked carol out.
    #[test]
    fn failures_from_one_address_never_refuse_another() {
        let limiter = PasswordLimiter::default();
        let t0 = Instant::now();
        for _ in 0..PER_USERNAME_AND_ADDRESS {
            let _failed = limiter.reserve("carol", ip(1), t0).unwrap();
        }
        let refused = limiter.reserve("carol", ip(1), t0).unwrap_err();
        assert_eq!(refused.retry_after, WINDOW);
        assert!(refused.first, "the first refusal is reported");
        assert!(!limiter.reserve("carol", ip(1), t0).unwrap_err().first);
        // Another address: not refused, not slowed.
        let other = limiter.reserve("carol", ip(2), t0).unwrap();
        assert_eq!(other.delay, Duration::ZERO);
        limiter.release(other);
        // The window frees the pair.
        assert!(limiter.reserve("carol", ip(1), t0 + WINDOW).is_ok());
    }

    #[test]
    fn an_address_that_failed_waits_longer_the_more_the_username_failed() {
        let limiter = PasswordLimiter::default();
        let t0 = Instant::now();
        let first = limiter.reserve("carol", ip(1), t0).unwrap();
        assert_eq!(first.delay, Duration::ZERO, "a fresh pair is not slowed");
        let delays: Vec<Duration> = (0..4)
            .map(|_| limiter.reserve("carol", ip(1), t0).unwrap().delay)
            .collect();
        assert_eq!(
            delays,
            [250, 500, 1000, 2000].map(Duration::from_millis),
            "doubling with the username's failures"
        );
        // Many addresses guessing: the delay of an address that failed caps.
        for i in 10..40 {
            let _ = limiter.reserve("carol", ip(i), t0).unwrap();
        }
        assert_eq!(
            limiter.reserve("carol", ip(10), t0).unwrap().delay,
            MAX_DELAY
        );
        assert_eq!(
            limiter.reserve("carol", ip(99), t0).unwrap().delay,
            Duration::ZERO
        );
    }

    #[test]
    fn twenty_failures_per_address_across_usernames() {
        let limiter = PasswordLimiter::default();
        let t0 = Instant::now();
        for i in 0..PER_ADDRESS {
            assert!(
                limiter.reserve(&format!("user{i}"), ip(1), t0).is_ok(),
                "{i}"
            );
        }
        assert!(limiter.reserve("fresh", ip(1), t0).is_err());
        assert!(limiter.reserve("fresh", ip(2), t0).is_ok());
    }

    #[test]
    fn successes_give_their_count_back() {
        let limiter = PasswordLimiter::default();
        let t0 = Instant::now();
        for i in 0..50u64 {
            let ok = limiter
                .reserve("alice", ip(1), t0 + Duration::from_millis(i))
                .unwrap();
            assert_eq!(ok.delay, Duration::ZERO);
            limiter.release(ok);
        }
    }

    #[test]
    fn parallel_attempts_cannot_pass_the_pair_limit() {
        let limiter = std::sync::Arc::new(PasswordLimiter::default());
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
        assert_eq!(passed, PER_USERNAME_AND_ADDRESS);
    }
}
