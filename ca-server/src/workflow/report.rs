//! The access report: who had which role on which hosts in a period, with
//! reasons, tickets, approvers, window and how it ended.

use crate::refusal::Refusal;
use chrono::{DateTime, Utc};
use tpa_core::api::{AccessGrant, AccessReport};

use super::error::WorkflowError;
use crate::store::sql::Sql;
use crate::store::{StoreError, reports};
use tpa_core::audit::format_time;

/// Every grant whose window overlaps `[since, until)`, as seen at `now`.
pub fn access_report(
    conn: &impl Sql,
    since: DateTime<Utc>,
    until: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Result<AccessReport, WorkflowError> {
    if until <= since {
        return Err(WorkflowError::Refused {
            code: Refusal::BadPeriod,
            message: "the period is empty: --until must be after --since".to_owned(),
        });
    }
    let (since, until, now) = (format_time(since), format_time(until), format_time(now));
    let rows = reports::grants_overlapping(conn, &since, &until)?;
    let mut grants = Vec::with_capacity(rows.len());
    for row in rows {
        let hosts: Vec<String> = serde_json::from_str(&row.hosts)
            .map_err(|e| StoreError::Corrupt(format!("hosts of {}: {e}", row.id)))?;
        let (ended, ended_by, end_comment) = match row.state.as_str() {
            "approved" if row.window_end > now => ("active", None, None),
            "approved" => ("window_ended", None, None),
            other => (other, row.decided_by, row.comment),
        };
        grants.push(AccessGrant {
            request: row.id,
            user: row.username,
            identity: format!("{}#{}", row.issuer, row.subject),
            role: row.role,
            hosts,
            reason: row.reason,
            ticket: row.ticket,
            path: row.path,
            approvers: row.approvers,
            window_start: row.window_start,
            window_end: row.window_end,
            ended: ended.to_owned(),
            ended_by,
            end_comment,
            certificates: row.serials,
        });
    }
    Ok(AccessReport {
        since,
        until,
        grants,
    })
}
