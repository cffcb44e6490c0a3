//! Queries behind the access report: grants whose window overlaps a period.

use super::StoreError;
use super::sql::Sql;

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
    conn: &impl Sql,
    since: &str,
    until: &str,
) -> Result<Vec<GrantRow>, StoreError> {
    let mut out = conn.query_vec(
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
        &[&since, &until],
        |r| {
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
        },
    )?;
    // Read after the grants, not while streaming them: PostgreSQL runs one
    // statement at a time on a connection.
    for g in &mut out {
        g.approvers = conn.query_vec(
            "SELECT approver_username FROM approvals WHERE request_id = ?1 ORDER BY position",
            &[&g.id],
            |r| r.get(0),
        )?;
        g.serials = conn.query_vec(
            "SELECT serial FROM certificates WHERE request_id = ?1 ORDER BY audit_seq",
            &[&g.id],
            |r| r.get(0),
        )?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::engine::test_engines;
    use crate::store::{audit, certificates};
    use tpa_core::audit::{NewEvent, Outcome};

    const T: [&str; 5] = [
        "2026-01-01T00:00:00.000000Z",
        "2026-01-02T00:00:00.000000Z",
        "2026-01-03T00:00:00.000000Z",
        "2026-01-04T00:00:00.000000Z",
        "2026-01-05T00:00:00.000000Z",
    ];

    fn request(conn: &impl Sql, id: &str, state: &str, window: (&str, &str)) {
        conn.execute(
            "INSERT INTO requests (id, requester_issuer, requester_subject, requester_username,
                 role, hosts, duration_secs, reason, path, created_at, pending_until, state,
                 updated_at, window_start, window_end, decided_by_issuer, decided_by_subject)
             VALUES (?1, 'tpa:local', 'alice', 'alice', 'r', '[\"web-1\"]', 60, 'INC-1',
                 'stages', 't', 't', ?2, 't', ?3, ?4,
                 CASE WHEN ?2 = 'revoked' THEN 'tpa:local' END,
                 CASE WHEN ?2 = 'revoked' THEN 'erin' END)",
            &[&id, &state, &window.0, &window.1],
        )
        .unwrap();
    }

    // issue 15: the access report picks approved grants whose window
    // overlaps the period, with approvers and serials in order, on both
    // engines.
    #[test]
    fn grants_overlapping_a_period() {
        for (engine, mut conn, _dir) in test_engines() {
            conn.write(|tx| {
                request(tx, "a", "approved", (T[0], T[2]));
                request(tx, "b", "revoked", (T[1], T[3]));
                request(tx, "c", "denied", (T[1], T[3]));
                request(tx, "d", "approved", (T[3], T[4]));
                for (position, who) in [(1_i64, "carol"), (0, "bob")] {
                    tx.execute(
                        "INSERT INTO approvals (request_id, position, approver_issuer,
                             approver_subject, approver_username, stage, at, content_hash)
                         VALUES ('a', ?1, 'tpa:local', ?2, ?2, 0, 't', 'h')",
                        &[&position, &who],
                    )?;
                }
                for serial in ["20", "10"] {
                    let event = NewEvent {
                        time: chrono::DateTime::from_timestamp(1_800_000_000, 0).unwrap(),
                        actor: "system".into(),
                        source: "test".into(),
                        action: "cert.issue".into(),
                        object: format!("cert:{serial}"),
                        outcome: Outcome::Success,
                        reason: "test".into(),
                        details: serde_json::json!({}),
                    };
                    let seq = audit::append(tx, &event)?.seq;
                    certificates::insert(
                        tx,
                        &certificates::CertificateRow {
                            serial: serial.into(),
                            key_id: "k".into(),
                            principals: "[]".into(),
                            extensions: "[]".into(),
                            critical_options: "{}".into(),
                            valid_after: 0,
                            valid_before: 1,
                            subject_key_fingerprint: "s".into(),
                            ca_key_fingerprint: "ca".into(),
                            request_id: Some("a".into()),
                            issued_by: "system".into(),
                            issued_at: "t".into(),
                            audit_seq: seq,
                        },
                    )?;
                }
                Ok::<_, StoreError>(())
            })
            .unwrap();
            let ids = |since, until| {
                grants_overlapping(&conn, since, until)
                    .unwrap()
                    .into_iter()
                    .map(|g| g.id)
                    .collect::<Vec<_>>()
            };
            assert_eq!(
                ids(T[0], T[4]),
                ["a", "b", "d"],
                "{engine:?}: denied is no grant"
            );
            assert_eq!(ids(T[2], T[3]), ["b"], "{engine:?}: half-open windows");
            assert_eq!(ids(T[4], T[4]), Vec::<String>::new(), "{engine:?}");
            let all = grants_overlapping(&conn, T[0], T[4]).unwrap();
            assert_eq!(all[0].approvers, ["bob", "carol"], "{engine:?}");
            assert_eq!(all[0].serials, ["20", "10"], "{engine:?}: issuance order");
            assert_eq!(all[0].decided_by, None, "{engine:?}");
            assert_eq!(
                all[1].decided_by.as_deref(),
                Some("tpa:local#erin"),
                "{engine:?}"
            );
            assert_eq!(all[1].hosts, "[\"web-1\"]", "{engine:?}");
        }
    }
}
