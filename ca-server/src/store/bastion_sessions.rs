//! The `bastion_sessions` table (session records from bastions), the
//! `bastion_events` table (their refusal reports) and the queries behind the
//! bastions' revocation feed.

use rusqlite::{Connection, OptionalExtension as _, Transaction, params};

use super::StoreError;

/// A session record as stored (the workflow has checked every field).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionRow {
    /// `ses_…`, unique.
    pub session_id: String,
    /// The delivering bastion's configured name.
    pub bastion: String,
    /// `req_…`.
    pub request_id: String,
    /// Decimal certificate serial.
    pub serial: String,
    /// Certificate key id.
    pub key_id: String,
    /// SSH username at the bastion.
    pub login: String,
    /// Requester from the key id.
    pub requester: String,
    /// Client `ip:port`.
    pub source: String,
    /// Target host name.
    pub target: String,
    /// Address connected to.
    pub target_address: String,
    /// RFC 3339 UTC.
    pub started_at: String,
    /// RFC 3339 UTC.
    pub ended_at: String,
    /// Client to target.
    pub bytes_to_target: i64,
    /// Target to client.
    pub bytes_from_target: i64,
    /// How it ended.
    pub end_reason: String,
    /// The error, when it ended with one.
    pub error: Option<String>,
    /// RFC 3339 UTC.
    pub received_at: String,
    /// The `session.record` audit event.
    pub audit_seq: i64,
}

/// A refusal report as stored (the workflow has checked every field).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventRow {
    /// `evt_…`, unique.
    pub event_id: String,
    /// The delivering bastion's configured name.
    pub bastion: String,
    /// `auth_rejected`, `channel_refused` or `events_suppressed`.
    pub kind: String,
    /// The request it concerns, when known.
    pub request_id: Option<String>,
    /// How many refusals it stands for.
    pub count: i64,
    /// RFC 3339 UTC.
    pub received_at: String,
    /// Its audit event.
    pub audit_seq: i64,
}

/// Whether a report with this event id is stored.
pub fn event_exists(tx: &Transaction<'_>, event_id: &str) -> Result<bool, StoreError> {
    Ok(tx.query_row(
        "SELECT EXISTS (SELECT 1 FROM bastion_events WHERE event_id = ?1)",
        [event_id],
        |r| r.get(0),
    )?)
}

/// Inserts one report.
pub fn insert_event(tx: &Transaction<'_>, row: &EventRow) -> Result<(), StoreError> {
    tx.execute(
        "INSERT INTO bastion_events (event_id, bastion, kind, request_id, count, received_at, audit_seq)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        params![
            row.event_id,
            row.bastion,
            row.kind,
            row.request_id,
            row.count,
            row.received_at,
            row.audit_seq
        ],
    )?;
    Ok(())
}

/// Whether a record with this session id is stored.
pub fn exists(tx: &Transaction<'_>, session_id: &str) -> Result<bool, StoreError> {
    Ok(tx.query_row(
        "SELECT EXISTS (SELECT 1 FROM bastion_sessions WHERE session_id = ?1)",
        [session_id],
        |r| r.get(0),
    )?)
}

/// Inserts one record.
pub fn insert(tx: &Transaction<'_>, row: &SessionRow) -> Result<(), StoreError> {
    tx.execute(
        "INSERT INTO bastion_sessions (session_id, bastion, request_id, serial, key_id, login, requester,
             source, target, target_address, started_at, ended_at, bytes_to_target, bytes_from_target,
             end_reason, error, received_at, audit_seq)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18)",
        params![
            row.session_id,
            row.bastion,
            row.request_id,
            row.serial,
            row.key_id,
            row.login,
            row.requester,
            row.source,
            row.target,
            row.target_address,
            row.started_at,
            row.ended_at,
            row.bytes_to_target,
            row.bytes_from_target,
            row.end_reason,
            row.error,
            row.received_at,
            row.audit_seq,
        ],
    )?;
    Ok(())
}

/// One key id with live certificates, as the feed sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrantRow {
    /// The certificates' key id.
    pub key_id: String,
    /// `req_…`.
    pub request_id: String,
    /// The request's state.
    pub state: String,
    /// The request's window end (RFC 3339), if it has one.
    pub window_end: Option<String>,
    /// The latest `valid_before` of its certificates (Unix seconds).
    pub valid_before: i64,
}

/// The head of the audit chain (0 for an empty trail): the feed's cursor.
pub fn cursor(conn: &Connection) -> Result<i64, StoreError> {
    Ok(conn
        .query_row("SELECT max(seq) FROM audit_events", [], |r| {
            r.get::<_, Option<i64>>(0)
        })
        .optional()?
        .flatten()
        .unwrap_or(0))
}

/// Key ids of requests with certificates still valid at `now_unix`; with
/// `since`, only requests touched by audit events or certificates after that seq.
pub fn live_grants(
    conn: &Connection,
    now_unix: i64,
    since: Option<i64>,
) -> Result<Vec<GrantRow>, StoreError> {
    let filter = if since.is_some() {
        "AND r.id IN (SELECT substr(object, 9) FROM audit_events WHERE seq > ?2 AND object LIKE 'request:%'
                      UNION SELECT request_id FROM certificates WHERE audit_seq > ?2 AND request_id IS NOT NULL)"
    } else {
        "AND ?2 IS NOT NULL"
    };
    let sql = format!(
        "SELECT c.key_id, r.id, r.state, r.window_end, max(c.valid_before)
         FROM certificates c JOIN requests r ON r.id = c.request_id
         WHERE c.valid_before > ?1 {filter}
         GROUP BY c.key_id, r.id
         ORDER BY r.id"
    );
    let mut stmt = conn.prepare(&sql)?;
    let rows = stmt.query_map(params![now_unix, since.unwrap_or(0)], |r| {
        Ok(GrantRow {
            key_id: r.get(0)?,
            request_id: r.get(1)?,
            state: r.get(2)?,
            window_end: r.get(3)?,
            valid_before: r.get(4)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}
