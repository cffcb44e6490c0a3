//! `GET /api/v1/reports/access?since=…&until=…`: the access report as JSON,
//! for administrators (`auth.admin_groups`) and auditors (`[auditors]`). The
//! same report as
//! `tpa-ca report access`.

use crate::http::extract::AppQuery;
use crate::refusal::Refusal;
use axum::Json;
use axum::extract::State;
use chrono::{DateTime, Utc};
use serde::Deserialize;
use tpa_core::api::AccessReport;

use crate::app::AppState;
use crate::http::auth::Authenticated;
use crate::http::db::read;
use crate::http::error::ApiError;
use crate::workflow::capability::ReportReader;
use crate::workflow::report::access_report;

/// The period of the report.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PeriodQuery {
    since: String,
    until: Option<String>,
}

fn time(name: &'static str, value: &str) -> Result<DateTime<Utc>, ApiError> {
    DateTime::parse_from_rfc3339(value)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|_| ApiError::Refused {
            code: Refusal::BadPeriod,
            message: format!("{name} is not an RFC 3339 time such as 2026-11-01T00:00:00Z"),
        })
}

/// `GET /api/v1/reports/access`.
pub async fn access(
    State(state): State<AppState>,
    auth: Authenticated,
    AppQuery(query): AppQuery<PeriodQuery>,
) -> Result<Json<AccessReport>, ApiError> {
    ReportReader::check(&state.config, &auth.user)?;

    let now = Utc::now();
    let since = time("since", &query.since)?;
    let until = query
        .until
        .as_deref()
        .map(|u| time("until", u))
        .transpose()?
        .unwrap_or(now);
    let report = read(&state, move |conn| access_report(conn, since, until, now)).await?;
    Ok(Json(report))
}
