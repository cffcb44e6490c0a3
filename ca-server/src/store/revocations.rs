//! The `revocations`, `revoked_certificates`, `revoked_ca_keys` and
//! `krl_state` tables: what was revoked, by whom and why, and the KRL version.
//! Rows are final (triggers refuse `UPDATE` and `DELETE`).

use rusqlite::{Connection, OptionalExtension as _, Transaction, params};

use super::StoreError;

/// What a revocation names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// One certificate serial.
    Serial,
    /// Every certificate of a request (and the request's window).
    Request,
    /// Every active grant and live certificate of a user.
    User,
    /// Every certificate signed by a CA key.
    CaKey,
}

impl Kind {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Serial => "serial",
            Kind::Request => "request",
            Kind::User => "user",
            Kind::CaKey => "ca_key",
        }
    }
}

/// One act of revocation about to be stored.
#[derive(Debug, Clone)]
pub struct NewRevocation<'a> {
    /// What it names.
    pub kind: Kind,
    /// The serial, request id, username or CA key fingerprint.
    pub target: &'a str,
    /// Why.
    pub reason: &'a str,
    /// The audit actor.
    pub revoked_by: &'a str,
    /// RFC 3339 UTC.
    pub revoked_at: &'a str,
    /// Its audit event.
    pub audit_seq: i64,
}

/// Stores one act of revocation; returns its id.
pub fn insert(tx: &Transaction<'_>, r: &NewRevocation<'_>) -> Result<i64, StoreError> {
    tx.execute(
        "INSERT INTO revocations (kind, target, reason, revoked_by, revoked_at, audit_seq)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        params![
            r.kind.as_str(),
            r.target,
            r.reason,
            r.revoked_by,
            r.revoked_at,
            r.audit_seq
        ],
    )?;
    Ok(tx.last_insert_rowid())
}

/// Marks `serials` revoked by revocation `id`; a certificate revoked before
/// keeps its first revocation. Returns how many were newly revoked.
pub fn revoke_certificates(
    tx: &Transaction<'_>,
    id: i64,
    serials: &[String],
) -> Result<usize, StoreError> {
    let mut stmt = tx.prepare_cached(
        "INSERT OR IGNORE INTO revoked_certificates (serial, revocation_id) VALUES (?1, ?2)",
    )?;
    let mut count = 0;
    for serial in serials {
        count += stmt.execute(params![serial, id])?;
    }
    Ok(count)
}

/// Marks a CA key revoked; false when it already was.
pub fn revoke_ca_key(tx: &Transaction<'_>, id: i64, fingerprint: &str) -> Result<bool, StoreError> {
    Ok(tx.execute(
        "INSERT OR IGNORE INTO revoked_ca_keys (fingerprint, revocation_id) VALUES (?1, ?2)",
        params![fingerprint, id],
    )? == 1)
}

/// The one definition of "this certificate is revoked", as an SQL expression
/// over a `certificates` row aliased `c`: by an act naming it
/// (`revoked_certificates`), through its request being revoked or cancelled,
/// or through its CA key being revoked.
pub(crate) const CERTIFICATE_REVOKED: &str =
    "(EXISTS (SELECT 1 FROM revoked_certificates rc WHERE rc.serial = c.serial)
      OR EXISTS (SELECT 1 FROM requests rq
                 WHERE rq.id = c.request_id AND rq.state IN ('revoked', 'cancelled'))
      OR EXISTS (SELECT 1 FROM revoked_ca_keys k WHERE k.fingerprint = c.ca_key_fingerprint))";

/// The revoked CA key fingerprints, sorted.
pub fn revoked_ca_keys(conn: &Connection) -> Result<Vec<String>, StoreError> {
    let mut stmt = conn.prepare("SELECT fingerprint FROM revoked_ca_keys ORDER BY fingerprint")?;
    let rows = stmt.query_map([], |r| r.get(0))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// A certificate as revocation needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertRef {
    /// Decimal serial.
    pub serial: String,
    /// Key id.
    pub key_id: String,
    /// The request, for certificates of the workflow.
    pub request_id: Option<String>,
    /// `SHA256:…` of the signing CA key.
    pub ca_key_fingerprint: String,
    /// Unix seconds.
    pub valid_before: i64,
}

const CERT_COLUMNS: &str = "c.serial, c.key_id, c.request_id, c.ca_key_fingerprint, c.valid_before";

fn cert_ref(r: &rusqlite::Row<'_>) -> rusqlite::Result<CertRef> {
    Ok(CertRef {
        serial: r.get(0)?,
        key_id: r.get(1)?,
        request_id: r.get(2)?,
        ca_key_fingerprint: r.get(3)?,
        valid_before: r.get(4)?,
    })
}

fn certs(
    conn: &Connection,
    filter: &str,
    args: impl rusqlite::Params,
) -> Result<Vec<CertRef>, StoreError> {
    let sql = format!("SELECT {CERT_COLUMNS} FROM certificates c {filter} ORDER BY c.audit_seq");
    let mut stmt = conn.prepare(&sql)?;
    let rows = stmt.query_map(args, cert_ref)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// One certificate by serial.
pub fn certificate(conn: &Connection, serial: &str) -> Result<Option<CertRef>, StoreError> {
    let sql = format!("SELECT {CERT_COLUMNS} FROM certificates c WHERE c.serial = ?1");
    Ok(conn.query_row(&sql, [serial], cert_ref).optional()?)
}

/// Every certificate of a request.
pub fn certificates_of_request(
    conn: &Connection,
    request_id: &str,
) -> Result<Vec<CertRef>, StoreError> {
    certs(conn, "WHERE c.request_id = ?1", [request_id])
}

/// The identities known under `username`: every (issuer, subject) that
/// requested under that name or holds a session or API token under it. A user
/// is revoked by identity, so that grants the same person obtained under an
/// earlier username (an OIDC claim that changed) are not missed.
const IDENTITIES_NAMED: &str = "WITH ids (issuer, subject) AS (
         SELECT requester_issuer, requester_subject FROM requests WHERE requester_username = ?1
         UNION SELECT issuer, subject FROM auth_tokens WHERE username = ?1)";

/// The certificates of the user named `username` still valid at `now_unix`:
/// those of every request of an identity known under that name (whatever
/// username the request carries), and the break-glass certificates
/// `tpa-ca issue` made for that name.
pub fn live_certificates_of_user(
    conn: &Connection,
    username: &str,
    now_unix: i64,
) -> Result<Vec<CertRef>, StoreError> {
    let sql = format!(
        "{IDENTITIES_NAMED}
         SELECT {CERT_COLUMNS} FROM certificates c LEFT JOIN requests r ON r.id = c.request_id
         WHERE c.valid_before > ?2
           AND (EXISTS (SELECT 1 FROM ids
                        WHERE ids.issuer = r.requester_issuer AND ids.subject = r.requester_subject)
                OR c.key_id = 'tpa:admin-issue:user=' || ?1)
         ORDER BY c.audit_seq"
    );
    let mut stmt = conn.prepare(&sql)?;
    let rows = stmt.query_map(params![username, now_unix], cert_ref)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// The certificates signed by the CA key `fingerprint` still valid at `now_unix`.
pub fn live_certificates_of_ca(
    conn: &Connection,
    fingerprint: &str,
    now_unix: i64,
) -> Result<Vec<CertRef>, StoreError> {
    certs(
        conn,
        "WHERE c.ca_key_fingerprint = ?1 AND c.valid_before > ?2",
        params![fingerprint, now_unix],
    )
}

/// The ids of the open requests of every identity known under `username`
/// (see [`live_certificates_of_user`]): pending ones, and approved ones whose
/// window has not ended at `now` (RFC 3339).
pub fn open_requests_of_user(
    conn: &Connection,
    username: &str,
    now: &str,
) -> Result<Vec<String>, StoreError> {
    let sql = format!(
        "{IDENTITIES_NAMED}
         SELECT r.id FROM requests r JOIN ids
           ON ids.issuer = r.requester_issuer AND ids.subject = r.requester_subject
         WHERE r.state = 'pending' OR (r.state = 'approved' AND r.window_end > ?2)
         ORDER BY r.created_at, r.id"
    );
    let mut stmt = conn.prepare(&sql)?;
    let rows = stmt.query_map(params![username, now], |r| r.get(0))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Revokes the unexpired web sessions and API tokens of every identity known
/// under `username` at `now` (RFC 3339); returns how many.
pub fn revoke_logins_of_user(
    tx: &Transaction<'_>,
    username: &str,
    now: &str,
) -> Result<usize, StoreError> {
    let sql = format!(
        "{IDENTITIES_NAMED}
         UPDATE auth_tokens SET revoked_at = ?2
         WHERE revoked_at IS NULL AND expires_at > ?2
           AND (issuer, subject) IN (SELECT issuer, subject FROM ids)"
    );
    Ok(tx.execute(&sql, params![username, now])?)
}

/// Raises the KRL version: one more than before, and never below the audit
/// head (the version earlier builds served). Call inside every transaction
/// that revokes something.
pub fn bump_krl_version(tx: &Transaction<'_>) -> Result<i64, StoreError> {
    tx.execute(
        "INSERT INTO krl_state (id, version) VALUES (1, 0) ON CONFLICT (id) DO NOTHING",
        [],
    )?;
    tx.execute(
        "UPDATE krl_state SET version = max(version + 1,
             (SELECT coalesce(max(seq), 0) FROM audit_events)) WHERE id = 1",
        [],
    )?;
    krl_version(tx)
}

/// The current KRL version.
pub fn krl_version(conn: &Connection) -> Result<i64, StoreError> {
    Ok(conn
        .query_row("SELECT version FROM krl_state WHERE id = 1", [], |r| {
            r.get(0)
        })
        .optional()?
        .unwrap_or(0))
}
