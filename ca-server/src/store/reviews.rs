//! The `break_glass_reviews` table: the post-incident review queue.

use chrono::{DateTime, Utc};
use rusqlite::{Connection, OptionalExtension, Transaction, params};
use tpa_core::{RequestId, User};

use super::StoreError;
use tpa_core::audit::format_time;

/// Opens a review for a break-glass request.
pub fn open(tx: &Transaction<'_>, id: &RequestId) -> Result<(), StoreError> {
    tx.execute(
        "INSERT INTO break_glass_reviews (request_id) VALUES (?1)",
        [id.as_str()],
    )?;
    Ok(())
}

/// Whether the request has a review, and whether it was done.
pub fn state(conn: &Connection, id: &RequestId) -> Result<Option<bool>, StoreError> {
    Ok(conn
        .query_row(
            "SELECT reviewed_at IS NOT NULL FROM break_glass_reviews WHERE request_id = ?1",
            [id.as_str()],
            |r| r.get(0),
        )
        .optional()?)
}

/// Marks the review done.
pub fn complete(
    tx: &Transaction<'_>,
    id: &RequestId,
    reviewer: &User,
    comment: &str,
    now: DateTime<Utc>,
) -> Result<bool, StoreError> {
    let changed = tx.execute(
        "UPDATE break_glass_reviews SET reviewed_by_issuer = ?2, reviewed_by_subject = ?3,
             reviewed_by_username = ?4, reviewed_at = ?5, comment = ?6
         WHERE request_id = ?1 AND reviewed_at IS NULL",
        params![
            id.as_str(),
            reviewer.identity.issuer(),
            reviewer.identity.subject(),
            reviewer.username.as_str(),
            format_time(now),
            comment
        ],
    )?;
    Ok(changed == 1)
}

/// Requests whose review is still open, oldest first.
pub fn open_ids(conn: &Connection, limit: u32) -> Result<Vec<RequestId>, StoreError> {
    let mut stmt = conn.prepare(
        "SELECT b.request_id FROM break_glass_reviews b JOIN requests r ON r.id = b.request_id
         WHERE b.reviewed_at IS NULL ORDER BY r.created_at LIMIT ?1",
    )?;
    let ids = stmt.query_map([limit], |r| r.get::<_, String>(0))?;
    ids.map(|i| {
        i.map_err(StoreError::from)
            .and_then(|i| RequestId::parse(&i).map_err(|e| StoreError::Corrupt(e.to_string())))
    })
    .collect()
}
