//! `GET /metrics` (Prometheus text format). Open to loopback clients unless
//! `[metrics] open_to_loopback = false`; others need the bearer token of
//! `[metrics] token_file`. The numbers hold no personal data.

use crate::refusal::Refusal;
use axum::extract::State;
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use subtle::ConstantTimeEq as _;

use crate::app::AppState;
use crate::config::MetricsConfig;
use crate::http::auth::ClientIp;
use crate::http::db::with_reader;
use crate::http::error::ApiError;

/// Whether a scrape from `ip` with these headers may read the metrics.
fn allowed(config: &MetricsConfig, ip: Option<std::net::IpAddr>, headers: &HeaderMap) -> bool {
    if let Some(token) = &config.token {
        let sent = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim);
        if let Some(sent) = sent {
            return bool::from(sent.as_bytes().ct_eq(token.as_bytes()));
        }
    }
    config.open_to_loopback && ip.is_some_and(|ip| ip.is_loopback())
}

/// `GET /metrics`.
pub async fn get(
    State(state): State<AppState>,
    ip: ClientIp,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    if !allowed(&state.config.metrics, ip.0, &headers) {
        return Err(ApiError::Refused {
            code: Refusal::MetricsForbidden,
            message: "metrics are served to loopback clients and to scrapers with the [metrics] token_file bearer token".to_owned(),
        });
    }
    let config = state.config.clone();
    let snapshot = with_reader(&state, move |conn| {
        Ok(crate::app::metrics::collect(conn, &config)?)
    })
    .await?;
    let mut body = crate::app::metrics::Exposition::default();
    crate::app::metrics::render(
        &mut body,
        &snapshot,
        crate::app::metrics::resident_memory(),
        crate::app::metrics::open_fds(),
    );
    let (db, connections) = (state.database.clone(), state.connections.clone());
    let path = state.database_path.clone();
    let signer = state.signer.clone();
    let write_deadline = state.config.write_deadline;
    let (availability, database_ok, key_ok) = tokio::task::spawn_blocking(move || {
        (
            crate::app::availability::Availability::read(&db, &path, &connections),
            db.check_health(&path, write_deadline).is_ok(),
            signer.check_key_file().is_ok(),
        )
    })
    .await
    .map_err(|e| ApiError::Internal(e.into()))?;
    availability.render(&mut body);
    // The two checks of /healthz that alerting rules watch (docs/prometheus-alerts.yml).
    for (name, help, ok) in [
        (
            "tpa_database_ok",
            "1 when the database opens and reads (as /healthz checks it), else 0.",
            database_ok,
        ),
        (
            "tpa_ca_key_ok",
            "1 when the CA key file is present with safe permissions (as /healthz checks it), else 0.",
            key_ok,
        ),
    ] {
        body.gauge(name, help, i64::from(ok));
    }
    Ok((
        [(
            header::CONTENT_TYPE,
            crate::app::metrics::Exposition::CONTENT_TYPE,
        )],
        body.text(),
    )
        .into_response())
}
