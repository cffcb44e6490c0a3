//! The OpenID Connect login flow around the connectors: pending logins
//! (`state` single-use, bound to the browser by a cookie handle, expiring),
//! the checks of `next=` and of the CLI's loopback redirect, sessions for
//! verified users, the one-time codes of `tpa-ssh login`, and the audit
//! events of every refusal.
//!
//! Secrets (state, browser handle, CLI code) are stored as SHA-256 only; the
//! nonce and the PKCE verifier are stored as they are, server-side, for at
//! most [`LOGIN_TTL`].

use base64ct::{Base64UrlUnpadded, Encoding as _};
use chrono::{DateTime, TimeDelta, Utc};
use serde_json::json;
use sha2::{Digest as _, Sha256};
use subtle::ConstantTimeEq as _;
use tpa_core::{GroupName, HumanDuration, Identity, User, Username};

use crate::auth::identity::oidc::Authorization;
use crate::auth::sessions::{self, NewSession, escape_untrusted, hash_token, random_b64};
use crate::store::Transact;
use crate::store::audited::Denied;
use crate::store::auth_tokens::TokenKind;
use crate::store::oidc_logins::{self, CliCode, PendingLogin};
use crate::store::{self, StoreError};
use tpa_core::audit::{NewEvent, Outcome, format_time};

/// How long a user has to complete a login at the provider.
pub const LOGIN_TTL: TimeDelta = TimeDelta::minutes(10);
/// How long a CLI code may wait for its exchange.
pub const CLI_CODE_TTL: TimeDelta = TimeDelta::minutes(2);
/// Logins in progress beyond this are refused (each costs a row).
pub const MAX_PENDING: i64 = 10_000;

/// Why a callback or a CLI code exchange is refused. Each has a stable code,
/// an audit reason, and a message for the user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LoginRefusal {
    /// No `state` (or an empty one) in the callback.
    MissingState,
    /// A `state` this CA never issued (or whose row was purged).
    UnknownState,
    /// The `state` was already used (a replayed callback).
    StateReused,
    /// The login took longer than [`LOGIN_TTL`].
    StateExpired,
    /// The `state` was issued to another browser (no or another binding cookie).
    OtherBrowser,
    /// The authorization response names another issuer (`iss`).
    IssuerMismatch,
    /// The provider answered with an error (`error=access_denied`, …).
    ProviderError(String),
    /// No `code` in the callback.
    MissingCode,
    /// The connector of the pending login is no longer configured.
    UnknownConnector,
    /// The code exchange or the ID token verification failed.
    Verification(String),
    /// The username claim is unusable.
    UnusableUsername(String),
    /// The provider sent no username claim (in the ID token or userinfo):
    /// what was missing where, for the administrator.
    MissingClaim(String),
    /// CLI: unknown, used or expired code, wrong verifier or redirect URI.
    InvalidCliCode(&'static str),
    /// The client's address is over a login limit (audited once per window).
    RateLimited(&'static str),
}

impl LoginRefusal {
    /// The reason written to the audit trail.
    pub fn audit_reason(&self) -> String {
        match self {
            LoginRefusal::MissingState => "missing state".to_owned(),
            LoginRefusal::UnknownState => "unknown state".to_owned(),
            LoginRefusal::StateReused => "state already used".to_owned(),
            LoginRefusal::StateExpired => "state expired".to_owned(),
            LoginRefusal::OtherBrowser => "state bound to another browser".to_owned(),
            LoginRefusal::IssuerMismatch => {
                "issuer mismatch in the authorization response".to_owned()
            }
            LoginRefusal::ProviderError(e) => format!("provider error {}", escape_untrusted(e)),
            LoginRefusal::MissingCode => "missing code".to_owned(),
            LoginRefusal::UnknownConnector => "connector no longer configured".to_owned(),
            LoginRefusal::Verification(e) => e.clone(),
            LoginRefusal::UnusableUsername(e) | LoginRefusal::MissingClaim(e) => e.clone(),
            LoginRefusal::InvalidCliCode(why) => format!("cli code {why}"),
            LoginRefusal::RateLimited(why) => {
                format!(
                    "{why} from this address; further attempts are not recorded until the limit resets"
                )
            }
        }
    }

    /// The message shown to the user (no internal detail).
    pub fn user_message(&self) -> String {
        match self {
            LoginRefusal::MissingState
            | LoginRefusal::UnknownState
            | LoginRefusal::StateReused
            | LoginRefusal::StateExpired
            | LoginRefusal::OtherBrowser
            | LoginRefusal::MissingCode
            | LoginRefusal::UnknownConnector => {
                "This login link is not valid here: it was already used, has expired, or was started in another browser. Start the login again.".to_owned()
            }
            LoginRefusal::IssuerMismatch => {
                "The login answer came from another identity provider than the one you chose. Start the login again.".to_owned()
            }
            LoginRefusal::ProviderError(e) => format!(
                "The identity provider did not log you in ({}). Start the login again or ask your administrator.",
                escape_untrusted(e)
            ),
            LoginRefusal::Verification(_) => {
                "The identity provider's answer could not be verified, so you are not logged in. Try again; if it persists, ask your administrator.".to_owned()
            }
            LoginRefusal::UnusableUsername(_) => {
                "Your identity provider account has no username TPA can use (lowercase letters, digits, '.', '_' and '-'). Ask your administrator.".to_owned()
            }
            LoginRefusal::MissingClaim(what) => format!(
                "TPA cannot tell who you are: {what}. This is a setting of the identity provider or of TPA (username_claim), not something you did: show this message to your administrator."
            ),
            LoginRefusal::InvalidCliCode(_) => {
                "The login code is unknown, used, expired, or does not match this client. Run `tpa-ssh login` again.".to_owned()
            }
            LoginRefusal::RateLimited(_) => {
                "Too many login attempts from your address. Wait a few minutes and try again.".to_owned()
            }
        }
    }
}

/// What `/login/oidc/{name}` keeps for a CLI login.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CliTarget {
    /// A checked loopback redirect URI ([`check_loopback_redirect`]).
    pub redirect_uri: String,
    /// The CLI's PKCE S256 challenge ([`check_code_challenge`]).
    pub code_challenge: String,
    /// The address that opened `/cli/login` (shown on the consent page).
    pub started_from: String,
}

/// A new browser binding handle (the `tpa_oidc` cookie's value).
pub fn new_browser_handle() -> String {
    random_b64::<32>()
}

/// `next` when it is a path on this site, `/` otherwise. Refused: anything
/// not starting with exactly one `/` (`//evil.example`, `https:evil.example`,
/// `/\evil.example`), backslashes, control characters, quotes, and more than
/// 512 bytes.
pub fn safe_next(next: Option<&str>) -> String {
    let Some(next) = next else {
        return "/".to_owned();
    };
    let ok = next.starts_with('/')
        && !next.starts_with("//")
        && next.len() <= 512
        && next.bytes().all(|b| {
            b.is_ascii_graphic() && !matches!(b, b'\\' | b'"' | b'\'' | b'<' | b'>' | b'`')
        });
    if ok { next.to_owned() } else { "/".to_owned() }
}

/// `uri` when it is `http://127.0.0.1:PORT/path` or `http://[::1]:PORT/path`
/// (explicit port, no credentials, query or fragment).
pub fn check_loopback_redirect(uri: &str) -> Result<String, &'static str> {
    let url = reqwest::Url::parse(uri).map_err(|_| "is not a URL")?;
    let host_ok = matches!(url.host_str(), Some("127.0.0.1" | "[::1]"));
    let exact = url.as_str() == uri;
    if url.scheme() != "http"
        || !host_ok
        || url.port().is_none()
        || !url.username().is_empty()
        || url.password().is_some()
        || url.query().is_some()
        || url.fragment().is_some()
        || !exact
        || uri.len() > 256
    {
        return Err("must be http://127.0.0.1:PORT/… or http://[::1]:PORT/…");
    }
    Ok(uri.to_owned())
}

/// A PKCE S256 challenge: 43 base64url characters (a SHA-256).
pub fn check_code_challenge(challenge: &str, method: &str) -> Result<String, &'static str> {
    if method != "S256" {
        return Err("code_challenge_method must be S256");
    }
    let ok = challenge.len() == 43
        && challenge
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if !ok {
        return Err("code_challenge must be the base64url SHA-256 of the verifier");
    }
    Ok(challenge.to_owned())
}

/// Records a new login in progress; refuses when too many are in progress.
#[allow(clippy::too_many_arguments, reason = "one row's fields")]
pub fn record_pending(
    conn: &mut impl Transact,
    connector: &str,
    authorization: &Authorization,
    browser_handle: &str,
    next: &str,
    cli: Option<&CliTarget>,
    now: DateTime<Utc>,
) -> Result<bool, StoreError> {
    let row = PendingLogin {
        state_hash: hash_token(&authorization.state),
        browser_hash: hash_token(browser_handle),
        connector: connector.to_owned(),
        nonce: authorization.nonce.clone(),
        pkce_verifier: authorization.pkce_verifier.clone(),
        next_path: next.to_owned(),
        cli_redirect_uri: cli.map(|c| c.redirect_uri.clone()),
        cli_code_challenge: cli.map(|c| c.code_challenge.clone()),
        cli_source: cli.map(|c| c.started_from.clone()),
        created_at: format_time(now),
        expires_at: format_time(now + LOGIN_TTL),
        used_at: None,
    };
    conn.write(|tx| {
        if oidc_logins::count_pending(tx, now)? >= MAX_PENDING {
            return Ok(false);
        }
        oidc_logins::insert(tx, &row, now)?;
        Ok(true)
    })
}

/// The pending login of `state`, consumed (marked used) whatever the outcome,
/// when it is unused, unexpired and bound to `browser_handle`.
pub fn take_pending(
    conn: &mut impl Transact,
    state: Option<&str>,
    browser_handle: Option<&str>,
    now: DateTime<Utc>,
) -> Result<PendingLogin, Denied<LoginRefusal>> {
    let Some(state) = state.filter(|s| !s.is_empty() && s.len() <= 256) else {
        return Err(Denied::Refused(LoginRefusal::MissingState));
    };
    let state_hash = hash_token(state);
    let row = conn.write(|tx| oidc_logins::take(tx, &state_hash, now))?;
    let Some(row) = row else {
        return Err(Denied::Refused(LoginRefusal::UnknownState));
    };
    if row.used_at.is_some() {
        return Err(Denied::Refused(LoginRefusal::StateReused));
    }
    if row.expires_at <= format_time(now) {
        return Err(Denied::Refused(LoginRefusal::StateExpired));
    }
    let bound = browser_handle.is_some_and(|h| {
        let hash = hash_token(h);
        bool::from(hash.as_bytes().ct_eq(row.browser_hash.as_bytes()))
    });
    if !bound {
        return Err(Denied::Refused(LoginRefusal::OtherBrowser));
    }
    Ok(row)
}

/// Records a refused OpenID Connect login (`auth.login` `denied`).
pub fn record_denied(
    conn: &mut impl Transact,
    connector: Option<&str>,
    refusal: &LoginRefusal,
    source: &str,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    let connector = connector.map(escape_untrusted);
    conn.write(|tx| {
        store::audit::append(
            tx,
            &NewEvent {
                time: now,
                actor: "anonymous".to_owned(),
                source: source.to_owned(),
                action: "auth.login".to_owned(),
                object: format!("oidc:{}", connector.as_deref().unwrap_or("?")),
                outcome: Outcome::Denied,
                reason: refusal.audit_reason(),
                details: json!({ "method": "oidc", "connector": connector }),
            },
        )?;
        Ok(())
    })
}

/// A one-time code for the CLI whose login the user approved in the
/// browser ([`crate::auth::consent`]), and the row that keeps its hash.
pub fn new_cli_code(
    user: &User,
    redirect_uri: &str,
    code_challenge: &str,
    now: DateTime<Utc>,
) -> Result<(String, CliCode), StoreError> {
    let code = random_b64::<32>();
    let groups: Vec<&str> = user.groups.iter().map(GroupName::as_str).collect();
    let row = CliCode {
        code_hash: hash_token(&code),
        code_challenge: code_challenge.to_owned(),
        redirect_uri: redirect_uri.to_owned(),
        issuer: user.identity.issuer().to_owned(),
        subject: user.identity.subject().to_owned(),
        username: user.username.as_str().to_owned(),
        display_name: Some(user.display_name.clone()),
        groups: serde_json::to_string(&groups).map_err(|e| StoreError::Corrupt(e.to_string()))?,
        created_at: format_time(now),
        expires_at: format_time(now + CLI_CODE_TTL),
        used_at: None,
    };
    Ok((code, row))
}

/// Exchanges a CLI code (once) for an API token: the code must be unused and
/// unexpired, `SHA-256(verifier)` must equal its challenge and `redirect_uri`
/// the URI it was sent to. Refusals are audited.
pub fn exchange_cli_code<C: Transact>(
    conn: &mut C,
    code: &str,
    verifier: &str,
    redirect_uri: &str,
    ttl: HumanDuration,
    source: &str,
    now: DateTime<Utc>,
) -> Result<NewSession, Denied<LoginRefusal>> {
    let refuse = |conn: &mut C, why: &'static str| {
        let refusal = LoginRefusal::InvalidCliCode(why);
        record_denied(conn, None, &refusal, source, now)?;
        Err(Denied::Refused(refusal))
    };
    if code.is_empty() || code.len() > 128 {
        return refuse(conn, "malformed");
    }
    let code_hash = hash_token(code);
    let Some(row) = conn.write(|tx| oidc_logins::take_cli_code(tx, &code_hash, now))? else {
        return refuse(conn, "unknown");
    };
    if row.used_at.is_some() {
        return refuse(conn, "already used");
    }
    if row.expires_at <= format_time(now) {
        return refuse(conn, "expired");
    }
    let challenge = Base64UrlUnpadded::encode_string(&Sha256::digest(verifier.as_bytes()));
    let verifier_ok = (43..=128).contains(&verifier.len())
        && bool::from(challenge.as_bytes().ct_eq(row.code_challenge.as_bytes()));
    if !verifier_ok {
        return refuse(conn, "verifier mismatch");
    }
    if row.redirect_uri != redirect_uri {
        return refuse(conn, "redirect_uri mismatch");
    }
    let corrupt = |what: String| StoreError::Corrupt(format!("cli_login_codes: {what}"));
    let identity = Identity::new(&row.issuer, &row.subject).map_err(|e| corrupt(e.to_string()))?;
    let username = Username::parse(&row.username).map_err(|e| corrupt(e.to_string()))?;
    let names: Vec<String> =
        serde_json::from_str(&row.groups).map_err(|e| corrupt(e.to_string()))?;
    let groups = names
        .iter()
        .map(|g| GroupName::parse(g))
        .collect::<Result<_, _>>()
        .map_err(|e| corrupt(e.to_string()))?;
    let user = User {
        identity,
        display_name: sessions::shown_name(row.display_name.as_deref(), &username),
        username,
        groups,
    };
    let session = sessions::create_with_reason(
        conn,
        &user,
        TokenKind::Api,
        ttl,
        source,
        now,
        "oidc login (tpa-ssh loopback)",
    )?;
    Ok(session)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_paths() {
        let check =
            |next: &str, expected: &str| assert_eq!(safe_next(Some(next)), expected, "{next}");
        check("/", "/");
        check("/requests/R-1?x=1", "/requests/R-1?x=1");
        check("/history", "/history");
        check("//evil.example", "/");
        check("//evil.example/path", "/");
        check("https:evil.example", "/");
        check("https://evil.example", "/");
        check("/\\evil.example", "/");
        check("\\/evil.example", "/");
        check("evil.example", "/");
        check("", "/");
        check("/a b", "/");
        check("/a\nb", "/");
        check("/\"><script>", "/");
        check("javascript:alert(1)", "/");
        check(&format!("/{}", "a".repeat(600)), "/");
        assert_eq!(safe_next(None), "/");
    }

    #[test]
    fn loopback_redirects() {
        let check = |uri: &str, ok: bool| {
            assert_eq!(check_loopback_redirect(uri).is_ok(), ok, "{uri}");
        };
        check("http://127.0.0.1:49152/callback", true);
        check("http://[::1]:49152/callback", true);
        check("http://127.0.0.1/callback", false);
        check("http://localhost:49152/callback", false);
        check("https://127.0.0.1:49152/callback", false);
        check("http://127.0.0.1:49152/callback?x=1", false);
        check("http://127.0.0.1:49152/callback#x", false);
        check("http://user@127.0.0.1:49152/callback", false);
        check("http://evil.example:49152/callback", false);
        check("http://127.0.0.1.evil.example:49152/callback", false);
        check("http://127.0.0.2:49152/callback", false);
        check("http://2130706433:49152/callback", false);
        check("//127.0.0.1:49152/callback", false);
        check("http://127.0.0.1:49152/../callback", false);
    }

    #[test]
    fn code_challenges() {
        let good = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";
        assert!(check_code_challenge(good, "S256").is_ok());
        assert!(check_code_challenge(good, "plain").is_err());
        assert!(check_code_challenge("short", "S256").is_err());
        assert!(check_code_challenge(&good.replace('E', "+"), "S256").is_err());
    }
}
