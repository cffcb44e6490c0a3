//! The bastions' endpoints: `GET /api/v1/bastion/revocations` (the revocation
//! feed), `POST /api/v1/sessions` (session records) and
//! `POST /api/v1/bastion/events` (refusal reports). They take only a bastion
//! token (`[[bastions]]`), checked by the [`Bastion`] extractor.

use crate::http::extract::{AppJson, AppQuery};
use axum::Json;
use axum::extract::{FromRequestParts, State};
use axum::http::header;
use axum::http::request::Parts;
use chrono::Utc;
use serde::Deserialize;
use sha2::{Digest as _, Sha256};
use subtle::ConstantTimeEq as _;
use tpa_core::api::{
    BastionEventBatch, BastionEventBatchResult, RevocationFeed, SessionBatch, SessionBatchResult,
};

use crate::app::AppState;
use crate::http::auth::{audit_source, client_ip};
use crate::http::db::{read, run};
use crate::http::error::ApiError;
use crate::workflow::bastion as wf;

/// Longer bearer values are refused without hashing them.
const MAX_TOKEN_LEN: usize = 256;

/// A caller holding one configured bastion's token.
#[derive(Debug, Clone)]
pub struct Bastion {
    /// The bastion's configured name.
    pub name: String,
    /// Its audit source: `bastion:<name>@<ip>`.
    pub source: String,
}

impl FromRequestParts<AppState> for Bastion {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let token = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim)
            .filter(|t| !t.is_empty() && t.len() <= MAX_TOKEN_LEN)
            .ok_or(ApiError::Unauthenticated)?;
        let hash: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        // Compare with every entry (constant time each) so timing says nothing
        // about which one matched.
        let mut found = None;
        for entry in &state.config.bastions {
            if bool::from(entry.token_hash.ct_eq(&hash)) {
                found = Some(entry.name.clone());
            }
        }
        let name = found.ok_or_else(|| {
            tracing::warn!(
                source = audit_source(client_ip(&parts.extensions)),
                "bastion endpoint called without a valid bastion token"
            );
            ApiError::Unauthenticated
        })?;
        let source = format!(
            "bastion:{name}@{}",
            audit_source(client_ip(&parts.extensions))
        );
        Ok(Self { name, source })
    }
}

/// The query of the revocation feed.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FeedQuery {
    /// The cursor of the previous answer.
    since: Option<u64>,
}

/// `GET /api/v1/bastion/revocations[?since=<cursor>]`.
pub async fn revocations(
    State(state): State<AppState>,
    _bastion: Bastion,
    AppQuery(query): AppQuery<FeedQuery>,
) -> Result<Json<RevocationFeed>, ApiError> {
    let now = Utc::now();
    let feed = read(&state, move |conn| {
        wf::revocation_feed(conn, query.since, now)
    })
    .await?;
    Ok(Json(feed))
}

/// `POST /api/v1/sessions`: stores session records; redelivered ones are
/// counted as duplicates.
pub async fn sessions(
    State(state): State<AppState>,
    bastion: Bastion,
    AppJson(body): AppJson<SessionBatch>,
) -> Result<Json<SessionBatchResult>, ApiError> {
    let batch = body;
    let now = Utc::now();
    let result = run(&state, move |conn| {
        wf::record_sessions(conn, &bastion.name, &bastion.source, &batch.records, now)
    })
    .await?;
    Ok(Json(result))
}

/// `POST /api/v1/bastion/events`: stores refusal reports as audit events;
/// redelivered ones are counted as duplicates.
pub async fn events(
    State(state): State<AppState>,
    bastion: Bastion,
    AppJson(body): AppJson<BastionEventBatch>,
) -> Result<Json<BastionEventBatchResult>, ApiError> {
    let batch = body;
    let now = Utc::now();
    let result = run(&state, move |conn| {
        wf::record_events(conn, &bastion.name, &bastion.source, &batch.events, now)
    })
    .await?;
    Ok(Json(result))
}
