//! Tests of the PostgreSQL engine against a real server.

use std::time::{Duration, Instant};

use super::*;
use crate::store::postgres_server::PgServer;
use crate::store::sql::Sql;
use crate::store::{Fault, MaybeFault};

fn options_for(db: &crate::store::postgres_server::PgDatabase) -> PgOptions {
    PgOptions {
        url: db.url.clone(),
        password: Some(db.password.clone()),
        ca_file: None,
    }
}

// issue 15: docs/schema-postgres.sql is the migrated schema.
#[test]
fn schema_matches_docs_postgres() {
    let (_, conn) = test_database();
    let actual = dump_schema(&conn).unwrap();
    let expected = include_str!("../../../../docs/schema-postgres.sql");
    let strip = |s: &str| -> String {
        s.lines()
            .filter(|l| !l.starts_with("--"))
            .collect::<Vec<_>>()
            .join("\n")
            .trim()
            .to_owned()
    };
    if strip(&actual) != strip(expected) {
        panic!("docs/schema-postgres.sql is out of date; replace its body with:\n{actual}");
    }
}

// issue 15: migrating again is a no-op, and a newer schema is refused.
#[test]
fn migrations_apply_once_and_newer_schema_is_refused() {
    let (_, mut conn) = test_database();
    assert_eq!(schema_version(&conn).unwrap(), PG_SCHEMA_VERSION);
    assert_eq!(migrate(&mut conn).unwrap(), Vec::<i64>::new());
    conn.execute("UPDATE tpa_schema SET version = 99", &[])
        .unwrap();
    assert!(matches!(
        migrate(&mut conn),
        Err(StoreError::TooNew { found: 99 })
    ));
}

// issue 15: replicas starting at once migrate once (the advisory lock).
#[test]
fn concurrent_migrations_do_not_race() {
    let db = PgServer::shared().database();
    let options = options_for(&db);
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let options = options.clone();
            std::thread::spawn(move || {
                let mut conn = connect(&options).unwrap();
                migrate(&mut conn)
            })
        })
        .collect();
    let applied: Vec<Vec<i64>> = threads
        .into_iter()
        .map(|t| t.join().unwrap().unwrap())
        .collect();
    let firsts = applied.iter().filter(|a| !a.is_empty()).count();
    assert_eq!(firsts, 1, "{applied:?}");
}

#[test]
fn statements_bind_and_read_the_shared_types() {
    let (_, mut conn) = test_database();
    conn.write(|tx| {
        tx.execute(
            "INSERT INTO heartbeat (id, beat_at, beats) VALUES (?1, ?2, ?3)",
            &[&1_i64, &"2026-01-01T00:00:00Z", &7_i64],
        )
    })
    .unwrap();
    let row = conn
        .query_opt(
            "SELECT beat_at, beats, beats > ?1 FROM heartbeat WHERE id = 1",
            &[&5_i64],
            |r| Ok((r.get::<String>(0)?, r.get::<i64>(1)?, r.get::<bool>(2)?)),
        )
        .unwrap();
    assert_eq!(row, Some(("2026-01-01T00:00:00Z".to_owned(), 7, true)));
    let none = conn
        .query_opt("SELECT beats FROM heartbeat WHERE id = 2", &[], |r| {
            r.get::<i64>(0)
        })
        .unwrap();
    assert_eq!(none, None);
}

#[test]
fn a_failed_transaction_rolls_back() {
    let (_, mut conn) = test_database();
    let r: Result<(), StoreError> = conn.write(|tx| {
        tx.execute(
            "INSERT INTO heartbeat (id, beat_at, beats) VALUES (1, 't', 1)",
            &[],
        )?;
        Err(StoreError::Aborted("no".into()))
    });
    assert!(r.is_err());
    let n = conn
        .query_one("SELECT count(*) FROM heartbeat", &[], |r| r.get::<i64>(0))
        .unwrap();
    assert_eq!(n, 0);
    // The connection is usable again.
    conn.write(|tx| {
        tx.execute(
            "INSERT INTO heartbeat (id, beat_at, beats) VALUES (1, 't', 1)",
            &[],
        )
    })
    .unwrap();
}

// issue 15 (review of two replicas): a write transaction reads only after
// the write transaction before it committed. Without the writers' lock,
// READ COMMITTED let replica B read a request as pending while replica A
// denied it, and B's approval then overwrote the deny.
#[test]
fn write_transactions_run_one_at_a_time_across_connections() {
    let (options, mut conn) = test_database();
    conn.write(|tx| {
        tx.execute(
            "INSERT INTO heartbeat (id, beat_at, beats) VALUES (1, 'pending', 1)",
            &[],
        )
    })
    .unwrap();
    let (started, start) = std::sync::mpsc::channel();
    let first = {
        let options = options.clone();
        std::thread::spawn(move || {
            let mut a = connect(&options).unwrap();
            a.write(|tx| {
                let seen: String =
                    tx.query_one("SELECT beat_at FROM heartbeat", &[], |r| r.get(0))?;
                assert_eq!(seen, "pending");
                started.send(()).unwrap();
                std::thread::sleep(Duration::from_millis(400));
                tx.execute("UPDATE heartbeat SET beat_at = 'denied'", &[])
            })
            .unwrap();
        })
    };
    start.recv().unwrap();
    let mut b = connect(&options).unwrap();
    let seen: String = b
        .write(|tx| {
            let seen: String = tx.query_one("SELECT beat_at FROM heartbeat", &[], |r| r.get(0))?;
            tx.execute(
                "UPDATE heartbeat SET beat_at = 'approved' WHERE beat_at = 'pending'",
                &[],
            )?;
            Ok::<_, StoreError>(seen)
        })
        .unwrap();
    first.join().unwrap();
    assert_eq!(seen, "denied", "B read after A's commit, not before");
    let last: String = conn
        .query_one("SELECT beat_at FROM heartbeat", &[], |r| r.get(0))
        .unwrap();
    assert_eq!(last, "denied", "the deny stands");
}

// issue 15 (review): COMMIT on a transaction an earlier statement aborted
// is an error, not PostgreSQL's silent ROLLBACK reported as success; the
// connection is usable afterwards.
#[test]
fn commit_of_an_aborted_transaction_fails() {
    let (_, conn) = test_database();
    let tx = conn.begin().unwrap();
    tx.execute(
        "INSERT INTO heartbeat (id, beat_at, beats) VALUES (1, 't', 1)",
        &[],
    )
    .unwrap();
    assert!(
        tx.execute("SELECT no_such_column FROM heartbeat", &[])
            .is_err()
    );
    assert!(
        tx.commit().is_err(),
        "an aborted transaction did not commit"
    );
    let n = conn
        .query_one("SELECT count(*) FROM heartbeat", &[], |r| r.get::<i64>(0))
        .unwrap();
    assert_eq!(n, 0);
}

/// The session's timeouts as PostgreSQL reports them, in milliseconds.
fn timeouts(conn: &PgConn) -> (i64, i64) {
    let ms = |name: &str| {
        conn.query_one(
            &format!("SELECT setting::bigint FROM pg_settings WHERE name = '{name}'"),
            &[],
            |r| r.get::<i64>(0),
        )
        .unwrap()
    };
    (ms("statement_timeout"), ms("lock_timeout"))
}

// issue 15: a checkout keeps timeouts that still fit its deadline (a round
// trip less per call), sets them again when they do not, and never trusts a
// timeout set inside a transaction that rolled back.
#[test]
fn checkout_timeouts_follow_the_deadline() {
    let (_, conn) = test_database();
    let start = Instant::now();
    conn.set_deadline(Some(start + Duration::from_secs(5)))
        .unwrap();
    let (statement, lock) = timeouts(&conn);
    assert!((4_000..=5_000).contains(&statement), "{statement}");
    assert_eq!(statement, lock);
    // Within the slack: kept as it is.
    conn.set_deadline(Some(start + Duration::from_millis(5_050)))
        .unwrap();
    assert_eq!(timeouts(&conn), (statement, lock));
    // Beyond it, either way: set again.
    conn.set_deadline(Some(start + Duration::from_secs(8)))
        .unwrap();
    let (longer, _) = timeouts(&conn);
    assert!(longer > statement + 2_000, "{longer} after {statement}");
    conn.set_deadline(Some(start + Duration::from_secs(2)))
        .unwrap();
    let (shorter, _) = timeouts(&conn);
    assert!(shorter <= 2_000, "{shorter}");
    // A transaction that commits without setting anything keeps them.
    let tx = conn.begin_write().unwrap();
    tx.commit().unwrap();
    conn.set_deadline(Some(start + Duration::from_secs(2)))
        .unwrap();
    assert_eq!(timeouts(&conn).0, shorter);
    // Set inside a transaction that rolls back: PostgreSQL undoes the SET,
    // so the next checkout sets them again instead of trusting them.
    let tx = conn.begin_write().unwrap();
    conn.set_deadline(Some(start + Duration::from_millis(900)))
        .unwrap();
    drop(tx);
    assert_eq!(timeouts(&conn).0, shorter, "rolled back");
    conn.set_deadline(Some(start + Duration::from_millis(900)))
        .unwrap();
    let (after, lock) = timeouts(&conn);
    assert!(after <= 900, "{after}: the rolled-back SET was trusted");
    assert!(lock <= 900, "{lock}: the rolled-back SET was trusted");
}

// issue 15: the append-only triggers hold on PostgreSQL too, TRUNCATE included.
#[test]
fn audit_events_are_append_only() {
    let (_, conn) = test_database();
    conn.execute(
        "INSERT INTO audit_events (seq, time, actor, source, action, object, outcome, reason, details, prev_hash, hash)
         VALUES (1, 't', 'a', 's', 'x', 'o', 'success', 'r', '{}', 'p', 'h')",
        &[],
    )
    .unwrap();
    for sql in [
        "UPDATE audit_events SET reason = 'x'",
        "DELETE FROM audit_events",
        "TRUNCATE audit_events CASCADE",
    ] {
        let e = conn.execute(sql, &[]).unwrap_err();
        assert!(format!("{e:?}").contains("append-only"), "{sql}: {e:?}");
        assert_eq!(e.fault(), None, "a refused change is not a condition");
    }
}

// issue 15: a server that is down is a condition (503), not a bug, and a
// wrong password too (the operator fixes it; nothing is served meanwhile).
#[test]
fn unreachable_server_is_a_fault() {
    let server = PgServer::start();
    let db = server.database();
    let options = options_for(&db);
    let conn = connect(&options).unwrap();
    server.stop();
    let e = conn.execute("SELECT 1", &[]).unwrap_err();
    assert_eq!(e.fault(), Some(Fault::Unreachable), "{e:?}");
    let e = connect(&options).unwrap_err();
    assert_eq!(e.fault(), Some(Fault::Unreachable), "{e:?}");
    assert!(conn.is_closed());
    server.restart();
    let wrong = PgOptions {
        password: Some("wrong".into()),
        ..options.clone()
    };
    let e = connect(&wrong).unwrap_err();
    assert_eq!(e.fault(), Some(Fault::Unreachable), "{e:?}");
    connect(&options).unwrap().execute("SELECT 1", &[]).unwrap();
}

// issue 15: `sslmode=require` against a server without TLS is refused, not
// silently sent in the clear.
#[test]
fn required_tls_is_not_downgraded() {
    let db = PgServer::shared().database();
    let options = PgOptions {
        url: db.url.replace("sslmode=disable", "sslmode=require"),
        ..options_for(&db)
    };
    assert!(connect(&options).is_err());
}

#[test]
fn password_is_not_in_debug_output() {
    let options = PgOptions {
        url: "postgres://u@h/d".into(),
        password: Some("hunter2".into()),
        ca_file: None,
    };
    assert!(!format!("{options:?}").contains("hunter2"));
}

// issue 15: PostgreSQL's conditions map to the same faults as SQLite's:
// a statement past its deadline, a lock held past it, a read-only server
// (a standby after failover) are 503s, not bugs.
#[test]
fn postgres_conditions_are_faults() {
    let (options, conn) = test_database();
    conn.execute_batch("SET statement_timeout = '20ms'")
        .unwrap();
    let e = conn.execute("SELECT pg_sleep(2)::text", &[]).unwrap_err();
    assert_eq!(e.fault(), Some(Fault::DeadlinePassed), "{e:?}");
    conn.execute_batch("SET statement_timeout = 0").unwrap();

    let holder = connect(&options).unwrap();
    let held = holder.begin().unwrap();
    held.execute_batch("LOCK TABLE heartbeat IN ACCESS EXCLUSIVE MODE")
        .unwrap();
    conn.execute_batch("SET lock_timeout = '20ms'").unwrap();
    let e = conn
        .execute(
            "INSERT INTO heartbeat (id, beat_at, beats) VALUES (1, 't', 1)",
            &[],
        )
        .unwrap_err();
    assert_eq!(e.fault(), Some(Fault::Locked), "{e:?}");
    drop(held);

    conn.execute_batch("SET default_transaction_read_only = on")
        .unwrap();
    let e = conn
        .execute(
            "INSERT INTO heartbeat (id, beat_at, beats) VALUES (1, 't', 1)",
            &[],
        )
        .unwrap_err();
    assert_eq!(e.fault(), Some(Fault::ReadOnly), "{e:?}");
}
