//! `GET /requests/new` (a form limited to the roles the viewer may request,
//! with an emergency (break-glass) section when one of them allows it) and
//! `POST /requests` (submits through the same function as the JSON API, then
//! 303 to the new request's page; a refusal shows the form again).

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use chrono::Utc;
use minijinja::{Value, context};
use tpa_core::RequestInput;

use super::page_user::{PageForm, PageUser};
use super::{FormFields, PageError, page_context, render_status};
use crate::app::AppState;
use crate::http::auth::{Authenticated, ClientIp, audit_source};
use crate::http::error::ApiError;

fn form_page(
    state: &AppState,
    auth: &Authenticated,
    status: StatusCode,
    error: Option<&str>,
    fields: &FormFields,
) -> Result<Response, PageError> {
    let requestable = || {
        state
            .config
            .policy
            .roles()
            .filter(|role| role.requestable_by(&auth.user))
    };
    let emergency_roles: Vec<Value> = requestable()
        .filter_map(|role| {
            role.break_glass.as_ref().map(|rule| {
                context! {
                    name => role.name.as_str(),
                    max_duration => rule.max_duration.to_string(),
                }
            })
        })
        .collect();
    let roles: Vec<Value> = requestable()
        .map(|role| {
            context! {
                name => role.name.as_str(),
                description => role.description.as_str(),
                hosts => role.hosts.iter().map(|h| h.as_str()).collect::<Vec<_>>().join(", "),
                max_duration => role.max_duration.to_string(),
                default_duration => role.default_duration.to_string(),
                ticket => role.ticket_pattern.is_some(),
            }
        })
        .collect();
    let value = |name: &str| fields.get(name).unwrap_or_default().to_owned();
    Ok(render_status(
        status,
        "new_request.html",
        context! {
            roles => roles,
            error => error,
            role => value("role"),
            hosts => value("hosts"),
            duration => value("duration"),
            reason => value("reason"),
            ticket => value("ticket"),
            incident => value("incident"),
            break_glass => fields.get("break_glass").is_some(),
            emergency_roles => emergency_roles,
            ..page_context(auth)
        },
    )?)
}

/// `GET /requests/new`.
pub async fn get(
    State(state): State<AppState>,
    PageUser(auth): PageUser,
) -> Result<Response, PageError> {
    form_page(&state, &auth, StatusCode::OK, None, &FormFields::default())
}

/// `POST /requests`: form `csrf_token`, `role`, `hosts` (separated by commas
/// or spaces), optional `duration`, `reason`, optional `ticket`; for an
/// emergency `break_glass` (a checkbox) and `incident`, which becomes the
/// request's ticket (the break-glass rule's incident id).
pub async fn post(
    State(state): State<AppState>,
    ip: ClientIp,
    PageForm { auth, fields }: PageForm,
) -> Result<Response, PageError> {
    let break_glass = fields.get("break_glass").is_some();
    let incident = fields.non_empty("incident");
    if break_glass && incident.is_none() {
        let message =
            "An emergency request needs the incident id it is for (for example INC-4411).";
        return form_page(
            &state,
            &auth,
            StatusCode::UNPROCESSABLE_ENTITY,
            Some(message),
            &fields,
        );
    }
    let ticket = if break_glass {
        incident
    } else {
        fields.non_empty("ticket")
    };
    let input = RequestInput {
        role: fields.get("role").unwrap_or_default().trim().to_owned(),
        hosts: fields
            .get("hosts")
            .unwrap_or_default()
            .split(|c: char| c == ',' || c.is_whitespace())
            .filter(|h| !h.is_empty())
            .map(str::to_owned)
            .collect(),
        duration: fields.non_empty("duration"),
        reason: fields.text("reason"),
        ticket,
        start: None,
        break_glass,
    };
    let submitted = state
        .services()
        .submit(auth.user.clone(), input, audit_source(ip.0), Utc::now())
        .await
        .map_err(ApiError::from);
    match submitted {
        Ok(submitted) => {
            Ok(Redirect::to(&format!("/requests/{}", submitted.request.id)).into_response())
        }
        Err(ApiError::Refused { code, message }) => {
            form_page(&state, &auth, code.status(), Some(&message), &fields)
        }
        Err(other) => Err(other.into()),
    }
}
