//! `[server]`, `database.write_deadline` and `[health]`: the listener, its
//! connection limits and timeouts, the deadline of every write, and what
//! `/healthz` counts as unhealthy.

use std::time::Duration;

use serde::Deserialize;
use tpa_core::HumanDuration;

/// Limits of the HTTP server (`[server]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerLimits {
    /// A client must send a request's headers within this time (from the
    /// first byte of the request); else the connection is closed.
    pub header_read_timeout: Duration,
    /// A request's whole body must arrive within this time; else the request
    /// is answered `408` and the connection closed.
    pub body_read_timeout: Duration,
    /// Open connections at most; one more is closed at once.
    pub max_connections: usize,
    /// Open connections from one client IP address at most; one more is closed at once.
    pub max_connections_per_address: usize,
}

impl Default for ServerLimits {
    fn default() -> Self {
        Self {
            header_read_timeout: Duration::from_secs(10),
            body_read_timeout: Duration::from_secs(30),
            max_connections: 4096,
            max_connections_per_address: 256,
        }
    }
}

/// What `/healthz` checks beyond the database and the key (`[health]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthConfig {
    /// How often the write probe rewrites its heartbeat row.
    pub probe_interval: Duration,
    /// Free space (MiB) on the database's file system below which health is red.
    pub min_free_space_mb: u64,
    /// A write waiting longer than this for the writer turns health red.
    pub max_writer_queue_age: Duration,
}

impl Default for HealthConfig {
    fn default() -> Self {
        Self {
            probe_interval: Duration::from_secs(2),
            min_free_space_mb: 64,
            max_writer_queue_age: Duration::from_secs(3),
        }
    }
}

/// The default deadline of one write, from when its request arrived.
pub const DEFAULT_WRITE_DEADLINE: Duration = Duration::from_secs(5);

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawServer {
    pub(super) listen: Option<String>,
    pub(super) public_url: Option<String>,
    header_read_timeout: Option<String>,
    body_read_timeout: Option<String>,
    max_connections: Option<usize>,
    max_connections_per_address: Option<usize>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawHealth {
    probe_interval: Option<String>,
    min_free_space_mb: Option<u64>,
    max_writer_queue_age: Option<String>,
}

/// A positive duration under `key`, or `default` when unset.
pub(super) fn duration(
    key: &str,
    value: Option<&str>,
    default: Duration,
) -> Result<Duration, String> {
    let Some(value) = value else {
        return Ok(default);
    };
    let parsed = HumanDuration::parse(value)
        .map_err(|e| format!("{key}: {e}"))?
        .get();
    if parsed.is_zero() {
        return Err(format!("{key} must be at least 1s"));
    }
    Ok(parsed)
}

/// Checks the limits of `[server]`; errors name the key.
pub(super) fn server_limits(raw: &RawServer) -> Result<ServerLimits, String> {
    let d = ServerLimits::default();
    let count = |key: &str, value: Option<usize>, default: usize| match value {
        Some(0) => Err(format!("server.{key} must be at least 1")),
        Some(n) => Ok(n),
        None => Ok(default),
    };
    let limits = ServerLimits {
        header_read_timeout: duration(
            "server.header_read_timeout",
            raw.header_read_timeout.as_deref(),
            d.header_read_timeout,
        )?,
        body_read_timeout: duration(
            "server.body_read_timeout",
            raw.body_read_timeout.as_deref(),
            d.body_read_timeout,
        )?,
        max_connections: count("max_connections", raw.max_connections, d.max_connections)?,
        max_connections_per_address: count(
            "max_connections_per_address",
            raw.max_connections_per_address,
            d.max_connections_per_address,
        )?,
    };
    if limits.max_connections_per_address > limits.max_connections {
        return Err(
            "server.max_connections_per_address must not exceed server.max_connections".to_owned(),
        );
    }
    Ok(limits)
}

/// Checks `[health]`; errors name the key.
pub(super) fn health(raw: &RawHealth) -> Result<HealthConfig, String> {
    let d = HealthConfig::default();
    Ok(HealthConfig {
        probe_interval: duration(
            "health.probe_interval",
            raw.probe_interval.as_deref(),
            d.probe_interval,
        )?,
        min_free_space_mb: raw.min_free_space_mb.unwrap_or(d.min_free_space_mb),
        max_writer_queue_age: duration(
            "health.max_writer_queue_age",
            raw.max_writer_queue_age.as_deref(),
            d.max_writer_queue_age,
        )?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(toml_text: &str) -> Result<ServerLimits, String> {
        let raw: RawServer = toml::from_str(toml_text).map_err(|e| e.to_string())?;
        server_limits(&raw)
    }

    #[test]
    fn server_limits_parse_and_refuse_nonsense() {
        assert_eq!(check("").unwrap(), ServerLimits::default());
        let set = check(
            "header_read_timeout = \"3s\"\nmax_connections = 10\nmax_connections_per_address = 2",
        )
        .unwrap();
        assert_eq!(set.header_read_timeout, Duration::from_secs(3));
        assert_eq!(
            (set.max_connections, set.max_connections_per_address),
            (10, 2)
        );
        assert!(
            check("max_connections = 0")
                .unwrap_err()
                .contains("server.max_connections")
        );
        assert!(
            check("body_read_timeout = \"0s\"")
                .unwrap_err()
                .contains("server.body_read_timeout")
        );
        // The idle keep-alive timeout is header_read_timeout (hyper starts
        // that clock whenever it waits for a request); no second key.
        assert!(check("idle_timeout = \"60s\"").is_err());
        assert!(check("max_connections = 5\nmax_connections_per_address = 6").is_err());
        assert!(check("header_read_timeout = \"soon\"").is_err());
    }
}
