//! The bridge against a real PostgreSQL (issue 15): commits on another
//! connection (another replica) wake waiters here, rollbacks do not, and a
//! killed listener connection comes back and wakes everyone.
//!
//! The tests are synchronous: the PostgreSQL client is the blocking one
//! (it runs its own runtime), and only the waits run on a small runtime.

use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::Notify;
use tokio::sync::futures::Notified;
use tpa_core::RequestId;

use super::*;
use crate::store::changes::request_changed;
use crate::store::pg::{self, PgConn};
use crate::store::sql::Sql;
use crate::store::{Conn, StoreError};

fn id(c: char) -> RequestId {
    RequestId::parse(&format!("req_{}a", c.to_string().repeat(25))).unwrap()
}

/// A registered wait: enabled at once, as `/wait` does before re-reading.
fn register(notify: &Arc<Notify>) -> Pin<Box<Notified<'_>>> {
    let mut notified = Box::pin(notify.notified());
    notified.as_mut().enable();
    notified
}

/// Starts the bridge on a fresh database and waits until it listens.
fn bridge() -> (PgOptions, PgConn, Waiters, ReplicaWakeups) {
    let (options, conn, waiters, _, bridge) = bridge_with_bell();
    (options, conn, waiters, bridge)
}

/// [`bridge`], with the outbox bell it rings.
fn bridge_with_bell() -> (PgOptions, PgConn, Waiters, OutboxBell, ReplicaWakeups) {
    let (options, conn) = pg::test_database();
    let waiters = Waiters::default();
    let bell = OutboxBell::default();
    let bridge = ReplicaWakeups::spawn(options.clone(), waiters.clone(), bell.clone()).unwrap();
    connected(&bridge, 1);
    (options, conn, waiters, bell, bridge)
}

// issue 15: an outbox item committed on another replica rings this
// replica's outbox bell at once (its delivery loops may hold the sink's
// lease), and wakes no waiter; a rolled-back item rings nothing.
#[test]
fn an_outbox_item_queued_on_another_replica_rings_the_bell_here() {
    let (options, _conn, waiters, bell, _bridge) = bridge_with_bell();
    let mut writer = Conn::Postgres(Box::new(pg::connect(&options).unwrap()));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let (_stop, mut shutdown) = tokio::sync::watch::channel(false);
    let bystander = id('w');
    let notify = waiters.handle(&bystander);
    let mut bystander_wait = register(&notify);
    let mut ear = bell.listener();
    let rolled_back: Result<i64, StoreError> = writer.write(|tx| {
        crate::store::outbox::enqueue(tx, "request.created", "{}", chrono::Utc::now())?;
        Err(StoreError::Aborted("rolled back".into()))
    });
    assert!(rolled_back.is_err());
    let start = Instant::now();
    runtime.block_on(ear.pause(Duration::from_millis(500), &mut shutdown));
    assert!(
        start.elapsed() >= Duration::from_millis(450),
        "a rolled-back item rang the bell"
    );
    writer
        .write(|tx| crate::store::outbox::enqueue(tx, "request.created", "{}", chrono::Utc::now()))
        .unwrap();
    let start = Instant::now();
    runtime.block_on(ear.pause(Duration::from_secs(10), &mut shutdown));
    let rung = start.elapsed();
    eprintln!("outbox item on another replica to bell: {rung:?}");
    assert!(
        rung < Duration::from_secs(5),
        "the bell was not rung: {rung:?}"
    );
    assert!(
        !woken(bystander_wait.as_mut(), Duration::from_millis(300)),
        "an outbox item woke a waiter"
    );
}

/// Waits (bounded) until the bridge has connected `n` times.
fn connected(bridge: &ReplicaWakeups, n: u64) {
    for _ in 0..600 {
        if bridge.connects() >= n {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("the listener did not connect {n} times in 30 s");
}

/// Whether `wait` is woken within `limit`.
fn woken(wait: Pin<&mut Notified<'_>>, limit: Duration) -> bool {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    runtime
        .block_on(async { tokio::time::timeout(limit, wait).await })
        .is_ok()
}

/// Another replica's write transaction that announces `id`.
fn commit_change(writer: &mut Conn, id: &RequestId) {
    writer.write(|tx| request_changed(tx, id)).unwrap();
}

// issue 15: a decision committed on another replica wakes the client
// waiting here within 200 ms. Measured three times; the best must be under
// 200 ms (the others only arrive, as a loaded test machine may stall once).
#[test]
fn a_commit_on_another_replica_wakes_a_waiter_within_200_ms() {
    let (options, _conn, waiters, _bridge) = bridge();
    let mut writer = Conn::Postgres(Box::new(pg::connect(&options).unwrap()));
    let mut best = Duration::MAX;
    for c in ['a', 'b', 'c'] {
        let request = id(c);
        let notify = waiters.handle(&request);
        let mut notified = register(&notify);
        let start = Instant::now();
        commit_change(&mut writer, &request);
        assert!(
            woken(notified.as_mut(), Duration::from_secs(10)),
            "the waiter was not woken"
        );
        best = best.min(start.elapsed());
    }
    eprintln!("decision on another replica to waiter woken: best of 3 {best:?}");
    assert!(
        best < Duration::from_millis(200),
        "best wake-up took {best:?}"
    );
}

// issue 15: a rolled-back decision wakes nobody: a later commit's wake-up
// (delivered in order after anything sent before it) arrives, and the
// rolled-back request's waiter is still asleep.
#[test]
fn a_rolled_back_transaction_wakes_nobody() {
    let (options, _conn, waiters, _bridge) = bridge();
    let mut writer = Conn::Postgres(Box::new(pg::connect(&options).unwrap()));
    let (rolled_back, committed) = (id('r'), id('k'));
    let quiet = waiters.handle(&rolled_back);
    let mut quiet_wait = register(&quiet);
    let barrier = waiters.handle(&committed);
    let mut barrier_wait = register(&barrier);
    let result: Result<(), StoreError> = writer.write(|tx| {
        request_changed(tx, &rolled_back)?;
        Err(StoreError::Aborted("the decision failed".into()))
    });
    assert!(result.is_err());
    commit_change(&mut writer, &committed);
    assert!(
        woken(barrier_wait.as_mut(), Duration::from_secs(10)),
        "the committed change must wake its waiter"
    );
    assert!(
        !woken(quiet_wait.as_mut(), Duration::from_millis(300)),
        "a rolled-back change woke its waiter"
    );
}

// issue 15: when the listener's connection is killed, the bridge
// reconnects by itself and wakes every waiter (whatever was announced in
// between is lost by PostgreSQL, so all re-read), then relays again.
#[test]
fn a_killed_listener_reconnects_and_wakes_every_waiter() {
    let (options, conn, waiters, bridge) = bridge();
    let (a, b) = (id('a'), id('b'));
    let (na, nb) = (waiters.handle(&a), waiters.handle(&b));
    let (wa, wb) = (register(&na), register(&nb));
    let killed: i64 = conn
        .query_one(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
             WHERE datname = current_database() AND pid <> pg_backend_pid()",
            &[],
            |r| r.get(0),
        )
        .unwrap();
    // The listener's is the only other connection to this test's database.
    assert_eq!(killed, 1, "the listener's connection");
    for mut wait in [wa, wb] {
        assert!(
            woken(wait.as_mut(), Duration::from_secs(30)),
            "every waiter is woken after the reconnect"
        );
    }
    connected(&bridge, 2);
    let mut writer = Conn::Postgres(Box::new(pg::connect(&options).unwrap()));
    let mut again = register(&na);
    commit_change(&mut writer, &a);
    assert!(
        woken(again.as_mut(), Duration::from_secs(10)),
        "notifications are relayed again after the reconnect"
    );
}
