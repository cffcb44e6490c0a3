//! The `certificates` table: one row per signed certificate, written in the
//! same transaction as its audit event.

use rusqlite::{Connection, Transaction, params};

use super::StoreError;

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
pub fn serial_exists(tx: &Transaction<'_>, serial: &str) -> Result<bool, StoreError> {
    Ok(tx
        .prepare_cached("SELECT EXISTS (SELECT 1 FROM certificates WHERE serial = ?1)")?
        .query_row([serial], |r| r.get(0))?)
}

/// Inserts a row; fails on a reused serial.
pub fn insert(tx: &Transaction<'_>, row: &CertificateRow) -> Result<(), StoreError> {
    tx.prepare_cached(
        "INSERT INTO certificates (serial, key_id, principals, extensions, critical_options, valid_after,
             valid_before, subject_key_fingerprint, ca_key_fingerprint, request_id, issued_by, issued_at, audit_seq)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
    )?
    .execute(params![
            row.serial,
            row.key_id,
            row.principals,
            row.extensions,
            row.critical_options,
            row.valid_after,
            row.valid_before,
            row.subject_key_fingerprint,
            row.ca_key_fingerprint,
            row.request_id,
            row.issued_by,
            row.issued_at,
            row.audit_seq
        ],
    )?;
    Ok(())
}

/// Certificates whose issuance event is missing from the audit trail or does
/// not name them: evidence of a truncated or rewritten trail. Returns
/// `(serial, audit_seq)` pairs, lowest audit_seq first.
pub fn without_matching_audit(conn: &Connection) -> Result<Vec<(String, i64)>, StoreError> {
    let mut stmt = conn.prepare(
        "SELECT c.serial, c.audit_seq FROM certificates c
         LEFT JOIN audit_events a ON a.seq = c.audit_seq
         WHERE a.seq IS NULL OR a.action != 'cert.issue' OR a.object != 'cert:' || c.serial
         ORDER BY c.audit_seq",
    )?;
    let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Number of certificates issued.
pub fn count(conn: &Connection) -> Result<i64, StoreError> {
    Ok(conn.query_row("SELECT count(*) FROM certificates", [], |r| r.get(0))?)
}

/// The subject key fingerprints (`SHA256:…`) of the certificates of
/// requests inside their validity period at `now`, sorted, without
/// duplicates: what a bastion answers a key's probe for. Revoked ones too, so
/// that the bastion's signed-attempt check can tell their holder why.
pub fn certified_subject_keys(conn: &Connection, now: i64) -> Result<Vec<String>, StoreError> {
    let mut stmt = conn.prepare(
        "SELECT DISTINCT subject_key_fingerprint FROM certificates
         WHERE request_id IS NOT NULL AND valid_after <= ?1 AND valid_before > ?1
         ORDER BY subject_key_fingerprint",
    )?;
    let rows = stmt.query_map([now], |r| r.get(0))?;
    Ok(rows.collect::<Result<_, _>>()?)
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
pub fn revoked_unexpired(
    conn: &Connection,
    now: i64,
) -> Result<Vec<RevokedCertificate>, StoreError> {
    let mut stmt = conn.prepare(
        "SELECT c.serial, c.key_id, c.ca_key_fingerprint,
                coalesce(r.state IN ('revoked', 'cancelled'), 0)
         FROM certificates c LEFT JOIN requests r ON r.id = c.request_id
         WHERE c.valid_before > ?1
           AND (r.state IN ('revoked', 'cancelled')
                OR c.serial IN (SELECT serial FROM revoked_certificates))
         ORDER BY c.ca_key_fingerprint, c.serial",
    )?;
    let rows = stmt.query_map([now], |r| {
        Ok(RevokedCertificate {
            serial: r.get(0)?,
            key_id: r.get(1)?,
            ca_key_fingerprint: r.get(2)?,
            whole_request: r.get(3)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}
