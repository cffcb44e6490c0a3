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

/// `POST /api/v1/login` (JSON) and `POST /login` (form): a password login.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    /// The account's username.
    pub username: String,
    /// The password.
    pub password: String,
}

impl std::fmt::Debug for LoginRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoginRequest")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// The answer to `POST /api/v1/login`.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoginResponse {
    /// The API token (`tpa_…`), sent as `Authorization: Bearer <token>`. Shown once.
    pub token: String,
    /// When the token stops working (RFC 3339 UTC).
    pub expires_at: String,
    /// Who logged in.
    pub user: UserInfo,
}

impl std::fmt::Debug for LoginResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoginResponse")
            .field("token", &"<redacted>")
            .field("expires_at", &self.expires_at)
            .field("user", &self.user)
            .finish()
    }
}

/// A user as the API shows them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserInfo {
    /// Short login name.
    pub username: String,
    /// For people to read.
    pub display_name: String,
    /// Group names, sorted.
    pub groups: Vec<String>,
    /// Who they are: what separation of duties compares.
    pub identity: IdentityInfo,
}

/// An identity: issuer and subject.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdentityInfo {
    /// The identity provider (`tpa:local` for built-in accounts).
    pub issuer: String,
    /// The provider's stable id of the user.
    pub subject: String,
}

/// `GET /api/v1/whoami`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WhoAmI {
    /// The caller, with current groups.
    pub user: UserInfo,
    /// `session` (web cookie) or `api_token` (bearer).
    pub via: String,
    /// When the caller's session or token stops working (RFC 3339 UTC).
    pub expires_at: String,
}

/// A web form that carries only the CSRF token (`POST /logout`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CsrfForm {
    /// The session's CSRF token, from a hidden field.
    #[serde(default)]
    pub csrf_token: String,
}
