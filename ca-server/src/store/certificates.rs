//! The `certificates` table: one row per signed certificate, written in the
//! same transaction as its audit event.

use super::StoreError;
use super::sql::{self, Engine, Sql};

/// A certificate row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertificateRow {
    /// Decimal serial.
    pub serial: String,
    /// Key id.
    pub key_id: String,
    /// JSON array of principals.
    pub principals: String,
    /// JSON array of extension names.
    pub extensions: String,
    /// JSON object of critical options.
    pub critical_options: String,
    /// Unix seconds.
    pub valid_after: i64,
    /// Unix seconds.
    pub valid_before: i64,
    /// `SHA256:…` of the certified key.
    pub subject_key_fingerprint: String,
    /// `SHA256:…` of the signing CA key.
    pub ca_key_fingerprint: String,
    /// The request, for certificates issued through the workflow.
    pub request_id: Option<String>,
    /// Audit actor of the issuer.
    pub issued_by: String,
    /// RFC 3339 UTC.
    pub issued_at: String,
    /// The issuance audit event.
    pub audit_seq: i64,
}

/// Whether a serial was ever used.
pub fn serial_exists(tx: &impl Sql, serial: &str) -> Result<bool, StoreError> {
    tx.query_one(
        "SELECT EXISTS (SELECT 1 FROM certificates WHERE serial = ?1)",
        &[&serial],
        |r| r.get(0),
    )
}

/// Which of `serials` were ever used (one statement for all of them).
pub fn taken(tx: &impl Sql, serials: &[String]) -> Result<Vec<String>, StoreError> {
    let list = serde_json::to_string(serials).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    tx.query_vec(
        &format!(
            "SELECT serial FROM certificates WHERE {}",
            sql::in_json_list(tx.engine(), "serial", "?1")
        ),
        &[&list],
        |r| r.get(0),
    )
}

/// Inserts the rows; fails on a reused serial (the primary key: on
/// PostgreSQL, two replicas that drew the same serial cannot both commit).
/// On PostgreSQL several rows go in one statement; SQLite runs one
/// statement each, in process.
pub fn insert_all(tx: &impl Sql, rows: &[CertificateRow]) -> Result<(), StoreError> {
    if tx.engine() == Engine::Postgres && rows.len() > 1 {
        return insert_all_postgres(tx, rows);
    }
    for row in rows {
        insert(tx, row)?;
    }
    Ok(())
}

/// Inserts a row; fails on a reused serial.
pub fn insert(tx: &impl Sql, row: &CertificateRow) -> Result<(), StoreError> {
    tx.execute(
        "INSERT INTO certificates (serial, key_id, principals, extensions, critical_options, valid_after,
             valid_before, subject_key_fingerprint, ca_key_fingerprint, request_id, issued_by, issued_at, audit_seq)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
        &[
            &row.serial,
            &row.key_id,
            &row.principals,
            &row.extensions,
            &row.critical_options,
            &row.valid_after,
            &row.valid_before,
            &row.subject_key_fingerprint,
            &row.ca_key_fingerprint,
            &row.request_id,
            &row.issued_by,
            &row.issued_at,
            &row.audit_seq,
        ],
    )?;
    Ok(())
}

/// One INSERT for many rows, sent as one JSON array (see the audit trail's
/// `insert_all_postgres`).
fn insert_all_postgres(tx: &impl Sql, rows: &[CertificateRow]) -> Result<(), StoreError> {
    let json: Vec<serde_json::Value> = rows
        .iter()
        .map(|r| {
            serde_json::json!({
                "serial": r.serial, "key_id": r.key_id, "principals": r.principals,
                "extensions": r.extensions, "critical_options": r.critical_options,
                "valid_after": r.valid_after, "valid_before": r.valid_before,
                "subject_key_fingerprint": r.subject_key_fingerprint,
                "ca_key_fingerprint": r.ca_key_fingerprint, "request_id": r.request_id,
                "issued_by": r.issued_by, "issued_at": r.issued_at, "audit_seq": r.audit_seq,
            })
        })
        .collect();
    let json = serde_json::Value::Array(json).to_string();
    let written = tx.execute(
        "INSERT INTO certificates (serial, key_id, principals, extensions, critical_options, valid_after,
             valid_before, subject_key_fingerprint, ca_key_fingerprint, request_id, issued_by, issued_at, audit_seq)
         SELECT serial, key_id, principals, extensions, critical_options, valid_after,
             valid_before, subject_key_fingerprint, ca_key_fingerprint, request_id, issued_by, issued_at, audit_seq
         FROM jsonb_to_recordset(?1::text::jsonb) AS c(serial text, key_id text, principals text,
             extensions text, critical_options text, valid_after bigint, valid_before bigint,
             subject_key_fingerprint text, ca_key_fingerprint text, request_id text,
             issued_by text, issued_at text, audit_seq bigint)",
        &[&json],
    )?;
    if written != rows.len() as u64 {
        return Err(StoreError::Corrupt(format!(
            "{written} certificate rows written of {}",
            rows.len()
        )));
    }
    Ok(())
}

/// Certificates whose issuance event is missing from the audit trail or does
/// not name them: evidence of a truncated or rewritten trail. Returns
/// `(serial, audit_seq)` pairs, lowest audit_seq first.
pub fn without_matching_audit(conn: &impl Sql) -> Result<Vec<(String, i64)>, StoreError> {
    conn.query_vec(
        "SELECT c.serial, c.audit_seq FROM certificates c
         LEFT JOIN audit_events a ON a.seq = c.audit_seq
         WHERE a.seq IS NULL OR a.action != 'cert.issue' OR a.object != 'cert:' || c.serial
         ORDER BY c.audit_seq",
        &[],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )
}

/// Number of certificates issued.
pub fn count(conn: &impl Sql) -> Result<i64, StoreError> {
    conn.query_one("SELECT count(*) FROM certificates", &[], |r| r.get(0))
}

/// The subject key fingerprints (`SHA256:…`) of the certificates of
/// requests inside their validity period at `now`, sorted, without
/// duplicates: what a bastion answers a key's probe for. Revoked ones too, so
/// that the bastion's signed-attempt check can tell their holder why.
pub fn certified_subject_keys(conn: &impl Sql, now: i64) -> Result<Vec<String>, StoreError> {
    conn.query_vec(
        "SELECT DISTINCT subject_key_fingerprint FROM certificates
         WHERE request_id IS NOT NULL AND valid_after <= ?1 AND valid_before > ?1
         ORDER BY subject_key_fingerprint",
        &[&now],
        |r| r.get(0),
    )
}

/// A certificate that must be in the KRL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RevokedCertificate {
    /// Decimal serial.
    pub serial: String,
    /// Key id.
    pub key_id: String,
    /// `SHA256:…` of the CA key that signed it.
    pub ca_key_fingerprint: String,
    /// Whether its whole request is revoked or cancelled, so that its key id
    /// (shared by every certificate of the request) may be revoked too.
    pub whole_request: bool,
}

/// Certificates still valid at `now` that were revoked: by serial, user or CA
/// key (`revoked_certificates`), or through their request being revoked or
/// cancelled (a cancelled grant's window ended early, so every certificate of
/// it that is still valid outlives its window).
pub fn revoked_unexpired(conn: &impl Sql, now: i64) -> Result<Vec<RevokedCertificate>, StoreError> {
    conn.query_vec(
        "SELECT c.serial, c.key_id, c.ca_key_fingerprint,
                coalesce(r.state IN ('revoked', 'cancelled'), false)
         FROM certificates c LEFT JOIN requests r ON r.id = c.request_id
         WHERE c.valid_before > ?1
           AND (r.state IN ('revoked', 'cancelled')
                OR c.serial IN (SELECT serial FROM revoked_certificates))
         ORDER BY c.ca_key_fingerprint, c.serial",
        &[&now],
        |r| {
            Ok(RevokedCertificate {
                serial: r.get(0)?,
                key_id: r.get(1)?,
                ca_key_fingerprint: r.get(2)?,
                whole_request: r.get(3)?,
            })
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::engine::test_engines;
    use crate::store::{MaybeFault, audit};
    use tpa_core::audit::{NewEvent, Outcome};

    fn row(serial: &str, audit_seq: i64) -> CertificateRow {
        CertificateRow {
            serial: serial.into(),
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
            audit_seq,
        }
    }

    fn issue_event(serial: &str) -> NewEvent {
        NewEvent {
            time: chrono::DateTime::from_timestamp(1_800_000_000, 0).unwrap(),
            actor: "user:x".into(),
            source: "test".into(),
            action: "cert.issue".into(),
            object: format!("cert:{serial}"),
            outcome: Outcome::Success,
            reason: "test".into(),
            details: serde_json::json!({}),
        }
    }

    // issue 15: many rows in one statement (PostgreSQL) read back exactly,
    // and `taken` names the used serials among any number asked at once.
    #[test]
    fn rows_written_together_read_back_and_are_taken() {
        for (engine, mut conn, _dir) in test_engines() {
            let serials = ["11", "12", "13"];
            conn.write(|tx| {
                let mut chain = audit::Appender::at_head(tx)?;
                let mut rows = vec![];
                for serial in serials {
                    let event = chain.push(&issue_event(serial))?;
                    let mut r = row(serial, event.seq);
                    r.request_id = (serial != "12").then(|| format!("req-{serial}"));
                    r.key_id = format!("tpa:\"{serial}\" é");
                    rows.push(r);
                }
                chain.write(tx)?;
                insert_all(tx, &rows)
            })
            .unwrap();
            assert_eq!(count(&conn).unwrap(), 3, "{engine:?}");
            let key_ids: Vec<(String, String, Option<String>)> = conn
                .query_vec(
                    "SELECT serial, key_id, request_id FROM certificates ORDER BY serial",
                    &[],
                    |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
                )
                .unwrap();
            assert_eq!(
                key_ids[1],
                ("12".to_owned(), "tpa:\"12\" é".to_owned(), None),
                "{engine:?}"
            );
            assert_eq!(key_ids[2].2.as_deref(), Some("req-13"), "{engine:?}");
            let asked: Vec<String> = ["10", "11", "13", "14"].map(String::from).to_vec();
            let mut used = taken(&conn, &asked).unwrap();
            used.sort();
            assert_eq!(used, vec!["11".to_owned(), "13".to_owned()], "{engine:?}");
            assert_eq!(taken(&conn, &[]).unwrap(), Vec::<String>::new());
            assert_eq!(without_matching_audit(&conn).unwrap(), vec![], "{engine:?}");
        }
    }

    // issue 15: a reused serial is refused by the database on both engines
    // (a bug to report, not a condition to retry), and the whole issuance
    // transaction (its audit event too) rolls back with it.
    #[test]
    fn a_reused_serial_is_refused_by_the_database() {
        for (engine, mut conn, _dir) in test_engines() {
            conn.write(|tx| {
                let event = audit::append(tx, &issue_event("7"))?;
                insert(tx, &row("7", event.seq))
            })
            .unwrap();
            let again: Result<(), StoreError> = conn.write(|tx| {
                let event = audit::append(tx, &issue_event("7"))?;
                insert(tx, &row("7", event.seq))
            });
            let e = again.unwrap_err();
            assert_eq!(e.fault(), None, "{engine:?}: {e:?}");
            assert_eq!(count(&conn).unwrap(), 1, "{engine:?}");
            assert_eq!(audit::head(&conn).unwrap().unwrap().0, 1, "{engine:?}");
            conn.write(|tx| {
                assert!(serial_exists(tx, "7")?);
                assert!(!serial_exists(tx, "8")?);
                Ok::<_, StoreError>(())
            })
            .unwrap();
            assert_eq!(without_matching_audit(&conn).unwrap(), vec![], "{engine:?}");
            assert_eq!(
                certified_subject_keys(&conn, 150).unwrap(),
                vec!["SHA256:subject".to_owned()],
                "{engine:?}"
            );
            assert_eq!(
                certified_subject_keys(&conn, 250).unwrap(),
                Vec::<String>::new()
            );
            assert_eq!(revoked_unexpired(&conn, 150).unwrap(), vec![], "{engine:?}");
        }
    }
}
