//! Queries behind the access report: grants whose window overlaps a period.

use rusqlite::{Connection, params};

use super::StoreError;

/// One grant as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrantRow {
    /// `req_…`.
    pub id: String,
    /// Requester issuer.
    pub issuer: String,
    /// Requester subject.
    pub subject: String,
    /// Requester username.
    pub username: String,
    /// Role.
    pub role: String,
    /// JSON array of hosts.
    pub hosts: String,
    /// Reason.
    pub reason: String,
    /// Ticket.
    pub ticket: Option<String>,
    /// `auto`, `stages`, `break_glass`.
    pub path: String,
    /// Request state.
    pub state: String,
    /// RFC 3339.
    pub window_start: String,
    /// RFC 3339.
    pub window_end: String,
    /// Who decided last (for an early end: who ended it).
    pub decided_by: Option<String>,
    /// The last decision's comment.
    pub comment: Option<String>,
    /// Approver usernames in order.
    pub approvers: Vec<String>,
    /// Certificate serials in issuance order.
    pub serials: Vec<String>,
}

/// Grants (requests that were approved: approved, revoked or cancelled with a
/// window) whose window overlaps `[since, until)`; times are RFC 3339 UTC in
/// the stored form, so they compare as text.
pub fn grants_overlapping(
    conn: &Connection,
    since: &str,
    until: &str,
) -> Result<Vec<GrantRow>, StoreError> {
    let mut stmt = conn.prepare(
        "SELECT id, requester_issuer, requester_subject, requester_username, role, hosts, reason,
                ticket, path, state, window_start, window_end,
                CASE WHEN decided_by_issuer IS NULL THEN NULL
                     ELSE decided_by_issuer || '#' || decided_by_subject END,
                comment
         FROM requests
         WHERE window_start IS NOT NULL AND window_end IS NOT NULL
           AND state IN ('approved', 'revoked', 'cancelled')
           AND window_start < ?2 AND window_end > ?1
           AND window_end > window_start
         ORDER BY window_start, id",
    )?;
    let rows = stmt.query_map(params![since, until], |r| {
        Ok(GrantRow {
            id: r.get(0)?,
            issuer: r.get(1)?,
            subject: r.get(2)?,
            username: r.get(3)?,
            role: r.get(4)?,
            hosts: r.get(5)?,
            reason: r.get(6)?,
            ticket: r.get(7)?,
            path: r.get(8)?,
            state: r.get(9)?,
            window_start: r.get(10)?,
            window_end: r.get(11)?,
            decided_by: r.get(12)?,
            comment: r.get(13)?,
            approvers: Vec::new(),
            serials: Vec::new(),
        })
    })?;
    let mut out: Vec<GrantRow> = rows.collect::<Result<_, _>>()?;
    let mut approvers = conn.prepare(
        "SELECT approver_username FROM approvals WHERE request_id = ?1 ORDER BY position",
    )?;
    let mut serials =
        conn.prepare("SELECT serial FROM certificates WHERE request_id = ?1 ORDER BY audit_seq")?;
    for g in &mut out {
        g.approvers = approvers
            .query_map([&g.id], |r| r.get(0))?
            .collect::<Result<_, _>>()?;
        g.serials = serials
            .query_map([&g.id], |r| r.get(0))?
            .collect::<Result<_, _>>()?;
    }
    Ok(out)
}
