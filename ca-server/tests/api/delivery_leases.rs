//! Delivery leases (issue 15): two replicas' senders over one database
//! deliver each outbox item once and in order, and a replica that dies
//! mid-run has its sinks taken over once its lease ran out, losing nothing.

use ca_server::store::engine::Transact as _;
use ca_server::store::sql::Sql as _;
use std::time::Duration;

use ca_server::notify::delivery::Lease;
use ca_server::notify::{Deliveries, OutboxBell, register_sinks, spawn_senders};
use ca_server::store::outbox;
use chrono::Utc;
use tokio::task::JoinHandle;

use crate::fake_http::{FakeServer, Reply, fake_server};
use crate::helpers::DataDir;

/// Short leases, so that a takeover happens within the test; long enough
/// that a loaded machine still renews in time (every second).
const TTL: Duration = Duration::from_secs(3);

/// A data directory with one generic webhook to `server`, registered.
fn webhook_to(server: &FakeServer) -> DataDir {
    let mut data = DataDir::new();
    let url = format!("{}/hook", server.base);
    data.edit_config(|text| format!("{text}\n[[webhooks]]\nname = \"hook\"\nurl = \"{url}\"\n"));
    register_sinks(&data.open_store(), &data.config.webhooks).unwrap();
    data
}

/// Queues `n` request events; returns their outbox ids.
fn enqueue(data: &DataDir, n: usize) -> Vec<i64> {
    data.blocking(|conn| {
        (0..n)
            .map(|i| {
                conn.write(|tx| {
                    outbox::enqueue(tx, "request.created", &format!("{{\"n\":{i}}}"), Utc::now())
                })
                .unwrap()
            })
            .collect()
    })
}

/// One replica's webhook senders, holding leases as `holder`.
struct Replica {
    bell: OutboxBell,
    tasks: Vec<JoinHandle<()>>,
    stop: tokio::sync::watch::Sender<bool>,
}

fn replica(data: &DataDir, holder: &str) -> Replica {
    replica_on(data, data.database(), holder)
}

/// One replica's webhook senders on `store` (either engine).
fn replica_on(data: &DataDir, store: ca_server::store::Database, holder: &str) -> Replica {
    let (stop, shutdown) = tokio::sync::watch::channel(false);
    let bell = OutboxBell::default();
    let deliveries = Deliveries {
        store: ca_server::notify::delivery::DeliveryStore::open(store),
        bell: bell.clone(),
        shutdown,
        lease: Lease {
            holder: holder.to_owned(),
            ttl: TTL,
        },
    };
    let tasks = spawn_senders(&deliveries, data.config.webhooks.clone()).unwrap();
    Replica { bell, tasks, stop }
}

impl Replica {
    async fn stop(self) {
        self.stop.send(true).unwrap();
        for t in self.tasks {
            tokio::time::timeout(Duration::from_secs(10), t)
                .await
                .unwrap()
                .unwrap();
        }
    }
}

/// The `x-tpa-delivery` ids `server` received, in arrival order.
fn delivered(server: &FakeServer) -> Vec<i64> {
    server
        .received()
        .iter()
        .map(|s| s.header("x-tpa-delivery").unwrap().parse().unwrap())
        .collect()
}

/// Waits (at most 60 s) until `server` has seen every id of `ids`.
async fn wait_for_all(server: &FakeServer, ids: &[i64]) -> Vec<i64> {
    let end = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let seen = delivered(server);
        if ids.iter().all(|id| seen.contains(id)) || tokio::time::Instant::now() >= end {
            return seen;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

// issue 15: two replicas, one sink: each item once, in order — including
// an item whose delivery outlasts the lease (the holder renews it while
// the request is in flight, so the other replica does not send it again).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_deliver_each_item_once_in_order() {
    let server = fake_server(|_, i| Reply {
        status: 200,
        delay: if i == 0 {
            TTL * 2
        } else {
            Duration::from_millis(10)
        },
        ..Reply::default()
    })
    .await;
    let data = webhook_to(&server);
    let mut ids = enqueue(&data, 10);
    let (a, b) = (replica(&data, "replica-a"), replica(&data, "replica-b"));
    a.bell.ring();
    b.bell.ring();
    wait_for_all(&server, &ids).await;
    ids.extend(enqueue(&data, 10));
    b.bell.ring();
    a.bell.ring();
    wait_for_all(&server, &ids).await;
    // Time for a second replica's duplicate, if there were one.
    tokio::time::sleep(TTL * 2).await;
    assert_eq!(delivered(&server), ids, "each item once, in order");
    a.stop().await;
    b.stop().await;
}

// issue 15: a replica killed mid-run (its tasks aborted: no release, as
// after kill -9) keeps its lease until it runs out; then the other replica
// takes the sink over and delivers the rest in order. Only the item in
// flight at the kill may arrive twice (delivery is at least once).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_replicas_sink_is_taken_over_after_its_lease_runs_out() {
    let server = fake_server(|_, _| Reply {
        status: 200,
        delay: Duration::from_millis(150),
        ..Reply::default()
    })
    .await;
    let data = webhook_to(&server);
    let ids = enqueue(&data, 20);
    let a = replica(&data, "replica-a");
    a.bell.ring();
    server.wait_for(3, Duration::from_secs(30)).await;
    let b = replica(&data, "replica-b");
    b.bell.ring();
    server.wait_for(6, Duration::from_secs(30)).await;
    for t in &a.tasks {
        t.abort();
    }
    let killed_at = delivered(&server).len();
    let seen = wait_for_all(&server, &ids).await;
    let mut once = seen.clone();
    once.dedup();
    assert_eq!(once, ids, "nothing lost, in order: {seen:?}");
    assert!(
        seen.len() <= ids.len() + 1,
        "at most the item in flight twice: {seen:?}"
    );
    assert!(killed_at < ids.len(), "the kill came mid-run");
    let owner: Option<String> = data.open_store().one(
        "SELECT lease_owner FROM outbox_cursors WHERE sink = 'hook'",
        &[],
    );
    assert_eq!(owner.as_deref(), Some("replica-b"), "replica b took over");
    b.stop().await;
    // A stopping replica gives its lease up.
    let owner: Option<String> = data.open_store().one(
        "SELECT lease_owner FROM outbox_cursors WHERE sink = 'hook'",
        &[],
    );
    assert_eq!(owner, None);
}

// issue 15: a replica whose lease another replica took over while its
// delivery was in flight (it stalled past the TTL) drops that delivery at
// its next renewal instead of letting it run on: it stops at once, long
// before the receiver's answer (or the client's 10 s timeout) would come.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_that_lost_its_lease_drops_the_delivery_in_flight() {
    let server = fake_server(|_, _| Reply {
        status: 200,
        delay: Duration::from_secs(60),
        ..Reply::default()
    })
    .await;
    let data = webhook_to(&server);
    enqueue(&data, 1);
    let a = replica(&data, "replica-a");
    a.bell.ring();
    server.wait_for(1, Duration::from_secs(30)).await;
    // Replica b takes the lease over (as after a's stall past the TTL).
    let until = tpa_core::audit::format_time(Utc::now() + chrono::TimeDelta::seconds(5));
    data.open_store().exec(
        "UPDATE outbox_cursors SET lease_owner = 'replica-b', lease_until = ?1 WHERE sink = 'hook'",
        &[&until],
    );
    // a's next renewal (every TTL/3 = 1 s) finds the lease gone.
    tokio::time::sleep(TTL).await;
    let stopping = tokio::time::Instant::now();
    a.stop.send(true).unwrap();
    for t in a.tasks {
        tokio::time::timeout(Duration::from_secs(4), t)
            .await
            .expect("the abandoned delivery no longer holds the loop")
            .unwrap();
    }
    assert!(stopping.elapsed() < Duration::from_secs(4));
    let cursor: (i64, i64, Option<String>) = data
        .open_store()
        .query_one("SELECT delivered_through, attempts, lease_owner FROM outbox_cursors WHERE sink = 'hook'", &[], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap();
    assert_eq!(
        cursor,
        (0, 0, Some("replica-b".to_owned())),
        "a recorded nothing"
    );
}

/// The cursor of `sink`: (delivered_through, attempts, next_attempt_at),
/// once a failure or a delivery was recorded (at most 30 s).
async fn cursor_after_attempt(data: &DataDir, sink: &str) -> (i64, i64, Option<String>) {
    let mut row = (0, 0, None);
    for _ in 0..300 {
        row = data
            .open_store()
            .query_one("SELECT delivered_through, attempts, next_attempt_at FROM outbox_cursors WHERE sink = ?1", &[&sink], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .unwrap();
        if row.0 > 0 || row.1 > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    row
}

// issue 17: a Slack-format webhook cannot build a message from a stored
// payload that is not a request event: that item never will be built, so
// it is skipped (with an audit event saying so), not retried forever
// holding up every later item.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_item_that_cannot_be_built_is_skipped_and_audited() {
    let server = fake_server(|_, _| Reply {
        status: 200,
        ..Reply::default()
    })
    .await;
    let mut data = DataDir::new();
    let url = format!("{}/hook", server.base);
    data.edit_config(|text| {
        format!("{text}\n[[webhooks]]\nname = \"chat\"\nurl = \"{url}\"\nformat = \"slack\"\n")
    });
    register_sinks(&data.open_store(), &data.config.webhooks).unwrap();
    let ids = enqueue(&data, 2);
    let a = replica(&data, "replica-a");
    a.bell.ring();
    let mut through = 0;
    for _ in 0..300 {
        through = cursor_after_attempt(&data, "chat").await.0;
        if through == ids[1] {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(through, ids[1], "both unbuildable items were passed");
    let skipped: Vec<(String, String)> = crate::helpers::audit_rows(&data.open_store())
        .into_iter()
        .filter(|r| r.action == "delivery.skipped")
        .map(|r| (r.object, r.outcome))
        .collect();
    assert_eq!(
        skipped,
        vec![("sink:chat".to_owned(), "error".to_owned()); 2],
        "each skip is audited"
    );
    assert!(server.received().is_empty());
    a.stop().await;
}

// issue 17: a receiver that refuses an item (HTTP 400) would refuse it
// again, but a webhook's order and completeness matter: the item is kept
// and retried at the longest backoff (not every second), and the sink is
// flagged as refusing (the health signal for /metrics).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_delivery_is_retried_at_the_longest_backoff_and_flagged() {
    let server = fake_server(|_, _| Reply {
        status: 400,
        ..Reply::default()
    })
    .await;
    // A name of its own: the refusing list is per process, and the other
    // tests' sinks called `hook` succeed meanwhile.
    let mut data = DataDir::new();
    let url = format!("{}/hook", server.base);
    data.edit_config(|text| format!("{text}\n[[webhooks]]\nname = \"refused\"\nurl = \"{url}\"\n"));
    register_sinks(&data.open_store(), &data.config.webhooks).unwrap();
    enqueue(&data, 1);
    let a = replica(&data, "replica-a");
    a.bell.ring();
    let (through, attempts, next) = cursor_after_attempt(&data, "refused").await;
    assert_eq!((through, attempts), (0, 1), "kept, one failed attempt");
    let at = chrono::DateTime::parse_from_rfc3339(&next.unwrap()).unwrap();
    let wait = at.with_timezone(&Utc) - Utc::now();
    assert!(
        wait > chrono::TimeDelta::seconds(250),
        "retried at the longest backoff (300 s): {wait}"
    );
    assert!(
        ca_server::notify::delivery::refusing().contains(&("webhook", "refused".to_owned())),
        "{:?}",
        ca_server::notify::delivery::refusing()
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(server.received().len(), 1, "no retry every second");
    a.stop().await;
}

// issue 15: an idle loop does not write its lease at every step (an audit
// sink steps every second): it renews only once less than 2/3 of the TTL
// is left, so with a 30 s lease the row stays untouched for seconds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_loop_renews_its_lease_only_when_a_third_has_passed() {
    let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let address = udp.local_addr().unwrap();
    let mut data = DataDir::new();
    data.edit_config(|text| {
        format!(
            "{text}\n[[audit_sinks]]\nname = \"udp\"\ntype = \"syslog\"\naddress = \"{address}\"\ntransport = \"udp\"\n"
        )
    });
    ca_server::audit::sinks::register(&data.open_store(), &data.config.audit_sinks).unwrap();
    let (stop, shutdown) = tokio::sync::watch::channel(false);
    let deliveries = Deliveries {
        store: ca_server::notify::delivery::DeliveryStore::open(data.database()),
        bell: OutboxBell::default(),
        shutdown,
        lease: Lease {
            holder: "replica-a".to_owned(),
            ttl: Duration::from_secs(30),
        },
    };
    let tasks =
        ca_server::audit::sinks::spawn(&deliveries, data.config.audit_sinks.clone()).unwrap();
    let lease_until = || -> Option<String> {
        data.open_store().one(
            "SELECT lease_until FROM audit_sink_cursors WHERE sink = 'udp'",
            &[],
        )
    };
    let mut first = None;
    for _ in 0..300 {
        first = lease_until();
        if first.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(first.is_some(), "the loop took its lease");
    // Three idle steps (one a second): the lease row is not rewritten.
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(
        lease_until(),
        first,
        "not renewed while 2/3 of the TTL is left"
    );
    stop.send(true).unwrap();
    for t in tasks {
        tokio::time::timeout(Duration::from_secs(10), t)
            .await
            .unwrap()
            .unwrap();
    }
}

// issue 15: the delivery loops run on PostgreSQL too: two replicas, each
// with its own pool on one database, deliver each item once, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_on_postgres_deliver_each_item_once_in_order() {
    use ca_server::store::pg::{self, PgOptions};
    let server = fake_server(|_, _| Reply {
        status: 200,
        delay: Duration::from_millis(10),
        ..Reply::default()
    })
    .await;
    let data = webhook_to(&server);
    let db = off_runtime(|| crate::postgres_server::PgServer::shared().database());
    let options = PgOptions {
        url: db.url,
        password: Some(db.password),
        ca_file: None,
    };
    // The blocking PostgreSQL client runs its own runtime: off this one.
    let ids: Vec<i64> = off_runtime(|| {
        let mut conn = pg::connect(&options).unwrap();
        pg::migrate(&mut conn).unwrap();
        outbox::register_sink(&conn, "hook").unwrap();
        (0..10)
            .map(|i| {
                conn.write(|tx| {
                    outbox::enqueue(tx, "request.created", &format!("{{\"n\":{i}}}"), Utc::now())
                })
                .unwrap()
            })
            .collect()
    });
    let open =
        || off_runtime(|| ca_server::store::Database::open_postgres(options.clone(), 2).unwrap());
    let (a, b) = (
        replica_on(&data, open(), "replica-a"),
        replica_on(&data, open(), "replica-b"),
    );
    a.bell.ring();
    b.bell.ring();
    wait_for_all(&server, &ids).await;
    tokio::time::sleep(TTL).await;
    assert_eq!(delivered(&server), ids, "each item once, in order");
    a.stop().await;
    b.stop().await;
}

/// Runs `f` on a thread of its own (the blocking PostgreSQL client starts
/// a runtime of its own, which a runtime's worker thread may not).
fn off_runtime<T: Send>(f: impl FnOnce() -> T + Send) -> T {
    std::thread::scope(|scope| scope.spawn(f).join().unwrap())
}
