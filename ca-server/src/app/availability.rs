//! Whether the CA can serve and WRITE right now, as `/healthz` and
//! `/metrics` report it: the outcome of the last write, the age of the
//! writer queue, free disk space, and the HTTP connection counters.

use std::path::Path;
use std::time::Duration;

use tpa_core::api::HealthCheck;

use super::metrics::Exposition;
use crate::config::HealthConfig;
use crate::listener::ConnectionStats;
use crate::store::{Database, WriteStatus};

/// One reading of everything below.
#[derive(Debug, Clone)]
pub struct Availability {
    /// The last write outcomes.
    pub writes: WriteStatus,
    /// How long the oldest queued write has waited.
    pub queue_age: Duration,
    /// Free bytes for unprivileged users on the database's file system.
    pub free_bytes: Option<u64>,
    /// Whether the store is a local file (SQLite) whose disk this process
    /// watches; a PostgreSQL server's disk is its own (its faults still
    /// turn `writes` red).
    pub local_disk: bool,
    /// Open and refused HTTP connections.
    pub connections: crate::listener::ConnectionCounts,
}

impl Availability {
    /// Reads the counters and the file system. Blocking (one `statvfs`).
    pub fn read(database: &Database, path: &Path, connections: &ConnectionStats) -> Self {
        let writer = database.sqlite_writer();
        let dir = path.parent().unwrap_or(Path::new("."));
        let free_bytes = match writer.map(|_| crate::store::heartbeat::free_bytes(dir)) {
            Some(Ok(n)) => Some(n),
            Some(Err(e)) => {
                tracing::warn!(error = %e, "health: cannot read free disk space");
                None
            }
            None => None,
        };
        Self {
            writes: database.health().status(),
            queue_age: writer.map_or(Duration::ZERO, |w| w.queue_age()),
            free_bytes,
            local_disk: writer.is_some(),
            connections: connections.counts(),
        }
    }

    /// The write-side checks of `/healthz`; any failing one makes it 503.
    pub fn checks(&self, config: &HealthConfig) -> Vec<HealthCheck> {
        let min_free = config.min_free_space_mb.saturating_mul(1024 * 1024);
        let mut checks = vec![
            HealthCheck {
                name: "writes".to_owned(),
                ok: self.writes.failing().is_none(),
                detail: self.writes.failing().map(|fault| {
                    format!("the last write failed: {fault}; green again once a write commits")
                }),
            },
            HealthCheck {
                name: "writer_queue".to_owned(),
                ok: self.queue_age < config.max_writer_queue_age,
                detail: (self.queue_age >= config.max_writer_queue_age).then(|| {
                    format!(
                        "a write has waited {} ms for the database (limit {} ms)",
                        self.queue_age.as_millis(),
                        config.max_writer_queue_age.as_millis()
                    )
                }),
            },
        ];
        if !self.local_disk {
            return checks;
        }
        checks.push(
            HealthCheck {
                name: "disk_space".to_owned(),
                ok: self.free_bytes.is_some_and(|free| free >= min_free),
                detail: match self.free_bytes {
                    Some(free) if free >= min_free => None,
                    Some(free) => Some(format!(
                        "{} MiB free on the database's file system, below health.min_free_space_mb = {}",
                        free / (1024 * 1024),
                        config.min_free_space_mb
                    )),
                    None => Some("free space on the database's file system is unknown".to_owned()),
                },
            },
        );
        checks
    }

    /// Adds the `/metrics` families of this reading to `out`.
    pub fn render(&self, out: &mut Exposition) {
        let millis = |d: Duration| i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
        let count = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
        out.gauge(
            "tpa_writes_ok",
            "1 when the last write outcome was a commit (or none failed yet), 0 after a failed write.",
            i64::from(self.writes.failing().is_none()),
        );
        out.counter(
            "tpa_write_faults_total",
            "Writes that failed on a condition (disk full, locked, deadline, read-only, I/O).",
            count(self.writes.faults),
        );
        out.gauge(
            "tpa_last_write_success_age_milliseconds",
            "Milliseconds since a write last committed (-1 when none has yet).",
            self.writes.since_success.map_or(-1, millis),
        );
        out.gauge(
            "tpa_writer_queue_age_milliseconds",
            "How long the oldest write waiting for the database has waited, in milliseconds.",
            millis(self.queue_age),
        );
        out.gauge(
            "tpa_disk_free_bytes",
            "Free bytes on the database's file system (-1 when unknown).",
            self.free_bytes.map_or(-1, count),
        );
        out.gauge(
            "tpa_http_connections_open",
            "Open HTTP connections.",
            count(self.connections.open),
        );
        out.counters(
            "tpa_http_connections_refused_total",
            "HTTP connections closed at once because a cap was reached.",
            [
                ("total", self.connections.refused_total),
                ("per_address", self.connections.refused_per_address),
            ]
            .map(|(cap, n)| (vec![("cap", cap.to_owned())], count(n))),
        );
    }
}
