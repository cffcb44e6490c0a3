//! The consent page of `tpa-ssh login` (loopback): `GET /cli/consent/{id}`
//! shows what is being authorised (a CLI login as you, the loopback port, the
//! address it was started from, the expiry) and `POST /cli/consent`
//! (`consent`, `decision=approve|deny`, CSRF) decides it; only then does the
//! browser continue to the CLI's loopback listener, with a one-time code or
//! `error=access_denied`. See [`crate::auth::consent`].

use crate::http::extract::AppPath;
use std::time::Instant;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use chrono::Utc;
use minijinja::{Value, context};

use super::page_user::PageForm;
use super::{PageError, page_context, render_status};
use crate::app::AppState;
use crate::auth::consent::{self, Consent, ConsentRefusal};
use crate::auth::oidc_login::CliTarget;
use crate::auth::rate_limit::Limited;
use crate::http::auth::{AuthVia, Authenticated, ClientIp, audit_source};
use crate::http::db::{with_db, with_reader, with_writer};
use crate::http::error::ApiError;
use crate::store::audited::Denied;

fn consent_value(c: &Consent) -> Value {
    context! {
        port => c.port,
        redirect_uri => c.redirect_uri.clone(),
        client_source => c.client_source.clone(),
        created_at => c.created_at.clone(),
        expires_at => c.expires_at.clone(),
        phrase => c.phrase.clone(),
    }
}

/// The consent pages carry a one-time id or code: never cached.
fn no_store(mut response: Response) -> Response {
    response.headers_mut().insert(
        axum::http::header::CACHE_CONTROL,
        axum::http::HeaderValue::from_static("no-store"),
    );
    response
}

fn refused(auth: &Authenticated, refusal: ConsentRefusal) -> Result<Response, ApiError> {
    let status = match refusal {
        ConsentRefusal::Unknown | ConsentRefusal::OtherSession => StatusCode::FORBIDDEN,
        ConsentRefusal::Expired | ConsentRefusal::AlreadyDecided => StatusCode::CONFLICT,
    };
    render_status(
        status,
        "cli_consent.html",
        context! {
            step => "refused",
            error => refusal.message(),
            ..page_context(auth)
        },
    )
}

/// The web session's public id, when `auth` is a web session (consents are
/// bound to one; an API token never decides one).
fn session_id(auth: &Authenticated) -> Option<String> {
    matches!(auth.via, AuthVia::Session { .. }).then(|| auth.token_id.clone())
}

/// Holds `user`'s identity for the CLI login `target`, bound to the web
/// session `session_id`; the path of its consent page.
pub(crate) async fn hold(
    state: &AppState,
    user: tpa_core::User,
    session_id: String,
    target: CliTarget,
) -> Result<Result<String, Response>, ApiError> {
    let source = target.started_from.clone();
    let held = with_db(state, move |conn| {
        Ok(consent::hold(
            conn,
            &user,
            &session_id,
            &target,
            &source,
            Utc::now(),
        )?)
    })
    .await?;
    match held {
        Some(id) => Ok(Ok(format!("/cli/consent/{id}"))),
        None => Ok(Err(super::login_error(
            StatusCode::SERVICE_UNAVAILABLE,
            "too_many_logins",
            "Too many logins are in progress. Try again in a few minutes.",
        )?)),
    }
}

/// `GET /cli/consent/{id}`: the consent page, for the web session it was made for.
pub async fn get(
    State(state): State<AppState>,
    auth: Option<Authenticated>,
    AppPath(id): AppPath<String>,
) -> Result<Response, PageError> {
    let Some(auth) = auth else {
        return Ok(super::login_error(
            StatusCode::FORBIDDEN,
            "cli_consent_refused",
            ConsentRefusal::OtherSession.message(),
        )?);
    };
    let Some(session) = session_id(&auth) else {
        return Ok(refused(&auth, ConsentRefusal::OtherSession)?);
    };
    let user = auth.user.clone();
    let lookup_id = id.clone();
    let found = with_reader(&state, move |conn| {
        Ok(consent::lookup(
            conn,
            &lookup_id,
            &session,
            &user,
            Utc::now(),
        ))
    })
    .await?;
    match found {
        Ok(consent) => Ok(no_store(render_status(
            StatusCode::OK,
            "cli_consent.html",
            context! {
                step => "confirm",
                error => "",
                id => id,
                consent => consent_value(&consent),
                ..page_context(&auth)
            },
        )?)),
        Err(denied) => Ok(refused(&auth, store_refusal(denied)?)?),
    }
}

/// `POST /cli/consent` (`consent`, `decision=approve|deny`, CSRF): decides
/// once; then a page that continues to the CLI's loopback listener (a page,
/// not a redirect: the pages' `form-action 'self'` would block a redirect
/// to another origin after a form post).
pub async fn post(
    State(state): State<AppState>,
    ip: ClientIp,
    PageForm { auth, fields }: PageForm,
) -> Result<Response, PageError> {
    let approve = fields.decision()?;
    let Some(session) = session_id(&auth) else {
        return Ok(refused(&auth, ConsentRefusal::OtherSession)?);
    };
    // Refused decisions are audited; counted per person and address like
    // wrong device codes, so one logged-in person cannot fill the audit
    // trail with them (security review 2026-11-24).
    let reservation = match state.user_code_limiter.reserve(
        &crate::auth::sessions::actor(&auth.user),
        ip.0,
        Instant::now(),
    ) {
        Ok(r) => r,
        Err(limited) => return Ok(limited_page(&auth, limited)?),
    };
    let id = fields.non_empty("consent").unwrap_or_default();
    let user = auth.user.clone();
    let source = audit_source(ip.0);
    let decided = with_writer(&state, move |conn| {
        consent::decide(conn, &id, &session, &user, approve, &source, Utc::now())
    })
    .await;
    match decided {
        Ok(decided) => {
            state.user_code_limiter.release(reservation);
            Ok(no_store(render_status(
                StatusCode::OK,
                "cli_consent.html",
                context! {
                    step => "done",
                    error => "",
                    approved => decided.approved,
                    continue_to => decided.continue_to,
                    consent => consent_value(&decided.consent),
                    ..page_context(&auth)
                },
            )?))
        }
        Err(denied) => Ok(refused(&auth, store_refusal(denied)?)?),
    }
}

/// Too many refused decisions from this person or address: nothing is
/// read or written until the window allows again.
fn limited_page(auth: &Authenticated, limited: Limited) -> Result<Response, ApiError> {
    let secs = limited.retry_after.as_secs().max(1);
    let mut response = render_status(
        StatusCode::TOO_MANY_REQUESTS,
        "cli_consent.html",
        context! {
            step => "refused",
            error => format!("Too many refused tpa-ssh logins. Try again in {secs} seconds."),
            ..page_context(auth)
        },
    )?;
    response.headers_mut().insert(
        axum::http::header::RETRY_AFTER,
        axum::http::HeaderValue::from(secs),
    );
    Ok(response)
}

/// `GET /cli/login` in a browser that already has a web session: straight
/// to the consent page, without a new login at the provider.
pub(crate) async fn from_session(
    state: &AppState,
    auth: &Authenticated,
    target: CliTarget,
) -> Result<Option<Response>, ApiError> {
    let Some(session) = session_id(auth) else {
        return Ok(None);
    };
    Ok(Some(
        match hold(state, auth.user.clone(), session, target).await? {
            Ok(path) => Redirect::to(&path).into_response(),
            Err(page) => page,
        },
    ))
}

/// The refusal of a denied consent step; a store failure is an error.
fn store_refusal(denied: Denied<ConsentRefusal>) -> Result<ConsentRefusal, ApiError> {
    denied
        .into_refusal()
        .map_err(|e| ApiError::Internal(e.into()))
}
