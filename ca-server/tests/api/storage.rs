//! Storage failures during issuance: an audit insert that fails, a certificate
//! insert that fails, a locked database, a full database and a read-only data
//! directory each give an error and no certificate, and leave no `cert.issue`
//! success event behind.
//!
//! Tests run as root in CI, where `chmod` does not stop writes; failures are
//! therefore made inside the database (triggers, locks, a read-only
//! session, SQLite's page limit) or, for the read-only directory, by running
//! `tpa-ca` as an unprivileged user. Each runs on the engine of the run
//! (`TPA_TEST_ENGINE`), with the engine's own form of the fault, except the
//! two faults of the SQLite file itself, which build a SQLite store
//! whatever the run's engine (issue 15).

use std::path::Path;
use std::time::{Duration, Instant};

use ca_server::commands::verify_database;
use ca_server::store::sql::Engine;
use ca_server::workflow::IssueError;

use crate::helpers::{
    DataDir, Fixture, audit_rows, chmod, count, ed25519_public_key, run, tpa_ca, valid_input,
};

/// Issues a valid certificate and expects a storage error with no trace of a
/// certificate: no row, no new audit event. Returns the error's message.
fn expect_storage_failure(f: &mut Fixture) -> String {
    let events_before = audit_rows(&f.conn);

    let result = f.issue(&valid_input(ed25519_public_key()));

    let message = match result {
        Err(e @ IssueError::Storage(_)) => e.to_string(),
        other => panic!("expected a storage error, got {other:?}"),
    };
    assert!(
        message.starts_with("storage failed, no certificate was issued"),
        "{message}"
    );
    assert_eq!(count(&f.conn, "certificates"), 0);
    assert_eq!(audit_rows(&f.conn), events_before, "no audit event written");
    message
}

#[test]
fn failing_audit_insert_gives_storage_error_and_no_certificate() {
    let mut f = Fixture::new();
    f.conn.fail_on(
        "fail_audit",
        "INSERT",
        "audit_events",
        "true",
        "simulated audit write failure",
    );

    let message = expect_storage_failure(&mut f);
    assert!(
        message.contains("simulated audit write failure"),
        "{message}"
    );

    // A refusal that cannot be recorded is a storage error too, not a silent denial.
    let mut bad = valid_input(ed25519_public_key());
    bad.principals = vec!["*".to_owned()];
    assert!(
        matches!(f.issue(&bad), Err(IssueError::Storage(_))),
        "unrecorded denial must be a storage error"
    );

    f.conn.stop_failing("fail_audit", "audit_events");
    f.issue(&valid_input(ed25519_public_key())).unwrap();
    assert_eq!(count(&f.conn, "certificates"), 1);
}

#[test]
fn failing_certificate_insert_rolls_back_the_audit_event() {
    let mut f = Fixture::new();
    f.conn.fail_on(
        "fail_certificates",
        "INSERT",
        "certificates",
        "true",
        "simulated certificate write failure",
    );

    // The audit event is appended before the certificate row, in the same
    // transaction: it must be rolled back with it.
    let message = expect_storage_failure(&mut f);
    assert!(
        message.contains("simulated certificate write failure"),
        "{message}"
    );
    assert!(
        verify_database(&f.conn).unwrap().is_ok(),
        "the trail is intact"
    );
}

// Another connection holds the write lock: SQLite's `BEGIN IMMEDIATE` (the
// database is locked), or on PostgreSQL a transaction holding an exclusive
// lock on the audit table; the issuing connection gives up after its busy
// timeout or lock timeout (issue 15: the same fault on both engines).
#[test]
fn locked_database_gives_storage_error_and_no_certificate() {
    let mut f = Fixture::new();
    let other = f.data.open_plain();
    let expected = match f.data.engine() {
        Engine::Sqlite => {
            other.batch("BEGIN IMMEDIATE");
            f.conn.batch("PRAGMA busy_timeout = 200");
            "database is locked"
        }
        Engine::Postgres => {
            other.batch("BEGIN; LOCK TABLE audit_events IN EXCLUSIVE MODE");
            f.conn.batch("SET lock_timeout = '200ms'");
            "lock timeout"
        }
    };
    let started = Instant::now();

    let message = expect_storage_failure(&mut f);

    assert!(message.contains(expected), "{message}");
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "gave up after the busy timeout"
    );
    other.batch("ROLLBACK");
    f.issue(&valid_input(ed25519_public_key())).unwrap();
    assert_eq!(count(&f.conn, "certificates"), 1);
}

// A store that refuses writes: SQLite's `query_only`, PostgreSQL's
// read-only transactions (as on a standby).
#[test]
fn database_refusing_writes_gives_storage_error_and_no_certificate() {
    let mut f = Fixture::new();
    let expected = match f.data.engine() {
        Engine::Sqlite => {
            f.conn.batch("PRAGMA query_only = 1");
            "readonly"
        }
        Engine::Postgres => {
            f.conn.batch("SET default_transaction_read_only = on");
            "read-only transaction"
        }
    };

    let message = expect_storage_failure(&mut f);

    assert!(message.contains(expected), "{message}");
}

#[test]
fn full_database_gives_storage_error_and_commits_nothing_partial() {
    // SQLite only, whatever the run's engine: SQLite's page limit stands in
    // for a full disk (the same SQLITE_FULL error); a full disk under
    // PostgreSQL is the server's, outside the CA.
    let mut f = Fixture::sqlite();
    let pages: i64 = f.conn.one("PRAGMA page_count", &[]);
    let _: i64 = f.conn.one(&format!("PRAGMA max_page_count = {pages}"), &[]);
    let mut issued = 0;
    let error = loop {
        assert!(issued < 1000, "the database never filled up");
        match f.issue(&valid_input(ed25519_public_key())) {
            Ok(_) => issued += 1,
            Err(e) => break e,
        }
    };

    assert!(matches!(error, IssueError::Storage(_)), "{error:?}");
    assert!(error.to_string().contains("full"), "{error}");
    // Everything before the failure is there; nothing of the failed attempt is.
    assert_eq!(count(&f.conn, "certificates"), issued);
    assert_eq!(count(&f.conn, "audit_events"), 1 + issued);
    assert!(verify_database(&f.conn).unwrap().is_ok());
}

/// Changes the owner of `path` and everything below it.
fn chown_tree(path: &Path, uid: u32, gid: u32) {
    std::os::unix::fs::chown(path, Some(uid), Some(gid)).unwrap();
    if path.is_dir() {
        for entry in std::fs::read_dir(path).unwrap() {
            chown_tree(&entry.unwrap().path(), uid, gid);
        }
    }
}

#[test]
fn read_only_data_directory_gives_an_error_and_no_certificate() {
    // SQLite only, whatever the run's engine: the store's files in the
    // read-only directory are the fault (a PostgreSQL store lives elsewhere).
    let data = DataDir::sqlite();
    let pubkey = data.tmp.path().join("user.pub");
    std::fs::write(&pubkey, ed25519_public_key()).unwrap();
    let db_files: Vec<_> = ["", "-wal", "-shm"]
        .iter()
        .map(|s| Path::new(&format!("{}{s}", data.db_path().display())).to_owned())
        .filter(|p| p.exists())
        .collect();
    // Root ignores file modes, so as root run tpa-ca as the unprivileged
    // user `nobody`, who owns the (read-only) data directory.
    let as_root = rustix::process::geteuid().is_root();
    let mut cmd = if as_root {
        chown_tree(data.tmp.path(), 65534, 65534);
        let mut cmd = std::process::Command::new("setpriv");
        cmd.args(["--reuid=65534", "--regid=65534", "--clear-groups"])
            .arg(env!("CARGO_BIN_EXE_tpa-ca"))
            .env("TPA_LOG", "warn")
            .stdin(std::process::Stdio::null());
        cmd
    } else {
        tpa_ca()
    };
    for file in &db_files {
        chmod(file, 0o444);
    }
    chmod(&data.dir, 0o555);

    let (code, stdout, stderr) = run(cmd
        .args(["issue", "--config"])
        .arg(&data.config_path)
        .args(["--principal", "deploy", "--ttl", "5m", "--pubkey"])
        .arg(&pubkey)
        .args(["--reason", "INC-1 read-only test", "--admin", "root"]));

    chmod(&data.dir, 0o700);
    for file in &db_files {
        chmod(file, 0o600);
    }
    assert_ne!(code, 0, "stdout: {stdout}\nstderr: {stderr}");
    assert_eq!(stdout, "", "no certificate is printed");
    assert!(
        stderr.contains("no certificate was issued") && stderr.contains("readonly database"),
        "stderr: {stderr}"
    );
    let conn = data.open_plain();
    assert_eq!(count(&conn, "certificates"), 0);
    assert!(
        audit_rows(&conn)
            .iter()
            .all(|e| !(e.action == "cert.issue" && e.outcome == "success"))
    );
}
