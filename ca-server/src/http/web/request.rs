//! `GET /requests/{id}` (the detail page, with the decision forms the viewer
//! may use) and its form posts `approve`, `deny`, `cancel` and `revoke`. The posts call
//! the same functions as the JSON API (`http::requests`), so the rules, the
//! audit trail, the rate limit and the wake-ups are the same; a refusal shows
//! the page again with the message and the API's status.

use crate::http::extract::{AppPath, AppQuery};
use crate::refusal::Refusal;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use chrono::Utc;
use minijinja::context;
use tpa_core::{AccessRequest, RequestId, RequestState};

use super::page_user::{PageForm, PageUser};
use super::{PageError, page_context, render_status, request_value};
use crate::app::AppState;
use crate::http::auth::{Authenticated, ClientIp, audit_source};
use crate::http::db::read;
use crate::http::error::ApiError;
use crate::http::extract::parse_id;
use crate::workflow::approvers::{self, StageLine};
use crate::workflow::capability::Admin;
use crate::workflow::requests as wf;
use crate::workflow::service::narrowing;

/// The request, its stages as the page shows them, and when it last changed.
type Loaded = (AccessRequest, Vec<StageLine>, Option<String>);

async fn load(state: &AppState, auth: &Authenticated, id: &RequestId) -> Result<Loaded, ApiError> {
    let st = state.clone();
    let (user, id) = (auth.user.clone(), id.clone());
    let admin = Admin::check(&state.config, &user);
    read(state, move |conn| {
        let r = wf::get_for_page(conn, &st.config.policy, &user, admin, &id)?;
        let stages = approvers::stage_lines(conn, &st.config, &r)?;
        let changed = crate::store::requests::updated_at(conn, &id)?;
        Ok((r, stages, changed))
    })
    .await
}

/// What the page says right after the viewer decided (`?decided=…`); only
/// what the stored request confirms.
fn banner(
    r: &AccessRequest,
    user: &tpa_core::User,
    decided: Option<&str>,
    policy: &tpa_core::Policy,
) -> Option<String> {
    match decided? {
        "approve" if r.approvals.iter().any(|a| a.approver == user.identity) => {
            Some(match r.state {
                RequestState::Approved => "You approved. The request is approved.".to_owned(),
                RequestState::Pending => match policy.role(&r.role).and_then(|role| {
                    r.open_stage(role)
                        .and_then(|(i, n)| role.stages.get(i).map(|s| (n, s.group.to_string())))
                }) {
                    Some((1, group)) => {
                        format!("You approved. Waiting for 1 approval from {group}.")
                    }
                    Some((n, group)) => {
                        format!("You approved. Waiting for {n} approvals from {group}.")
                    }
                    None => "You approved.".to_owned(),
                },
                _ => "You approved.".to_owned(),
            })
        }
        "deny"
            if r.state == RequestState::Denied && r.decided_by.as_ref() == Some(&user.identity) =>
        {
            Some("You denied this request.".to_owned())
        }
        _ => None,
    }
}

/// The detail page of `id` with `status` and an optional refusal message.
async fn page(
    state: &AppState,
    auth: &Authenticated,
    id: &RequestId,
    status: StatusCode,
    error: Option<&str>,
    decided: Option<&str>,
) -> Result<Response, PageError> {
    let (r, stages, changed) = load(state, auth, id).await?;
    let now = Utc::now();
    let policy = &state.config.policy;
    let user = &auth.user;
    let may_decide = wf::may_decide(policy, user, &r, now);
    let is_requester = r.is_requester(user, policy.people());
    let banner = banner(&r, user, decided, policy);
    let decided_by = r.decided_by.as_ref().map(|d| {
        if d.issuer() == tpa_core::identity::LOCAL_ISSUER {
            d.subject().to_owned()
        } else {
            d.to_string()
        }
    });
    let may_cancel = is_requester
        && match r.state {
            RequestState::Pending => now < r.pending_until,
            RequestState::Approved => r.window.is_none_or(|w| now < w.end),
            _ => false,
        };
    // Approvers of the role and administrators may end an active grant.
    let may_revoke = r.state == RequestState::Approved
        && r.window.is_some_and(|w| now < w.end)
        && (Admin::check(&state.config, user).is_some()
            || wf::role_approver(policy, user, &r).is_some());
    let hosts: Vec<&str> = r.hosts.iter().map(|h| h.as_str()).collect();
    let checks = state.services().view_with_checks(&r, now).await?.checks;
    Ok(render_status(
        status,
        "request.html",
        context! {
            req => request_value(&r, policy, now),
            hosts => hosts,
            may_decide => may_decide,
            may_cancel => may_cancel,
            may_revoke => may_revoke,
            is_requester => is_requester,
            stages => stages,
            banner => banner,
            decided_by => decided_by,
            decided_at => changed,
            error => error,
            checks => checks,
            ..page_context(auth)
        },
    )?)
}

/// `GET /requests/{id}`: 404 unless the viewer is the requester or an approver of the role.
pub async fn get(
    State(state): State<AppState>,
    PageUser(auth): PageUser,
    AppPath(id): AppPath<String>,
    AppQuery(query): AppQuery<PageQuery>,
) -> Result<Response, PageError> {
    let id = parse_id(&id)?;
    page(
        &state,
        &auth,
        &id,
        StatusCode::OK,
        None,
        query.decided.as_deref(),
    )
    .await
}

/// `?decided=approve|deny`, set by the redirect after a decision.
#[derive(Debug, Default, serde::Deserialize)]
pub struct PageQuery {
    decided: Option<String>,
}

/// After a decision: 303 to the detail page, or the page again with the refusal.
async fn answer(
    state: &AppState,
    auth: &Authenticated,
    id: &RequestId,
    result: Result<AccessRequest, ApiError>,
) -> Result<Response, PageError> {
    answer_as(state, auth, id, result, None).await
}

/// Like [`answer`]; after a decision `decided` names it for the banner.
async fn answer_as(
    state: &AppState,
    auth: &Authenticated,
    id: &RequestId,
    result: Result<AccessRequest, ApiError>,
    decided: Option<&str>,
) -> Result<Response, PageError> {
    match result {
        Ok(_) => {
            let query = decided.map(|d| format!("?decided={d}")).unwrap_or_default();
            Ok(Redirect::to(&format!("/requests/{id}{query}")).into_response())
        }
        Err(ApiError::Refused { code, message }) => {
            page(state, auth, id, code.status(), Some(&message), None).await
        }
        Err(other) => Err(other.into()),
    }
}

/// `POST /requests/{id}/approve`: form `csrf_token`, optional `duration`
/// (shorter), and when `host_choice` is present the `hosts` to keep.
pub async fn approve(
    State(state): State<AppState>,
    ip: ClientIp,
    AppPath(id): AppPath<String>,
    PageForm { auth, fields }: PageForm,
) -> Result<Response, PageError> {
    let id = parse_id(&id)?;
    let duration = fields.non_empty("duration");
    let hosts = fields.get("host_choice").map(|_| fields.all("hosts"));
    let result = match narrowing(duration.as_deref(), hosts.as_deref()) {
        Ok(narrowing) => {
            let input = wf::ApproveInput {
                narrowing,
                comment: fields.non_empty("comment").unwrap_or_default(),
                seen_content_hash: None,
            };
            let source = audit_source(ip.0);
            state
                .services()
                .approve(auth.user.clone(), id.clone(), input, source)
                .await
        }
        Err(e) => Err(e),
    }
    .map_err(ApiError::from);
    answer_as(&state, &auth, &id, result, Some("approve")).await
}

/// `POST /requests/{id}/deny`: form `csrf_token`, `comment`.
pub async fn deny(
    State(state): State<AppState>,
    ip: ClientIp,
    AppPath(id): AppPath<String>,
    PageForm { auth, fields }: PageForm,
) -> Result<Response, PageError> {
    let id = parse_id(&id)?;
    let comment = fields.text("comment");
    let result = state
        .services()
        .deny(auth.user.clone(), id.clone(), comment, audit_source(ip.0))
        .await
        .map_err(ApiError::from);
    answer_as(&state, &auth, &id, result, Some("deny")).await
}

/// `POST /requests/{id}/cancel`: form `csrf_token`; the requester only.
pub async fn cancel(
    State(state): State<AppState>,
    ip: ClientIp,
    AppPath(id): AppPath<String>,
    PageForm { auth, .. }: PageForm,
) -> Result<Response, PageError> {
    let id = parse_id(&id)?;
    let result = state
        .services()
        .cancel(auth.user.clone(), id.clone(), audit_source(ip.0))
        .await
        .map_err(ApiError::from);
    answer(&state, &auth, &id, result).await
}

/// `POST /requests/{id}/revoke`: form `csrf_token`, `comment` (the reason) and
/// `confirm` (the confirmation checkbox); approvers of the role and administrators.
pub async fn revoke(
    State(state): State<AppState>,
    ip: ClientIp,
    AppPath(id): AppPath<String>,
    PageForm { auth, fields }: PageForm,
) -> Result<Response, PageError> {
    let id = parse_id(&id)?;
    let result = if fields.get("confirm") == Some("yes") {
        let comment = fields.text("comment");
        let source = audit_source(ip.0);
        state
            .services()
            .revoke(auth.user.clone(), id.clone(), comment, source)
            .await
            .map_err(ApiError::from)
    } else {
        Err(ApiError::Refused {
            code: Refusal::ConfirmRequired,
            message: "tick the confirmation box: revoking ends the access and revokes every \
                      certificate of this request, and cannot be undone"
                .to_owned(),
        })
    };
    answer(&state, &auth, &id, result).await
}
