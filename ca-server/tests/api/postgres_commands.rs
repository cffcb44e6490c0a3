//! The `tpa-ca` admin commands on a CA whose `[database]` names PostgreSQL
//! (issue 15): `issue`, `revoke`, `krl`, `report`, `policy`, `principals`
//! and `config check`. The `audit` commands on PostgreSQL are in
//! `postgres_audit.rs`.

use ca_server::config::{Config, DatabaseConfig};
use ca_server::store::{self, Conn};
use ca_server::workflow::requests as wf;
use tpa_core::RequestInput;

use crate::helpers::{alice, postgres_ca, run, tpa_ca, tpa_ca_issue as issue};

/// The serial `tpa-ca issue` reported on standard error.
fn serial_of(stderr: &str) -> String {
    let rest = stderr
        .split("serial ")
        .nth(1)
        .unwrap_or_else(|| panic!("{stderr}"));
    rest.split_whitespace().next().unwrap().to_owned()
}

/// `tpa-ca audit verify --config`.
fn verify(data: &tpa_testkit::DataDir) -> (i32, String, String) {
    run(tpa_ca()
        .args(["audit", "verify", "--config"])
        .arg(&data.config_path))
}

// issue 15: break-glass issuance on PostgreSQL prints the certificate only
// after its row and its audit event committed, in one transaction; a
// refused one prints nothing and is audited.
#[test]
fn issue_on_postgres_records_the_certificate_with_its_event() {
    let data = postgres_ca();
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
    let data = postgres_ca();
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
    let data = postgres_ca();
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
    let mut data = postgres_ca();
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

// issue 15: `tpa-ca issue` against a PostgreSQL that cannot be reached
// prints no certificate and says so.
#[test]
fn issue_on_an_unreachable_postgres_prints_no_certificate() {
    let mut data = postgres_ca();
    let DatabaseConfig::Postgres(pg) = &data.config.database else {
        unreachable!()
    };
    let port = pg.url.parse::<postgres::Config>().unwrap().get_ports()[0];
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead_port = dead.local_addr().unwrap().port();
    drop(dead);
    data.edit_config(|t| t.replace(&format!(":{port}/"), &format!(":{dead_port}/")));

    let (code, stdout, stderr) = issue(&data, "deploy");

    assert_ne!(code, 0);
    assert_eq!(stdout, "");
    assert!(stderr.contains("no certificate was issued"), "{stderr}");
    assert!(stderr.contains("cannot open the database at"), "{stderr}");
}
