//! The auditor's read-only JSON endpoints: `GET /api/v1/audit`,
//! `/api/v1/certificates`, `/api/v1/sessions` and
//! `/api/v1/requests/{id}/timeline`. Only callers in an `[auditors]` group
//! get an answer (`403 not_auditor` otherwise); nothing here writes.

use crate::http::extract::{AppPath, query};
use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{FromRequestParts, Query, State};
use axum::http::request::Parts;
use chrono::Utc;
use tpa_core::api::{AuditPage, AuditQuery, CertificateList, ListQuery, SessionList, Timeline};

use crate::app::AppState;
use crate::http::auth::Authenticated;
use crate::http::db::read;
use crate::http::error::ApiError;
use crate::http::extract::parse_id;
use crate::workflow::audit_views::{self as av, Auditor};

/// A caller who may read the audit trail. Extracting it fails with 401
/// without a credential and `403 not_auditor` for anyone else.
#[derive(Debug, Clone)]
pub struct AuditorCaller(pub Auditor);

impl FromRequestParts<AppState> for AuditorCaller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let auth = Authenticated::from_request_parts(parts, state).await?;
        Ok(Self(Auditor::check(&state.config.auditors, &auth.user)?))
    }
}

/// `GET /api/v1/audit?user=&role=&host=&action=&from=&to=&before=&limit=`.
pub async fn log(
    State(state): State<AppState>,
    AuditorCaller(auditor): AuditorCaller,
    q: Result<Query<AuditQuery>, QueryRejection>,
) -> Result<Json<AuditPage>, ApiError> {
    let (filter, limit) = av::audit_filter(&query(q)?)?;
    let page = read(&state, move |conn| {
        av::audit_log(conn, &auditor, &filter, limit)
    })
    .await?;
    Ok(Json(page))
}

/// `GET /api/v1/certificates?request=&before=&limit=`.
pub async fn certificates(
    State(state): State<AppState>,
    AuditorCaller(auditor): AuditorCaller,
    q: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Json<CertificateList>, ApiError> {
    let (request, before, limit) = av::list_filter(&query(q)?)?;
    let list = read(&state, move |conn| {
        av::certificates(conn, &auditor, request.as_ref(), before, limit)
    })
    .await?;
    Ok(Json(list))
}

/// `GET /api/v1/sessions?request=&before=&limit=`.
pub async fn sessions(
    State(state): State<AppState>,
    AuditorCaller(auditor): AuditorCaller,
    q: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Json<SessionList>, ApiError> {
    let (request, before, limit) = av::list_filter(&query(q)?)?;
    let list = read(&state, move |conn| {
        av::sessions(conn, &auditor, request.as_ref(), before, limit)
    })
    .await?;
    Ok(Json(list))
}

/// `GET /api/v1/requests/{id}/timeline`.
pub async fn timeline(
    State(state): State<AppState>,
    AuditorCaller(auditor): AuditorCaller,
    AppPath(id): AppPath<String>,
) -> Result<Json<Timeline>, ApiError> {
    let id = parse_id(&id)?;
    let st = state.clone();
    let timeline = read(&state, move |conn| {
        av::timeline(conn, &auditor, &st.config.policy, &id, Utc::now())
    })
    .await?;
    Ok(Json(timeline))
}
