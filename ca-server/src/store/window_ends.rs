//! `window_end_notices`: the natural end of an approved request's window,
//! noticed once per request (issue 17's closing ticket comment). The row is
//! claimed in the transaction that queues the comment; its primary key is
//! what makes a second pass, a restart or another replica queue nothing more.

use chrono::{DateTime, Utc};
use tpa_core::RequestId;
use tpa_core::audit::format_time;

use super::StoreError;
use super::sql::Sql;

/// Approved requests with a ticket whose window ended in `(since, now]` and
/// whose end nobody noticed yet, oldest end first, at most `limit`.
pub fn due(
    conn: &impl Sql,
    since: DateTime<Utc>,
    now: DateTime<Utc>,
    limit: i64,
) -> Result<Vec<RequestId>, StoreError> {
    let ids: Vec<String> = conn.query_vec(
        "SELECT r.id FROM requests r
         WHERE r.state = 'approved' AND r.ticket IS NOT NULL
           AND r.window_end > ?1 AND r.window_end <= ?2
           AND NOT EXISTS (SELECT 1 FROM window_end_notices n WHERE n.request_id = r.id)
         ORDER BY r.window_end LIMIT ?3",
        &[&format_time(since), &format_time(now), &limit],
        |r| r.get(0),
    )?;
    ids.iter()
        .map(|id| {
            RequestId::parse(id).map_err(|e| StoreError::Corrupt(format!("request id {id:?}: {e}")))
        })
        .collect()
}

/// Claims the end of `id`'s window inside the caller's transaction: true
/// when this call noticed it first (queue the comment now), false when it
/// was already noticed (queue nothing).
pub fn claim(tx: &impl Sql, id: &RequestId, now: DateTime<Utc>) -> Result<bool, StoreError> {
    let inserted = tx.execute(
        "INSERT INTO window_end_notices (request_id, outbox_id, noticed_at) VALUES (?1, NULL, ?2)
         ON CONFLICT (request_id) DO NOTHING",
        &[&id.as_str(), &format_time(now)],
    )?;
    Ok(inserted == 1)
}

/// Records the outbox item that carries the closing comment of `id`.
pub fn record_outbox(tx: &impl Sql, id: &RequestId, outbox_id: i64) -> Result<(), StoreError> {
    tx.execute(
        "UPDATE window_end_notices SET outbox_id = ?2 WHERE request_id = ?1",
        &[&id.as_str(), &outbox_id],
    )?;
    Ok(())
}

/// The outbox item queued for the end of `id`'s window: `None` when its end
/// was not noticed, `Some(None)` when it was and nothing was queued.
pub fn notice(conn: &impl Sql, id: &RequestId) -> Result<Option<Option<i64>>, StoreError> {
    conn.query_opt(
        "SELECT outbox_id FROM window_end_notices WHERE request_id = ?1",
        &[&id.as_str()],
        |r| r.get(0),
    )
}
