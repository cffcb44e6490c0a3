//! Issued, not delivered: certificates whose issuance transaction may have
//! committed although the CA never saw the COMMIT's answer (the connection
//! to PostgreSQL broke after COMMIT was sent). The caller was answered 503
//! and given no certificate; if the row did commit, the certificate exists
//! in the trail but nobody holds it. The issuance writer records each such
//! certificate that turns out to be committed with a `cert.undelivered`
//! audit event, so that an auditor can tell it from one that was handed out
//! (issue 15, "Faults").

use chrono::{DateTime, Utc};
use serde_json::json;
use tpa_core::audit::{NewEvent, Outcome};

use crate::store::sql::Sql;
use crate::store::{self, StoreError};

/// The audit action of the marker.
pub const UNDELIVERED_ACTION: &str = "cert.undelivered";

/// A certificate signed in a batch whose COMMIT outcome is unknown.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Undelivered {
    /// Its serial.
    pub serial: String,
    /// The request it was for.
    pub request_id: String,
}

/// Inside a write transaction: appends a `cert.undelivered` event for each
/// certificate of `unknown` whose row exists (its batch committed) and that
/// has none yet; a certificate without a row was rolled back and needs
/// nothing. Returns how many were marked. Safe to repeat after a failure.
pub fn record(
    tx: &impl Sql,
    unknown: &[Undelivered],
    now: DateTime<Utc>,
) -> Result<usize, StoreError> {
    let mut marked = 0;
    for u in unknown {
        let object = format!("cert:{}", u.serial);
        if !store::certificates::serial_exists(tx, &u.serial)? {
            tracing::info!(
                serial = u.serial,
                "the issuance batch of an unknown commit was rolled back after all"
            );
            continue;
        }
        let already: i64 = tx.query_one(
            "SELECT count(*) FROM audit_events WHERE action = ?1 AND object = ?2",
            &[&UNDELIVERED_ACTION, &object],
            |r| r.get(0),
        )?;
        if already > 0 {
            continue;
        }
        store::audit::append(
            tx,
            &NewEvent {
                time: now,
                actor: "system".to_owned(),
                source: "ca".to_owned(),
                action: UNDELIVERED_ACTION.to_owned(),
                object,
                outcome: Outcome::Error,
                reason: "the connection to the database broke after COMMIT was sent: the \
                         certificate was recorded as issued but never returned to the caller"
                    .to_owned(),
                details: json!({ "request_id": u.request_id }),
            },
        )?;
        marked += 1;
    }
    Ok(marked)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::engine::test_engines;

    // issue 15: only a certificate whose row committed is marked, once,
    // however often the writer retries; on both engines.
    #[test]
    fn only_committed_certificates_are_marked_once() {
        for (engine, mut conn, _dir) in test_engines() {
            let now = chrono::DateTime::from_timestamp(1_800_000_000, 0).unwrap();
            let unknown = [
                Undelivered {
                    serial: "42".into(),
                    request_id: "r1".into(),
                },
                Undelivered {
                    serial: "43".into(),
                    request_id: "r2".into(),
                },
            ];
            conn.write(|tx| {
                let event = store::audit::append(
                    tx,
                    &NewEvent {
                        time: now,
                        actor: "system".into(),
                        source: "test".into(),
                        action: "cert.issue".into(),
                        object: "cert:42".into(),
                        outcome: Outcome::Success,
                        reason: "test".into(),
                        details: json!({}),
                    },
                )?;
                store::certificates::insert(
                    tx,
                    &store::certificates::CertificateRow {
                        serial: "42".into(),
                        key_id: "tpa:req:user".into(),
                        principals: "[\"alice\"]".into(),
                        extensions: "[]".into(),
                        critical_options: "{}".into(),
                        valid_after: 100,
                        valid_before: 200,
                        subject_key_fingerprint: "SHA256:subject".into(),
                        ca_key_fingerprint: "SHA256:ca".into(),
                        request_id: Some("req".into()),
                        issued_by: "user:x".into(),
                        issued_at: "2026-01-01T00:00:00Z".into(),
                        audit_seq: event.seq,
                    },
                )
            })
            .unwrap();
            for expected in [1, 0] {
                let marked = conn.write(|tx| record(tx, &unknown, now)).unwrap();
                assert_eq!(marked, expected, "{engine:?}");
            }
            let objects: Vec<String> = conn
                .query_vec(
                    "SELECT object FROM audit_events WHERE action = ?1",
                    &[&UNDELIVERED_ACTION],
                    |r| r.get(0),
                )
                .unwrap();
            assert_eq!(objects, ["cert:42"], "{engine:?}");
        }
    }
}
