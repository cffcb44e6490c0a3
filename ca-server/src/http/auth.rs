//! Who is calling: the [`Authenticated`] extractor (API token or session
//! cookie), CSRF and same-origin checks, and the JSON login, logout and whoami
//! endpoints.

use std::net::{IpAddr, SocketAddr};
use std::time::Instant;

use axum::extract::{ConnectInfo, FromRequestParts, OptionalFromRequestParts};
use axum::http::request::Parts;
use axum::http::{HeaderMap, header};
use chrono::{DateTime, Utc};
use tpa_core::User;
use tpa_core::api::{IdentityInfo, LoginRequest, LoginResponse, UserInfo};

use super::db::{with_db, with_reader};
use super::error::ApiError;
use crate::app::AppState;
use crate::auth::identity::PasswordLoginError;
use crate::auth::sessions::{self, NewSession};
use crate::config::Config;
use crate::refusal::Refusal;
use crate::store::auth_tokens::TokenKind;
use tpa_core::audit::format_time;

/// The session cookie's name over plain HTTP.
pub const SESSION_COOKIE: &str = "tpa_session";
/// The session cookie's name over TLS: the `__Host-` prefix pins it to this
/// host, path `/` and `Secure`.
pub const SESSION_COOKIE_TLS: &str = "__Host-tpa_session";
/// The header an API client sends the CSRF token in when it uses the session cookie.
pub const CSRF_HEADER: &str = "x-csrf-token";
/// The form field web forms send the CSRF token in.
pub const CSRF_FIELD: &str = "csrf_token";

/// How a caller proved who they are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthVia {
    /// The web session cookie: an ambient credential, so changes need the CSRF token.
    Session {
        /// The token this session's forms must carry.
        csrf_token: String,
    },
    /// `Authorization: Bearer tpa_…`: never sent by a browser on its own.
    ApiToken,
}

/// A caller with a live session or API token. Extracting it fails with
/// `401 unauthenticated` when the credential is missing, unknown, expired or
/// revoked, or when a local account no longer exists. `Option<Authenticated>`
/// gives `None` instead (for pages that redirect to `/login`).
#[derive(Debug, Clone)]
pub struct Authenticated {
    /// The user as of now ([`crate::auth::identity::Identities::refresh`]): local
    /// accounts with their current groups, others with the groups of their login.
    pub user: User,
    /// The session's or token's public id (for logs and audit; not a secret).
    pub token_id: String,
    /// Cookie or bearer token.
    pub via: AuthVia,
    /// When the session or token stops working.
    pub expires_at: DateTime<Utc>,
    /// An API token from a device login (`tpa-ssh login --no-browser`).
    pub device_login: bool,
    /// Whether the user is in an `[auditors]` group (shows the audit pages in
    /// the navigation; every audit handler checks again through
    /// `workflow::audit_views::Auditor`).
    pub auditor: bool,
}

/// The session cookie's name under this configuration.
pub fn session_cookie_name(config: &Config) -> &'static str {
    if config.serves_tls() {
        SESSION_COOKIE_TLS
    } else {
        SESSION_COOKIE
    }
}

/// The `Set-Cookie` value of a session: HttpOnly, SameSite=Strict, Path=/,
/// and Secure (with the `__Host-` name) when the CA is served over TLS.
pub fn session_cookie(config: &Config, token: &str, max_age_secs: u64) -> String {
    let secure = if config.serves_tls() { "; Secure" } else { "" };
    format!(
        "{}={token}; HttpOnly; SameSite=Strict; Path=/; Max-Age={max_age_secs}{secure}",
        session_cookie_name(config)
    )
}

/// The client's IP address, when the server knows it (not in in-process tests).
pub fn client_ip(parts_extensions: &axum::http::Extensions) -> Option<IpAddr> {
    parts_extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip())
}

/// The audit source for a client address.
pub fn audit_source(ip: Option<IpAddr>) -> String {
    ip.map_or_else(|| "unknown".to_owned(), |ip| ip.to_string())
}

/// The credential a request carries: (token, expected kind).
enum Credential {
    None,
    Malformed,
    Token(String, TokenKind),
}

fn credential(parts: &Parts, config: &Config) -> Credential {
    if let Some(value) = parts.headers.get(header::AUTHORIZATION) {
        // An Authorization header is used alone: a bad one never falls back to the cookie.
        let Some(token) = value
            .to_str()
            .ok()
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim)
        else {
            return Credential::Malformed;
        };
        return if token.starts_with(sessions::API_TOKEN_PREFIX) {
            Credential::Token(token.to_owned(), TokenKind::Api)
        } else {
            Credential::Malformed
        };
    }
    let name = session_cookie_name(config);
    let cookie = parts
        .headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(n, _)| *n == name)
        .map(|(_, v)| v.trim().to_owned());
    match cookie {
        Some(token) if token.starts_with(sessions::SESSION_TOKEN_PREFIX) => {
            Credential::Token(token, TokenKind::WebSession)
        }
        Some(_) => Credential::Malformed,
        None => Credential::None,
    }
}

/// `Ok(None)` for no or a bad credential; `Err` only when the CA cannot check.
async fn authenticate(parts: &Parts, state: &AppState) -> Result<Option<Authenticated>, ApiError> {
    let (token, kind) = match credential(parts, &state.config) {
        Credential::None | Credential::Malformed => return Ok(None),
        Credential::Token(token, kind) => (token, kind),
    };
    let now = Utc::now();
    let session = with_reader(state, move |conn| {
        Ok(sessions::authenticate(conn, &token, now)?)
    })
    .await?;
    let Some(session) = session.filter(|s| s.kind == kind) else {
        return Ok(None);
    };
    let Some(user) = live_user(parts, state, &session).await? else {
        tracing::info!(token_id = %session.id, "token of a removed account refused");
        return Ok(None);
    };
    let via = match (kind, session.csrf_token) {
        (TokenKind::WebSession, Some(csrf_token)) => AuthVia::Session { csrf_token },
        (TokenKind::Api, _) => AuthVia::ApiToken,
        // A session row without a CSRF token cannot post anything; refuse it.
        (TokenKind::WebSession, None) => return Ok(None),
    };
    let auditor = state.config.auditors.includes(&user);
    Ok(Some(Authenticated {
        auditor,
        user,
        token_id: session.id,
        via,
        expires_at: session.expires_at,
        device_login: session.device_login,
    }))
}

/// The session's user as of now ([`crate::auth::identity::Identities::refresh_live`]).
/// When a directory cannot be asked (issue 16), reads (GET, HEAD) go on
/// with no groups at all, and everything else fails closed with 503
/// `directory_unavailable`.
async fn live_user(
    parts: &Parts,
    state: &AppState,
    session: &sessions::Session,
) -> Result<Option<User>, ApiError> {
    match state.identities.refresh_live(&session.user).await {
        Ok(user) => Ok(user),
        Err(down) if parts.method.is_safe() => {
            tracing::warn!(token_id = %session.id, error = %down, "directory down: read-only, no groups");
            Ok(Some(User {
                groups: std::collections::BTreeSet::new(),
                ..session.user.clone()
            }))
        }
        Err(down) => Err(ApiError::DirectoryUnavailable(down.to_string())),
    }
}

impl FromRequestParts<AppState> for Authenticated {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let auth = authenticate(parts, state)
            .await?
            .ok_or(ApiError::Unauthenticated)?;
        // For `Csrf`, which checks the token of this same credential.
        parts.extensions.insert(auth.clone());
        Ok(auth)
    }
}

impl OptionalFromRequestParts<AppState> for Authenticated {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Option<Self>, ApiError> {
        authenticate(parts, state).await
    }
}

/// Refuses a browser request that another site caused: `Sec-Fetch-Site`
/// other than `same-origin` or `none`, or an `Origin` that is neither
/// `server.public_url` nor this request's own `Host`. Requests without either
/// header (non-browser clients) pass. `Origin: null` passes only together
/// with `Sec-Fetch-Site: same-origin`: under the pages' `Referrer-Policy:
/// no-referrer`, Chromium sends `null` as the origin of its own form posts.
pub fn check_same_origin(headers: &HeaderMap, config: &Config) -> Result<(), ApiError> {
    let mut same_origin_fetch = false;
    if let Some(site) = headers.get("sec-fetch-site") {
        let site = site.to_str().unwrap_or_default();
        if !matches!(site, "same-origin" | "none") {
            return Err(ApiError::CrossSite);
        }
        same_origin_fetch = site == "same-origin";
    }
    let Some(origin) = headers.get(header::ORIGIN) else {
        return Ok(());
    };
    let origin = origin.to_str().unwrap_or_default().to_ascii_lowercase();
    if origin == "null" && same_origin_fetch {
        return Ok(());
    }
    let configured = config.public_url.as_ref().map(|u| u.origin());
    let scheme = if config.serves_tls() { "https" } else { "http" };
    let own = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(|host| format!("{scheme}://{}", host.to_ascii_lowercase()));
    if Some(&origin) == configured.as_ref() || Some(&origin) == own.as_ref() {
        Ok(())
    } else {
        Err(ApiError::CrossSite)
    }
}

/// The API's view of a user.
pub fn user_info(user: &User) -> UserInfo {
    UserInfo {
        username: user.username.as_str().to_owned(),
        display_name: user.display_name.clone(),
        groups: user.groups.iter().map(|g| g.as_str().to_owned()).collect(),
        identity: IdentityInfo {
            issuer: user.identity.issuer().to_owned(),
            subject: user.identity.subject().to_owned(),
        },
    }
}

/// A password login shared by the API and the web form: rate limit, argon2
/// verification (off the async runtime), then a new session or token. Every
/// attempt is audited (`auth.login`).
pub(crate) async fn password_login(
    state: &AppState,
    ip: Option<IpAddr>,
    request: LoginRequest,
    kind: TokenKind,
) -> Result<NewSession, ApiError> {
    let source = audit_source(ip);
    // Counted before the argon2 verification, so attempts in flight at
    // once cannot exceed the limit; a success gives its count back. An
    // address that already failed for this username waits first (right or
    // wrong password alike, so the wait tells nothing); others never do.
    let reservation = match state
        .login_limiter
        .reserve(&request.username, ip, Instant::now())
    {
        Ok(r) => r,
        Err(limited) => {
            // Only the first refusal in the window is audited: a flood
            // cannot fill the audit trail.
            if limited.first {
                let reason = "too many failed logins";
                record_denied(state, request.username, kind, source, reason).await?;
            }
            return Err(limited.into());
        }
    };
    if !reservation.delay.is_zero() {
        tokio::time::sleep(reservation.delay).await;
    }
    let verified = state
        .identities
        .password_login(&request.username, &request.password)
        .await;
    let login = match verified {
        Ok(login) => {
            state.login_limiter.release(reservation);
            login
        }
        Err(e) => {
            let (reason, error, guess) = login_refusal(e);
            // A right password (disabled, expired) or one never checked
            // (directory down) is not a guess, so not counted as one.
            if !guess {
                state.login_limiter.release(reservation);
            }
            record_denied(state, request.username, kind, source, reason).await?;
            return Err(error);
        }
    };
    open_session(state, login, kind, source).await
}

/// Why a password login failed: the audit reason, the caller's error, and
/// whether it counts as a guess (wrong credentials). The connector's
/// finding names the audit reason only; the caller learns nothing more than
/// "invalid".
fn login_refusal(e: PasswordLoginError) -> (&'static str, ApiError, bool) {
    match e {
        PasswordLoginError::InvalidCredentials { reason } => {
            let reason = if reason.contains("before any bind") {
                "invalid credentials (refused before any bind)"
            } else if reason.contains("several entries") {
                "invalid credentials (several directory entries match)"
            } else {
                "invalid credentials"
            };
            (reason, ApiError::InvalidCredentials, true)
        }
        PasswordLoginError::AccountDisabled => (
            "directory account disabled",
            ApiError::Refused {
                code: Refusal::AccountDisabled,
                message: "your directory account is disabled or locked; ask your directory administrators".to_owned(),
            },
            false,
        ),
        PasswordLoginError::PasswordExpired => (
            "directory password expired",
            ApiError::Refused {
                code: Refusal::PasswordExpired,
                message: "your directory password has expired; change it in the directory, then log in again".to_owned(),
            },
            false,
        ),
        PasswordLoginError::Unusable(message) => {
            tracing::warn!(error = %message, "directory entry unusable");
            (
                "directory entry unusable",
                ApiError::Refused {
                    code: Refusal::DirectoryEntryUnusable,
                    message: "your directory entry cannot be used by TPA (no stable id or a username TPA cannot use); the CA logged why".to_owned(),
                },
                false,
            )
        }
        PasswordLoginError::DirectoryUnavailable(message) => {
            tracing::warn!(error = %message, "directory login failed closed");
            (
                "directory unavailable",
                ApiError::DirectoryUnavailable(message),
                false,
            )
        }
    }
}

/// Audits a refused login attempt (`auth.login`, denied).
async fn record_denied(
    state: &AppState,
    username: String,
    kind: TokenKind,
    source: String,
    reason: &'static str,
) -> Result<(), ApiError> {
    let now = Utc::now();
    with_db(state, move |conn| {
        Ok(sessions::record_denied_login(
            conn, &username, kind, &source, reason, now,
        )?)
    })
    .await
}

/// The session (web) or API token of a verified login, with the directory
/// email recorded (or forgotten) at the same time.
async fn open_session(
    state: &AppState,
    login: crate::auth::identity::PasswordLogin,
    kind: TokenKind,
    source: String,
) -> Result<NewSession, ApiError> {
    let user = login.user;
    let via = login.via;
    let ttl = match kind {
        TokenKind::WebSession => state.config.auth.session_ttl,
        TokenKind::Api => state.config.auth.api_token_ttl,
    };
    // A directory vouches for its `mail` (issue 16); like an OpenID login's
    // verified email it is what on-call providers match the person by
    // (issue 17), recorded (or forgotten) at every login. Local accounts
    // carry theirs in the configuration.
    let directory_email = (user.identity.issuer() != tpa_core::identity::LOCAL_ISSUER).then(|| {
        login
            .verified_email
            .as_deref()
            .and_then(|e| tpa_core::VerifiedEmail::parse(e).ok())
    });
    let now = Utc::now();
    with_db(state, move |conn| {
        if let Some(email) = directory_email {
            crate::integrations::emails::record_login(conn, &user.identity, email.as_ref(), now)?;
        }
        Ok(sessions::create_with_reason(
            conn, &user, kind, ttl, &source, now, &via,
        )?)
    })
    .await
}

/// Revokes the caller's session or token (audited as `auth.logout`).
pub(crate) async fn end_session(
    state: &AppState,
    auth: &Authenticated,
    ip: Option<IpAddr>,
) -> Result<(), ApiError> {
    let session = sessions::Session {
        id: auth.token_id.clone(),
        kind: match auth.via {
            AuthVia::Session { .. } => TokenKind::WebSession,
            AuthVia::ApiToken => TokenKind::Api,
        },
        user: auth.user.clone(),
        csrf_token: None,
        expires_at: auth.expires_at,
        device_login: auth.device_login,
    };
    let source = audit_source(ip);
    let now = Utc::now();
    with_db(state, move |conn| {
        Ok(sessions::logout(conn, &session, &source, now)?)
    })
    .await
}

/// The answer to a login that gave the CLI an API token (password, SSO
/// code or device code).
pub(crate) fn login_response(new: NewSession) -> LoginResponse {
    LoginResponse {
        token: new.token,
        expires_at: format_time(new.session.expires_at),
        user: user_info(&new.session.user),
    }
}

/// The client's IP address when known; never rejects.
#[derive(Debug, Clone, Copy)]
pub struct ClientIp(pub Option<IpAddr>);

impl<S: Send + Sync> FromRequestParts<S> for ClientIp {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(Self(client_ip(&parts.extensions)))
    }
}

#[cfg(test)]
mod tests {

    use super::*;

    fn config(public_url: Option<&str>) -> Config {
        let server = public_url
            .map(|u| format!("[server]\npublic_url = \"{u}\"\n"))
            .unwrap_or_default();
        let text = format!("{server}[ca]\nkey_file = \"k\"\n[database]\npath = \"d\"\n");
        Config::parse(&text, std::path::Path::new("/etc/tpa/tpa.toml")).unwrap()
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (n, v) in pairs {
            h.insert(*n, v.parse().unwrap());
        }
        h
    }

    #[test]
    fn same_origin_checks() {
        let plain = config(None);
        let tls = config(Some("https://ca.example.com"));
        let ok = |c: &Config, h: &[(&'static str, &str)]| check_same_origin(&headers(h), c).is_ok();
        assert!(ok(&plain, &[]));
        assert!(ok(&plain, &[("sec-fetch-site", "same-origin")]));
        assert!(ok(&plain, &[("sec-fetch-site", "none")]));
        assert!(!ok(&plain, &[("sec-fetch-site", "cross-site")]));
        assert!(!ok(&plain, &[("sec-fetch-site", "same-site")]));
        assert!(ok(
            &plain,
            &[
                ("host", "127.0.0.1:8700"),
                ("origin", "http://127.0.0.1:8700")
            ]
        ));
        assert!(!ok(
            &plain,
            &[
                ("host", "127.0.0.1:8700"),
                ("origin", "https://evil.example")
            ]
        ));
        assert!(!ok(
            &plain,
            &[("host", "127.0.0.1:8700"), ("origin", "null")]
        ));
        // Chromium's own form posts under `Referrer-Policy: no-referrer`
        // (found by the browser test, e2e `browser.rs`).
        assert!(ok(
            &plain,
            &[
                ("host", "127.0.0.1:8700"),
                ("origin", "null"),
                ("sec-fetch-site", "same-origin")
            ]
        ));
        assert!(!ok(
            &plain,
            &[
                ("host", "127.0.0.1:8700"),
                ("origin", "null"),
                ("sec-fetch-site", "cross-site")
            ]
        ));
        assert!(!ok(
            &plain,
            &[
                ("host", "127.0.0.1:8700"),
                ("origin", "null"),
                ("sec-fetch-site", "none")
            ]
        ));
        assert!(
            !ok(&plain, &[("origin", "http://127.0.0.1:8700")]),
            "no Host"
        );
        assert!(ok(
            &tls,
            &[
                ("host", "10.0.0.5:8700"),
                ("origin", "https://ca.example.com")
            ]
        ));
        assert!(!ok(
            &tls,
            &[
                ("host", "ca.example.com"),
                ("origin", "http://ca.example.com")
            ]
        ));
    }
}
