//! Connection caps: at most `max_connections` open connections and at most
//! `max_connections_per_address` from one client IP address. A connection
//! over a cap is closed at once and counted.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

/// Counters `/metrics` reports.
#[derive(Debug, Default)]
pub struct ConnectionStats {
    open: AtomicU64,
    refused_total: AtomicU64,
    refused_per_address: AtomicU64,
}

/// A reading of [`ConnectionStats`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ConnectionCounts {
    /// Connections open now.
    pub open: u64,
    /// Connections closed at once because `max_connections` was reached.
    pub refused_total: u64,
    /// Connections closed at once because their address had `max_connections_per_address`.
    pub refused_per_address: u64,
}

impl ConnectionStats {
    /// The current counts.
    pub fn counts(&self) -> ConnectionCounts {
        ConnectionCounts {
            open: self.open.load(Ordering::Relaxed),
            refused_total: self.refused_total.load(Ordering::Relaxed),
            refused_per_address: self.refused_per_address.load(Ordering::Relaxed),
        }
    }
}

/// Which cap refused a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cap {
    /// `server.max_connections`.
    Total,
    /// `server.max_connections_per_address`.
    PerAddress,
}

/// The caps and the connections they count.
#[derive(Debug)]
pub struct Caps {
    max_total: usize,
    max_per_address: usize,
    open: Mutex<Open>,
    stats: Arc<ConnectionStats>,
}

#[derive(Debug, Default)]
struct Open {
    total: usize,
    per_address: HashMap<IpAddr, usize>,
}

/// One admitted connection; dropping it frees its place.
#[derive(Debug)]
pub struct Slot {
    caps: Arc<Caps>,
    ip: IpAddr,
}

impl Caps {
    /// Caps counting into `stats`.
    pub fn new(max_total: usize, max_per_address: usize, stats: Arc<ConnectionStats>) -> Self {
        Self {
            max_total,
            max_per_address,
            open: Mutex::new(Open::default()),
            stats,
        }
    }

    /// Admits a connection from `ip`, or says which cap it would exceed
    /// (and counts the refusal).
    pub fn admit(self: &Arc<Self>, ip: IpAddr) -> Result<Slot, Cap> {
        let mut open = self.lock();
        let from_ip = open.per_address.get(&ip).copied().unwrap_or(0);
        let refused = if open.total >= self.max_total {
            Some((Cap::Total, &self.stats.refused_total))
        } else if from_ip >= self.max_per_address {
            Some((Cap::PerAddress, &self.stats.refused_per_address))
        } else {
            None
        };
        if let Some((cap, counter)) = refused {
            counter.fetch_add(1, Ordering::Relaxed);
            return Err(cap);
        }
        open.total += 1;
        open.per_address.insert(ip, from_ip + 1);
        self.stats.open.fetch_add(1, Ordering::Relaxed);
        Ok(Slot {
            caps: self.clone(),
            ip,
        })
    }

    fn lock(&self) -> MutexGuard<'_, Open> {
        self.open.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut open = self.caps.lock();
        open.total = open.total.saturating_sub(1);
        if let Some(n) = open.per_address.get_mut(&self.ip) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                open.per_address.remove(&self.ip);
            }
        }
        self.caps.stats.open.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_refuse_over_the_limits_and_free_on_drop() {
        let stats = Arc::new(ConnectionStats::default());
        let caps = Arc::new(Caps::new(3, 2, stats.clone()));
        let a: IpAddr = "127.0.0.2".parse().unwrap();
        let b: IpAddr = "127.0.0.3".parse().unwrap();
        let a1 = caps.admit(a).unwrap();
        let _a2 = caps.admit(a).unwrap();
        assert_eq!(caps.admit(a).unwrap_err(), Cap::PerAddress);
        let _b1 = caps.admit(b).unwrap();
        assert_eq!(caps.admit(b).unwrap_err(), Cap::Total);
        drop(a1);
        let _a3 = caps.admit(a).unwrap();
        assert_eq!(
            stats.counts(),
            ConnectionCounts {
                open: 3,
                refused_total: 1,
                refused_per_address: 1
            }
        );
    }
}
