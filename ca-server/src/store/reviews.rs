//! The `break_glass_reviews` table: the post-incident review queue.

use chrono::{DateTime, Utc};
use tpa_core::{RequestId, User};

use super::StoreError;
use super::sql::Sql;
use tpa_core::audit::format_time;

/// Opens a review for a break-glass request.
pub fn open(tx: &impl Sql, id: &RequestId) -> Result<(), StoreError> {
    tx.execute(
        "INSERT INTO break_glass_reviews (request_id) VALUES (?1)",
        &[&id.as_str()],
    )?;
    Ok(())
}

/// Whether the request has a review, and whether it was done.
pub fn state(conn: &impl Sql, id: &RequestId) -> Result<Option<bool>, StoreError> {
    conn.query_opt(
        "SELECT reviewed_at IS NOT NULL FROM break_glass_reviews WHERE request_id = ?1",
        &[&id.as_str()],
        |r| r.get(0),
    )
}

/// Marks the review done.
pub fn complete(
    tx: &impl Sql,
    id: &RequestId,
    reviewer: &User,
    comment: &str,
    now: DateTime<Utc>,
) -> Result<bool, StoreError> {
    let changed = tx.execute(
        "UPDATE break_glass_reviews SET reviewed_by_issuer = ?2, reviewed_by_subject = ?3,
             reviewed_by_username = ?4, reviewed_at = ?5, comment = ?6
         WHERE request_id = ?1 AND reviewed_at IS NULL",
        &[
            &id.as_str(),
            &reviewer.identity.issuer(),
            &reviewer.identity.subject(),
            &reviewer.username.as_str(),
            &format_time(now),
            &comment,
        ],
    )?;
    Ok(changed == 1)
}

/// Requests whose review is still open, oldest first.
pub fn open_ids(conn: &impl Sql, limit: u32) -> Result<Vec<RequestId>, StoreError> {
    conn.query_vec(
        "SELECT b.request_id FROM break_glass_reviews b JOIN requests r ON r.id = b.request_id
         WHERE b.reviewed_at IS NULL ORDER BY r.created_at LIMIT ?1",
        &[&i64::from(limit)],
        |r| RequestId::parse(&r.get::<String>(0)?).map_err(|e| StoreError::Corrupt(e.to_string())),
    )
}

#[cfg(test)]
mod tests {
    use chrono::TimeDelta;

    use super::*;
    use crate::store::engine::test_engines;

    fn insert_request(conn: &impl Sql, id: &str, created_at: &str) {
        conn.execute(
            "INSERT INTO requests (id, requester_issuer, requester_subject, requester_username,
                 role, hosts, duration_secs, reason, path, created_at, pending_until, state,
                 updated_at)
             VALUES (?1, 'tpa:local', 'alice', 'alice', 'hotfix-admin', '[\"web-1\"]', 3600,
                 'INC-1', 'break_glass', ?2, ?2, 'approved', ?2)",
            &[&id, &created_at],
        )
        .unwrap();
    }

    // issue 15: a break-glass review opens once, is completed once, and
    // leaves the queue oldest first, on both engines.
    #[test]
    fn a_review_opens_once_and_completes_once() {
        for (engine, mut conn, _dir) in test_engines() {
            let a = RequestId::parse("req_aaaaaaaaaaaaaaaaaaaaaaaaaa").unwrap();
            let b = RequestId::parse("req_bbbbbbbbbbbbbbbbbbbbbbbbba").unwrap();
            insert_request(&conn, a.as_str(), "2026-01-01T00:00:02.000000Z");
            insert_request(&conn, b.as_str(), "2026-01-01T00:00:01.000000Z");
            assert_eq!(state(&conn, &a).unwrap(), None, "{engine:?}");
            conn.write(|tx| {
                open(tx, &a)?;
                open(tx, &b)
            })
            .unwrap();
            let twice: Result<(), StoreError> = conn.write(|tx| open(tx, &a));
            assert!(twice.is_err(), "{engine:?}: one review per request");
            assert_eq!(state(&conn, &a).unwrap(), Some(false), "{engine:?}");
            assert_eq!(open_ids(&conn, 10).unwrap(), vec![b.clone(), a.clone()]);
            assert_eq!(open_ids(&conn, 1).unwrap(), vec![b.clone()], "{engine:?}");

            let carol = User {
                identity: tpa_core::Identity::new("tpa:local", "carol").unwrap(),
                username: tpa_core::Username::parse("carol").unwrap(),
                display_name: "Carol".into(),
                groups: Default::default(),
            };
            let now = Utc::now();
            let done = |conn: &mut crate::store::Conn, at| {
                conn.write(|tx| complete(tx, &a, &carol, "reviewed", at))
                    .unwrap()
            };
            assert!(done(&mut conn, now), "{engine:?}");
            assert!(
                !done(&mut conn, now + TimeDelta::hours(1)),
                "{engine:?}: once"
            );
            assert_eq!(state(&conn, &a).unwrap(), Some(true), "{engine:?}");
            assert_eq!(open_ids(&conn, 10).unwrap(), vec![b.clone()], "{engine:?}");
        }
    }
}
