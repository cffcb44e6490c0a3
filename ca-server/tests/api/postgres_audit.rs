//! `tpa-ca audit verify|export|checkpoint` on a CA whose `[database]` names
//! PostgreSQL (issue 15): the trail written through the command line is
//! verified, signed and exported as on SQLite, and verify finds a trail
//! edited, cut, reordered or truncated directly in PostgreSQL (every trigger
//! off first, as someone holding the database superuser would), and an
//! older copy of the database put back behind its checkpoint file.

use ca_server::config::DatabaseConfig;
use tpa_testkit::DataDir;

use crate::helpers::{postgres_ca, run, tpa_ca, tpa_ca_issue as issue};

/// `tpa-ca audit verify --config`.
fn verify(data: &DataDir) -> (i32, String, String) {
    run(tpa_ca()
        .args(["audit", "verify", "--config"])
        .arg(&data.config_path))
}

/// Five events: 1 `ca.init`, 2 and 3 issuances, 4 a refused issuance, 5 an
/// issuance; all through the command line.
fn trail() -> DataDir {
    let data = postgres_ca();
    for principal in ["deploy", "deploy", "prod-*", "deploy"] {
        let (code, stdout, stderr) = issue(&data, principal);
        assert_eq!(code == 0, principal == "deploy", "{stdout}{stderr}");
    }
    let (code, stdout, stderr) = verify(&data);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.starts_with("audit trail OK: 5 events"), "{stdout}");
    data
}

/// Runs `sql` on a plain (superuser) client with every trigger off: the
/// append-only ones and those behind the foreign keys.
fn tamper(data: &DataDir, sql: &str) {
    let mut client = data.postgres_client();
    client
        .batch_execute(&format!("SET session_replication_role = replica; {sql}"))
        .unwrap();
}

fn assert_broken_at(data: &DataDir, seq: i64, why: &str) {
    let (code, stdout, stderr) = verify(data);
    assert_eq!(code, 1, "stdout: {stdout}\nstderr: {stderr}");
    assert!(
        stderr.contains(&format!("audit trail BROKEN at seq {seq}")),
        "{stderr}"
    );
    assert!(stderr.contains(why), "{stderr}");
    assert_eq!(stdout, "");
}

// issue 15: `audit checkpoint`, `audit verify` and `audit export` on
// PostgreSQL: the checkpoint is stored in PostgreSQL, verify holds the trail
// against it, and an export verifies on its own with the audit public key.
#[test]
fn audit_checkpoint_verify_and_export_on_postgres() {
    let data = trail();
    let (code, stdout, stderr) = run(tpa_ca()
        .args(["audit", "checkpoint", "--config"])
        .arg(&data.config_path));
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("signed checkpoint: seq 5"), "{stdout}");
    let stored: i64 = data
        .postgres_client()
        .query_one("SELECT max(seq) FROM audit_checkpoints", &[])
        .unwrap()
        .get(0);
    assert_eq!(stored, 5);

    let (code, stdout, stderr) = verify(&data);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stdout.contains(
            "checkpoints OK: 1 signed checkpoints match the trail; the latest covers seq 5"
        ),
        "{stdout}"
    );
    assert!(stdout.contains("unsigned events at the end: 0"), "{stdout}");

    let (code, export, stderr) = run(tpa_ca()
        .args(["audit", "export", "--config"])
        .arg(&data.config_path));
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(
        export.lines().count(),
        6,
        "5 events and 1 checkpoint: {export}"
    );
    let file = data.tmp.path().join("audit.jsonl");
    std::fs::write(&file, &export).unwrap();
    let (code, stdout, stderr) = run(tpa_ca()
        .args(["audit", "verify", "--file"])
        .arg(&file)
        .arg("--public-key")
        .arg(data.dir.join("audit_key.pub")));
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.starts_with("audit trail OK: 5 events"), "{stdout}");
    assert!(stdout.contains("unsigned events at the end: 0"), "{stdout}");
}

// issue 15: a field edited in PostgreSQL is named by its seq.
#[test]
fn audit_verify_on_postgres_finds_an_edited_event() {
    let data = trail();
    tamper(
        &data,
        "UPDATE audit_events SET reason = 'routine' WHERE seq = 3",
    );
    assert_broken_at(&data, 3, "");
}

// issue 15: an event deleted from the middle is named.
#[test]
fn audit_verify_on_postgres_finds_a_deleted_event() {
    let data = trail();
    tamper(&data, "DELETE FROM audit_events WHERE seq = 3");
    assert_broken_at(&data, 3, "deleted");
}

// issue 15: two events swapped (every column but seq) are named at the first.
#[test]
fn audit_verify_on_postgres_finds_reordered_events() {
    let data = trail();
    let columns = "time, actor, source, action, object, outcome, reason, details, prev_hash";
    tamper(
        &data,
        &format!(
            "CREATE TEMP TABLE saved AS SELECT * FROM audit_events WHERE seq IN (2, 3);
             UPDATE audit_events SET hash = 'placeholder' WHERE seq = 2;
             UPDATE audit_events SET ({columns}, hash) =
                 (SELECT {columns}, hash FROM saved WHERE seq = 2) WHERE seq = 3;
             UPDATE audit_events SET ({columns}, hash) =
                 (SELECT {columns}, hash FROM saved WHERE seq = 3) WHERE seq = 2;"
        ),
    );
    assert_broken_at(&data, 2, "");
}

// issue 15: a truncated tail is found through the certificates whose
// issuance events it took.
#[test]
fn audit_verify_on_postgres_finds_a_truncated_tail() {
    let data = trail();
    tamper(&data, "DELETE FROM audit_events WHERE seq >= 4");
    assert_broken_at(&data, 4, "truncated");
}

// issue 15: a tail cut back past a signed checkpoint (events that name no
// certificate, so only the checkpoint can tell) is caught on PostgreSQL.
#[test]
fn audit_verify_on_postgres_finds_truncation_past_a_checkpoint() {
    let data = trail();
    for principal in ["prod-*", "prod-*"] {
        let (code, _, _) = issue(&data, principal);
        assert_ne!(code, 0);
    }
    let (code, stdout, stderr) = run(tpa_ca()
        .args(["audit", "checkpoint", "--config"])
        .arg(&data.config_path));
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("signed checkpoint: seq 7"), "{stdout}");
    tamper(&data, "DELETE FROM audit_events WHERE seq >= 6");
    assert_broken_at(&data, 6, "covers seq 7");
}

// issue 15: the checkpoint file outside the database holds a PostgreSQL
// store too: putting back an older state (the last events and the
// checkpoint that covered them gone from the database) is caught by it.
#[test]
fn audit_verify_on_postgres_catches_an_older_copy_through_the_checkpoint_file() {
    let data = trail();
    let checkpoint = || {
        run(tpa_ca()
            .args(["audit", "checkpoint", "--config"])
            .arg(&data.config_path))
    };
    let (code, _, stderr) = checkpoint();
    assert_eq!(code, 0, "{stderr}");
    for _ in 0..2 {
        let (code, _, _) = issue(&data, "prod-*");
        assert_ne!(code, 0);
    }
    let (code, stdout, stderr) = checkpoint();
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("signed checkpoint: seq 7"), "{stdout}");
    // What a restore of a backup taken at seq 5 leaves in the database.
    tamper(
        &data,
        "DELETE FROM audit_events WHERE seq >= 6; DELETE FROM audit_checkpoints WHERE seq >= 6",
    );

    let (code, _, stderr) = verify(&data);

    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("BROKEN at seq 6"), "{stderr}");
    assert!(stderr.contains("older copy restored"), "{stderr}");
    assert!(stderr.contains("audit_checkpoints.jsonl"), "{stderr}");
}

// issue 15: `audit verify` runs while replicas serve. Here another writer
// commits a certificate and its event after verify read the events and while
// it waits (on a lock the test holds) to cross-check the certificates: the
// new certificate must not be reported as a trail truncated before its
// event (the cross-check reads each certificate with its event in one
// statement), and the next verify sees the whole new state.
#[test]
fn audit_verify_on_postgres_runs_while_another_replica_commits() {
    use ca_server::store::certificates::{self, CertificateRow};
    use ca_server::store::sql::Sql as _;
    use ca_server::store::{audit, pg};
    use tpa_core::audit::{NewEvent, Outcome};

    let data = trail();
    let DatabaseConfig::Postgres(pg_config) = &data.config.database else {
        unreachable!()
    };
    let writer = pg::connect(&pg_config.options().unwrap()).unwrap();
    let tx = writer.begin().unwrap();
    tx.execute_batch("LOCK TABLE certificates IN ACCESS EXCLUSIVE MODE")
        .unwrap();

    let verifying = tpa_ca()
        .args(["audit", "verify", "--config"])
        .arg(&data.config_path)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Should the test fail before waiting for it, the process ends anyway:
    // dropping the transaction releases the lock it waits on.
    let mut watcher = data.postgres_client();
    let waiting = (0..300).any(|_| {
        let n: i64 = watcher
            .query_one(
                "SELECT count(*) FROM pg_stat_activity \
                 WHERE wait_event_type = 'Lock' AND query LIKE '%FROM certificates%'",
                &[],
            )
            .unwrap()
            .get(0);
        n > 0 || {
            std::thread::sleep(std::time::Duration::from_millis(100));
            false
        }
    });
    assert!(waiting, "audit verify never reached the certificates");

    let event = audit::append(
        &tx,
        &NewEvent {
            time: chrono::Utc::now(),
            actor: "admin:root".into(),
            source: "test".into(),
            action: "cert.issue".into(),
            object: "cert:999".into(),
            outcome: Outcome::Success,
            reason: "written by another replica".into(),
            details: serde_json::json!({}),
        },
    )
    .unwrap();
    certificates::insert(
        &tx,
        &CertificateRow {
            serial: "999".into(),
            key_id: "tpa:admin-issue:user=root".into(),
            principals: "[\"deploy\"]".into(),
            extensions: "[]".into(),
            critical_options: "{}".into(),
            valid_after: 100,
            valid_before: 200,
            subject_key_fingerprint: "SHA256:subject".into(),
            ca_key_fingerprint: "SHA256:ca".into(),
            request_id: None,
            issued_by: "admin:root".into(),
            issued_at: "2026-01-01T00:00:00Z".into(),
            audit_seq: event.seq,
        },
    )
    .unwrap();
    tx.commit().unwrap();

    let out = verifying.wait_with_output().unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(out.status.success(), "{stdout}{stderr}");
    assert!(stdout.starts_with("audit trail OK: 5 events"), "{stdout}");
    // The next verify sees the new state whole.
    let (code, stdout, stderr) = verify(&data);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.starts_with("audit trail OK: 6 events"), "{stdout}");
}
