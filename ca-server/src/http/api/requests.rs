//! `/api/v1/requests`: submit, list, read, decide, cancel, wait, and get certificates.
//! Handlers parse and authorize; the workflow does the rest (no SQL here).

use crate::http::extract::{AppJson, AppJsonOrEmpty, AppPath, AppQuery};
use crate::refusal::Refusal;
use std::collections::BTreeSet;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use serde::Deserialize;
use tpa_core::api::{
    ApproveBody, CertificateBody, CertificateResponse, CreateRequestBody, DenyBody, RequestList,
    RequestView, SubmitResponse,
};
use tpa_core::{AccessRequest, HostName, HumanDuration, Narrowing, RequestId, RequestInput, User};

use crate::app::AppState;
use crate::http::auth::{Authenticated, ClientIp, audit_source};
use crate::http::csrf::Csrf;
use crate::http::db::{read, run};
use crate::http::error::ApiError;
use crate::http::extract::parse_id;
use crate::integrations::Prechecks;
use crate::store::requests::{Listing, list};
use crate::workflow::capability::Admin;
use crate::workflow::requests::{self as wf, WorkflowError};

impl From<WorkflowError> for ApiError {
    fn from(e: WorkflowError) -> Self {
        match e {
            WorkflowError::Refused { code, message } => ApiError::Refused { code, message },
            WorkflowError::NotFound => ApiError::NotFound,
            WorkflowError::Storage(e) => ApiError::Internal(e.into()),
            WorkflowError::Signing(e) => ApiError::Internal(e.into()),
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
    let submitted = submit_request(&state, ip.0, auth.user, input, now).await?;
    let status = if submitted.existing {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    Ok((
        status,
        Json(SubmitResponse {
            request: view_with_checks(&state, &submitted.request, now).await?,
            existing: submitted.existing,
        }),
    ))
}

/// Submits a request for `user` and wakes the webhook senders: the one path
/// of the API and the web form.
pub(crate) async fn submit_request(
    state: &AppState,
    ip: Option<IpAddr>,
    user: User,
    input: RequestInput,
    now: DateTime<Utc>,
) -> Result<wf::Submitted, ApiError> {
    crate::http::policy_gate::at_submission(state, ip, &user, &input, now).await?;
    let source = audit_source(ip);
    let prechecks = prechecks(state, &user, &input, now).await?;
    let st = state.clone();
    let submitted = run(state, move |conn| {
        wf::submit_with(
            conn,
            (&st.config.policy, &st.config.workflow),
            &user,
            &input,
            &source,
            now,
            &prechecks,
        )
    })
    .await?;
    state.bell.ring();
    let mut submitted = submitted;
    if !submitted.existing {
        submitted.request =
            crate::http::policy_gate::automated_check(state, submitted.request).await;
    }
    Ok(submitted)
}

/// Asks the on-call and ticket providers what the request's role needs
/// (issue 17), before the submission's transaction; nothing for other roles.
async fn prechecks(
    state: &AppState,
    user: &User,
    input: &RequestInput,
    now: DateTime<Utc>,
) -> Result<Prechecks, ApiError> {
    if !state.integrations.applies_to(input) {
        return Ok(Prechecks::default());
    }
    let (st, who) = (state.clone(), user.clone());
    let email = read(state, move |conn| {
        Ok(crate::integrations::emails::identity_email(
            conn, &st.config, &who,
        )?)
    })
    .await?;
    Ok(state
        .integrations
        .precheck(&state.config.policy, user, email.as_ref(), input, now)
        .await)
}

/// The view of `r` with the checks recorded at its submission.
pub(crate) async fn view_with_checks(
    state: &AppState,
    r: &AccessRequest,
    now: DateTime<Utc>,
) -> Result<RequestView, ApiError> {
    let id = r.id.clone();
    let rows = read(state, move |conn| {
        Ok(crate::store::integrations::checks(conn, &id)?)
    })
    .await?;
    let mut view = RequestView::of(r, &state.config.policy, now);
    view.checks = crate::integrations::check_views(&rows);
    Ok(view)
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
    Ok(Json(view_with_checks(&state, &r, Utc::now()).await?))
}

/// Parses how an approver narrows a request (the API's body and the web form alike).
pub(crate) fn narrowing(
    duration: Option<&str>,
    hosts: Option<&[String]>,
) -> Result<Narrowing, ApiError> {
    let duration = duration
        .map(HumanDuration::parse)
        .transpose()
        .map_err(|e| ApiError::Refused {
            code: Refusal::BadDuration,
            message: e.to_string(),
        })?;
    let hosts = hosts
        .map(|hosts| {
            hosts
                .iter()
                .map(|h| {
                    HostName::canonical(h).map_err(|e| ApiError::Refused {
                        code: Refusal::BadHost,
                        message: e.to_string(),
                    })
                })
                .collect::<Result<BTreeSet<_>, _>>()
        })
        .transpose()?;
    Ok(Narrowing { duration, hosts })
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
    let r = approve_request(&state, ip.0, auth.user, id, input).await?;
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
    let r = deny_request(&state, ip.0, auth.user, id, body.comment).await?;
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
    let r = cancel_request(&state, ip.0, auth.user, id).await?;
    Ok(Json(RequestView::of(&r, &state.config.policy, Utc::now())))
}

/// Approves `id` as `user` (rate-limited; the API and the web form share it).
pub(crate) async fn approve_request(
    state: &AppState,
    ip: Option<IpAddr>,
    user: User,
    id: RequestId,
    input: wf::ApproveInput,
) -> Result<AccessRequest, ApiError> {
    let r = run_decision(
        state,
        ip,
        user,
        id,
        move |st, conn, user, id, source, now| {
            wf::approve(
                conn,
                &st.config.policy,
                &st.identities,
                user,
                id,
                input,
                source,
                now,
            )
            .map(|(r, _)| r)
        },
    )
    .await?;
    // The stage just completed may open the automated check.
    Ok(crate::http::policy_gate::automated_check(state, r).await)
}

/// Denies `id` as `user` with `comment` (rate-limited; shared like [`approve_request`]).
pub(crate) async fn deny_request(
    state: &AppState,
    ip: Option<IpAddr>,
    user: User,
    id: RequestId,
    comment: String,
) -> Result<AccessRequest, ApiError> {
    run_decision(
        state,
        ip,
        user,
        id,
        move |st, conn, user, id, source, now| {
            wf::deny(conn, &st.config.policy, user, id, &comment, source, now)
        },
    )
    .await
}

/// Clears the post-incident review of a break-glass grant (rate-limited like
/// every decision; shared by the API and the web form).
pub(crate) async fn review_request(
    state: &AppState,
    ip: Option<IpAddr>,
    user: User,
    id: RequestId,
    comment: String,
) -> Result<AccessRequest, ApiError> {
    run_decision(
        state,
        ip,
        user,
        id,
        move |st, conn, user, id, source, now| {
            wf::review_break_glass(conn, &st.config.policy, user, id, &comment, source, now)
        },
    )
    .await
}

/// An approver of the role, or an administrator, revokes `id`: the grant ends
/// and its certificates are revoked (rate-limited like every decision).
pub(crate) async fn revoke_request(
    state: &AppState,
    ip: Option<IpAddr>,
    user: User,
    id: RequestId,
    comment: String,
) -> Result<AccessRequest, ApiError> {
    run_decision(
        state,
        ip,
        user,
        id,
        move |st, conn, user, id, source, now| {
            crate::workflow::grants::revoke_grant(
                conn,
                &st.config.policy,
                user,
                Admin::check(&st.config, user),
                id,
                &comment,
                &st.signer.fingerprint(),
                source,
                now,
            )
        },
    )
    .await
}

/// The requester cancels `id` (rate-limited; shared like [`approve_request`]).
pub(crate) async fn cancel_request(
    state: &AppState,
    ip: Option<IpAddr>,
    user: User,
    id: RequestId,
) -> Result<AccessRequest, ApiError> {
    run_decision(
        state,
        ip,
        user,
        id,
        move |st, conn, user, id, source, now| {
            wf::cancel(conn, &st.config.policy, user, id, source, now)
        },
    )
    .await
}

/// Checks the decision rate limit, runs a decision, then wakes waiting
/// clients and webhook senders. Every decision of the API and the web pages
/// passes here.
async fn run_decision(
    state: &AppState,
    ip: Option<IpAddr>,
    user: User,
    id: RequestId,
    f: impl FnOnce(
        &AppState,
        &mut rusqlite::Connection,
        &User,
        &RequestId,
        &str,
        DateTime<Utc>,
    ) -> Result<AccessRequest, WorkflowError>
    + Send
    + 'static,
) -> Result<AccessRequest, ApiError> {
    let key = format!("{}\n{}", user.identity.issuer(), user.identity.subject());
    state
        .decision_limiter
        .check_and_record(&key, Instant::now())
        .map_err(|wait| ApiError::TooManyDecisions {
            retry_after_secs: wait.as_secs().max(1),
        })?;
    let source = audit_source(ip);
    let now = Utc::now();
    let st = state.clone();
    let wake_id = id.clone();
    let r = run(state, move |conn| f(&st, conn, &user, &id, &source, now)).await;
    // A refusal may have committed an expiry; waking is harmless either way.
    state.waiters.wake(&wake_id);
    state.bell.ring();
    r
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
    let hook_allowed =
        crate::http::policy_gate::at_issuance(&state, ip.0, &auth.user, &id, &body.public_key)
            .await?;
    // Queued for the issuance writer, which signs it inside a batch
    // transaction and answers only after that transaction committed.
    let issued = state
        .issuer
        .issue(wf::IssueJob {
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
    let r = revoke_request(&state, ip.0, auth.user, id, body.comment).await?;
    Ok(Json(RequestView::of(&r, &state.config.policy, Utc::now())))
}
