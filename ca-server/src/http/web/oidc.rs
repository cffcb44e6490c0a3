//! OpenID Connect pages: `GET /login/oidc/{name}` (to the provider),
//! `GET /cli/login` (the same for `tpa-ssh login`; with a web session
//! already, straight to the consent page), `GET /oidc/callback` (back from
//! the provider: a web session, and for the CLI its consent page, see
//! [`super::cli_consent`]), and `POST /api/v1/cli/token` (the approved
//! login's one-time code → an API token).

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
use crate::auth::identity::oidc::OidcError;
use crate::auth::oidc_login::{self, CliTarget, LoginRefusal};
use crate::auth::rate_limit::Limited;
use crate::auth::sessions;
use crate::config::Config;
use crate::http::auth::{
    AuthVia, Authenticated, ClientIp, audit_source, end_session, login_response, session_cookie,
};
use crate::http::db::{with_db, with_writer};
use crate::http::error::ApiError;
use crate::store::auth_tokens::TokenKind;

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

/// `GET /oidc/callback`'s query (authorization response, RFC 6749 §4.1.2 and RFC 9207).
#[derive(Debug, Deserialize)]
pub struct CallbackQuery {
    state: Option<String>,
    code: Option<String>,
    error: Option<String>,
    iss: Option<String>,
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
    let query = query.map(|Query(q)| q).unwrap_or(CallbackQuery {
        state: None,
        code: None,
        error: None,
        iss: None,
    });
    if let Err(limited) = state.sso_failure_limiter.check(ip.0, Instant::now()) {
        return too_many(&state, ip, None, limited, "too many failed logins").await;
    }
    let handle = cookie_value(&headers, binding_cookie_name(&state.config));
    let now = Utc::now();
    let source = audit_source(ip.0);
    let state_param = query.state.clone();
    let pending = with_writer(&state, move |conn| {
        oidc_login::take_pending(conn, state_param.as_deref(), handle.as_deref(), now)
    })
    .await;
    let row = match pending {
        Ok(row) => row,
        Err(denied) => {
            let refusal = denied
                .into_refusal()
                .map_err(|e| ApiError::Internal(e.into()))?;
            return refuse(&state, None, refusal, &source).await;
        }
    };
    let name = row.connector.clone();
    let Some(connector) = state.identities.oidc(&name) else {
        return refuse(&state, Some(&name), LoginRefusal::UnknownConnector, &source).await;
    };
    if let Some(error) = query.error {
        return refuse(
            &state,
            Some(&name),
            LoginRefusal::ProviderError(error),
            &source,
        )
        .await;
    }
    if query
        .iss
        .as_deref()
        .is_some_and(|iss| !connector.is_issuer(iss))
    {
        return refuse(&state, Some(&name), LoginRefusal::IssuerMismatch, &source).await;
    }
    let Some(code) = query.code.filter(|c| !c.is_empty() && c.len() <= 2048) else {
        return refuse(&state, Some(&name), LoginRefusal::MissingCode, &source).await;
    };
    let login = match connector
        .finish(&code, &row.pkce_verifier, &row.nonce, Utc::now())
        .await
    {
        Ok(login) => login,
        Err(OidcError::Unavailable(e)) => {
            tracing::warn!(connector = %name, error = %e, "OpenID provider unavailable at callback");
            return provider_down(&state, ip, &name).await;
        }
        Err(e) => {
            let refusal = match &e {
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
            return refuse(&state, Some(&name), refusal, &source).await;
        }
    };
    let user = login.user;
    let verified_email = login.verified_email;
    let cli = match (row.cli_redirect_uri, row.cli_code_challenge) {
        (Some(redirect_uri), Some(code_challenge)) => Some(CliTarget {
            redirect_uri,
            code_challenge,
            started_from: row.cli_source.unwrap_or_else(|| source.clone()),
        }),
        _ => None,
    };
    let ttl = state.config.auth.session_ttl;
    let reason = match cli {
        Some(_) => format!("oidc login via {name} (for a tpa-ssh login, waiting for consent)"),
        None => format!("oidc login via {name}"),
    };
    let created_source = source.clone();
    let session_user = user.clone();
    let new = with_db(&state, move |conn| {
        let now = Utc::now();
        crate::integrations::emails::record_login(
            conn,
            &session_user.identity,
            verified_email.as_ref(),
            now,
        )?;
        Ok(sessions::create_with_reason(
            conn,
            &session_user,
            TokenKind::WebSession,
            ttl,
            &created_source,
            now,
            &reason,
        )?)
    })
    .await?;
    if let Some(previous) = previous {
        end_session(&state, &previous, ip.0).await?;
    }
    // A CLI login continues to its consent page in this new web session:
    // no code goes to the loopback listener before the person approves.
    let next = match cli {
        Some(target) => {
            match cli_consent::hold(&state, user, new.session.id.clone(), target).await? {
                Ok(path) => path,
                Err(page) => return Ok(page),
            }
        }
        None => row.next_path,
    };
    // A page, not a redirect: the session cookie is SameSite=Strict, and a
    // browser does not send it on a redirect chain that began on the
    // provider's site. The page's own navigation to `next` is same-site.
    let mut response = render(
        "signed_in.html",
        context! { next => next, ..anonymous_context() },
    )?;
    let cookie = session_cookie(
        &state.config,
        &new.token,
        state.config.auth.session_ttl.as_secs(),
    );
    response
        .headers_mut()
        .append(header::SET_COOKIE, header_value(&cookie)?);
    clear_binding(&state.config, &mut response)?;
    Ok(response)
}

fn clear_binding(config: &Config, response: &mut Response) -> Result<(), ApiError> {
    response.headers_mut().append(
        header::SET_COOKIE,
        header_value(&binding_cookie(config, "", 0))?,
    );
    Ok(())
}

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
