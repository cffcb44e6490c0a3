//! A delivery loop's lease on its sink (`store::leases`): who holds it (a
//! holder id unique per process start) and for how long. The loop in
//! [`super::delivery`] takes it before each item and renews it while a
//! delivery is in flight.

use std::time::Duration;

use chrono::{TimeDelta, Utc};

use crate::store::StoreError;
use crate::store::leases::{self, Cursors};
use crate::store::sql::Sql;
use tpa_core::audit::format_time;

/// How long a sink's lease lasts without renewal: after a replica dies (or
/// hangs, or loses the database) another takes its sinks over within this
/// time. Longer than any clock skew between replicas worth tolerating.
pub const LEASE_TTL: Duration = Duration::from_secs(30);

/// A delivery loop's lease terms.
#[derive(Debug, Clone)]
pub struct Lease {
    /// The holder id written in the lease rows: unique per process start.
    pub holder: String,
    /// How long a lease lasts without renewal.
    pub ttl: Duration,
}

impl Lease {
    /// This process's terms: a holder id made of the host name, the process
    /// id and a random part (unique per start, readable by an operator), and
    /// [`LEASE_TTL`].
    pub fn for_process() -> Self {
        static HOLDER: std::sync::OnceLock<String> = std::sync::OnceLock::new();
        let holder = HOLDER.get_or_init(|| {
            let random: u32 = rand::random();
            format!("{}/{}/{random:08x}", hostname(), std::process::id())
        });
        Self {
            holder: holder.clone(),
            ttl: LEASE_TTL,
        }
    }

    /// Takes or renews `sink`'s lease; false when another holder has it.
    pub(crate) fn take(
        &self,
        conn: &impl Sql,
        cursors: Cursors,
        sink: &str,
    ) -> Result<bool, StoreError> {
        let now = Utc::now();
        let ttl = TimeDelta::from_std(self.ttl).unwrap_or(TimeDelta::seconds(30));
        // A holder writes at most its now + ttl; allowing one more ttl for
        // the clock skew between replicas, a lease ending later than this
        // was written by a clock that stepped back (or is far off) and
        // counts as expired, so a dead holder's sinks are not kept for as
        // long as the clock error. (Exactly now + ttl would make a replica
        // behind its peer by a millisecond take a live lease.)
        let stale = now + ttl + ttl;
        leases::take(
            conn,
            cursors,
            sink,
            &self.holder,
            &format_time(now),
            &format_time(now + ttl),
            &format_time(stale),
        )
    }
}

/// This machine's name (`-` when unknown): the syslog HOSTNAME field and
/// the first part of a lease holder id.
pub(crate) fn hostname() -> String {
    let name = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    let name: String = name
        .trim()
        .chars()
        .filter(|c| c.is_ascii_graphic())
        .take(255)
        .collect();
    if name.is_empty() {
        "-".to_owned()
    } else {
        name
    }
}
