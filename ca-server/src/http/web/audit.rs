//! The auditor's pages, all `GET` and read-only: `/audit` (the audit log with
//! filters), `/audit/requests/{id}` (one request's timeline),
//! `/audit/certificates` and `/audit/sessions`. They call the same
//! `workflow::audit_views` functions as the JSON API; anyone outside the
//! `[auditors]` groups gets a 403 page, and no page has a form that changes
//! anything.

use crate::http::extract::AppPath;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::response::Response;
use chrono::{DateTime, Utc};
use minijinja::{Value, context};
use tpa_core::api::{AuditEventView, AuditQuery, CertificateView, ListQuery, SessionView};

use super::page_user::PageUser;
use super::{PageError, QUERY_VALUE, page_context, percent_encode, render, utc};
use crate::app::AppState;
use crate::http::db::read;
use crate::http::extract::parse_id;
use crate::http::extract::query;
use crate::workflow::audit_views::{self as av, Auditor};

/// `name=value&…` with the values percent-encoded; empty values are left out.
fn query_string(pairs: &[(&str, Option<&str>)]) -> String {
    pairs
        .iter()
        .filter_map(|(n, v)| {
            v.filter(|v| !v.is_empty())
                .map(|v| format!("{n}={}", percent_encode(v, QUERY_VALUE)))
        })
        .collect::<Vec<_>>()
        .join("&")
}

fn unix(secs: i64) -> String {
    DateTime::<Utc>::from_timestamp(secs, 0).map_or_else(|| secs.to_string(), utc)
}

/// A stored time (RFC 3339) as pages show it.
fn shown(time: &str) -> String {
    DateTime::parse_from_rfc3339(time)
        .map_or_else(|_| time.to_owned(), |t| utc(t.with_timezone(&Utc)))
}

/// An actor as people read it: the name (a user's subject after `#`, or the
/// whole actor) and where it comes from (the issuer, empty for local
/// accounts); the full value stays in the page for hover and copy.
fn actor_parts(actor: &str) -> (String, String) {
    match actor
        .strip_prefix("user:")
        .and_then(|rest| rest.rsplit_once('#'))
    {
        Some((issuer, subject)) if issuer == tpa_core::identity::LOCAL_ISSUER => {
            (subject.to_owned(), String::new())
        }
        Some((issuer, subject)) => (subject.to_owned(), issuer.to_owned()),
        None => (actor.to_owned(), String::new()),
    }
}

/// An object as `kind` and `id` (`request:req_…` → `request`, `req_…`).
fn object_parts(object: &str) -> (String, String) {
    match object.split_once(':') {
        Some((kind, id)) => (kind.to_owned(), id.to_owned()),
        None => (String::new(), object.to_owned()),
    }
}

fn event_value(e: &AuditEventView) -> Value {
    let request = e.object.strip_prefix("request:").map(str::to_owned);
    let (actor_name, actor_from) = actor_parts(&e.actor);
    let (object_kind, object_id) = object_parts(&e.object);
    context! {
        seq => e.seq,
        time => shown(&e.time),
        actor => e.actor.as_str(),
        actor_name => actor_name,
        actor_from => actor_from,
        object_kind => object_kind,
        object_id => object_id,
        source => e.source.as_str(),
        action => e.action.as_str(),
        object => e.object.as_str(),
        request => request,
        outcome => e.outcome.as_str(),
        reason => e.reason.as_str(),
        details => e.details.as_str(),
    }
}

fn certificate_value(c: &CertificateView, now: i64) -> Value {
    context! {
        serial => c.serial.as_str(),
        key_id => c.key_id.as_str(),
        principals => c.principals.join(", "),
        valid_after => unix(c.valid_after),
        valid_before => unix(c.valid_before),
        expired => c.valid_before <= now,
        request => c.request_id.as_deref(),
        issued_by => c.issued_by.as_str(),
        issued_at => shown(&c.issued_at),
        revoked => c.revoked,
    }
}

fn session_value(s: &SessionView) -> Value {
    context! {
        session_id => s.session_id.as_str(),
        bastion => s.bastion.as_str(),
        request => s.request_id.as_str(),
        serial => s.serial.as_str(),
        login => s.login.as_str(),
        requester => s.requester.as_str(),
        source => s.source.as_str(),
        target => s.target.as_str(),
        started_at => shown(&s.started_at),
        ended_at => shown(&s.ended_at),
        bytes_to_target => s.bytes_to_target,
        bytes_from_target => s.bytes_from_target,
        end_reason => s.end_reason.as_str(),
        error => s.error.as_deref(),
        target_address => s.target_address.as_str(),
    }
}

/// `GET /audit`: the audit log, newest first, with filters and older pages.
pub async fn log(
    State(state): State<AppState>,
    PageUser(auth): PageUser,
    q: Result<Query<AuditQuery>, QueryRejection>,
) -> Result<Response, PageError> {
    let auditor = Auditor::check(&state.config.auditors, &auth.user)?;
    let q = query(q)?;
    let (filter, limit) = av::audit_filter(&q)?;
    let page = read(&state, move |conn| {
        av::audit_log(conn, &auditor, &filter, limit)
    })
    .await?;
    let next = page.next_before.map(|before| {
        let before = before.to_string();
        format!(
            "/audit?{}",
            query_string(&[
                ("user", q.user.as_deref()),
                ("role", q.role.as_deref()),
                ("host", q.host.as_deref()),
                ("action", q.action.as_deref()),
                ("from", q.from.as_deref()),
                ("to", q.to.as_deref()),
                ("limit", q.limit.as_deref()),
                ("before", Some(&before)),
            ])
        )
    });
    let events: Vec<Value> = page.events.iter().map(event_value).collect();
    // The action filter: every known action, grouped by prefix; a prefix
    // (`request.`) selects the whole group. An unknown value typed into the
    // URL is kept as an option so the page shows what it filters by.
    let chosen = q.action.clone().unwrap_or_default();
    let mut groups: Vec<(String, Vec<String>)> = Vec::new();
    for action in av::KNOWN_ACTIONS {
        let prefix = action.split('.').next().unwrap_or(action).to_owned() + ".";
        match groups.last_mut() {
            Some((p, members)) if *p == prefix => members.push((*action).to_owned()),
            _ => groups.push((prefix, vec![(*action).to_owned()])),
        }
    }
    let known = groups
        .iter()
        .any(|(p, members)| *p == chosen || members.contains(&chosen));
    let action_groups: Vec<Value> = groups
        .into_iter()
        .map(|(prefix, actions)| context! { prefix => prefix, actions => actions })
        .collect();
    Ok(render(
        "audit_log.html",
        context! {
            action_groups => action_groups,
            other_action => (!known && !chosen.is_empty()).then_some(chosen),
            q => Value::from_serialize(&q),
            events => events,
            next => next,
            ..page_context(&auth)
        },
    )?)
}

/// `GET /audit/requests/{id}`: one request from submission to its end.
pub async fn timeline(
    State(state): State<AppState>,
    PageUser(auth): PageUser,
    AppPath(id): AppPath<String>,
) -> Result<Response, PageError> {
    let auditor = Auditor::check(&state.config.auditors, &auth.user)?;
    let id = parse_id(&id)?;
    let st = state.clone();
    let now = Utc::now();
    let t = read(&state, move |conn| {
        av::timeline(conn, &auditor, &st.config.policy, &id, now)
    })
    .await?;
    let events: Vec<Value> = t.events.iter().map(event_value).collect();
    let certificates: Vec<Value> = t
        .certificates
        .iter()
        .map(|c| certificate_value(c, now.timestamp()))
        .collect();
    let sessions: Vec<Value> = t.sessions.iter().map(session_value).collect();
    Ok(render(
        "audit_timeline.html",
        context! {
            r => Value::from_serialize(&t.request),
            events => events,
            certificates => certificates,
            sessions => sessions,
            ..page_context(&auth)
        },
    )?)
}

fn list_next(path: &str, q: &ListQuery, next: Option<i64>) -> Option<String> {
    next.map(|before| {
        let before = before.to_string();
        format!(
            "{path}?{}",
            query_string(&[
                ("request", q.request.as_deref()),
                ("limit", q.limit.as_deref()),
                ("before", Some(&before)),
            ])
        )
    })
}

/// `GET /audit/certificates`: every certificate, newest first.
pub async fn certificates(
    State(state): State<AppState>,
    PageUser(auth): PageUser,
    q: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Response, PageError> {
    let auditor = Auditor::check(&state.config.auditors, &auth.user)?;
    let q = query(q)?;
    let (request, before, limit) = av::list_filter(&q)?;
    let list = read(&state, move |conn| {
        av::certificates(conn, &auditor, request.as_ref(), before, limit)
    })
    .await?;
    let now = Utc::now().timestamp();
    let rows: Vec<Value> = list
        .certificates
        .iter()
        .map(|c| certificate_value(c, now))
        .collect();
    Ok(render(
        "audit_certificates.html",
        context! {
            certificates => rows,
            next => list_next("/audit/certificates", &q, list.next_before),
            ..page_context(&auth)
        },
    )?)
}

/// `GET /audit/sessions`: every bastion session, newest first.
pub async fn sessions(
    State(state): State<AppState>,
    PageUser(auth): PageUser,
    q: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Response, PageError> {
    let auditor = Auditor::check(&state.config.auditors, &auth.user)?;
    let q = query(q)?;
    let (request, before, limit) = av::list_filter(&q)?;
    let list = read(&state, move |conn| {
        av::sessions(conn, &auditor, request.as_ref(), before, limit)
    })
    .await?;
    let rows: Vec<Value> = list.sessions.iter().map(session_value).collect();
    Ok(render(
        "audit_sessions.html",
        context! {
            sessions => rows,
            next => list_next("/audit/sessions", &q, list.next_before),
            ..page_context(&auth)
        },
    )?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn actors_and_objects_as_people_read_them() {
        let actor = |a: &str, name: &str, from: &str| {
            assert_eq!(actor_parts(a), (name.to_owned(), from.to_owned()), "{a}");
        };
        actor("user:tpa:local#alice", "alice", "");
        actor(
            "user:https://idp.example.com#0b6f-sub",
            "0b6f-sub",
            "https://idp.example.com",
        );
        actor("anonymous", "anonymous", "");
        actor("admin:root", "admin:root", "");
        assert_eq!(
            object_parts("request:req_abc"),
            ("request".to_owned(), "req_abc".to_owned())
        );
        assert_eq!(object_parts("web-1"), (String::new(), "web-1".to_owned()));
    }

    #[test]
    fn query_strings_encode_and_skip_empty_values() {
        assert_eq!(
            query_string(&[
                ("user", Some("a b&c")),
                ("role", Some("")),
                ("host", None),
                ("before", Some("7"))
            ]),
            "user=a%20b%26c&before=7"
        );
    }
}
