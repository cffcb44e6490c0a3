//! What bastions ask of the CA: the revocation feed (which key ids, serials and
//! CA keys no longer grant access, and when each active grant's window ends),
//! storing their session records with a `session.record` audit event on the
//! request, and storing their refusal reports as `bastion.<kind>` audit events.

use crate::refusal::Refusal;
use chrono::{DateTime, Utc};
use serde_json::json;
use tpa_core::RequestId;
use tpa_core::api::{
    ActiveGrant, BASTION_EVENT_KINDS, BastionEvent, BastionEventBatchResult, RevocationFeed,
    RevokedGrant, SESSION_END_REASONS, SessionBatchResult, SessionRecord,
};

use super::error::WorkflowError;
use crate::store::Transact;
use crate::store::sql::Sql;
use crate::store::{self, StoreError, audit, bastion_sessions};
use tpa_core::audit::{NewEvent, Outcome, format_time};

/// The most records one delivery may carry.
pub const MAX_BATCH: usize = 100;
/// The longest string field a record may carry.
const MAX_FIELD: usize = 512;

fn refused_event(message: String) -> WorkflowError {
    WorkflowError::Refused {
        code: Refusal::InvalidBastionEvent,
        message,
    }
}

fn refused(message: String) -> WorkflowError {
    WorkflowError::Refused {
        code: Refusal::InvalidSessionRecord,
        message,
    }
}

/// The feed for a bastion that last saw `since` (a full snapshot without it,
/// or when the cursor is ahead of the trail, e.g. after a restore).
pub fn revocation_feed(
    conn: &impl Sql,
    since: Option<u64>,
    now: DateTime<Utc>,
) -> Result<RevocationFeed, WorkflowError> {
    let cursor = bastion_sessions::cursor(conn)?;
    let since = since
        .and_then(|s| i64::try_from(s).ok())
        .filter(|s| *s > 0 && *s <= cursor);
    let rows = bastion_sessions::live_grants(conn, now.timestamp(), since)?;
    let mut feed = RevocationFeed {
        cursor: u64::try_from(cursor).unwrap_or(0),
        full: since.is_none(),
        revoked: Vec::new(),
        active: Vec::new(),
        revoked_serials: store::certificates::revoked_unexpired(conn, now.timestamp())?
            .into_iter()
            .map(|c| c.serial)
            .collect(),
        revoked_ca_keys: store::revocations::revoked_ca_keys(conn)?,
        certified_keys: Some(store::certificates::certified_subject_keys(
            conn,
            now.timestamp(),
        )?),
    };
    for row in rows {
        let window_end = row
            .window_end
            .as_deref()
            .map(DateTime::parse_from_rfc3339)
            .transpose()
            .map_err(|e| StoreError::Corrupt(format!("window_end: {e}")))?
            .map(|t| t.timestamp());
        let forget_after = u64::try_from(row.valid_before).unwrap_or(0);
        match (row.state.as_str(), window_end) {
            ("approved", Some(end)) if end > now.timestamp() => feed.active.push(ActiveGrant {
                key_id: row.key_id,
                request: row.request_id,
                window_end: u64::try_from(end).unwrap_or(0),
            }),
            (state, _) => feed.revoked.push(RevokedGrant {
                key_id: row.key_id,
                request: row.request_id,
                state: if state == "approved" {
                    "ended".to_owned()
                } else {
                    state.to_owned()
                },
                forget_after,
            }),
        }
    }
    Ok(feed)
}

fn check_field(name: &str, value: &str) -> Result<(), WorkflowError> {
    if value.is_empty() || value.len() > MAX_FIELD || value.chars().any(char::is_control) {
        return Err(refused(format!(
            "{name} must be 1-{MAX_FIELD} characters without control characters"
        )));
    }
    Ok(())
}

fn check_time(name: &str, value: &str) -> Result<DateTime<Utc>, WorkflowError> {
    DateTime::parse_from_rfc3339(value)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|_| refused(format!("{name} is not an RFC 3339 time")))
}

/// A bastion's id for a session or event: `prefix` and 32 hex digits.
fn is_bastion_id(id: &str, prefix: &str) -> bool {
    id.strip_prefix(prefix)
        .is_some_and(|h| h.len() == 32 && h.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// Checks one record; the error names the field.
fn check_record(r: &SessionRecord) -> Result<RequestId, WorkflowError> {
    if !is_bastion_id(&r.session_id, "ses_") {
        return Err(refused(
            "session_id must be ses_ followed by 32 hex digits".to_owned(),
        ));
    }
    let request = RequestId::parse(&r.request)
        .map_err(|_| refused("request is not a request id (req_…)".to_owned()))?;
    if r.serial.parse::<u64>().map_or(true, |s| s == 0) {
        return Err(refused(
            "serial must be a non-zero decimal 64-bit number".to_owned(),
        ));
    }
    for (name, value) in [
        ("key_id", &r.key_id),
        ("login", &r.login),
        ("requester", &r.requester),
        ("source", &r.source),
        ("target", &r.target),
        ("target_address", &r.target_address),
    ] {
        check_field(name, value)?;
    }
    if let Some(error) = &r.error {
        check_field("error", error)?;
    }
    let started = check_time("started_at", &r.started_at)?;
    let ended = check_time("ended_at", &r.ended_at)?;
    if ended < started {
        return Err(refused("ended_at is before started_at".to_owned()));
    }
    if !SESSION_END_REASONS.contains(&r.end.as_str()) {
        return Err(refused(format!(
            "end must be one of {}",
            SESSION_END_REASONS.join(", ")
        )));
    }
    Ok(request)
}

/// Stores `records` from bastion `bastion` (delivered from `source`) in one
/// transaction. A record whose session id is already stored is counted as a
/// duplicate and changes nothing, so redelivery is safe. Any invalid record
/// refuses the whole batch.
pub fn record_sessions(
    conn: &mut impl Transact,
    bastion: &str,
    source: &str,
    records: &[SessionRecord],
    now: DateTime<Utc>,
) -> Result<SessionBatchResult, WorkflowError> {
    if records.len() > MAX_BATCH {
        return Err(refused(format!("at most {MAX_BATCH} records per delivery")));
    }
    let requests = records
        .iter()
        .map(check_record)
        .collect::<Result<Vec<_>, _>>()?;
    conn.write(|tx| {
        let mut result = SessionBatchResult {
            stored: 0,
            duplicates: 0,
        };
        for (record, request) in records.iter().zip(&requests) {
            if bastion_sessions::exists(tx, &record.session_id)? {
                result.duplicates += 1;
                continue;
            }
            let reason = match (&record.end[..], &record.error) {
                ("error", Some(e)) => format!("ended: error: {e}"),
                (end, _) => format!("ended: {}", end.replace('_', " ")),
            };
            let event = audit::append(
                tx,
                &NewEvent {
                    time: now,
                    actor: format!("bastion:{bastion}"),
                    source: source.to_owned(),
                    action: "session.record".to_owned(),
                    object: format!("request:{request}"),
                    outcome: Outcome::Success,
                    reason,
                    details: json!({
                        "session_id": record.session_id,
                        "bastion": bastion,
                        "serial": record.serial,
                        "key_id": record.key_id,
                        "login": record.login,
                        "requester": record.requester,
                        "source": record.source,
                        "target": record.target,
                        "target_address": record.target_address,
                        "started_at": record.started_at,
                        "ended_at": record.ended_at,
                        "bytes_to_target": record.bytes_to_target,
                        "bytes_from_target": record.bytes_from_target,
                        "end": record.end,
                        "error": record.error,
                    }),
                },
            )?;
            bastion_sessions::insert(
                tx,
                &bastion_sessions::SessionRow {
                    session_id: record.session_id.clone(),
                    bastion: bastion.to_owned(),
                    request_id: request.to_string(),
                    serial: record.serial.clone(),
                    key_id: record.key_id.clone(),
                    login: record.login.clone(),
                    requester: record.requester.clone(),
                    source: record.source.clone(),
                    target: record.target.clone(),
                    target_address: record.target_address.clone(),
                    started_at: record.started_at.clone(),
                    ended_at: record.ended_at.clone(),
                    bytes_to_target: i64::try_from(record.bytes_to_target).unwrap_or(i64::MAX),
                    bytes_from_target: i64::try_from(record.bytes_from_target).unwrap_or(i64::MAX),
                    end_reason: record.end.clone(),
                    error: record.error.clone(),
                    received_at: format_time(now),
                    audit_seq: event.seq,
                },
            )?;
            result.stored += 1;
        }
        Ok::<_, WorkflowError>(result)
    })
}

/// Checks one refusal report; the error names the field.
fn check_event(e: &BastionEvent) -> Result<Option<RequestId>, WorkflowError> {
    if !is_bastion_id(&e.event_id, "evt_") {
        return Err(refused_event(
            "event_id must be evt_ followed by 32 hex digits".to_owned(),
        ));
    }
    if !BASTION_EVENT_KINDS.contains(&e.kind.as_str()) {
        return Err(refused_event(format!(
            "kind must be one of {}",
            BASTION_EVENT_KINDS.join(", ")
        )));
    }
    let request = e
        .request
        .as_deref()
        .map(RequestId::parse)
        .transpose()
        .map_err(|_| refused_event("request is not a request id (req_…)".to_owned()))?;
    for (name, value) in [
        ("source", &e.source),
        ("what", &e.what),
        ("reason", &e.reason),
    ] {
        check_field(name, value).map_err(|_| {
            refused_event(format!(
                "{name} must be 1-{MAX_FIELD} characters without control characters"
            ))
        })?;
    }
    if e.login.len() > MAX_FIELD || e.login.chars().any(char::is_control) {
        return Err(refused_event(format!(
            "login must be at most {MAX_FIELD} characters without control characters"
        )));
    }
    if e.count == 0 {
        return Err(refused_event("count must be at least 1".to_owned()));
    }
    let first = check_time("first_at", &e.first_at)
        .map_err(|_| refused_event("first_at is not an RFC 3339 time".to_owned()))?;
    let last = check_time("last_at", &e.last_at)
        .map_err(|_| refused_event("last_at is not an RFC 3339 time".to_owned()))?;
    if last < first {
        return Err(refused_event("last_at is before first_at".to_owned()));
    }
    Ok(request)
}

/// Stores refusal reports from bastion `bastion` (delivered from `source`) in
/// one transaction, each as a `bastion.<kind>` audit event with outcome
/// `denied`, on its request when it names one (so it shows in the request's
/// history), else on the bastion. A report whose event id is already stored
/// is counted as a duplicate; any invalid report refuses the whole batch.
pub fn record_events(
    conn: &mut impl Transact,
    bastion: &str,
    source: &str,
    events: &[BastionEvent],
    now: DateTime<Utc>,
) -> Result<BastionEventBatchResult, WorkflowError> {
    if events.len() > MAX_BATCH {
        return Err(refused_event(format!(
            "at most {MAX_BATCH} events per delivery"
        )));
    }
    let requests = events
        .iter()
        .map(check_event)
        .collect::<Result<Vec<_>, _>>()?;
    conn.write(|tx| {
        let mut result = BastionEventBatchResult {
            stored: 0,
            duplicates: 0,
        };
        for (e, request) in events.iter().zip(&requests) {
            if bastion_sessions::event_exists(tx, &e.event_id)? {
                result.duplicates += 1;
                continue;
            }
            let object = match request {
                Some(id) => format!("request:{id}"),
                None => format!("bastion:{bastion}"),
            };
            let reason = if e.count > 1 {
                format!("{} ({} times)", e.reason, e.count)
            } else {
                e.reason.clone()
            };
            let event = audit::append(
                tx,
                &NewEvent {
                    time: now,
                    actor: format!("bastion:{bastion}"),
                    source: source.to_owned(),
                    action: format!("bastion.{}", e.kind),
                    object,
                    outcome: Outcome::Denied,
                    reason,
                    details: json!({
                        "event_id": e.event_id,
                        "bastion": bastion,
                        "client": e.source,
                        "login": e.login,
                        "request": e.request,
                        "what": e.what,
                        "reason": e.reason,
                        "count": e.count,
                        "first_at": e.first_at,
                        "last_at": e.last_at,
                    }),
                },
            )?;
            bastion_sessions::insert_event(
                tx,
                &bastion_sessions::EventRow {
                    event_id: e.event_id.clone(),
                    bastion: bastion.to_owned(),
                    kind: e.kind.clone(),
                    request_id: request.as_ref().map(ToString::to_string),
                    count: i64::try_from(e.count).unwrap_or(i64::MAX),
                    received_at: format_time(now),
                    audit_seq: event.seq,
                },
            )?;
            result.stored += 1;
        }
        Ok::<_, WorkflowError>(result)
    })
}
