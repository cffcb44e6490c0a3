//! `GET /login`, `POST /login` (password form → a new web session cookie) and
//! `POST /logout` (CSRF-checked).

use axum::Form;
use axum::extract::rejection::FormRejection;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use minijinja::context;
use tpa_core::api::{CsrfForm, LoginForm, LoginRequest};

use super::{anonymous_context, render_status, to_login};
use crate::app::AppState;
use crate::config::Config;
use crate::http::auth::{
    Authenticated, ClientIp, check_same_origin, end_session, password_login, session_cookie,
};
use crate::http::csrf::require_csrf;
use crate::http::error::ApiError;
use crate::refusal::Refusal;
use crate::store::auth_tokens::TokenKind;

fn cleared_cookie(config: &Config) -> String {
    session_cookie(config, "", 0)
}

fn login_page(
    state: &AppState,
    status: StatusCode,
    error: &str,
    username: &str,
    next: &str,
) -> Result<Response, ApiError> {
    let connectors = super::oidc::connector_links(state, |name| {
        format!(
            "/login/oidc/{name}?next={}",
            super::oidc::encode_query(next)
        )
    });
    render_status(
        status,
        "login.html",
        context! {
            error => error,
            username => username,
            connectors => connectors,
            next => next,
            local => !state.config.accounts.is_empty()
                || !state.config.ldap.is_empty()
                || state.config.oidc.is_empty(),
            ..anonymous_context()
        },
    )
}

/// `GET /login[?next=/path]`: one button per OpenID Connect provider and the
/// password form for local accounts (or `/` when already logged in).
pub async fn get(
    State(state): State<AppState>,
    auth: Option<Authenticated>,
    query: Result<Query<super::oidc::NextQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    if auth.is_some() {
        return Ok(Redirect::to("/").into_response());
    }
    let next = crate::auth::oidc_login::safe_next(query.as_ref().ok().and_then(|q| q.next()));
    login_page(&state, StatusCode::OK, "", "", &next)
}

/// `POST /login`: checks the origin, verifies the password, revokes the
/// browser's previous session if any, sets a new session cookie (the
/// session id changes at every login) and continues to the form's checked
/// `next` (a local path, else `/`). Failure re-renders the form with a
/// generic message (401) or the rate-limit message (429).
pub async fn post(
    State(state): State<AppState>,
    ip: ClientIp,
    previous: Option<Authenticated>,
    headers: HeaderMap,
    form: Result<Form<LoginForm>, FormRejection>,
) -> Result<Response, ApiError> {
    check_same_origin(&headers, &state.config)?;
    let Form(form) = form?;
    let next = crate::auth::oidc_login::safe_next(form.next.as_deref());
    let request = LoginRequest {
        username: form.username,
        password: form.password,
    };
    let username = request.username.clone();
    match password_login(&state, ip.0, request, TokenKind::WebSession).await {
        Ok(new) => {
            if let Some(previous) = previous {
                end_session(&state, &previous, ip.0).await?;
            }
            let max_age = state.config.auth.session_ttl.as_secs();
            let cookie = session_cookie(&state.config, &new.token, max_age);
            let mut response = Redirect::to(&next).into_response();
            let value = HeaderValue::from_str(&cookie)
                .map_err(|e| ApiError::Internal(anyhow::anyhow!("bad cookie header: {e}")))?;
            response.headers_mut().insert(header::SET_COOKIE, value);
            Ok(response)
        }
        Err(ApiError::InvalidCredentials) => login_page(
            &state,
            StatusCode::UNAUTHORIZED,
            "Unknown username or wrong password.",
            &username,
            &next,
        ),
        Err(ApiError::RateLimited { retry_after_secs }) => {
            let mut response = login_page(
                &state,
                StatusCode::TOO_MANY_REQUESTS,
                &format!("Too many failed logins. Try again in {retry_after_secs} seconds."),
                &username,
                &next,
            )?;
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(retry_after_secs));
            Ok(response)
        }
        // Directory refusals (issue 16): the page says what happened.
        Err(ApiError::Refused {
            code:
                Refusal::AccountDisabled | Refusal::PasswordExpired | Refusal::DirectoryEntryUnusable,
            message,
        }) => login_page(
            &state,
            StatusCode::FORBIDDEN,
            &capitalized(&message),
            &username,
            &next,
        ),
        Err(ApiError::DirectoryUnavailable(_)) => {
            let mut response = login_page(
                &state,
                StatusCode::SERVICE_UNAVAILABLE,
                "The directory cannot be reached, so nobody can log in with a password right now. Try again in a minute.",
                &username,
                &next,
            )?;
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(5u64));
            Ok(response)
        }
        Err(other) => Err(other),
    }
}

fn capitalized(message: &str) -> String {
    let mut chars = message.chars();
    chars.next().map_or_else(String::new, |first| {
        format!("{}{}.", first.to_uppercase(), chars.as_str())
    })
}

/// `POST /logout`: needs the session's CSRF token (form field `csrf_token`);
/// revokes the session, clears the cookie and goes to `/login`.
pub async fn logout(
    State(state): State<AppState>,
    ip: ClientIp,
    auth: Option<Authenticated>,
    headers: HeaderMap,
    form: Result<Form<CsrfForm>, FormRejection>,
) -> Result<Response, ApiError> {
    check_same_origin(&headers, &state.config)?;
    let Some(auth) = auth else {
        return Ok(to_login());
    };
    let submitted = match form {
        Ok(Form(f)) => Some(f.csrf_token),
        // The route's limit keeps the body small; a larger one is an error, not a missing token.
        Err(e) if e.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE => {
            return Err(ApiError::PayloadTooLarge);
        }
        Err(_) => None,
    };
    require_csrf(&auth, submitted.as_deref())?;
    end_session(&state, &auth, ip.0).await?;
    let mut response = Redirect::to("/login").into_response();
    let value = HeaderValue::from_str(&cleared_cookie(&state.config))
        .map_err(|e| ApiError::Internal(anyhow::anyhow!("bad cookie header: {e}")))?;
    response.headers_mut().insert(header::SET_COOKIE, value);
    Ok(response)
}
