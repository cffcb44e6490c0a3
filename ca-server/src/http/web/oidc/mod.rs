//! OpenID Connect pages: `GET /login/oidc/{name}` (to the provider),
//! `GET /cli/login` (the same for `tpa-ssh login`; with a web session
//! already, straight to the consent page), `GET /oidc/callback` (back from
//! the provider: a web session, and for the CLI its consent page, see
//! [`callback`] and [`super::cli_consent`]), and `POST /api/v1/cli/token`
//! (the approved login's one-time code → an API token).

mod callback;

pub use callback::{CallbackQuery, callback};

use crate::http::extract::{AppJson, AppPath};
use axum::Json;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use std::time::Instant;

use chrono::Utc;
use minijinja::{Value, context};
use serde::Deserialize;
use tpa_core::api::{CliTokenRequest, LoginResponse};

use super::cli_consent;
use super::{anonymous_context, login_error, render};
use crate::app::AppState;
use crate::auth::oidc_login::{self, CliTarget, LoginRefusal};
use crate::auth::rate_limit::Limited;
use crate::config::Config;
use crate::http::auth::{AuthVia, Authenticated, ClientIp, audit_source, login_response};
use crate::http::db::{with_db, with_writer};
use crate::http::error::ApiError;

/// The browser-binding cookie of a login in progress, over plain HTTP.
pub const BINDING_COOKIE: &str = "tpa_oidc";
/// Its name over TLS (`__Host-`: this host, path `/`, `Secure`).
pub const BINDING_COOKIE_TLS: &str = "__Host-tpa_oidc";

fn binding_cookie_name(config: &Config) -> &'static str {
    if config.serves_tls() {
        BINDING_COOKIE_TLS
    } else {
        BINDING_COOKIE
    }
}

/// `Set-Cookie` for the binding handle: HttpOnly, SameSite=Lax (the callback
/// is a top-level navigation from the provider's site), 10 minutes.
fn binding_cookie(config: &Config, handle: &str, max_age: i64) -> String {
    let secure = if config.serves_tls() { "; Secure" } else { "" };
    format!(
        "{}={handle}; HttpOnly; SameSite=Lax; Path=/; Max-Age={max_age}{secure}",
        binding_cookie_name(config)
    )
}

fn cookie_value(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(n, _)| *n == name)
        .map(|(_, v)| v.trim().to_owned())
}

fn header_value(value: &str) -> Result<HeaderValue, ApiError> {
    HeaderValue::from_str(value)
        .map_err(|e| ApiError::Internal(anyhow::anyhow!("bad header value: {e}")))
}

/// The connectors as the login pages list them, each linking to `href(name)`.
pub fn connector_links(state: &AppState, href: impl Fn(&str) -> String) -> Vec<Value> {
    state
        .identities
        .oidc_connectors()
        .iter()
        .map(|c| {
            context! {
                name => c.config.name.clone(),
                display_name => c.config.display_name.clone(),
                href => href(&c.config.name),
            }
        })
        .collect()
}

/// Percent-encodes a query value, leaving `/` readable (the values are
/// mostly paths and URLs).
pub fn encode_query(value: &str) -> String {
    const KEEP_SLASH: &percent_encoding::AsciiSet = &super::QUERY_VALUE.remove(b'/');
    super::percent_encode(value, KEEP_SLASH)
}

/// `?next=` of the login pages.
#[derive(Debug, Deserialize)]
pub struct NextQuery {
    next: Option<String>,
}

impl NextQuery {
    /// The raw `next` value.
    pub fn next(&self) -> Option<&str> {
        self.next.as_deref()
    }
}

/// `GET /login/oidc/{name}?next=/path`: to the provider.
pub async fn start(
    State(state): State<AppState>,
    ip: ClientIp,
    AppPath(name): AppPath<String>,
    query: Result<Query<NextQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let next = oidc_login::safe_next(query.as_ref().ok().and_then(|q| q.next.as_deref()));
    begin(&state, ip, &name, &next, None).await
}

async fn begin(
    state: &AppState,
    ip: ClientIp,
    name: &str,
    next: &str,
    cli: Option<CliTarget>,
) -> Result<Response, ApiError> {
    let Some(connector) = state.identities.oidc(name) else {
        return login_error(
            StatusCode::NOT_FOUND,
            "unknown_connector",
            "There is no such login method. Go back to the login page.",
        );
    };
    if let Err(limited) = state.login_start_limiter.acquire(ip.0, Instant::now()) {
        return too_many(state, ip, Some(name), limited, "too many logins started").await;
    }
    let authorization = match connector.authorize().await {
        Ok(a) => a,
        Err(e) => {
            tracing::warn!(connector = %name, error = %e, "OpenID login cannot start");
            return provider_down(state, ip, name).await;
        }
    };
    let handle = oidc_login::new_browser_handle();
    let connector_name = name.to_owned();
    let next = next.to_owned();
    let now = Utc::now();
    let recorded = with_db(state, move |conn| {
        Ok(oidc_login::record_pending(
            conn,
            &connector_name,
            &authorization,
            &handle,
            &next,
            cli.as_ref(),
            now,
        )?
        .then_some((authorization.url, handle)))
    })
    .await?;
    let Some((url, handle)) = recorded else {
        return login_error(
            StatusCode::SERVICE_UNAVAILABLE,
            "too_many_logins",
            "Too many logins are in progress. Try again in a few minutes.",
        );
    };
    let mut response = Redirect::to(&url).into_response();
    let max_age = oidc_login::LOGIN_TTL.num_seconds();
    response.headers_mut().insert(
        header::SET_COOKIE,
        header_value(&binding_cookie(&state.config, &handle, max_age))?,
    );
    Ok(response)
}

async fn provider_down(state: &AppState, ip: ClientIp, name: &str) -> Result<Response, ApiError> {
    let source = audit_source(ip.0);
    let connector = name.to_owned();
    let now = Utc::now();
    with_db(state, move |conn| {
        Ok(oidc_login::record_denied(
            conn,
            Some(&connector),
            &LoginRefusal::Verification("identity provider unavailable".to_owned()),
            &source,
            now,
        )?)
    })
    .await?;
    let mut page = login_error(
        StatusCode::SERVICE_UNAVAILABLE,
        "idp_unavailable",
        "The identity provider cannot be reached, so you cannot log in with it now. Try again later or ask your administrator.",
    )?;
    // A fault of the world: the browser (or a script) may try again.
    page.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("30"));
    Ok(page)
}

/// The answer when an address is over a login limit: a 429 page with
/// `Retry-After`. Only the first refusal in the window is audited, so a
/// flood writes nothing.
pub(crate) async fn too_many(
    state: &AppState,
    ip: ClientIp,
    connector: Option<&str>,
    limited: Limited,
    reason: &'static str,
) -> Result<Response, ApiError> {
    if limited.first {
        let source = audit_source(ip.0);
        let connector = connector.map(str::to_owned);
        with_db(state, move |conn| {
            Ok(oidc_login::record_denied(
                conn,
                connector.as_deref(),
                &LoginRefusal::RateLimited(reason),
                &source,
                Utc::now(),
            )?)
        })
        .await?;
    }
    let secs = limited.retry_after.as_secs().max(1);
    let mut response = login_error(
        StatusCode::TOO_MANY_REQUESTS,
        "rate_limited",
        &format!("Too many login attempts from your address. Try again in {secs} seconds."),
    )?;
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(secs));
    Ok(response)
}

/// `GET /cli/login`'s query.
#[derive(Debug, Deserialize)]
pub struct CliLoginQuery {
    redirect_uri: Option<String>,
    code_challenge: Option<String>,
    code_challenge_method: Option<String>,
    connector: Option<String>,
}

/// `GET /cli/login?redirect_uri=http://127.0.0.1:PORT/callback&code_challenge=…&code_challenge_method=S256[&connector=NAME]`:
/// checks the loopback redirect and the challenge, then runs the OpenID
/// login (or lists the connectors when there are several).
pub async fn cli_login(
    State(state): State<AppState>,
    ip: ClientIp,
    auth: Option<Authenticated>,
    query: Result<Query<CliLoginQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let bad = |message: String| login_error(StatusCode::BAD_REQUEST, "invalid_cli_login", &message);
    let Ok(Query(query)) = query else {
        return bad("The login link is malformed. Run `tpa-ssh login` again.".to_owned());
    };
    let redirect_uri = match query
        .redirect_uri
        .as_deref()
        .map(oidc_login::check_loopback_redirect)
    {
        Some(Ok(uri)) => uri,
        Some(Err(why)) => return bad(format!("redirect_uri {why}.")),
        None => return bad("redirect_uri is missing.".to_owned()),
    };
    let code_challenge = match oidc_login::check_code_challenge(
        query.code_challenge.as_deref().unwrap_or_default(),
        query.code_challenge_method.as_deref().unwrap_or_default(),
    ) {
        Ok(c) => c,
        Err(why) => return bad(format!("{why}.")),
    };
    let target = CliTarget {
        redirect_uri: redirect_uri.clone(),
        code_challenge: code_challenge.clone(),
        started_from: audit_source(ip.0),
    };
    if let Some(auth) = &auth
        && matches!(auth.via, AuthVia::Session { .. })
    {
        // Each visit holds a consent row; without this limit one logged-in
        // person could fill the global cap and stop every `tpa-ssh login`
        // (security review 2026-11-24).
        if let Err(limited) = state.login_start_limiter.acquire(ip.0, Instant::now()) {
            return too_many(&state, ip, None, limited, "too many logins started").await;
        }
        if let Some(consent) = cli_consent::from_session(&state, auth, target.clone()).await? {
            return Ok(consent);
        }
    }
    let connectors = state.identities.oidc_connectors();
    let chosen = match (&query.connector, connectors) {
        (Some(name), _) => Some(name.clone()),
        (None, [only]) => Some(only.config.name.clone()),
        (None, []) if !state.config.accounts.is_empty() => {
            // Local accounts only: log in with a password, then back here
            // with a web session, which goes to the consent page.
            let back = format!(
                "/cli/login?redirect_uri={}&code_challenge={}&code_challenge_method=S256",
                encode_query(&redirect_uri),
                encode_query(&code_challenge)
            );
            let to = format!("/login?next={}", encode_query(&back));
            return Ok(Redirect::to(&to).into_response());
        }
        (None, []) => {
            return login_error(
                StatusCode::NOT_FOUND,
                "no_connector",
                "This CA has no single sign-on configured. Log in with `tpa-ssh login --username NAME`.",
            );
        }
        (None, _) => None,
    };
    match chosen {
        Some(name) => begin(&state, ip, &name, "/", Some(target)).await,
        None => {
            let links = connector_links(&state, |name| {
                format!(
                    "/cli/login?redirect_uri={}&code_challenge={}&code_challenge_method=S256&connector={}",
                    encode_query(&redirect_uri),
                    encode_query(&code_challenge),
                    encode_query(name)
                )
            });
            render(
                "cli_login.html",
                context! { connectors => links, ..anonymous_context() },
            )
        }
    }
}

/// `POST /api/v1/cli/token`: `{code, code_verifier, redirect_uri}` → an API
/// token (as `POST /api/v1/login` answers). One attempt per code.
pub async fn cli_token(
    State(state): State<AppState>,
    ip: ClientIp,
    AppJson(body): AppJson<CliTokenRequest>,
) -> Result<Json<LoginResponse>, ApiError> {
    let request = body;
    if let Err(limited) = state.sso_failure_limiter.check(ip.0, Instant::now()) {
        return Err(limited.into());
    }
    let ttl = state.config.auth.api_token_ttl;
    let source = audit_source(ip.0);
    let answer = with_writer(&state, move |conn| {
        oidc_login::exchange_cli_code(
            conn,
            &request.code,
            &request.code_verifier,
            &request.redirect_uri,
            ttl,
            &source,
            Utc::now(),
        )
    })
    .await;
    match answer {
        Ok(new) => Ok(Json(login_response(new))),
        Err(denied) => {
            let refusal = denied
                .into_refusal()
                .map_err(|e| ApiError::Internal(e.into()))?;
            state.sso_failure_limiter.record(ip.0, Instant::now());
            Err(ApiError::Refused {
                code: crate::refusal::Refusal::InvalidGrant,
                message: refusal.user_message(),
            })
        }
    }
}
