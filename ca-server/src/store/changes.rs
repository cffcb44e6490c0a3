//! Changes other replicas must hear of at once: a request decided,
//! cancelled, revoked or expired wakes the clients waiting on it (`/wait`)
//! whichever replica they are connected to, and an outbox item queued on
//! one replica wakes the delivery loops of every replica (the one holding
//! a sink's lease may be another than the one that queued it).
//!
//! The announcement is queued inside the writing transaction, so PostgreSQL
//! delivers it at commit and never for a rollback. On SQLite (one process)
//! it is a no-op: the in-process wake-up after commit is all there is.
//! The payload format lives here only: [`request_changed`] writes it,
//! [`changed_request`] reads it.

use tpa_core::RequestId;

use super::StoreError;
use super::pg::listen;
use super::sql::Sql;

const REQUEST: &str = "request:";
const OUTBOX: &str = "outbox";

/// Announces, at commit, that request `id` changed. Call inside the
/// transaction that changes it.
pub fn request_changed(tx: &impl Sql, id: &RequestId) -> Result<(), StoreError> {
    listen::notify(tx, &format!("{REQUEST}{}", id.as_str()))
}

/// Announces, at commit, that the outbox has a new item. PostgreSQL folds
/// the identical announcements of one transaction into one.
pub fn outbox_queued(tx: &impl Sql) -> Result<(), StoreError> {
    listen::notify(tx, OUTBOX)
}

/// Whether a notification announces a new outbox item.
pub fn is_outbox(payload: &str) -> bool {
    payload == OUTBOX
}

/// The request a notification names; `None` for any other payload.
pub fn changed_request(payload: &str) -> Option<RequestId> {
    payload
        .strip_prefix(REQUEST)
        .and_then(|id| RequestId::parse(id).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_payload_names_its_request_or_nothing() {
        let id = RequestId::parse("req_aaaaaaaaaaaaaaaaaaaaaaaaaa").unwrap();
        assert_eq!(
            changed_request(&format!("request:{}", id.as_str())),
            Some(id)
        );
        assert_eq!(changed_request("request:not an id"), None);
        assert_eq!(
            changed_request("grant:req_aaaaaaaaaaaaaaaaaaaaaaaaaa"),
            None
        );
        assert!(is_outbox(OUTBOX));
        assert_eq!(changed_request(OUTBOX), None);
        assert!(!is_outbox("request:req_aaaaaaaaaaaaaaaaaaaaaaaaaa"));
    }

    // issue 15: on SQLite the announcement is a no-op inside a write.
    #[test]
    fn announcing_on_sqlite_is_a_no_op() {
        let dir = tempfile::tempdir().unwrap();
        let mut conn = crate::store::Conn::Sqlite(
            crate::store::open(&dir.path().join("t.db"), crate::store::Create::IfMissing).unwrap(),
        );
        let id = RequestId::parse("req_aaaaaaaaaaaaaaaaaaaaaaaaaa").unwrap();
        conn.write(|tx| request_changed(tx, &id)).unwrap();
    }
}
