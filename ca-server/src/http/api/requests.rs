//! `/api/v1/requests`: submit, list, read, decide, cancel, wait, and get certificates.
//! Handlers parse and authorize; the workflow does the rest (no SQL here).

use crate::http::extract::{AppJson, AppJsonOrEmpty, AppPath, AppQuery};
use crate::refusal::Refusal;
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use serde::Deserialize;
use tpa_core::RequestInput;
use tpa_core::api::{
    ApproveBody, CertificateBody, CertificateResponse, CreateRequestBody, DenyBody, RequestList,
    RequestView, SubmitResponse,
};

use crate::app::AppState;
use crate::http::auth::{Authenticated, ClientIp, audit_source};
use crate::http::csrf::Csrf;
use crate::http::db::read;
use crate::http::error::ApiError;
use crate::http::extract::parse_id;
use crate::store::requests::{Listing, list};
use crate::workflow::requests::{self as wf, WorkflowError};
use crate::workflow::service::narrowing;

impl From<WorkflowError> for ApiError {
    fn from(e: WorkflowError) -> Self {
        match e {
            WorkflowError::Refused { code, message } => ApiError::Refused { code, message },
            WorkflowError::NotFound => ApiError::NotFound,
            WorkflowError::Storage(e) => ApiError::Internal(e.into()),
            WorkflowError::Signing(e) => ApiError::Internal(e.into()),
            WorkflowError::TooManyDecisions { retry_after_secs } => {
                ApiError::TooManyDecisions { retry_after_secs }
            }
        }
    }
}

fn parse_start(start: Option<&str>) -> Result<Option<DateTime<Utc>>, ApiError> {
    start
        .map(|s| {
            DateTime::parse_from_rfc3339(s)
                .map(|t| t.with_timezone(&Utc))
                .map_err(|_| ApiError::Refused {
                    code: Refusal::BadStart,
                    message: format!(
                        "start {:?} is not an RFC 3339 time such as 2026-11-24T09:00:00Z",
                        s.chars().take(40).collect::<String>()
                    ),
                })
        })
        .transpose()
}

/// `POST /api/v1/requests`.
pub async fn create(
    State(state): State<AppState>,
    ip: ClientIp,
    auth: Authenticated,
    Csrf(AppJson(body)): Csrf<AppJson<CreateRequestBody>>,
) -> Result<(StatusCode, Json<SubmitResponse>), ApiError> {
    let input = RequestInput {
        role: body.role,
        hosts: body.hosts,
        duration: body.duration,
        reason: body.reason,
        ticket: body.ticket,
        start: parse_start(body.start.as_deref())?,
        break_glass: body.break_glass,
    };
    let now = Utc::now();
    let services = state.services();
    let submitted = services
        .submit(auth.user, input, audit_source(ip.0), now)
        .await?;
    let status = if submitted.existing {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    Ok((
        status,
        Json(SubmitResponse {
            request: services.view_with_checks(&submitted.request, now).await?,
            existing: submitted.existing,
        }),
    ))
}

/// `?scope=` of the list endpoint.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    /// `mine` (default), `inbox` (requests the caller may decide now) or `all` (approvers see their roles').
    #[serde(default)]
    scope: Option<String>,
}

/// `GET /api/v1/requests?scope=mine|inbox|all`.
pub async fn list_requests(
    State(state): State<AppState>,
    auth: Authenticated,
    AppQuery(query): AppQuery<ListQuery>,
) -> Result<Json<RequestList>, ApiError> {
    let scope = query.scope.unwrap_or_else(|| "mine".to_owned());
    let now = Utc::now();
    let st = state.clone();
    let user = auth.user.clone();
    let requests = read(&state, move |conn| match scope.as_str() {
        "mine" => Ok(list(conn, Listing::Requester(&user.identity), 200)?),
        "inbox" => wf::inbox(conn, &st.config.policy, &user, now),
        "all" => Ok(list(conn, Listing::All, 500)?
            .into_iter()
            .filter(|r| wf::can_view(&st.config.policy, &user, r).is_some())
            .take(200)
            .collect()),
        other => Err(WorkflowError::Refused {
            code: Refusal::BadScope,
            message: format!(
                "scope {:?} is not mine, inbox or all",
                other.chars().take(20).collect::<String>()
            ),
        }),
    })
    .await?;
    let policy = &state.config.policy;
    Ok(Json(RequestList {
        requests: requests
            .iter()
            .map(|r| RequestView::of(r, policy, now))
            .collect(),
    }))
}

/// `GET /api/v1/requests/{id}`.
pub async fn get(
    State(state): State<AppState>,
    auth: Authenticated,
    AppPath(id): AppPath<String>,
) -> Result<Json<RequestView>, ApiError> {
    let id = parse_id(&id)?;
    let st = state.clone();
    let r = read(&state, move |conn| {
        wf::get(conn, &st.config.policy, &auth.user, &id)
    })
    .await?;
    Ok(Json(
        state.services().view_with_checks(&r, Utc::now()).await?,
    ))
}

/// `POST /api/v1/requests/{id}/approve` with optional `{duration, hosts}` to narrow.
pub async fn approve(
    State(state): State<AppState>,
    ip: ClientIp,
    auth: Authenticated,
    AppPath(id): AppPath<String>,
    // An empty body is an approval without narrowing; otherwise it must be
    // a JSON object sent as application/json.
    Csrf(AppJsonOrEmpty(body)): Csrf<AppJsonOrEmpty<ApproveBody>>,
) -> Result<Json<RequestView>, ApiError> {
    let id = parse_id(&id)?;
    let narrowing = narrowing(body.duration.as_deref(), body.hosts.as_deref())?;
    let input = wf::ApproveInput {
        narrowing,
        comment: body.comment,
        seen_content_hash: None,
    };
    let r = state
        .services()
        .approve(auth.user, id, input, audit_source(ip.0))
        .await?;
    Ok(Json(RequestView::of(&r, &state.config.policy, Utc::now())))
}

/// `POST /api/v1/requests/{id}/deny` with `{comment}`.
pub async fn deny(
    State(state): State<AppState>,
    ip: ClientIp,
    auth: Authenticated,
    AppPath(id): AppPath<String>,
    Csrf(AppJson(body)): Csrf<AppJson<DenyBody>>,
) -> Result<Json<RequestView>, ApiError> {
    let id = parse_id(&id)?;
    let r = state
        .services()
        .deny(auth.user, id, body.comment, audit_source(ip.0))
        .await?;
    Ok(Json(RequestView::of(&r, &state.config.policy, Utc::now())))
}

/// `POST /api/v1/requests/{id}/cancel`.
pub async fn cancel(
    State(state): State<AppState>,
    ip: ClientIp,
    auth: Authenticated,
    AppPath(id): AppPath<String>,
    Csrf(()): Csrf<()>,
) -> Result<Json<RequestView>, ApiError> {
    let id = parse_id(&id)?;
    let r = state
        .services()
        .cancel(auth.user, id, audit_source(ip.0))
        .await?;
    Ok(Json(RequestView::of(&r, &state.config.policy, Utc::now())))
}

/// `?timeout=` of the wait endpoint, in seconds (1 to 60, default 30).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WaitQuery {
    #[serde(default)]
    timeout: Option<u64>,
}

/// `GET /api/v1/requests/{id}/wait?timeout=30`: answers as soon as the request
/// is no longer pending (or at the timeout, with the request as it stands).
pub async fn wait(
    State(state): State<AppState>,
    auth: Authenticated,
    AppPath(id): AppPath<String>,
    AppQuery(query): AppQuery<WaitQuery>,
) -> Result<Json<RequestView>, ApiError> {
    let id = parse_id(&id)?;
    let deadline =
        tokio::time::Instant::now() + Duration::from_secs(query.timeout.unwrap_or(30).clamp(1, 60));
    let notify = state.waiters.handle(&id);
    loop {
        // Register before reading, so a decision between the read and the wait is not missed.
        let notified = notify.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        let st = state.clone();
        let (user, rid) = (auth.user.clone(), id.clone());
        let r = read(&state, move |conn| {
            wf::get(conn, &st.config.policy, &user, &rid)
        })
        .await?;
        let now = Utc::now();
        let pending = r.state == tpa_core::RequestState::Pending && now < r.pending_until;
        if !pending || tokio::time::Instant::now() >= deadline {
            return Ok(Json(RequestView::of(&r, &state.config.policy, now)));
        }
        let until_expiry = (r.pending_until - now).to_std().unwrap_or(Duration::ZERO);
        let sleep =
            deadline.min(tokio::time::Instant::now() + until_expiry + Duration::from_millis(50));
        tokio::select! {
            _ = notified => {}
            _ = tokio::time::sleep_until(sleep) => {}
        }
    }
}

/// `POST /api/v1/requests/{id}/certificate` with `{public_key}`.
pub async fn certificate(
    State(state): State<AppState>,
    ip: ClientIp,
    auth: Authenticated,
    AppPath(id): AppPath<String>,
    Csrf(AppJson(body)): Csrf<AppJson<CertificateBody>>,
) -> Result<Json<CertificateResponse>, ApiError> {
    let id = parse_id(&id)?;
    let hook_allowed = state
        .services()
        .hook_at_issuance(&auth.user, &id, &body.public_key, &audit_source(ip.0))
        .await?;
    // Queued for the issuance writer, which signs it inside a batch
    // transaction and answers only after that transaction committed.
    let issued = state
        .issuer
        .issue(crate::workflow::issuance::IssueJob {
            caller: auth.user,
            id,
            public_key: body.public_key,
            source: audit_source(ip.0),
            hook_allowed,
        })
        .await?;
    let cert = &issued.certificate;
    let line = cert
        .to_openssh()
        .map_err(|e| ApiError::Internal(e.into()))?;
    Ok(Json(CertificateResponse {
        certificate: line,
        serial: issued.serial.to_string(),
        key_id: cert.key_id().to_owned(),
        principals: cert.valid_principals().to_vec(),
        valid_after: cert.valid_after(),
        valid_before: cert.valid_before(),
    }))
}

/// `POST /api/v1/requests/{id}/revoke` with `{comment}`: an approver of the
/// role, or an administrator, ends an approved grant now and revokes its certificates.
pub async fn revoke(
    State(state): State<AppState>,
    ip: ClientIp,
    auth: Authenticated,
    AppPath(id): AppPath<String>,
    Csrf(AppJson(body)): Csrf<AppJson<DenyBody>>,
) -> Result<Json<RequestView>, ApiError> {
    let id = parse_id(&id)?;
    let r = state
        .services()
        .revoke(auth.user, id, body.comment, audit_source(ip.0))
        .await?;
    Ok(Json(RequestView::of(&r, &state.config.policy, Utc::now())))
}
