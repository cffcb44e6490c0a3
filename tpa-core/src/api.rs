//! Wire types of the CA's HTTP API. Only this module derives serde traits.

use serde::{Deserialize, Serialize};

/// Every API error: a stable machine code and a message for people.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// Stable code, e.g. `not_found`, `unavailable`.
    pub code: String,
    /// What went wrong and what to do, without internal detail.
    pub message: String,
}

/// `GET /healthz`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Health {
    /// `ok` or `unavailable`.
    pub status: String,
    /// One entry per dependency.
    pub checks: Vec<HealthCheck>,
}

/// One dependency's health.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthCheck {
    /// `database`, `ca_key`.
    pub name: String,
    /// Whether it is usable.
    pub ok: bool,
    /// A short, non-secret explanation when it is not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}
