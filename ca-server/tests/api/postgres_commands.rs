//! The `tpa-ca` admin commands on a CA whose `[database]` names PostgreSQL
//! (issue 15): `issue`, `revoke`, `krl`, `report`, `policy`, `principals`,
//! `config check`, and `audit verify|export|checkpoint`, the latter finding
//! a trail edited, cut, reordered or truncated directly in PostgreSQL (with
//! the append-only triggers disabled first, as someone holding the database
//! password would).

use std::path::PathBuf;

use ca_server::config::{Config, DatabaseConfig};
use ca_server::store::{self, Conn};
use ca_server::workflow::requests as wf;
use tpa_core::RequestInput;
use tpa_testkit::DataDir;

use crate::helpers::{alice, ed25519_public_key, run, tpa_ca};

/// A CA on a PostgreSQL database of its own, with the brief's roles and
/// the accounts their approval stages name.
fn ca_on_postgres() -> DataDir {
    let mut data = DataDir::new();
    data.move_to_postgres();
    data.add_example_roles();
    data.add_accounts(&[("alice", &["engineers"]), ("bob", &["sre-leads"])]);
    data
}

fn pubkey(data: &DataDir) -> PathBuf {
    let path = data.tmp.path().join("user.pub");
    std::fs::write(&path, ed25519_public_key()).unwrap();
    path
}

/// `tpa-ca issue --principal P` (break-glass).
fn issue(data: &DataDir, principal: &str) -> (i32, String, String) {
    run(tpa_ca()
        .args(["issue", "--admin", "root", "--reason", "INC-1 test"])
        .arg("--config")
        .arg(&data.config_path)
        .args(["--principal", principal, "--ttl", "5m", "--pubkey"])
        .arg(pubkey(data)))
}

/// The serial `tpa-ca issue` reported on standard error.
fn serial_of(stderr: &str) -> String {
    let rest = stderr
        .split("serial ")
        .nth(1)
        .unwrap_or_else(|| panic!("{stderr}"));
    rest.split_whitespace().next().unwrap().to_owned()
}

/// `tpa-ca audit verify --config`.
fn verify(data: &DataDir) -> (i32, String, String) {
    run(tpa_ca()
        .args(["audit", "verify", "--config"])
        .arg(&data.config_path))
}

/// Five events: 1 `ca.init`, 2 and 3 issuances, 4 a refused issuance, 5 an
/// issuance; all through the command line.
fn trail() -> DataDir {
    let data = ca_on_postgres();
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

// issue 15: break-glass issuance on PostgreSQL prints the certificate only
// after its row and its audit event committed, in one transaction; a
// refused one prints nothing and is audited.
#[test]
fn issue_on_postgres_records_the_certificate_with_its_event() {
    let data = ca_on_postgres();
    let (code, stdout, stderr) = issue(&data, "deploy");
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.starts_with("ssh-ed25519-cert-v01@openssh.com "));
    let serial = serial_of(&stderr);

    let (code, stdout, stderr) = issue(&data, "prod-*");
    assert_ne!(code, 0);
    assert_eq!(stdout, "");
    assert!(stderr.contains("a wildcard (*)"), "{stderr}");

    let mut client = data.postgres_client();
    let rows = client
        .query(
            "SELECT action, object, outcome FROM audit_events ORDER BY seq",
            &[],
        )
        .unwrap();
    let events: Vec<(String, String, String)> = rows
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    assert_eq!(events.len(), 3, "{events:?}");
    assert_eq!(events[1].0, "cert.issue");
    assert!(events[1].1.contains(&serial), "{events:?}");
    assert_eq!(events[1].2, "success");
    assert_eq!(events[2].2, "denied", "{events:?}");
    let certificates: i64 = client
        .query_one("SELECT count(*) FROM certificates", &[])
        .unwrap()
        .get(0);
    assert_eq!(certificates, 1);
}

// issue 15: `revoke` on PostgreSQL is audited and bumps the KRL version;
// `krl --out` writes a KRL in which ssh-keygen finds the certificate revoked.
#[test]
fn revoke_and_krl_on_postgres() {
    let data = ca_on_postgres();
    let (code, cert, stderr) = issue(&data, "deploy");
    assert_eq!(code, 0, "{stderr}");
    let serial = serial_of(&stderr);
    let cert_file = data.tmp.path().join("user-cert.pub");
    std::fs::write(&cert_file, &cert).unwrap();

    let (code, stdout, stderr) = run(tpa_ca()
        .args(["revoke", "serial", &serial, "--admin", "oncall"])
        .args(["--reason", "laptop stolen", "--config"])
        .arg(&data.config_path));
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stdout.contains(&format!("revoked serial {serial}: 1 certificate(s)")),
        "{stdout}"
    );
    let version = stdout
        .split("KRL version ")
        .nth(1)
        .and_then(|v| v.split_whitespace().next())
        .unwrap_or_else(|| panic!("{stdout}"))
        .to_owned();

    let krl = data.tmp.path().join("revoked.krl");
    let (code, stdout, stderr) = run(tpa_ca()
        .args(["krl", "--config"])
        .arg(&data.config_path)
        .arg("--out")
        .arg(&krl));
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stdout.contains(&format!("wrote KRL version {version} ")),
        "{stdout}"
    );
    let out = std::process::Command::new("ssh-keygen")
        .arg("-Q")
        .arg("-f")
        .arg(&krl)
        .arg(&cert_file)
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(said.contains("REVOKED"), "{said}");

    let action: String = data
        .postgres_client()
        .query_one(
            "SELECT action FROM audit_events ORDER BY seq DESC LIMIT 1",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(action, "cert.revoke");
    let (code, _, stderr) = verify(&data);
    assert_eq!(code, 0, "{stderr}");
}

// issue 15: `report access` reads its grants from PostgreSQL.
#[test]
fn report_on_postgres_lists_the_grant() {
    let data = ca_on_postgres();
    let config = Config::load(&data.config_path).unwrap();
    let DatabaseConfig::Postgres(pg) = &config.database else {
        unreachable!()
    };
    let mut conn = Conn::Postgres(Box::new(
        store::pg::connect(&pg.options().unwrap()).unwrap(),
    ));
    let input = RequestInput {
        role: "read-only-debug".into(),
        hosts: vec!["web-1".into()],
        duration: Some("30m".into()),
        reason: "look at web-1".into(),
        ticket: Some("INC-1".into()),
        ..RequestInput::default()
    };
    let at = chrono::DateTime::parse_from_rfc3339("2026-06-01T00:00:00Z")
        .unwrap()
        .to_utc();
    let id = wf::submit(
        &mut conn,
        &config.policy,
        &config.workflow,
        &alice(),
        &input,
        "test",
        at,
    )
    .unwrap()
    .request
    .id;

    let (code, csv, stderr) = run(tpa_ca()
        .args(["report", "access", "--since", "2026-06-01T00:00:00Z"])
        .args(["--until", "2026-06-02T00:00:00Z", "--config"])
        .arg(&data.config_path));
    assert_eq!(code, 0, "{stderr}");
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines.len(), 2, "{csv}");
    assert!(lines[1].starts_with(&format!("{id},alice,")), "{csv}");
}

// issue 15: the commands that read the configuration (and the store where
// they need it) answer on a PostgreSQL install: `policy explain`,
// `principals` and `config check`, which names the URL, not a file.
#[test]
fn policy_principals_and_config_check_on_postgres() {
    let mut data = ca_on_postgres();
    let (code, out, err) = run(tpa_ca()
        .args(["policy", "explain", "--config"])
        .arg(&data.config_path)
        .args([
            "--user",
            "alice",
            "--role",
            "hotfix-admin",
            "--host",
            "web-1",
        ]));
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("allowed, after approval"), "{out}");
    assert!(out.contains("could approve: bob"), "{out}");

    let (code, out, err) = run(tpa_ca()
        .args(["config", "check", "--config"])
        .arg(&data.config_path));
    assert_eq!(code, 0, "{err}");
    let DatabaseConfig::Postgres(pg) = &data.config.database else {
        unreachable!()
    };
    assert!(
        out.contains(&format!(
            "database: {} (0 certificates, 1 audit events)",
            pg.url
        )),
        "{out}"
    );

    data.edit_config(|text| {
        format!(
            "{text}\n[[roles]]\nname = \"pay-ops\"\nlogins = [\"ops\"]\nhosts = [\"@web\"]\n\
             host_scoped_principals = true\nmax_duration = \"1h\"\ncert_ttl = \"5m\"\n\
             requestable_by = [\"engineers\"]\nstages = [{{ group = \"sre-leads\", approvals = 1 }}]\n"
        )
    });
    let (code, out, err) = run(tpa_ca()
        .args(["principals", "--config"])
        .arg(&data.config_path)
        .args(["--group", "web"]));
    assert_eq!(code, 0, "{err}");
    assert_eq!(out.trim(), "web:ops");
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
