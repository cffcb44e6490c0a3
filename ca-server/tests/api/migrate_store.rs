//! `tpa-ca migrate-store` (issue 15): a SQLite install populated through the
//! real workflow is copied into a real PostgreSQL and verified there; every
//! kind of source or target it must not touch is refused with a clear
//! message, a nonzero exit, and nothing written. The source is SQLite by
//! construction (the command's `--from` is a SQLite file), whatever
//! `TPA_TEST_ENGINE` asks.

use std::process::Output;
use std::time::Duration;

use ca_server::commands::verify_database;
use ca_server::store::pg::{self, PgConn, PgOptions};
use ca_server::store::{copy, outbox};
use ca_server::workflow::krl;
use ca_server::workflow::revocation::{self, Revoker, Target};
use chrono::Utc;
use tpa_core::{RequestInput, Username};

use crate::helpers::{
    Fixture, alice, bob, carol, ed25519_public_key, hotfix, issue_one, run_with_timeout, tpa_ca,
};
use crate::postgres_server::{PgDatabase, PgServer};

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn options(db: &PgDatabase) -> PgOptions {
    PgOptions {
        url: db.url.clone(),
        password: Some(db.password.clone()),
        ca_file: None,
    }
}

/// A fresh PostgreSQL database at this build's schema.
fn migrated_target() -> (PgDatabase, PgConn) {
    let db = PgServer::shared().database();
    let mut conn = pg::connect(&options(&db)).unwrap();
    pg::migrate(&mut conn).unwrap();
    (db, conn)
}

fn migrate_store(f: &Fixture, db: &PgDatabase, to: &str) -> Output {
    run_with_timeout(
        tpa_ca()
            .arg("migrate-store")
            .arg(format!("--from=sqlite:{}", f.data.db_path().display()))
            .arg(format!("--to={to}"))
            .arg("--to-password-file")
            .arg(&db.password_file),
        Duration::from_secs(120),
    )
}

fn refused(out: &Output, expected: &str) {
    assert!(!out.status.success(), "{}", text(&out.stdout));
    assert!(
        text(&out.stderr).contains(expected),
        "expected {expected:?} in: {}",
        text(&out.stderr)
    );
}

fn audit_events(conn: &PgConn) -> i64 {
    copy::count(conn, "audit_events").unwrap()
}

/// Requests decided by people and automatically, certificates, a revocation,
/// break-glass issuance, and the outbox rows and audit events they make.
fn populated() -> Fixture {
    let mut f = Fixture::sqlite_with_roles();
    let debug = RequestInput {
        role: "read-only-debug".into(),
        hosts: vec!["web-2".into()],
        duration: Some("30m".into()),
        reason: "look at logs".into(),
        ..RequestInput::default()
    };
    let mut serials = Vec::new();
    for (hosts, approve) in [(&["web-1"][..], true), (&["web-3"][..], false)] {
        let id = f.submit(&alice(), &hotfix(hosts, "1h")).unwrap().request.id;
        if approve {
            f.approve(&bob(), &id).unwrap();
            f.approve(&carol(), &id).unwrap();
            let deps = (&f.signer, &f.data.config.policy, &f.data.identities());
            let issued = issue_one(
                &mut f.conn,
                deps,
                &alice(),
                &id,
                &ed25519_public_key(),
                "test",
                Utc::now(),
            )
            .unwrap();
            serials.push(issued.serial);
        }
    }
    let auto = f.submit(&alice(), &debug).unwrap().request.id;
    let deps = (&f.signer, &f.data.config.policy, &f.data.identities());
    issue_one(
        &mut f.conn,
        deps,
        &alice(),
        &auto,
        &ed25519_public_key(),
        "test",
        Utc::now(),
    )
    .unwrap();
    f.issue_many(3);
    let serial = serials[0];
    let signing = f.signer.fingerprint();
    revocation::revoke(
        &mut f.conn,
        &f.data.config.policy,
        &Revoker::operator(&Username::parse("oncall").unwrap()),
        &Target::Serial(serial),
        "laptop lost",
        &signing,
        Utc::now(),
    )
    .unwrap();
    f
}

// issue 15: everything is copied (same counts per table), the chain
// verifies on the target and ends at the source's head, the KRL built from
// the target is the source's byte for byte, and PostgreSQL numbers new
// rows after the copied ones.
#[test]
fn migrate_store_copies_everything_and_the_chain_verifies_on_postgres() {
    let f = populated();
    let (db, target) = migrated_target();
    let out = migrate_store(&f, &db, &db.url);
    println!("{}", text(&out.stdout));
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);

    for table in copy::TABLES {
        let source = copy::count(&f.conn, table).unwrap();
        assert_eq!(copy::count(&target, table).unwrap(), source, "{table}");
        assert!(
            stdout
                .lines()
                .any(|l| l.split_whitespace().collect::<Vec<_>>()
                    == [*table, &source.to_string(), &source.to_string()]),
            "{table} in the printout:\n{stdout}"
        );
    }
    for table in [
        "requests",
        "approvals",
        "certificates",
        "revocations",
        "revoked_certificates",
        "audit_events",
        "outbox",
    ] {
        assert!(
            copy::count(&f.conn, table).unwrap() > 0,
            "{table} populated"
        );
    }

    let source = verify_database(&f.conn).unwrap().unwrap();
    let copied = verify_database(&target).unwrap().unwrap();
    assert_eq!((copied.events, &copied.head), (source.events, &source.head));
    assert!(stdout.contains(&format!(
        "audit chain verified on the target: {} events, head {}",
        source.events, source.head
    )));

    let now = Utc::now().timestamp();
    let keys = f.signer.ca_key_data();
    let from_source = krl::build(&f.conn, &keys, now).unwrap();
    let from_target = krl::build(&target, &keys, now).unwrap();
    assert_eq!(from_target.version, from_source.version);
    assert_eq!(from_target.bytes, from_source.bytes);

    let last: i64 = f.conn.one("SELECT max(id) FROM outbox", &[]);
    let mut target = ca_server::store::Conn::Postgres(Box::new(target));
    let next = target
        .write(|tx| outbox::enqueue(tx, "test", "{}", Utc::now()))
        .unwrap();
    assert_eq!(next, last + 1, "the identity continues after the copy");
}

// issue 15: a target that already holds data is refused, and left as it was.
#[test]
fn migrate_store_refuses_a_non_empty_target() {
    let f = Fixture::sqlite();
    let (db, target) = migrated_target();
    let first = migrate_store(&f, &db, &db.url);
    assert!(first.status.success(), "{}", text(&first.stderr));
    let before = audit_events(&target);
    refused(
        &migrate_store(&f, &db, &db.url),
        "is not empty (audit_events: ",
    );
    assert_eq!(audit_events(&target), before);
}

// issue 15: a target that was never migrated is refused with what to run.
#[test]
fn migrate_store_refuses_an_unmigrated_target() {
    let f = Fixture::sqlite();
    let db = PgServer::shared().database();
    refused(&migrate_store(&f, &db, &db.url), "run `tpa-ca migrate");
}

// issue 15: a source at an older schema is refused: migrate it first.
#[test]
fn migrate_store_refuses_an_older_schema_source() {
    let f = Fixture::sqlite();
    f.data.open_plain().batch(&format!(
        "PRAGMA user_version = {}",
        ca_server::store::SCHEMA_VERSION - 1
    ));
    let (db, target) = migrated_target();
    refused(
        &migrate_store(&f, &db, &db.url),
        "run `tpa-ca migrate` first",
    );
    assert_eq!(audit_events(&target), 0);
}

// issue 15: a source whose audit chain is broken is refused before
// anything is copied.
#[test]
fn migrate_store_refuses_a_tampered_source_chain() {
    let mut f = Fixture::sqlite();
    f.issue_many(2);
    f.data.open_plain().batch(
        "DROP TRIGGER audit_events_append_only_update;
             UPDATE audit_events SET reason = 'nothing happened' WHERE seq = 2;",
    );
    let (db, target) = migrated_target();
    refused(&migrate_store(&f, &db, &db.url), "audit chain of");
    assert_eq!(audit_events(&target), 0);
}

// issue 15: a server that does not answer is a clear error, not a hang.
#[test]
fn migrate_store_refuses_an_unreachable_server() {
    let f = Fixture::sqlite();
    let db = PgServer::shared().database();
    let port = PgServer::shared().port().to_string();
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead_port = dead.local_addr().unwrap().port().to_string();
    drop(dead);
    let url = db.url.replace(&port, &dead_port);
    refused(
        &migrate_store(&f, &db, &url),
        "cannot connect to the database",
    );
}

// issue 15: a URL of another database, or one holding the password in
// clear, is refused before anything is opened.
#[test]
fn migrate_store_refuses_bad_urls() {
    let f = Fixture::sqlite();
    let db = PgServer::shared().database();
    refused(
        &migrate_store(&f, &db, "mysql://tpa@127.0.0.1/tpa"),
        "--to must start with postgres://",
    );
    refused(
        &migrate_store(&f, &db, "postgres://tpa:secret@127.0.0.1/tpa"),
        "put it in a file named by --to-password-file",
    );
    let out = run_with_timeout(
        tpa_ca()
            .arg("migrate-store")
            .arg("--from")
            .arg(f.data.db_path())
            .arg(format!("--to={}", db.url)),
        Duration::from_secs(60),
    );
    refused(&out, "--from must be sqlite:PATH");
}
