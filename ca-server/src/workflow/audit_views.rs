//! The auditor's read-only use cases. Each takes an [`Auditor`], which exists
//! only for a user in one of the `[auditors]` groups; none of them writes.
//! Being an auditor grants nothing that changes state: an auditor who also
//! approves does so through the approver group alone.

use crate::refusal::Refusal;
use chrono::{DateTime, Utc};
use tpa_core::api::{
    AuditEventView, AuditPage, CertificateList, CertificateView, SessionList, SessionView, Timeline,
};
use tpa_core::{Policy, RequestId, User};

use super::error::WorkflowError;
use crate::config::AuditorsConfig;
use crate::store::audit_views::{self, AuditFilter, CertificateListing};
use crate::store::bastion_sessions::SessionRow;
use crate::store::requests;
use crate::store::sql::Sql;
use tpa_core::api::RequestView;
use tpa_core::audit::Event;

/// The largest page any auditor list returns.
pub const MAX_PAGE: u32 = 200;
/// The page size when the caller does not ask for one.
pub const DEFAULT_PAGE: u32 = 50;
/// The most events, certificates or sessions a timeline shows.
pub const TIMELINE_LIMIT: u32 = 1000;

/// Every action the CA writes to the audit trail, grouped by its prefix, for
/// the audit page's action filter (the filter itself takes any action or
/// prefix). A test checks that the bastion's refusal kinds are all here.
pub const KNOWN_ACTIONS: &[&str] = &[
    "request.submit",
    "request.approve",
    "request.deny",
    "request.break_glass",
    "request.cancel",
    "request.expire",
    "request.revoke",
    "request.review",
    "cert.issue",
    "cert.revoke",
    "cert.undelivered",
    "user.revoke",
    "ca_key.revoke",
    "session.record",
    "bastion.auth_rejected",
    "bastion.channel_refused",
    "bastion.events_suppressed",
    "auth.login",
    "auth.logout",
    "auth.cli.consent",
    "auth.cli.approve",
    "auth.cli.deny",
    "auth.device.start",
    "auth.device.code",
    "auth.device.approve",
    "auth.device.deny",
    "auth.device.expire",
    "ca.init",
];

/// Proof that a user may read the audit trail.
#[derive(Debug, Clone)]
pub struct Auditor {
    user: User,
}

impl Auditor {
    /// The auditor capability for `user`, or `not_auditor`.
    pub fn check(auditors: &AuditorsConfig, user: &User) -> Result<Self, WorkflowError> {
        if auditors.includes(user) {
            Ok(Self { user: user.clone() })
        } else {
            Err(WorkflowError::Refused {
                code: Refusal::NotAuditor,
                message:
                    "only members of an auditor group ([auditors] groups) may read the audit trail"
                        .to_owned(),
            })
        }
    }

    /// The auditor.
    pub fn user(&self) -> &User {
        &self.user
    }
}

/// A page size within `1..=MAX_PAGE`.
pub fn page_size(asked: Option<u32>) -> u32 {
    asked.unwrap_or(DEFAULT_PAGE).clamp(1, MAX_PAGE)
}

/// The wire form of a stored event.
pub fn event_view(e: Event) -> AuditEventView {
    AuditEventView {
        seq: e.seq,
        time: e.time,
        actor: e.actor,
        source: e.source,
        action: e.action,
        object: e.object,
        outcome: e.outcome,
        reason: e.reason,
        details: e.details,
        prev_hash: e.prev_hash,
        hash: e.hash,
    }
}

fn certificate_view(c: CertificateListing) -> CertificateView {
    let principals = serde_json::from_str(&c.row.principals).unwrap_or_default();
    CertificateView {
        serial: c.row.serial,
        key_id: c.row.key_id,
        principals,
        valid_after: c.row.valid_after,
        valid_before: c.row.valid_before,
        subject_key_fingerprint: c.row.subject_key_fingerprint,
        ca_key_fingerprint: c.row.ca_key_fingerprint,
        request_id: c.row.request_id,
        issued_by: c.row.issued_by,
        issued_at: c.row.issued_at,
        audit_seq: c.row.audit_seq,
        revoked: c.revoked,
    }
}

fn session_view(s: SessionRow) -> SessionView {
    SessionView {
        session_id: s.session_id,
        bastion: s.bastion,
        request_id: s.request_id,
        serial: s.serial,
        key_id: s.key_id,
        login: s.login,
        requester: s.requester,
        source: s.source,
        target: s.target,
        target_address: s.target_address,
        started_at: s.started_at,
        ended_at: s.ended_at,
        bytes_to_target: s.bytes_to_target,
        bytes_from_target: s.bytes_from_target,
        end_reason: s.end_reason,
        error: s.error,
        audit_seq: s.audit_seq,
    }
}

/// The next page's `before`: the last item's position when the page is full.
fn next_before(len: usize, limit: u32, last: Option<i64>) -> Option<i64> {
    if len as u64 >= u64::from(limit) {
        last
    } else {
        None
    }
}

/// One page of the audit log, newest first.
pub fn audit_log(
    conn: &impl Sql,
    _auditor: &Auditor,
    filter: &AuditFilter,
    limit: u32,
) -> Result<AuditPage, WorkflowError> {
    let events = audit_views::search(conn, filter, limit)?;
    let next = next_before(events.len(), limit, events.last().map(|e| e.seq));
    Ok(AuditPage {
        events: events.into_iter().map(event_view).collect(),
        next_before: next,
    })
}

/// One page of certificates (of one request when given), newest first.
pub fn certificates(
    conn: &impl Sql,
    _auditor: &Auditor,
    request: Option<&RequestId>,
    before: Option<i64>,
    limit: u32,
) -> Result<CertificateList, WorkflowError> {
    let rows = audit_views::certificates(conn, request.map(RequestId::as_str), before, limit)?;
    let next = next_before(rows.len(), limit, rows.last().map(|c| c.row.audit_seq));
    Ok(CertificateList {
        certificates: rows.into_iter().map(certificate_view).collect(),
        next_before: next,
    })
}

/// One page of bastion sessions (of one request when given), newest first.
pub fn sessions(
    conn: &impl Sql,
    _auditor: &Auditor,
    request: Option<&RequestId>,
    before: Option<i64>,
    limit: u32,
) -> Result<SessionList, WorkflowError> {
    let rows = audit_views::sessions(conn, request.map(RequestId::as_str), before, limit)?;
    let next = next_before(rows.len(), limit, rows.last().map(|s| s.audit_seq));
    Ok(SessionList {
        sessions: rows.into_iter().map(session_view).collect(),
        next_before: next,
    })
}

/// Everything that happened to request `id`: the request, its events, its
/// certificates and its sessions, oldest first. `not_found` when there is no
/// such request.
pub fn timeline(
    conn: &impl Sql,
    _auditor: &Auditor,
    policy: &Policy,
    id: &RequestId,
    now: DateTime<Utc>,
) -> Result<Timeline, WorkflowError> {
    let request = requests::load(conn, id)?.ok_or(WorkflowError::NotFound)?;
    let events = audit_views::request_events(conn, id.as_str(), TIMELINE_LIMIT)?;
    let mut certificates =
        audit_views::certificates(conn, Some(id.as_str()), None, TIMELINE_LIMIT)?;
    certificates.reverse();
    let mut sessions = audit_views::sessions(conn, Some(id.as_str()), None, TIMELINE_LIMIT)?;
    sessions.reverse();
    Ok(Timeline {
        request: RequestView::of(&request, policy, now),
        events: events.into_iter().map(event_view).collect(),
        certificates: certificates.into_iter().map(certificate_view).collect(),
        sessions: sessions.into_iter().map(session_view).collect(),
    })
}

fn bad_filter(message: String) -> WorkflowError {
    WorkflowError::Refused {
        code: Refusal::BadFilter,
        message,
    }
}

/// A non-empty, trimmed value.
fn given(value: Option<&String>) -> Option<&str> {
    value.map(|v| v.trim()).filter(|v| !v.is_empty())
}

/// A filter word: at most 128 printable characters, no whitespace.
fn word(name: &str, value: Option<&String>) -> Result<Option<String>, WorkflowError> {
    match given(value) {
        None => Ok(None),
        Some(v) if v.len() <= 128 && v.chars().all(|c| c.is_ascii_graphic()) => {
            Ok(Some(v.to_owned()))
        }
        Some(_) => Err(bad_filter(format!(
            "{name} must be at most 128 printable ASCII characters without spaces"
        ))),
    }
}

/// `2026-11-23`, `2026-11-23T10:00`, `2026-11-23T10:00:05` (UTC) or RFC 3339.
pub fn parse_time(
    name: &str,
    value: Option<&String>,
) -> Result<Option<DateTime<Utc>>, WorkflowError> {
    let Some(v) = given(value) else {
        return Ok(None);
    };
    if let Ok(t) = DateTime::parse_from_rfc3339(v) {
        return Ok(Some(t.with_timezone(&Utc)));
    }
    for format in ["%Y-%m-%dT%H:%M:%S", "%Y-%m-%dT%H:%M"] {
        if let Ok(t) = chrono::NaiveDateTime::parse_from_str(v, format) {
            return Ok(Some(t.and_utc()));
        }
    }
    if let Ok(d) = chrono::NaiveDate::parse_from_str(v, "%Y-%m-%d")
        && let Some(t) = d.and_hms_opt(0, 0, 0)
    {
        return Ok(Some(t.and_utc()));
    }
    Err(bad_filter(format!(
        "{name} is not a time such as 2026-11-23, 2026-11-23T10:00 (UTC) or 2026-11-23T10:00:00Z"
    )))
}

fn number<T: std::str::FromStr>(
    name: &str,
    value: Option<&String>,
) -> Result<Option<T>, WorkflowError> {
    given(value)
        .map(|v| {
            v.parse::<T>()
                .map_err(|_| bad_filter(format!("{name} must be a whole number")))
        })
        .transpose()
}

/// The store filter and page size of an audit query; `bad_filter` names the
/// first bad field.
pub fn audit_filter(q: &tpa_core::api::AuditQuery) -> Result<(AuditFilter, u32), WorkflowError> {
    let action = word("action", q.action.as_ref())?;
    if let Some(a) = &action
        && !a
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b == b'.' || b == b'_')
    {
        return Err(bad_filter(
            "action must be an action such as request.approve, or a prefix such as request."
                .to_owned(),
        ));
    }
    let filter = AuditFilter {
        user: word("user", q.user.as_ref())?,
        role: word("role", q.role.as_ref())?,
        host: word("host", q.host.as_ref())?,
        action,
        from: parse_time("from", q.from.as_ref())?.map(tpa_core::audit::format_time),
        to: parse_time("to", q.to.as_ref())?.map(tpa_core::audit::format_time),
        before: number("before", q.before.as_ref())?,
    };
    Ok((filter, page_size(number("limit", q.limit.as_ref())?)))
}

/// The request, `before` and page size of a list query.
pub fn list_filter(
    q: &tpa_core::api::ListQuery,
) -> Result<(Option<RequestId>, Option<i64>, u32), WorkflowError> {
    let request = given(q.request.as_ref())
        .map(|r| {
            RequestId::parse(r)
                .map_err(|_| bad_filter("request must be a request id such as req_…".to_owned()))
        })
        .transpose()?;
    Ok((
        request,
        number("before", q.before.as_ref())?,
        page_size(number("limit", q.limit.as_ref())?),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_actions_list_every_bastion_refusal_kind() {
        for kind in tpa_core::api::BASTION_EVENT_KINDS {
            let action = format!("bastion.{kind}");
            assert!(KNOWN_ACTIONS.contains(&action.as_str()), "{action}");
        }
    }
    use tpa_core::api::AuditQuery;

    fn q(f: impl FnOnce(&mut AuditQuery)) -> Result<(AuditFilter, u32), String> {
        let mut query = AuditQuery::default();
        f(&mut query);
        audit_filter(&query).map_err(|e| e.to_string())
    }

    #[test]
    fn filters_parse_and_bad_ones_are_named() {
        let (f, limit) = q(|q| {
            q.user = Some(" alice ".into());
            q.action = Some("request.".into());
            q.from = Some("2026-11-23".into());
            q.to = Some("2026-11-23T10:30".into());
            q.before = Some("".into());
            q.limit = Some("1000".into());
        })
        .unwrap();
        assert_eq!(f.user.as_deref(), Some("alice"));
        assert_eq!(f.action.as_deref(), Some("request."));
        assert_eq!(f.from.as_deref(), Some("2026-11-23T00:00:00.000000Z"));
        assert_eq!(f.to.as_deref(), Some("2026-11-23T10:30:00.000000Z"));
        assert_eq!((f.before, limit), (None, MAX_PAGE));
        assert_eq!(q(|_| {}).unwrap().1, DEFAULT_PAGE);
        assert_eq!(q(|q| q.limit = Some("0".into())).unwrap().1, 1);
        let e = q(|q| q.from = Some("yesterday".into())).unwrap_err();
        assert!(e.contains("from"), "{e}");
        let e = q(|q| q.before = Some("x".into())).unwrap_err();
        assert!(e.contains("before"), "{e}");
        let e = q(|q| q.action = Some("DROP TABLE".into())).unwrap_err();
        assert!(e.contains("action"), "{e}");
        let e = q(|q| q.user = Some("a".repeat(200))).unwrap_err();
        assert!(e.contains("user"), "{e}");
    }
}
