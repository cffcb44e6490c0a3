//! `[limits]`: connections, authentication and forwards, each with a
//! default, checked together.

use std::time::Duration;

use serde::Deserialize;

use super::duration;

/// Limits on connections and authentication.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Authenticated connections served at once; a connection that
    /// authenticates beyond this is disconnected with a message.
    pub max_connections: usize,
    /// Connections still authenticating at once. When full, a new connection
    /// takes the slot of the oldest one that has not finished its key
    /// exchange (or, failing that, of the oldest unauthenticated one).
    pub max_unauthenticated: usize,
    /// Connections still authenticating from one client address at once;
    /// beyond it, that address's own least advanced connection gives way.
    pub max_unauthenticated_per_address: usize,
    /// Time from TCP accept to the end of the key exchange (the client's
    /// version line included).
    pub handshake_timeout: Duration,
    /// Time from TCP accept to successful authentication.
    pub auth_timeout: Duration,
    /// Failed authentication attempts before the connection is closed.
    pub max_auth_attempts: usize,
    /// A connection with no packet from the client for this long is closed.
    pub inactivity_timeout: Duration,
    /// `direct-tcpip` forwards one connection may have open (or opening) at
    /// once; more are refused, so one client cannot exhaust the bastion's
    /// sockets.
    pub max_forwards_per_connection: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_connections: 1000,
            max_unauthenticated: 256,
            max_unauthenticated_per_address: 32,
            handshake_timeout: Duration::from_secs(10),
            auth_timeout: Duration::from_secs(30),
            // Above OpenSSH's MaxAuthTries (6): plain keys are refused at
            // their probe, and an agent with a few keys and the key of the
            // certificate (listed on its own) must still reach the certificate.
            max_auth_attempts: 20,
            inactivity_timeout: Duration::from_secs(15 * 60),
            max_forwards_per_connection: 10,
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLimits {
    max_connections: Option<usize>,
    max_unauthenticated: Option<usize>,
    max_unauthenticated_per_address: Option<usize>,
    handshake_timeout: Option<String>,
    auth_timeout: Option<String>,
    max_auth_attempts: Option<usize>,
    inactivity_timeout: Option<String>,
    max_forwards_per_connection: Option<usize>,
}

/// `[limits]`, each defaulted, then checked.
pub(super) fn limits(raw: RawLimits) -> Result<Limits, String> {
    let defaults = Limits::default();
    let limits = Limits {
        max_connections: raw.max_connections.unwrap_or(defaults.max_connections),
        max_unauthenticated: raw
            .max_unauthenticated
            .unwrap_or(defaults.max_unauthenticated),
        max_unauthenticated_per_address: raw
            .max_unauthenticated_per_address
            .unwrap_or(defaults.max_unauthenticated_per_address),
        handshake_timeout: duration(
            "limits.handshake_timeout",
            raw.handshake_timeout,
            defaults.handshake_timeout,
        )?,
        auth_timeout: duration(
            "limits.auth_timeout",
            raw.auth_timeout,
            defaults.auth_timeout,
        )?,
        max_auth_attempts: raw.max_auth_attempts.unwrap_or(defaults.max_auth_attempts),
        inactivity_timeout: duration(
            "limits.inactivity_timeout",
            raw.inactivity_timeout,
            defaults.inactivity_timeout,
        )?,
        max_forwards_per_connection: raw
            .max_forwards_per_connection
            .unwrap_or(defaults.max_forwards_per_connection),
    };
    check_limits(&limits)?;
    Ok(limits)
}

fn check_limits(limits: &Limits) -> Result<(), String> {
    if limits.max_connections == 0 {
        return Err("limits.max_connections must be at least 1".to_owned());
    }
    if limits.max_unauthenticated == 0 {
        return Err("limits.max_unauthenticated must be at least 1".to_owned());
    }
    if limits.max_unauthenticated_per_address == 0 {
        return Err("limits.max_unauthenticated_per_address must be at least 1".to_owned());
    }
    if limits.handshake_timeout > limits.auth_timeout {
        return Err(
            "limits.handshake_timeout must not exceed limits.auth_timeout (the key exchange is part of authenticating)"
                .to_owned(),
        );
    }
    if limits.max_auth_attempts == 0 {
        return Err("limits.max_auth_attempts must be at least 1".to_owned());
    }
    if limits.max_forwards_per_connection == 0 {
        return Err("limits.max_forwards_per_connection must be at least 1".to_owned());
    }
    Ok(())
}
