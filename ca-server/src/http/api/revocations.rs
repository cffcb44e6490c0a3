//! `POST /api/v1/revocations`: an administrator (a member of
//! `auth.admin_groups`) revokes by certificate serial, request, user or CA
//! key, with a reason. Approvers revoke their roles' grants through
//! `POST /api/v1/requests/{id}/revoke`.

use crate::http::extract::AppJson;
use crate::refusal::Refusal;
use std::time::Instant;

use axum::Json;
use axum::extract::State;
use chrono::Utc;
use tpa_core::api::{RevokeBody, RevokeResponse};

use crate::app::AppState;
use crate::http::auth::{Authenticated, ClientIp, audit_source};
use crate::http::csrf::Csrf;
use crate::http::db::run;
use crate::http::error::ApiError;
use crate::workflow::capability::Admin;
use crate::workflow::revocation::{self, Revoker, Target};

fn target(body: &RevokeBody) -> Result<Target, ApiError> {
    let given: Vec<(&str, &str)> = [
        ("serial", body.serial.as_deref()),
        ("request", body.request.as_deref()),
        ("user", body.user.as_deref()),
        ("ca_key", body.ca_key.as_deref()),
    ]
    .into_iter()
    .filter_map(|(k, v)| v.map(|v| (k, v)))
    .collect();
    match given.as_slice() {
        [(kind, value)] => Ok(Target::parse(kind, value)?),
        _ => Err(ApiError::Refused {
            code: Refusal::BadTarget,
            message: "give exactly one of serial, request, user or ca_key".to_owned(),
        }),
    }
}

/// `POST /api/v1/revocations` with `{serial|request|user|ca_key, reason}`.
pub async fn create(
    State(state): State<AppState>,
    ip: ClientIp,
    auth: Authenticated,
    Csrf(AppJson(body)): Csrf<AppJson<RevokeBody>>,
) -> Result<Json<RevokeResponse>, ApiError> {
    let target = target(&body)?;
    let key = format!(
        "{}\n{}",
        auth.user.identity.issuer(),
        auth.user.identity.subject()
    );
    // Before the admin check, so that refusals (each one audited) are bounded too.
    state
        .decision_limiter
        .check_and_record(&key, Instant::now())
        .map_err(|wait| ApiError::TooManyDecisions {
            retry_after_secs: wait.as_secs().max(1),
        })?;
    let by = Revoker::user(&auth.user, &audit_source(ip.0));
    if Admin::check(&state.config, &auth.user).is_none() {
        let message = "only administrators (auth.admin_groups) revoke by serial, user or CA key; \
                       approvers revoke their roles' grants with POST /api/v1/requests/{id}/revoke";
        let t = target.clone();
        run(&state, move |conn| {
            revocation::audit_refusal(
                conn,
                &by,
                &t,
                Refusal::NotAdmin,
                message,
                &body.reason,
                Utc::now(),
            )
        })
        .await?;
        return Err(ApiError::Refused {
            code: Refusal::NotAdmin,
            message: message.to_owned(),
        });
    }
    let st = state.clone();
    let t = target.clone();
    let done = run(&state, move |conn| {
        revocation::revoke(
            conn,
            &st.config.policy,
            &by,
            &t,
            &body.reason,
            &st.signer.fingerprint(),
            Utc::now(),
        )
    })
    .await?;
    for id in &done.requests {
        if let Ok(id) = tpa_core::RequestId::parse(id) {
            state.waiters.wake(&id);
        }
    }
    state.bell.ring();
    let kind = match &target {
        Target::Serial(_) => "serial",
        Target::Request(_) => "request",
        Target::User(_) => "user",
        Target::CaKey(_) => "ca_key",
    };
    Ok(Json(RevokeResponse {
        kind: kind.to_owned(),
        target: target.value(),
        certificates_revoked: u64::try_from(done.certificates).unwrap_or(u64::MAX),
        requests_ended: done.requests,
        already_revoked: done.already,
        krl_version: u64::try_from(done.krl_version).unwrap_or(0),
    }))
}
