//! The alert rules' position in the audit trail (`alert_cursor`) and each
//! (rule, subject)'s alert window (`alert_windows`).

use chrono::{DateTime, Utc};
use rusqlite::{Connection, OptionalExtension as _, Transaction, params};

use super::StoreError;
use tpa_core::audit::format_time;

/// Makes sure the cursor exists. A new one starts at the chain head: rules
/// see the events that commit from now on, never the history.
pub fn register(conn: &mut Connection) -> Result<(), StoreError> {
    super::write(conn, |tx| {
        tx.execute(
            "INSERT INTO alert_cursor (id, evaluated_through)
             SELECT 1, coalesce(max(seq), 0) FROM audit_events WHERE true
             ON CONFLICT (id) DO NOTHING",
            [],
        )?;
        Ok::<_, StoreError>(())
    })
}

/// Drops the cursor (no rules configured): rules added later start at the
/// head then, instead of evaluating the events committed while there were none.
pub fn unregister(conn: &mut Connection) -> Result<(), StoreError> {
    super::write(conn, |tx| {
        tx.execute("DELETE FROM alert_cursor", [])?;
        Ok::<_, StoreError>(())
    })
}

/// Every event up to this `seq` was evaluated.
pub fn cursor(conn: &Connection) -> Result<Option<i64>, StoreError> {
    Ok(conn
        .query_row(
            "SELECT evaluated_through FROM alert_cursor WHERE id = 1",
            [],
            |r| r.get(0),
        )
        .optional()?)
}

/// Moves the cursor to `seq` (inside the transaction that queued the alerts).
pub fn advance(tx: &Transaction<'_>, seq: i64) -> Result<(), StoreError> {
    tx.execute(
        "UPDATE alert_cursor SET evaluated_through = ?1 WHERE id = 1 AND evaluated_through < ?1",
        [seq],
    )?;
    Ok(())
}

/// Opens a window for (`rule`, `subject`) at `at` lasting until `until`,
/// unless one is still open at `at`; then the event is counted as
/// suppressed. Returns whether a new window opened (the alert fires).
pub fn open_window(
    tx: &Transaction<'_>,
    rule: &str,
    subject: &str,
    at: DateTime<Utc>,
    until: DateTime<Utc>,
) -> Result<bool, StoreError> {
    let open: Option<String> = tx
        .query_row(
            "SELECT window_until FROM alert_windows WHERE rule = ?1 AND subject = ?2",
            params![rule, subject],
            |r| r.get(0),
        )
        .optional()?;
    // Stored times are RFC 3339 UTC with microseconds: they compare as text.
    if open.is_some_and(|end| end > format_time(at)) {
        tx.execute(
            "UPDATE alert_windows SET suppressed = suppressed + 1 WHERE rule = ?1 AND subject = ?2",
            params![rule, subject],
        )?;
        return Ok(false);
    }
    tx.execute(
        "INSERT INTO alert_windows (rule, subject, window_until, suppressed) VALUES (?1, ?2, ?3, 0)
         ON CONFLICT (rule, subject) DO UPDATE SET window_until = excluded.window_until, suppressed = 0",
        params![rule, subject, format_time(until)],
    )?;
    Ok(true)
}

/// Forgets windows that ended before `before` (bounded table).
pub fn prune(tx: &Transaction<'_>, before: DateTime<Utc>) -> Result<(), StoreError> {
    tx.execute(
        "DELETE FROM alert_windows WHERE window_until < ?1",
        [format_time(before)],
    )?;
    Ok(())
}
