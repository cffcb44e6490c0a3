//! Who is calling: identity connectors (local accounts, OpenID Connect),
//! login sessions and API tokens, SSO, device and CLI-consent logins, and the
//! limits on failed and started logins.

pub mod consent;
pub mod device;
pub mod identity;
pub mod login_limit;
pub mod oidc_login;
pub mod rate_limit;
pub mod sessions;
