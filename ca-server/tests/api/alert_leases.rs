//! The alert evaluator's lease (issue 15): two replicas' evaluators over one
//! database evaluate each committed audit event once, so each alert is
//! queued once (and no event is counted twice in a window); when the holder
//! dies the other takes over from the same cursor after the lease ran out,
//! losing nothing.

use std::time::Duration;

use ca_server::alerts;
use ca_server::notify::delivery::Lease;
use ca_server::notify::{Deliveries, OutboxBell};
use ca_server::store;
use ca_server::store::engine::Transact as _;
use chrono::Utc;
use tokio::task::JoinHandle;
use tpa_core::audit::{NewEvent, Outcome};

use crate::helpers::DataDir;

/// Short leases, so that a takeover happens within the test; long enough
/// that a loaded machine still renews in time (every second).
const TTL: Duration = Duration::from_secs(3);

/// A data directory with one `revocation` rule (one alert per revoked
/// object and 10-minute window), registered.
fn with_rule() -> DataDir {
    let mut data = DataDir::new();
    data.edit_config(|text| {
        format!(
            "{text}\n[[alert_destinations]]\nname = \"hook\"\nkind = \"webhook\"\n\
             url = \"http://127.0.0.1:9/alerts\"\n\
             \n[[alerts]]\nname = \"revoked\"\nwhen = \"revocation\"\nwindow = \"10m\"\n\
             destinations = [\"hook\"]\n"
        )
    });
    let config = data.config.clone();
    alerts::register(
        &data.open_store(),
        &config.alerts,
        &config.alert_destinations,
    )
    .unwrap();
    data
}

/// Commits `n` revocations of distinct objects, numbered from `from`: each
/// one alert.
fn revoke(data: &DataDir, from: usize, n: usize) {
    data.blocking(|conn| {
        conn.write(|tx| {
            for i in from..from + n {
                store::audit::append(
                    tx,
                    &NewEvent {
                        time: Utc::now(),
                        actor: "user:local#carol".into(),
                        source: "198.51.100.7".into(),
                        action: "request.revoke".into(),
                        object: format!("request:req_{i:06}"),
                        outcome: Outcome::Success,
                        reason: "test".into(),
                        details: serde_json::json!({}),
                    },
                )?;
            }
            Ok::<_, store::StoreError>(())
        })
    })
    .unwrap();
}

/// One replica's evaluator (no senders), holding its lease as `holder`.
struct Replica {
    bell: OutboxBell,
    tasks: Vec<JoinHandle<()>>,
    stop: tokio::sync::watch::Sender<bool>,
}

fn replica(data: &DataDir, holder: &str) -> Replica {
    let (stop, shutdown) = tokio::sync::watch::channel(false);
    let bell = OutboxBell::default();
    let deliveries = Deliveries {
        store: ca_server::notify::delivery::DeliveryStore::open(data.database()),
        bell: bell.clone(),
        shutdown,
        lease: Lease {
            holder: holder.to_owned(),
            ttl: TTL,
        },
    };
    let tasks = alerts::spawn(&deliveries, data.config.alerts.clone(), Vec::new()).unwrap();
    assert_eq!(tasks.len(), 1, "the evaluator alone");
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

/// The revoked objects of the queued alerts, in queue order.
fn queued(data: &DataDir) -> Vec<String> {
    data.open_store()
        .column::<String>(
            "SELECT payload FROM outbox WHERE kind = 'alert' ORDER BY id",
            &[],
        )
        .into_iter()
        .map(|p| {
            let v: serde_json::Value = serde_json::from_str(&p).unwrap();
            v["alert"]["subject"].as_str().unwrap().to_owned()
        })
        .collect()
}

/// Events counted twice in a window: a second evaluation of an event finds
/// its window open and counts it as suppressed.
fn suppressed(data: &DataDir) -> i64 {
    data.open_store().one(
        "SELECT CAST(coalesce(sum(suppressed), 0) AS BIGINT) FROM alert_windows",
        &[],
    )
}

fn holder(data: &DataDir) -> Option<String> {
    data.open_store()
        .one("SELECT lease_owner FROM alert_cursor", &[])
}

/// Waits (at most 60 s) until `n` alerts are queued.
async fn wait_for(data: &DataDir, n: usize) -> Vec<String> {
    let end = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let seen = queued(data);
        if seen.len() >= n || tokio::time::Instant::now() >= end {
            return seen;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn expected(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("request:req_{i:06}")).collect()
}

// issue 15: two replicas' evaluators, bursts of qualifying events: each
// alert queued once, in audit order, and no event evaluated twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_evaluators_queue_each_alert_once() {
    let data = with_rule();
    let (a, b) = (replica(&data, "replica-a"), replica(&data, "replica-b"));
    for round in 0..4 {
        revoke(&data, round * 300, 300);
        a.bell.ring();
        b.bell.ring();
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    wait_for(&data, 1200).await;
    // Time for the other replica's duplicates, if there were any.
    tokio::time::sleep(TTL * 2).await;
    assert_eq!(queued(&data), expected(1200), "each alert once, in order");
    assert_eq!(suppressed(&data), 0, "no event evaluated twice");
    let owner = holder(&data);
    assert!(
        matches!(owner.as_deref(), Some("replica-a" | "replica-b")),
        "{owner:?}"
    );
    a.stop().await;
    b.stop().await;
    assert_eq!(holder(&data), None, "a stopping replica gives its lease up");
}

// issue 15: the holder killed (its task aborted: no release, as after
// kill -9) keeps the lease until it runs out; then the other evaluator
// takes over from the cursor: the events committed meanwhile raise their
// alerts, none is lost and none doubled.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_evaluator_is_taken_over_without_loss_or_duplicates() {
    let data = with_rule();
    let (a, b) = (replica(&data, "replica-a"), replica(&data, "replica-b"));
    revoke(&data, 0, 300);
    a.bell.ring();
    b.bell.ring();
    assert_eq!(wait_for(&data, 300).await.len(), 300);
    let first = holder(&data).expect("a holder");
    let (dead, alive, survivor) = if first == "replica-a" {
        (a, b, "replica-b")
    } else {
        (b, a, "replica-a")
    };
    for t in &dead.tasks {
        t.abort();
    }
    // An aborted task's database step already on a blocking thread still
    // finishes (a kill -9 would stop it): let it, before the events below.
    tokio::time::sleep(Duration::from_millis(500)).await;
    // Read after the kill: a renewal still in flight can only push it later.
    let lease_until: String = data
        .open_store()
        .one("SELECT lease_until FROM alert_cursor", &[]);
    // Committed while the holder is dead: in two bursts, one before and one
    // after its lease ran out.
    revoke(&data, 300, 300);
    alive.bell.ring();
    tokio::time::sleep(TTL / 2).await;
    revoke(&data, 600, 300);
    let seen = wait_for(&data, 900).await;
    tokio::time::sleep(TTL).await;
    assert_eq!(
        queued(&data),
        expected(900),
        "nothing lost, nothing doubled: {} alerts",
        seen.len()
    );
    assert_eq!(suppressed(&data), 0, "no event evaluated twice");
    assert_eq!(
        holder(&data).as_deref(),
        Some(survivor),
        "the other replica took over"
    );
    // Stored times are RFC 3339 UTC with microseconds: they compare as text.
    let taken_over_at: String = data.open_store().one(
        "SELECT min(created_at) FROM outbox WHERE kind = 'alert' AND id > \
             (SELECT id FROM outbox WHERE kind = 'alert' ORDER BY id LIMIT 1 OFFSET 299)",
        &[],
    );
    assert!(
        taken_over_at >= lease_until,
        "the takeover waited for the dead holder's lease ({lease_until}) to run out: {taken_over_at}"
    );
    alive.stop().await;
}
