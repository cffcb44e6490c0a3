//! `GET /oidc/callback`: back from the provider. The pending login bound to
//! this browser is taken, the provider's answer checked and its code
//! exchanged; then a new web session and a page that continues to `next`
//! (for `tpa-ssh login`, to its consent page). Every refusal is audited.

use std::time::Instant;

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::Response;
use chrono::Utc;
use minijinja::context;
use serde::Deserialize;

use super::{
    binding_cookie, binding_cookie_name, cookie_value, header_value, provider_down, too_many,
};
use crate::app::AppState;
use crate::auth::identity::claims::OidcLogin;
use crate::auth::identity::oidc::OidcError;
use crate::auth::oidc_login::{self, CliTarget, LoginRefusal};
use crate::auth::sessions::{self, NewSession};
use crate::config::Config;
use crate::http::auth::{Authenticated, ClientIp, audit_source, end_session, session_cookie};
use crate::http::db::{with_db, with_writer};
use crate::http::error::ApiError;
use crate::http::web::{anonymous_context, cli_consent, login_error, render};
use crate::store::audited::Denied;
use crate::store::auth_tokens::TokenKind;
use crate::store::oidc_logins::PendingLogin;

/// `GET /oidc/callback`'s query (authorization response, RFC 6749 §4.1.2 and RFC 9207).
#[derive(Debug, Default, Deserialize)]
pub struct CallbackQuery {
    state: Option<String>,
    code: Option<String>,
    error: Option<String>,
    iss: Option<String>,
}

/// Why a callback ends without a session.
enum Stop {
    /// The login is refused: audited, counted against the address, an error page.
    Refused(LoginRefusal),
    /// The provider cannot be reached: a 503 page the browser may retry.
    ProviderDown,
}

/// `GET /oidc/callback`: consumes the pending login of `state` (bound to this
/// browser), exchanges the code at that login's provider and verifies the ID
/// token; then a new web session (the previous one is revoked) and a page
/// that continues to `next`, or a one-time code sent to the CLI's loopback
/// listener. Every refusal is audited and shown as an error page.
pub async fn callback(
    State(state): State<AppState>,
    ip: ClientIp,
    previous: Option<Authenticated>,
    headers: HeaderMap,
    query: Result<Query<CallbackQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let query = query.map(|Query(q)| q).unwrap_or_default();
    if let Err(limited) = state.sso_failure_limiter.check(ip.0, Instant::now()) {
        return too_many(&state, ip, None, limited, "too many failed logins").await;
    }
    let source = audit_source(ip.0);
    let row = match take_pending(&state, &headers, query.state.clone()).await {
        Ok(row) => row,
        Err(denied) => {
            let refusal = denied
                .into_refusal()
                .map_err(|e| ApiError::Internal(e.into()))?;
            return refuse(&state, None, refusal, &source).await;
        }
    };
    let name = row.connector.clone();
    let login = match verify(&state, &row, query).await {
        Ok(login) => login,
        Err(Stop::Refused(refusal)) => return refuse(&state, Some(&name), refusal, &source).await,
        Err(Stop::ProviderDown) => return provider_down(&state, ip, &name).await,
    };
    let cli = cli_target(&row, &source);
    let new = start_session(&state, &login, &name, cli.is_some(), &source).await?;
    if let Some(previous) = previous {
        end_session(&state, &previous, ip.0).await?;
    }
    // A CLI login continues to its consent page in this new web session:
    // no code goes to the loopback listener before the person approves.
    let next = match cli {
        Some(target) => {
            match cli_consent::hold(&state, login.user, new.session.id.clone(), target).await? {
                Ok(path) => path,
                Err(page) => return Ok(page),
            }
        }
        None => row.next_path,
    };
    signed_in(&state.config, &new.token, &next)
}

/// The pending login named by `state`, if this browser's binding cookie
/// matches it; it is consumed either way (a refusal commits its audit event).
async fn take_pending(
    state: &AppState,
    headers: &HeaderMap,
    state_param: Option<String>,
) -> Result<PendingLogin, Denied<LoginRefusal>> {
    let handle = cookie_value(headers, binding_cookie_name(&state.config));
    let now = Utc::now();
    with_writer(state, move |conn| {
        oidc_login::take_pending(conn, state_param.as_deref(), handle.as_deref(), now)
    })
    .await
}

/// Checks the provider's answer against the pending login (its connector,
/// `error`, `iss`, `code`), then exchanges the code and verifies the ID token.
async fn verify(
    state: &AppState,
    row: &PendingLogin,
    query: CallbackQuery,
) -> Result<OidcLogin, Stop> {
    let name = &row.connector;
    let Some(connector) = state.identities.oidc(name) else {
        return Err(Stop::Refused(LoginRefusal::UnknownConnector));
    };
    if let Some(error) = query.error {
        return Err(Stop::Refused(LoginRefusal::ProviderError(error)));
    }
    if query
        .iss
        .as_deref()
        .is_some_and(|iss| !connector.is_issuer(iss))
    {
        return Err(Stop::Refused(LoginRefusal::IssuerMismatch));
    }
    let Some(code) = query.code.filter(|c| !c.is_empty() && c.len() <= 2048) else {
        return Err(Stop::Refused(LoginRefusal::MissingCode));
    };
    connector
        .finish(&code, &row.pkce_verifier, &row.nonce, Utc::now())
        .await
        .map_err(|e| stop_for(name, e))
}

/// What a failed code exchange means, logged for the administrator where
/// the cause is theirs or the provider's.
fn stop_for(name: &str, e: OidcError) -> Stop {
    let refusal = match &e {
        OidcError::Unavailable(e) => {
            tracing::warn!(connector = %name, error = %e, "OpenID provider unavailable at callback");
            return Stop::ProviderDown;
        }
        // The provider's (or TPA's) configuration, not the user: the
        // log line and the page name the claim for the administrator.
        OidcError::MissingClaim { .. } => {
            tracing::warn!(connector = %name, error = %e, "OpenID login refused: a claim TPA needs is missing");
            LoginRefusal::MissingClaim(e.to_string())
        }
        OidcError::UnusableUsername { .. } => LoginRefusal::UnusableUsername(e.to_string()),
        _ => {
            tracing::warn!(connector = %name, error = %e, "OpenID login refused");
            LoginRefusal::Verification(e.to_string())
        }
    };
    Stop::Refused(refusal)
}

/// The `tpa-ssh login` this browser login was started for, if any.
fn cli_target(row: &PendingLogin, source: &str) -> Option<CliTarget> {
    match (&row.cli_redirect_uri, &row.cli_code_challenge) {
        (Some(redirect_uri), Some(code_challenge)) => Some(CliTarget {
            redirect_uri: redirect_uri.clone(),
            code_challenge: code_challenge.clone(),
            started_from: row.cli_source.clone().unwrap_or_else(|| source.to_owned()),
        }),
        _ => None,
    }
}

/// Records the login's verified email and opens the new web session.
async fn start_session(
    state: &AppState,
    login: &OidcLogin,
    name: &str,
    for_cli: bool,
    source: &str,
) -> Result<NewSession, ApiError> {
    let ttl = state.config.auth.session_ttl;
    let reason = if for_cli {
        format!("oidc login via {name} (for a tpa-ssh login, waiting for consent)")
    } else {
        format!("oidc login via {name}")
    };
    let source = source.to_owned();
    let user = login.user.clone();
    let verified_email = login.verified_email.clone();
    with_db(state, move |conn| {
        let now = Utc::now();
        crate::integrations::emails::record_login(
            conn,
            &user.identity,
            verified_email.as_ref(),
            now,
        )?;
        Ok(sessions::create_with_reason(
            conn,
            &user,
            TokenKind::WebSession,
            ttl,
            &source,
            now,
            &reason,
        )?)
    })
    .await
}

/// The signed-in page with the session cookie. A page, not a redirect: the
/// session cookie is SameSite=Strict, and a browser does not send it on a
/// redirect chain that began on the provider's site. The page's own
/// navigation to `next` is same-site.
fn signed_in(config: &Config, token: &str, next: &str) -> Result<Response, ApiError> {
    let mut response = render(
        "signed_in.html",
        context! { next => next, ..anonymous_context() },
    )?;
    let cookie = session_cookie(config, token, config.auth.session_ttl.as_secs());
    response
        .headers_mut()
        .append(header::SET_COOKIE, header_value(&cookie)?);
    clear_binding(config, &mut response)?;
    Ok(response)
}

fn clear_binding(config: &Config, response: &mut Response) -> Result<(), ApiError> {
    response.headers_mut().append(
        header::SET_COOKIE,
        header_value(&binding_cookie(config, "", 0))?,
    );
    Ok(())
}

/// Audits a refused login, counts it against the address, and answers
/// with an error page.
async fn refuse(
    state: &AppState,
    connector: Option<&str>,
    refusal: LoginRefusal,
    source: &str,
) -> Result<Response, ApiError> {
    let ip = source.parse().ok();
    state.sso_failure_limiter.record(ip, Instant::now());
    let connector = connector.map(str::to_owned);
    let source = source.to_owned();
    let audited = refusal.clone();
    with_db(state, move |conn| {
        Ok(oidc_login::record_denied(
            conn,
            connector.as_deref(),
            &audited,
            &source,
            Utc::now(),
        )?)
    })
    .await?;
    let (status, code) = match refusal {
        LoginRefusal::UnusableUsername(_) => (StatusCode::FORBIDDEN, "unusable_username"),
        LoginRefusal::MissingClaim(_) => (StatusCode::FORBIDDEN, "missing_claim"),
        LoginRefusal::ProviderError(_) => (StatusCode::FORBIDDEN, "provider_refused"),
        LoginRefusal::Verification(_) => (StatusCode::FORBIDDEN, "login_not_verified"),
        _ => (StatusCode::BAD_REQUEST, "invalid_login_state"),
    };
    let mut response = login_error(status, code, &refusal.user_message())?;
    clear_binding(&state.config, &mut response)?;
    Ok(response)
}
