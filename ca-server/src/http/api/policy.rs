//! `GET /api/v1/policy/explain?role=…&host=…[&for=…]`: the caller's own
//! policy explanation (the same function as `tpa-ca policy explain`).

use axum::Json;
use axum::extract::State;
use chrono::Utc;
use serde::Deserialize;
use tpa_core::api::ExplainView;

use crate::app::AppState;
use crate::http::auth::Authenticated;
use crate::http::db::read;
use crate::http::error::ApiError;
use crate::http::extract::AppQuery;
use crate::workflow::explain::explain as explain_for;

/// What to explain.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExplainQuery {
    role: String,
    host: String,
    #[serde(rename = "for")]
    duration: Option<String>,
}

/// `GET /api/v1/policy/explain`.
pub async fn explain(
    State(state): State<AppState>,
    auth: Authenticated,
    AppQuery(q): AppQuery<ExplainQuery>,
) -> Result<Json<ExplainView>, ApiError> {
    let st = state.clone();
    let user = auth.user;
    let view = read(&state, move |conn| {
        explain_for(
            Some(conn),
            &st.config,
            &user,
            (&q.role, &q.host, q.duration.as_deref()),
            Utc::now(),
        )
        .map_err(Into::into)
    })
    .await?;
    Ok(Json(view))
}
