//! `tpa-ca init --database-url` and `tpa-ca migrate` against a real
//! PostgreSQL (issue 15), and the clear refusals of a `[database]` or a
//! `--database-url` that cannot be used. The admin commands on PostgreSQL
//! are in `postgres_commands.rs`.

use std::time::Duration;

use crate::helpers::{run_with_timeout, tpa_ca};
use crate::postgres_server::PgServer;

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

// issue 15: init on PostgreSQL writes a configuration naming the URL and the
// password file (not the password), migrates, and records `ca.init`;
// migrate then finds it up to date; a second init on the same database is
// refused (init never overwrites a CA).
#[test]
fn init_and_migrate_on_postgres() {
    let db = PgServer::shared().database();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("ca");
    let out = run_with_timeout(
        tpa_ca()
            .args(["init", "--data-dir"])
            .arg(&data)
            .args(["--database-url", &db.url, "--database-password-file"])
            .arg(&db.password_file),
        Duration::from_secs(60),
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        !data.join("tpa.db").exists(),
        "no SQLite file on PostgreSQL"
    );
    let config = std::fs::read_to_string(data.join("tpa.toml")).unwrap();
    assert!(config.contains(&db.url), "{config}");
    assert!(
        !config.contains(&db.password),
        "the password stays in its file"
    );

    let mut client = PgServer::shared().connect(&db.name).unwrap();
    let row = client
        .query_one("SELECT count(*), min(action) FROM audit_events", &[])
        .unwrap();
    assert_eq!(row.get::<_, i64>(0), 1);
    assert_eq!(row.get::<_, String>(1), "ca.init");

    let out = run_with_timeout(
        tpa_ca()
            .args(["migrate", "--config"])
            .arg(data.join("tpa.toml")),
        Duration::from_secs(60),
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("up to date"),
        "{}",
        text(&out.stdout)
    );

    let out = run_with_timeout(
        tpa_ca()
            .args(["init", "--data-dir"])
            .arg(dir.path().join("second"))
            .args(["--database-url", &db.url, "--database-password-file"])
            .arg(&db.password_file),
        Duration::from_secs(60),
    );
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("already holds an audit trail"),
        "{}",
        text(&out.stderr)
    );
    assert!(!dir.path().join("second").join("ca_key").exists());
}

// issue 15: a PostgreSQL that cannot be reached fails init before anything is
// written, with a message naming what to check.
#[test]
fn init_with_an_unreachable_database_writes_nothing() {
    let db = PgServer::shared().database();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("ca");
    let port = PgServer::shared().port().to_string();
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead_port = dead.local_addr().unwrap().port().to_string();
    drop(dead);
    let url = db.url.replace(&port, &dead_port);
    let out = run_with_timeout(
        tpa_ca()
            .args(["init", "--data-dir"])
            .arg(&data)
            .args(["--database-url", &url, "--database-password-file"])
            .arg(&db.password_file),
        Duration::from_secs(60),
    );
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("cannot connect"),
        "{}",
        text(&out.stderr)
    );
    assert!(!data.join("ca_key").exists());
}

// issue 15: a password written into the URL is refused at load.
#[test]
fn a_password_in_database_url_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("tpa.toml");
    std::fs::write(
        &config,
        "[ca]\nkey_file = \"ca_key\"\n[database]\nurl = \"postgres://tpa:secret@127.0.0.1/tpa\"\n",
    )
    .unwrap();
    let out = run_with_timeout(
        tpa_ca().args(["migrate", "--config"]).arg(&config),
        Duration::from_secs(60),
    );
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("password_file"),
        "{}",
        text(&out.stderr)
    );
}

/// Runs `tpa-ca init --database-url URL` into a fresh directory.
fn init_with_url(url: &str) -> (tempfile::TempDir, std::process::Output) {
    let db = PgServer::shared().database();
    let dir = tempfile::tempdir().unwrap();
    let out = run_with_timeout(
        tpa_ca()
            .args(["init", "--data-dir"])
            .arg(dir.path().join("ca"))
            .args(["--database-url", url, "--database-password-file"])
            .arg(&db.password_file),
        Duration::from_secs(60),
    );
    (dir, out)
}

/// `init --database-url` refused before anything is written, with `needle`
/// in the message.
fn assert_url_refused(url: &str, needle: &str) {
    let (dir, out) = init_with_url(url);
    let stderr = text(&out.stderr);
    assert!(!out.status.success(), "{url} was accepted");
    assert!(stderr.contains("--database-url"), "{stderr}");
    assert!(stderr.contains(needle), "{stderr}");
    assert!(
        !dir.path().join("ca").exists(),
        "nothing is written for a refused URL"
    );
}

// issue 15: `init --database-url` holds the URL to the same rule as
// `database.url` in the configuration: a URL of another database is refused.
#[test]
fn init_refuses_a_database_url_of_another_scheme() {
    assert_url_refused("mysql://tpa@127.0.0.1/tpa", "must start with postgres://");
}

// issue 15: a password in `--database-url` would land in the configuration
// and the shell history; it is refused, naming where it goes instead.
#[test]
fn init_refuses_a_password_in_the_database_url() {
    let db = PgServer::shared().database();
    let url = db.url.replace("postgres://tpa@", "postgres://tpa:secret@");
    assert_ne!(url, db.url, "the harness URL names user tpa");
    let (dir, out) = init_with_url(&url);
    let stderr = text(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("--database-url must not hold a password")
            && stderr.contains("--database-password-file"),
        "{stderr}"
    );
    assert!(
        !stderr.contains("secret"),
        "the password is not echoed: {stderr}"
    );
    assert!(!dir.path().join("ca").exists());
}

// issue 15: a URL that does not parse is refused before any connection.
#[test]
fn init_refuses_a_database_url_that_does_not_parse() {
    assert_url_refused("postgres://tpa@127.0.0.1:notaport/tpa", "cannot be parsed");
}
