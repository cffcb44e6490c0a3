//! `GET /healthz`: 200 when the CA can read AND write and sign, 503 otherwise:
//! the database opens and reads, the last write committed (or none failed
//! yet; the write probe keeps this fresh), no write has waited too long for
//! the writer, the disk has room, the CA key is usable.
//! Each OpenID Connect provider has its own check (`oidc:<name>`); one that
//! is down makes the status `degraded` but not 503: certificates, local
//! accounts and existing sessions still work.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use tpa_core::api::{Health, HealthCheck};

use crate::app::AppState;
use crate::app::availability::Availability;

/// Checks the database (opened afresh), the write health, the disk and the
/// CA key file on every call.
pub async fn get(State(state): State<AppState>) -> (StatusCode, Json<Health>) {
    let db_path = state.database_path.clone();
    let signer = state.signer.clone();
    let (db, connections) = (state.database.clone(), state.connections.clone());
    let health_config = state.config.health.clone();
    let write_deadline = state.config.write_deadline;
    let checks = tokio::task::spawn_blocking(move || {
        let availability = Availability::read(&db, &db_path, &connections);
        let database = db.check_health(&db_path, write_deadline);
        let key = signer.check_key_file();
        if let Err(e) = &database {
            tracing::warn!(error = %e, "health: database unusable");
        }
        if let Err(e) = &key {
            tracing::warn!(error = %e, "health: CA key unusable");
        }
        let mut checks = vec![
            check(
                "database",
                database.is_ok(),
                "database cannot be opened or read",
            ),
            check(
                "ca_key",
                key.is_ok(),
                "CA key file is missing or has unsafe permissions",
            ),
        ];
        checks.extend(availability.checks(&health_config));
        checks
    })
    .await
    .unwrap_or_else(|_| vec![check("health_check", false, "health check failed")]);
    let ok = checks.iter().all(|c| c.ok);
    let mut checks = checks;
    let mut providers_ok = true;
    for connector in state.identities.oidc_connectors() {
        let up = connector.check().await;
        providers_ok &= up;
        checks.push(check(
            &format!("oidc:{}", connector.config.name),
            up,
            "the OpenID provider cannot be reached or its discovery document is unusable",
        ));
    }
    // Issue 16: a directory that cannot be asked fails logins and decisions
    // of its users closed; the CA itself stays up (degraded).
    for connector in state.identities.ldap_connectors() {
        let result = connector.check().await;
        if let Err(e) = &result {
            tracing::warn!(connector = %connector.config.name, error = %e, "health: directory unreachable");
        }
        providers_ok &= result.is_ok();
        checks.push(check(
            &format!("ldap:{}", connector.config.name),
            result.is_ok(),
            "the directory cannot be reached, refused the service account or TLS; its users cannot log in, approve or get certificates",
        ));
    }
    let status = if ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let health = Health {
        status: match (ok, providers_ok) {
            (true, true) => "ok",
            (true, false) => "degraded",
            (false, _) => "unavailable",
        }
        .to_owned(),
        checks,
    };
    (status, Json(health))
}

fn check(name: &str, ok: bool, detail: &str) -> HealthCheck {
    HealthCheck {
        name: name.to_owned(),
        ok,
        detail: (!ok).then(|| detail.to_owned()),
    }
}
