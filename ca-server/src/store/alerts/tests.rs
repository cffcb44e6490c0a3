//! The alert cursor and windows on both engines (issue 15).

use chrono::TimeDelta;

use super::*;
use crate::store::audit::append;
use crate::store::engine::test_engines;
use crate::store::{Conn, pg};
use tpa_core::audit::{NewEvent, Outcome};

fn event(reason: &str) -> NewEvent {
    NewEvent {
        time: DateTime::from_timestamp(1_800_000_000, 0).unwrap(),
        actor: "admin:root".into(),
        source: "cli".into(),
        action: "test".into(),
        object: "none".into(),
        outcome: Outcome::Success,
        reason: reason.into(),
        details: serde_json::json!({}),
    }
}

// issue 15: a new cursor starts at the chain head, registering again keeps
// it, it only moves forward, and unregistering drops it, on both engines.
#[test]
fn cursor_starts_at_head_and_only_moves_forward_on_both_engines() {
    for (engine, mut conn, _dir) in test_engines() {
        assert_eq!(cursor(&conn).unwrap(), None, "{engine:?}");
        for i in 0..3 {
            conn.write(|tx| append(tx, &event(&i.to_string()))).unwrap();
        }
        register(&conn).unwrap();
        assert_eq!(
            cursor(&conn).unwrap(),
            Some(3),
            "{engine:?}: starts at head"
        );
        conn.write(|tx| append(tx, &event("later"))).unwrap();
        register(&conn).unwrap();
        assert_eq!(cursor(&conn).unwrap(), Some(3), "{engine:?}: kept");
        conn.write(|tx| advance(tx, 4)).unwrap();
        conn.write(|tx| advance(tx, 2)).unwrap();
        assert_eq!(cursor(&conn).unwrap(), Some(4), "{engine:?}: never back");
        unregister(&conn).unwrap();
        assert_eq!(cursor(&conn).unwrap(), None, "{engine:?}");
    }
}

// issue 15: one alert per (rule, subject) window: events inside an open
// window are counted as suppressed, the first after it opens a new one,
// other subjects have their own, and pruning drops ended windows, on both
// engines.
#[test]
fn one_alert_per_window_on_both_engines() {
    for (engine, mut conn, _dir) in test_engines() {
        let t0 = DateTime::from_timestamp(1_800_000_000, 0).unwrap();
        let min = TimeDelta::minutes;
        let open = |conn: &mut Conn, subject: &str, at: DateTime<Utc>| {
            conn.write(|tx| open_window(tx, "burst", subject, at, at + min(15)))
                .unwrap()
        };
        assert!(
            open(&mut conn, "alice", t0),
            "{engine:?}: first event fires"
        );
        assert!(!open(&mut conn, "alice", t0 + min(1)), "{engine:?}");
        assert!(!open(&mut conn, "alice", t0 + min(14)), "{engine:?}");
        assert!(
            open(&mut conn, "bob", t0 + min(2)),
            "{engine:?}: own window"
        );
        assert_eq!(suppressed(&conn, "burst", "alice").unwrap(), Some(2));
        // The window is not extended by suppressed events: it ends at t0+15.
        assert!(
            open(&mut conn, "alice", t0 + min(15)),
            "{engine:?}: new window"
        );
        assert_eq!(suppressed(&conn, "burst", "alice").unwrap(), Some(0));
        let rows: i64 = conn
            .query_one("SELECT count(*) FROM alert_windows", &[], |r| r.get(0))
            .unwrap();
        assert_eq!(rows, 2, "{engine:?}: one row per (rule, subject)");
        conn.write(|tx| prune(tx, t0 + min(20))).unwrap();
        assert_eq!(
            suppressed(&conn, "burst", "bob").unwrap(),
            None,
            "{engine:?}"
        );
        assert_eq!(suppressed(&conn, "burst", "alice").unwrap(), Some(0));
    }
}

// issue 15: two replicas evaluating the same event at once queue one
// alert: the second waits for the first's row and then sees its window.
#[test]
fn concurrent_replicas_open_one_window_on_postgres() {
    let (options, _) = pg::test_database();
    let t0 = DateTime::from_timestamp(1_800_000_000, 0).unwrap();
    let until = t0 + TimeDelta::minutes(15);
    let mut a = Conn::Postgres(Box::new(pg::connect(&options).unwrap()));
    let (started, wait_started) = std::sync::mpsc::channel();
    let (fired_a, fired_b) = a
        .write(|tx| {
            let fired_a = open_window(tx, "burst", "alice", t0, until)?;
            let options = options.clone();
            let b = std::thread::spawn(move || {
                let mut b = Conn::Postgres(Box::new(pg::connect(&options).unwrap()));
                started.send(()).unwrap();
                b.write(|tx| open_window(tx, "burst", "alice", t0, until))
                    .unwrap()
            });
            wait_started.recv().unwrap();
            // Give B time to reach the row lock before A commits.
            std::thread::sleep(std::time::Duration::from_millis(300));
            Ok::<_, StoreError>((fired_a, b))
        })
        .unwrap();
    let fired_b = fired_b.join().unwrap();
    assert!(fired_a);
    assert!(!fired_b, "the second replica must not fire again");
    assert_eq!(suppressed(&a, "burst", "alice").unwrap(), Some(1));
}
