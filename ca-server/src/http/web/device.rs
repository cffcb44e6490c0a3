//! Device logins (`tpa-ssh login --no-browser`): `POST /api/v1/cli/device`
//! (start: a device code and a user code), `POST /api/v1/cli/device/token`
//! (the CLI's poll), and the pages where a logged-in person enters the user
//! code, sees what is being authorised and approves or denies it:
//! `GET /device`, `POST /device`, `POST /device/decision`.

use crate::http::extract::AppJson;
use crate::refusal::Refusal;
use std::time::Instant;

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use chrono::Utc;
use minijinja::{Value, context};
use serde::Deserialize;
use tpa_core::api::{DeviceAuthorization, DeviceTokenRequest, LoginResponse};

use super::oidc::encode_query;
use super::page_user::PageForm;
use super::{PageError, page_context, render_status};
use crate::app::AppState;
use crate::auth::device::{self, CodeRefusal, Poll, Waiting};
use crate::auth::oidc_login::{self, LoginRefusal};
use crate::auth::rate_limit::{Limited, Reservation};
use crate::auth::sessions;
use crate::http::auth::{AuthVia, Authenticated, ClientIp, audit_source, login_response};
use crate::http::db::{with_db, with_writer};
use crate::http::error::ApiError;
use crate::store::audited::Denied;

/// `POST /api/v1/cli/device`: starts a device login (rate-limited per address).
pub async fn api_start(
    State(state): State<AppState>,
    ip: ClientIp,
) -> Result<Json<DeviceAuthorization>, ApiError> {
    let source = audit_source(ip.0);
    if let Err(limited) = state.login_start_limiter.acquire(ip.0, Instant::now()) {
        if limited.first {
            let source = source.clone();
            with_db(&state, move |conn| {
                Ok(oidc_login::record_denied(
                    conn,
                    None,
                    &LoginRefusal::RateLimited("too many logins started"),
                    &source,
                    Utc::now(),
                )?)
            })
            .await?;
        }
        return Err(limited.into());
    }
    let started = with_db(&state, move |conn| {
        Ok(device::start(conn, &source, Utc::now())?)
    })
    .await?;
    let Some(started) = started else {
        return Err(ApiError::Refused {
            code: Refusal::TooManyLogins,
            message: "too many logins are waiting for confirmation; try again in a few minutes"
                .to_owned(),
        });
    };
    Ok(Json(DeviceAuthorization {
        device_code: started.device_code,
        user_code: started.user_code,
        verification_path: "/device".to_owned(),
        expires_in: started.expires_in,
        interval: started.interval,
    }))
}

/// `POST /api/v1/cli/device/token`: `{device_code}` → an API token once a
/// person approved, else `authorization_pending`, `slow_down`,
/// `access_denied`, `expired_token` or `invalid_grant` (all 400).
pub async fn api_token(
    State(state): State<AppState>,
    ip: ClientIp,
    AppJson(body): AppJson<DeviceTokenRequest>,
) -> Result<Json<LoginResponse>, ApiError> {
    let request = body;
    if let Err(limited) = state.sso_failure_limiter.check(ip.0, Instant::now()) {
        return Err(limited.into());
    }
    let ttl = state.config.auth.device_token_ttl;
    let source = audit_source(ip.0);
    let poll = with_db(&state, move |conn| {
        Ok(device::poll(
            conn,
            &request.device_code,
            ttl,
            &source,
            Utc::now(),
        )?)
    })
    .await?;
    let refused = |code: Refusal, message: String| ApiError::Refused { code, message };
    match poll {
        Poll::Done(new) => Ok(Json(login_response(new))),
        Poll::Pending => Err(refused(
            Refusal::AuthorizationPending,
            "nobody has confirmed the code yet; poll again after the interval".to_owned(),
        )),
        Poll::SlowDown(interval) => {
            // Each poll is a write; a client that ignores the interval
            // counts as failing, so it meets `429` before any database work
            // (security review 2026-11-24). `tpa-ssh` never polls early.
            state.sso_failure_limiter.record(ip.0, Instant::now());
            Err(refused(
                Refusal::SlowDown,
                format!("polled too fast; wait {interval} s between polls"),
            ))
        }
        Poll::Denied => Err(refused(
            Refusal::AccessDenied,
            "the login was denied in the browser".to_owned(),
        )),
        Poll::Expired => Err(refused(
            Refusal::ExpiredToken,
            "the code expired before anyone confirmed it; run `tpa-ssh login` again".to_owned(),
        )),
        Poll::Invalid => {
            state.sso_failure_limiter.record(ip.0, Instant::now());
            Err(refused(
                Refusal::InvalidGrant,
                "unknown or already used device code; run `tpa-ssh login` again".to_owned(),
            ))
        }
    }
}

/// `GET /device`'s query.
#[derive(Debug, Deserialize)]
pub struct DeviceQuery {
    code: Option<String>,
}

/// What the confirmation page shows: the waiting login, and the address of
/// the browser looking at it, compared with the one that started the login.
fn waiting_value(w: &Waiting, browser_source: &str) -> Value {
    context! {
        user_code => w.user_code.clone(),
        client_source => w.client_source.clone(),
        browser_source => browser_source,
        source_differs => w.client_source != browser_source,
        created_at => w.created_at.clone(),
        expires_at => w.expires_at.clone(),
    }
}

/// The page in one of its steps: `enter` (the code form; `link_code` when
/// the URL carried a code, which is never filled in), `confirm` or `done`.
struct Step<'a> {
    status: StatusCode,
    step: &'a str,
    error: &'a str,
    link_code: bool,
    waiting: Option<(&'a Waiting, String)>,
    approved: bool,
}

impl<'a> Step<'a> {
    fn enter(status: StatusCode, error: &'a str) -> Self {
        Step {
            status,
            step: "enter",
            error,
            link_code: false,
            waiting: None,
            approved: false,
        }
    }
}

fn page(auth: &Authenticated, step: Step<'_>) -> Result<Response, ApiError> {
    render_status(
        step.status,
        "device.html",
        context! {
            step => step.step,
            error => step.error,
            link_code => step.link_code,
            waiting => step.waiting.map(|(w, browser)| waiting_value(w, &browser)),
            approved => step.approved,
            ..page_context(auth)
        },
    )
}

/// `GET /device`: the code form (without a session, to the login page,
/// which comes back here). A `?code=` in the URL is never filled in (issue
/// 18): RFC 8628 §5.4 wants the person to type the code their own terminal
/// shows, since a prefilled code turns a phisher's link into a two-click
/// approval of the phisher's login. The page says that the link carried one.
pub async fn get(
    auth: Option<Authenticated>,
    query: Result<Query<DeviceQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let link_code = query
        .ok()
        .and_then(|Query(q)| q.code)
        .is_some_and(|c| !c.is_empty());
    let Some(auth) = auth else {
        let to = format!("/login?next={}", encode_query("/device"));
        return Ok(Redirect::to(&to).into_response());
    };
    page(
        &auth,
        Step {
            link_code,
            ..Step::enter(StatusCode::OK, "")
        },
    )
}

/// Counts a code attempt against the person (by identity) and their
/// address before any lookup; `Err` is the page to answer when either is
/// over the limit. A success gives the attempt back.
async fn reserve_attempt(
    state: &AppState,
    auth: &Authenticated,
    ip: ClientIp,
) -> Result<Result<Reservation, Response>, ApiError> {
    let key = sessions::actor(&auth.user);
    match state.user_code_limiter.reserve(&key, ip.0, Instant::now()) {
        Ok(r) => Ok(Ok(r)),
        Err(limited) => Ok(Err(limited_page(state, auth, ip, limited).await?)),
    }
}

/// A wrong or unusable code: the form again, with why.
fn refused_page(auth: &Authenticated, refusal: CodeRefusal) -> Result<Response, ApiError> {
    let status = match refusal {
        CodeRefusal::Unknown => StatusCode::BAD_REQUEST,
        CodeRefusal::Expired | CodeRefusal::AlreadyDecided => StatusCode::CONFLICT,
    };
    page(auth, Step::enter(status, refusal.message()))
}

/// Only a browser session confirms a device login. An API token that could
/// approve one would mint its own successor, with a fresh lifetime and the
/// same groups, again and again, so `auth.api_token_ttl` would bound nothing
/// (security review 2026-11-24).
fn api_token_refused(auth: &Authenticated) -> Option<Result<Response, ApiError>> {
    (!matches!(auth.via, AuthVia::Session { .. })).then(|| {
        page(
            auth,
            Step::enter(
                StatusCode::FORBIDDEN,
                "Device logins are confirmed in a browser session, not with an API token. Log in to this page in a browser.",
            ),
        )
    })
}

/// The form again, with how long to wait. The first refusal of a window is
/// audited (someone may be guessing codes); later ones are not, so a flood
/// writes one row.
async fn limited_page(
    state: &AppState,
    auth: &Authenticated,
    ip: ClientIp,
    limited: Limited,
) -> Result<Response, ApiError> {
    if limited.first {
        let user = auth.user.clone();
        let source = audit_source(ip.0);
        with_db(state, move |conn| {
            Ok(device::record_code_limit(conn, &user, &source, Utc::now())?)
        })
        .await?;
    }
    let retry_after = limited.retry_after.as_secs().max(1);
    page(
        auth,
        Step::enter(
            StatusCode::TOO_MANY_REQUESTS,
            &format!("Too many wrong codes. Try again in {retry_after} seconds."),
        ),
    )
}

/// `POST /device` (`user_code`, CSRF): the confirmation page of a waiting
/// login. Wrong codes count against the person and their address.
pub async fn post(
    State(state): State<AppState>,
    ip: ClientIp,
    PageForm { auth, fields }: PageForm,
) -> Result<Response, PageError> {
    if let Some(refused) = api_token_refused(&auth) {
        return Ok(refused?);
    }
    let code = fields.non_empty("user_code").unwrap_or_default();
    let reservation = match reserve_attempt(&state, &auth, ip).await? {
        Ok(r) => r,
        Err(limited) => return Ok(limited),
    };
    let found = crate::http::db::with_reader(&state, move |conn| {
        Ok(device::lookup(conn, &code, Utc::now()))
    })
    .await?;
    match found {
        Ok(waiting) => {
            state.user_code_limiter.release(reservation);
            Ok(page(
                &auth,
                Step {
                    step: "confirm",
                    waiting: Some((&waiting, audit_source(ip.0))),
                    ..Step::enter(StatusCode::OK, "")
                },
            )?)
        }
        Err(denied) => Ok(refused_page(&auth, code_refusal(denied)?)?),
    }
}

/// `POST /device/decision` (`user_code`, `decision=approve|deny`, CSRF).
pub async fn decide(
    State(state): State<AppState>,
    ip: ClientIp,
    PageForm { auth, fields }: PageForm,
) -> Result<Response, PageError> {
    if let Some(refused) = api_token_refused(&auth) {
        return Ok(refused?);
    }
    let approve = fields.decision()?;
    let code = fields.non_empty("user_code").unwrap_or_default();
    let reservation = match reserve_attempt(&state, &auth, ip).await? {
        Ok(r) => r,
        Err(limited) => return Ok(limited),
    };
    let user = auth.user.clone();
    let source = audit_source(ip.0);
    let decided = with_writer(&state, move |conn| {
        device::decide(conn, &code, &user, approve, &source, Utc::now())
    })
    .await;
    match decided {
        Ok(waiting) => {
            state.user_code_limiter.release(reservation);
            Ok(page(
                &auth,
                Step {
                    step: "done",
                    waiting: Some((&waiting, audit_source(ip.0))),
                    approved: approve,
                    ..Step::enter(StatusCode::OK, "")
                },
            )?)
        }
        Err(denied) => Ok(refused_page(&auth, code_refusal(denied)?)?),
    }
}

/// The refusal of a denied device-code step; a store failure is an error.
fn code_refusal(denied: Denied<CodeRefusal>) -> Result<CodeRefusal, ApiError> {
    denied
        .into_refusal()
        .map_err(|e| ApiError::Internal(e.into()))
}
