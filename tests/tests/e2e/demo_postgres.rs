//! The move from one CA host to replicas (issue 15): the demo's SQLite store
//! is copied into a real PostgreSQL database with the documented commands
//! (`tpa-ca migrate`, `tpa-ca migrate-store`), the chain verifies there, and
//! `tpa-ca serve` on PostgreSQL carries on with the demo's requests.

use std::net::SocketAddr;
use std::time::Duration;

use tpa_testkit::postgres_server::PgServer;

use crate::harness::{CaDir, Demo, api_login, password, pending_request};
use crate::harness::{UserKey, free_port, post, terminate, tpa_ca};

fn text(out: &std::process::Output) -> String {
    format!(
        "{}\nstderr:\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// The demo's `tpa.toml` with its `[database]` naming the PostgreSQL
/// database instead of the SQLite file (the second configuration the
/// operations guide asks for).
fn postgres_config(sqlite_config: &str, url: &str, password_file: &std::path::Path) -> String {
    let mut out = String::new();
    let mut in_database = false;
    for line in sqlite_config.lines() {
        if line.starts_with('[') {
            in_database = line.trim() == "[database]";
        }
        if in_database && line.trim_start().starts_with("path") {
            out.push_str(&format!(
                "url = \"{url}\"\npassword_file = \"{}\"\n",
                password_file.display()
            ));
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    assert!(
        out.contains("url = \"postgres://"),
        "no [database] path in:\n{sqlite_config}"
    );
    out
}

fn count(db: &tpa_testkit::postgres_server::PgDatabase, table: &str) -> i64 {
    let mut client = PgServer::shared().connect(&db.name).unwrap();
    client
        .query_one(&format!("SELECT count(*) FROM {table}"), &[])
        .unwrap()
        .get(0)
}

// issue 15: "the migration command moves the demo's SQLite data to
// PostgreSQL with the chain verified".
#[test]
fn the_demo_store_moves_to_postgres_and_serves_from_there() {
    let tmp = tempfile::tempdir().unwrap();
    let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let missing_sshd = tmp.path().join("no-sshd-here");
    let mut demo = Demo::start(
        tmp.path(),
        &["demo", "--listen", &addr.to_string()],
        &[("TPA_DEMO_SSHD", missing_sshd.to_str().unwrap())],
    );
    demo.wait_for("TPA demo CA running", Duration::from_secs(90));

    // Data worth moving: one request decided, one still pending.
    let alice = api_login(addr, "alice", &password(tmp.path(), "alice"));
    let (status, body) = post(
        addr,
        &alice,
        "/api/v1/requests",
        r#"{"role":"hotfix-admin","hosts":["web-1"],"duration":"1h","reason":"INC-15 move to postgres","ticket":"INC-15"}"#,
    );
    assert_eq!(status, 201, "{body}");
    let decided = body["request"]["id"].as_str().unwrap().to_owned();
    let (status, body) = post(
        addr,
        &alice,
        "/api/v1/requests",
        r#"{"role":"hotfix-admin","hosts":["web-2"],"duration":"2h","reason":"INC-16 still waiting","ticket":"INC-16"}"#,
    );
    assert_eq!(status, 201, "{body}");
    let bob = api_login(addr, "bob", &password(tmp.path(), "bob"));
    assert!(!pending_request(addr, &bob, &|| demo.printed()).is_empty());
    let carol = api_login(addr, "carol", &password(tmp.path(), "carol"));
    for approver in [&bob, &carol] {
        let (status, body) = post(
            addr,
            approver,
            &format!("/api/v1/requests/{decided}/approve"),
            "",
        );
        assert_eq!(status, 200, "{body}");
    }
    assert!(terminate(demo.guard).success(), "the demo stops on SIGTERM");

    // The documented steps: a second configuration naming PostgreSQL,
    // `tpa-ca migrate` on it, then `tpa-ca migrate-store`.
    let data = tmp.path().join("tpa-demo");
    let db = PgServer::shared().database();
    let sqlite_config = std::fs::read_to_string(data.join("tpa.toml")).unwrap();
    let pg_config = data.join("tpa-postgres.toml");
    std::fs::write(
        &pg_config,
        postgres_config(&sqlite_config, &db.url, &db.password_file),
    )
    .unwrap();
    let out = tpa_ca(&["migrate", "--config", pg_config.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out));
    let out = tpa_ca(&[
        "migrate-store",
        "--from",
        &format!("sqlite:{}", data.join("tpa.db").display()),
        "--to",
        &db.url,
        "--to-password-file",
        db.password_file.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("verified"),
        "migrate-store names the chain head it verified: {}",
        text(&out)
    );
    assert_eq!(count(&db, "requests"), 2);
    assert!(
        count(&db, "audit_events") >= 6,
        "logins, requests, decisions"
    );

    // The CA carries on from PostgreSQL: the pending request is still in
    // bob's inbox and alice gets her certificate for the approved one.
    let ca = CaDir {
        dir: data.clone(),
        config: pg_config,
    };
    let running = ca.serve();
    let addr = running.addr;
    let bob = api_login(addr, "bob", &password(tmp.path(), "bob"));
    let pending = pending_request(addr, &bob, &|| {
        std::fs::read_to_string(data.join("serve.log")).unwrap_or_default()
    });
    assert_ne!(pending, decided, "the decided request left the inbox");
    let alice = api_login(addr, "alice", &password(tmp.path(), "alice"));
    let key = UserKey::generate(tmp.path(), "id_alice");
    let public_key = std::fs::read_to_string(&key.public).unwrap();
    let (status, cert) = post(
        addr,
        &alice,
        &format!("/api/v1/requests/{decided}/certificate"),
        &serde_json::json!({ "public_key": public_key }).to_string(),
    );
    assert_eq!(status, 200, "{cert}");
    assert!(
        cert["certificate"]
            .as_str()
            .is_some_and(|c| c.starts_with("ssh-ed25519-cert-v01@openssh.com ")),
        "{cert}"
    );
    assert!(running.terminate().success());
    assert!(count(&db, "certificates") >= 1);
}
