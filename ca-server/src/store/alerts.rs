//! The alert rules' position in the audit trail (`alert_cursor`) and each
//! (rule, subject)'s alert window (`alert_windows`).

use chrono::{DateTime, Utc};

use super::StoreError;
use super::sql::Sql;
use tpa_core::audit::format_time;

/// Makes sure the cursor exists. A new one starts at the chain head: rules
/// see the events that commit from now on, never the history.
/// One statement, so it commits on its own on either engine.
pub fn register(conn: &impl Sql) -> Result<(), StoreError> {
    conn.execute(
        "INSERT INTO alert_cursor (id, evaluated_through)
         SELECT 1, coalesce(max(seq), 0) FROM audit_events WHERE true
         ON CONFLICT (id) DO NOTHING",
        &[],
    )?;
    Ok(())
}

/// Drops the cursor (no rules configured): rules added later start at the
/// head then, instead of evaluating the events committed while there were none.
pub fn unregister(conn: &impl Sql) -> Result<(), StoreError> {
    conn.execute("DELETE FROM alert_cursor", &[])?;
    Ok(())
}

/// Every event up to this `seq` was evaluated.
pub fn cursor(conn: &impl Sql) -> Result<Option<i64>, StoreError> {
    conn.query_opt(
        "SELECT evaluated_through FROM alert_cursor WHERE id = 1",
        &[],
        |r| r.get(0),
    )
}

/// Moves the cursor to `seq` (inside the transaction that queued the alerts).
pub fn advance(tx: &impl Sql, seq: i64) -> Result<(), StoreError> {
    tx.execute(
        "UPDATE alert_cursor SET evaluated_through = ?1 WHERE id = 1 AND evaluated_through < ?1",
        &[&seq],
    )?;
    Ok(())
}

/// Opens a window for (`rule`, `subject`) at `at` lasting until `until`,
/// unless one is still open at `at`; then the event is counted as
/// suppressed. Returns whether a new window opened (the alert fires).
///
/// One upsert, so the decision and the write are atomic: on PostgreSQL two
/// replicas evaluating the same event at once queue one alert, as the
/// second waits for the first's row lock and then sees its window.
pub fn open_window(
    tx: &impl Sql,
    rule: &str,
    subject: &str,
    at: DateTime<Utc>,
    until: DateTime<Utc>,
) -> Result<bool, StoreError> {
    // Stored times are RFC 3339 UTC with microseconds: they compare as text.
    let suppressed: i64 = tx.query_one(
        "INSERT INTO alert_windows (rule, subject, window_until, suppressed) VALUES (?1, ?2, ?3, 0)
         ON CONFLICT (rule, subject) DO UPDATE SET
             suppressed = CASE WHEN alert_windows.window_until > ?4
                               THEN alert_windows.suppressed + 1 ELSE 0 END,
             window_until = CASE WHEN alert_windows.window_until > ?4
                                 THEN alert_windows.window_until ELSE excluded.window_until END
         RETURNING suppressed",
        &[&rule, &subject, &format_time(until), &format_time(at)],
        |r| r.get(0),
    )?;
    Ok(suppressed == 0)
}

/// How many events a (rule, subject)'s current window suppressed.
pub fn suppressed(conn: &impl Sql, rule: &str, subject: &str) -> Result<Option<i64>, StoreError> {
    conn.query_opt(
        "SELECT suppressed FROM alert_windows WHERE rule = ?1 AND subject = ?2",
        &[&rule, &subject],
        |r| r.get(0),
    )
}

/// Forgets windows that ended before `before` (bounded table).
pub fn prune(tx: &impl Sql, before: DateTime<Utc>) -> Result<(), StoreError> {
    tx.execute(
        "DELETE FROM alert_windows WHERE window_until < ?1",
        &[&format_time(before)],
    )?;
    Ok(())
}

#[cfg(test)]
mod tests;
