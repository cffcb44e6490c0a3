//! The `revocations`, `revoked_certificates`, `revoked_ca_keys` and
//! `krl_state` tables: what was revoked, by whom and why, and the KRL version.
//! Rows are final (triggers refuse `UPDATE` and `DELETE`).

use super::StoreError;
use super::sql::{Engine, Param, Row, Sql};

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
pub fn insert(tx: &impl Sql, r: &NewRevocation<'_>) -> Result<i64, StoreError> {
    tx.query_one(
        "INSERT INTO revocations (kind, target, reason, revoked_by, revoked_at, audit_seq)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6) RETURNING id",
        &[
            &r.kind.as_str(),
            &r.target,
            &r.reason,
            &r.revoked_by,
            &r.revoked_at,
            &r.audit_seq,
        ],
        |row| row.get(0),
    )
}

/// Marks `serials` revoked by revocation `id`; a certificate revoked before
/// keeps its first revocation. Returns how many were newly revoked.
pub fn revoke_certificates(
    tx: &impl Sql,
    id: i64,
    serials: &[String],
) -> Result<usize, StoreError> {
    let mut count = 0;
    for serial in serials {
        count += tx.execute(
            "INSERT INTO revoked_certificates (serial, revocation_id) VALUES (?1, ?2)
             ON CONFLICT DO NOTHING",
            &[serial, &id],
        )?;
    }
    Ok(count as usize)
}

/// Marks a CA key revoked; false when it already was.
pub fn revoke_ca_key(tx: &impl Sql, id: i64, fingerprint: &str) -> Result<bool, StoreError> {
    Ok(tx.execute(
        "INSERT INTO revoked_ca_keys (fingerprint, revocation_id) VALUES (?1, ?2)
         ON CONFLICT DO NOTHING",
        &[&fingerprint, &id],
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
pub fn revoked_ca_keys(conn: &impl Sql) -> Result<Vec<String>, StoreError> {
    conn.query_vec(
        "SELECT fingerprint FROM revoked_ca_keys ORDER BY fingerprint",
        &[],
        |r| r.get(0),
    )
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

fn cert_ref(r: &Row<'_, '_>) -> Result<CertRef, StoreError> {
    Ok(CertRef {
        serial: r.get(0)?,
        key_id: r.get(1)?,
        request_id: r.get(2)?,
        ca_key_fingerprint: r.get(3)?,
        valid_before: r.get(4)?,
    })
}

fn certs(conn: &impl Sql, filter: &str, args: &[&dyn Param]) -> Result<Vec<CertRef>, StoreError> {
    let sql = format!("SELECT {CERT_COLUMNS} FROM certificates c {filter} ORDER BY c.audit_seq");
    conn.query_vec(&sql, args, cert_ref)
}

/// One certificate by serial.
pub fn certificate(conn: &impl Sql, serial: &str) -> Result<Option<CertRef>, StoreError> {
    let sql = format!("SELECT {CERT_COLUMNS} FROM certificates c WHERE c.serial = ?1");
    conn.query_opt(&sql, &[&serial], cert_ref)
}

/// Every certificate of a request.
pub fn certificates_of_request(
    conn: &impl Sql,
    request_id: &str,
) -> Result<Vec<CertRef>, StoreError> {
    certs(conn, "WHERE c.request_id = ?1", &[&request_id])
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
    conn: &impl Sql,
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
    conn.query_vec(&sql, &[&username, &now_unix], cert_ref)
}

/// The certificates signed by the CA key `fingerprint` still valid at `now_unix`.
pub fn live_certificates_of_ca(
    conn: &impl Sql,
    fingerprint: &str,
    now_unix: i64,
) -> Result<Vec<CertRef>, StoreError> {
    certs(
        conn,
        "WHERE c.ca_key_fingerprint = ?1 AND c.valid_before > ?2",
        &[&fingerprint, &now_unix],
    )
}

/// The ids of the open requests of every identity known under `username`
/// (see [`live_certificates_of_user`]): pending ones, and approved ones whose
/// window has not ended at `now` (RFC 3339).
pub fn open_requests_of_user(
    conn: &impl Sql,
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
    conn.query_vec(&sql, &[&username, &now], |r| r.get(0))
}

/// Revokes the unexpired web sessions and API tokens of every identity known
/// under `username` at `now` (RFC 3339); returns how many.
pub fn revoke_logins_of_user(
    tx: &impl Sql,
    username: &str,
    now: &str,
) -> Result<usize, StoreError> {
    let sql = format!(
        "{IDENTITIES_NAMED}
         UPDATE auth_tokens SET revoked_at = ?2
         WHERE revoked_at IS NULL AND expires_at > ?2
           AND (issuer, subject) IN (SELECT issuer, subject FROM ids)"
    );
    Ok(tx.execute(&sql, &[&username, &now])? as usize)
}

/// Raises the KRL version: one more than before, and never below the audit
/// head (the version earlier builds served). Call inside every transaction
/// that revokes something. On PostgreSQL the update holds the row until
/// commit, so revocations on several replicas raise it one after another:
/// the version is monotonic and the same from every replica.
pub fn bump_krl_version(tx: &impl Sql) -> Result<i64, StoreError> {
    tx.execute(
        "INSERT INTO krl_state (id, version) VALUES (1, 0) ON CONFLICT (id) DO NOTHING",
        &[],
    )?;
    // The two-argument maximum is `max` in SQLite and `greatest` in PostgreSQL.
    let bump = match tx.engine() {
        Engine::Sqlite => {
            "UPDATE krl_state SET version = max(version + 1,
                 (SELECT coalesce(max(seq), 0) FROM audit_events)) WHERE id = 1"
        }
        Engine::Postgres => {
            "UPDATE krl_state SET version = greatest(version + 1,
                 (SELECT coalesce(max(seq), 0) FROM audit_events)) WHERE id = 1"
        }
    };
    tx.execute(bump, &[])?;
    krl_version(tx)
}

/// The current KRL version.
pub fn krl_version(conn: &impl Sql) -> Result<i64, StoreError> {
    Ok(conn
        .query_opt("SELECT version FROM krl_state WHERE id = 1", &[], |r| {
            r.get(0)
        })?
        .unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Whether this certificate is revoked (by any act, or through its request).
    fn certificate_revoked(conn: &impl Sql, serial: &str) -> Result<bool, StoreError> {
        let sql = format!("SELECT {CERTIFICATE_REVOKED} FROM certificates c WHERE c.serial = ?1");
        Ok(conn
            .query_opt(&sql, &[&serial], |r| r.get(0))?
            .unwrap_or(false))
    }
    use crate::store::certificates::{self, CertificateRow};
    use crate::store::engine::test_engines;
    use crate::store::{Conn, audit};
    use tpa_core::audit::{NewEvent, Outcome};

    fn event(action: &str, object: &str) -> NewEvent {
        NewEvent {
            time: chrono::DateTime::from_timestamp(1_800_000_000, 0).unwrap(),
            actor: "admin:root".into(),
            source: "test".into(),
            action: action.into(),
            object: object.into(),
            outcome: Outcome::Success,
            reason: "test".into(),
            details: serde_json::json!({}),
        }
    }

    fn issue(conn: &mut Conn, serial: &str, key_id: &str) {
        conn.write(|tx| {
            let e = audit::append(tx, &event("cert.issue", &format!("cert:{serial}")))?;
            certificates::insert(
                tx,
                &CertificateRow {
                    serial: serial.into(),
                    key_id: key_id.into(),
                    principals: "[]".into(),
                    extensions: "[]".into(),
                    critical_options: "{}".into(),
                    valid_after: 0,
                    valid_before: 1_000,
                    subject_key_fingerprint: "SHA256:s".into(),
                    ca_key_fingerprint: "SHA256:ca".into(),
                    request_id: None,
                    issued_by: "admin:root".into(),
                    issued_at: "2026-01-01T00:00:00Z".into(),
                    audit_seq: e.seq,
                },
            )
        })
        .unwrap();
    }

    // issue 15: revocation reads and writes give the same answers on both
    // engines, and the KRL version only grows.
    #[test]
    fn revocations_and_the_krl_version_on_both_engines() {
        for (engine, mut conn, _dir) in test_engines() {
            issue(&mut conn, "11", "tpa:admin-issue:user=alice");
            issue(&mut conn, "12", "tpa:admin-issue:user=bob");
            let before = krl_version(&conn).unwrap();
            let (newly, again, version) = conn
                .write(|tx| {
                    let e = audit::append(tx, &event("cert.revoke", "cert:11"))?;
                    let id = insert(
                        tx,
                        &NewRevocation {
                            kind: Kind::Serial,
                            target: "11",
                            reason: "lost laptop",
                            revoked_by: "admin:root",
                            revoked_at: "2026-01-01T00:00:00Z",
                            audit_seq: e.seq,
                        },
                    )?;
                    let newly = revoke_certificates(tx, id, &["11".to_owned()])?;
                    let again = revoke_certificates(tx, id, &["11".to_owned()])?;
                    Ok::<_, StoreError>((newly, again, bump_krl_version(tx)?))
                })
                .unwrap();
            assert_eq!((newly, again), (1, 0), "{engine:?}");
            assert!(version > before, "{engine:?}: {version} > {before}");
            assert!(certificate_revoked(&conn, "11").unwrap(), "{engine:?}");
            assert!(!certificate_revoked(&conn, "12").unwrap(), "{engine:?}");
            assert!(!certificate_revoked(&conn, "99").unwrap(), "{engine:?}");
            let alice: Vec<String> = live_certificates_of_user(&conn, "alice", 500)
                .unwrap()
                .into_iter()
                .map(|c| c.serial)
                .collect();
            assert_eq!(alice, vec!["11".to_owned()], "{engine:?}");
            assert_eq!(
                live_certificates_of_ca(&conn, "SHA256:ca", 500)
                    .unwrap()
                    .len(),
                2,
                "{engine:?}"
            );
            assert_eq!(
                open_requests_of_user(&conn, "alice", "2026-01-01T00:00:00Z").unwrap(),
                Vec::<String>::new()
            );
            let (revoked, next) = conn
                .write(|tx| {
                    Ok::<_, StoreError>((
                        revoke_logins_of_user(tx, "alice", "2026-01-01T00:00:00Z")?,
                        bump_krl_version(tx)?,
                    ))
                })
                .unwrap();
            assert_eq!(revoked, 0, "{engine:?}");
            assert_eq!(next, version + 1, "{engine:?}");
            assert_eq!(krl_version(&conn).unwrap(), next, "{engine:?}");
        }
    }

    // issue 15: replicas revoking at once raise the KRL version one after
    // another: every bump sees its own, distinct version, none is lost.
    #[test]
    fn concurrent_bumps_keep_the_krl_version_monotonic_on_postgres() {
        let (options, _) = crate::store::pg::test_database();
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let options = options.clone();
                std::thread::spawn(move || {
                    let mut conn =
                        Conn::Postgres(Box::new(crate::store::pg::connect(&options).unwrap()));
                    (0..10)
                        .map(|_| conn.write(|tx| bump_krl_version(tx)).unwrap())
                        .collect::<Vec<i64>>()
                })
            })
            .collect();
        let mut versions: Vec<i64> = threads
            .into_iter()
            .flat_map(|t| t.join().unwrap())
            .collect();
        versions.sort_unstable();
        assert_eq!(versions, (1..=40).collect::<Vec<i64>>());
    }
}
