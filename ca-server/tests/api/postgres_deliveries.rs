//! The delivery loops of `tpa-ca serve` on PostgreSQL (issue 15): two
//! serving replicas — two real `tpa-ca serve` processes (each its own lease
//! holder) on one PostgreSQL database — deliver each webhook item and each
//! audit event once and in order, the survivor takes a killed replica's
//! sinks over, the alert evaluator queues each alert once and a ticket
//! comment is posted once.

use std::io::BufRead as _;
use std::net::SocketAddr;
use std::process::{Child, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use tpa_testkit::DataDir;

use crate::fake_http::{FakeServer, Reply, fake_server};
use crate::helpers::{HOTFIX, PW, http_send, tpa_ca, write_private};
use crate::postgres_serve::move_to_postgres;
use crate::postgres_server::{PgDatabase, PgServer};

/// How long anything the test waits for may take on a loaded machine: a
/// takeover alone waits out the killed replica's 30 s lease.
const WAIT: Duration = Duration::from_secs(150);

/// One `tpa-ca serve` process; killed (SIGKILL, by its PID) when dropped.
struct Replica {
    child: Child,
    address: SocketAddr,
    /// Its log lines, for the failure messages.
    log: Arc<Mutex<Vec<String>>>,
}

impl Replica {
    /// Starts `tpa-ca serve` on `data`'s configuration, on 127.0.0.1 port 0,
    /// and waits for its "tpa-ca listening" line. Blocking.
    fn start(data: &DataDir) -> Self {
        let mut child = tpa_ca()
            .args(["--log-format", "json", "serve", "--listen", "127.0.0.1:0"])
            .arg("--config")
            .arg(&data.config_path)
            .env("TPA_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let log: Arc<Mutex<Vec<String>>> = Arc::default();
        let (tx, rx) = std::sync::mpsc::channel::<SocketAddr>();
        let lines = log.clone();
        // Drains stderr for the process's whole life (a full pipe would stall it).
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stderr).lines() {
                let Ok(line) = line else { return };
                if let Ok(v) = serde_json::from_str::<Value>(&line)
                    && v["fields"]["message"] == "tpa-ca listening"
                    && let Some(Ok(address)) = v["fields"]["addr"].as_str().map(str::parse)
                {
                    let _ = tx.send(address);
                }
                lines.lock().unwrap().push(line);
            }
        });
        let address = match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(address) => address,
            Err(e) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("no listening line ({e}): {:#?}", log.lock().unwrap());
            }
        };
        Self {
            child,
            address,
            log,
        }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Whether `holder` (a lease owner, `host/pid/random`) is this process.
    fn holds(&self, holder: Option<&str>) -> bool {
        holder.and_then(|h| h.split('/').nth(1)) == Some(self.pid().to_string().as_str())
    }

    /// SIGKILL, as a crash: no lease is released.
    fn kill(&mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    async fn login(&self, user: &str) -> String {
        let body = serde_json::json!({ "username": user, "password": PW }).to_string();
        let r = http_send(
            self.address,
            "POST",
            "/api/v1/login",
            &[("Content-Type", "application/json")],
            &body,
        )
        .await;
        assert_eq!(r.status, 200, "{}", r.body);
        r.json()["token"].as_str().unwrap().to_owned()
    }

    async fn post(&self, token: &str, path: &str, body: &str) -> tpa_testkit::Response {
        let auth = format!("Bearer {token}");
        http_send(
            self.address,
            "POST",
            path,
            &[
                ("Authorization", &auth),
                ("Content-Type", "application/json"),
            ],
            body,
        )
        .await
    }

    /// Submits `body` as `token`; returns the request's id.
    async fn submit(&self, token: &str, body: &str) -> String {
        let r = self.post(token, "/api/v1/requests", body).await;
        assert_eq!(r.status, 201, "{}", r.body);
        r.json()["request"]["id"].as_str().unwrap().to_owned()
    }

    fn log_text(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A data directory for alice (engineers), bob (sre-leads) and carol
/// (managers) on a fresh PostgreSQL database, with `roles` (the example
/// roles when `None`), `more` configuration appended, and the private
/// `files` it names. Blocking.
fn team_on_postgres(
    roles: Option<String>,
    more: &str,
    files: &[(&str, &[u8])],
) -> (DataDir, PgDatabase) {
    let mut data = DataDir::new();
    for (name, bytes) in files {
        write_private(&data.dir.join(name), bytes);
    }
    let db = move_to_postgres(&mut data);
    let roles = roles.unwrap_or_else(|| ca_server::config::EXAMPLE_ROLES.to_owned());
    data.edit_config(|t| format!("{t}\n{roles}\n{more}\n"));
    data.add_account("alice", PW, &["engineers"]);
    data.add_account("bob", PW, &["sre-leads"]);
    data.add_account("carol", PW, &["managers"]);
    (data, db)
}

/// Two replicas on `data`. Blocking.
fn two_replicas(data: &DataDir) -> (Replica, Replica) {
    (Replica::start(data), Replica::start(data))
}

/// Runs `f` with a client of `db` (the blocking client, off the runtime's
/// worker thread).
fn query<T>(db: &PgDatabase, f: impl FnOnce(&mut postgres::Client) -> T) -> T {
    tokio::task::block_in_place(|| {
        let mut client = PgServer::shared().connect(&db.name).unwrap();
        f(&mut client)
    })
}

fn outbox_ids(db: &PgDatabase, kind_like: &str) -> Vec<i64> {
    query(db, |c| {
        c.query(
            "SELECT id FROM outbox WHERE kind LIKE $1 ORDER BY id",
            &[&kind_like],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
    })
}

fn lease_owner(db: &PgDatabase, table: &str, sink: &str) -> Option<String> {
    query(db, |c| {
        c.query_one(
            &format!("SELECT lease_owner FROM {table} WHERE sink = $1"),
            &[&sink],
        )
        .unwrap()
        .get(0)
    })
}

/// The `x-tpa-delivery` ids `server` received on `path`, in arrival order.
fn webhook_ids(server: &FakeServer, path: &str) -> Vec<i64> {
    server
        .received()
        .iter()
        .filter(|s| s.path == path)
        .map(|s| s.header("x-tpa-delivery").unwrap().parse().unwrap())
        .collect()
}

/// The audit `seq`s the audit sink's batches to `path` carried, in arrival order.
fn sink_seqs(server: &FakeServer, path: &str) -> Vec<i64> {
    server
        .received()
        .iter()
        .filter(|s| s.path == path)
        .flat_map(|s| {
            String::from_utf8_lossy(&s.body)
                .lines()
                .filter(|l| !l.trim().is_empty())
                .map(|l| {
                    serde_json::from_str::<Value>(l).unwrap()["seq"]
                        .as_i64()
                        .unwrap()
                })
                .collect::<Vec<_>>()
        })
        .collect()
}

/// Waits (at most [`WAIT`]) until `done` holds.
async fn wait_until(mut done: impl FnMut() -> bool) -> bool {
    let end = tokio::time::Instant::now() + WAIT;
    while tokio::time::Instant::now() < end {
        if done() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    done()
}

/// Checks that `seen` (arrival order) is `expected` in order, each once,
/// except that one run of items re-sent after a takeover (the batch in
/// flight when its replica died) may arrive again right after: delivery is
/// at least once across a crash, never out of order.
fn once_in_order_but_the_batch_in_flight(seen: &[i64], expected: &[i64], batch: usize) {
    let mut first = Vec::new();
    let mut repeats = Vec::new();
    for s in seen {
        if first.contains(s) {
            repeats.push(*s);
        } else {
            first.push(*s);
        }
    }
    assert_eq!(first, expected, "everything, in order: {seen:?}");
    assert!(
        repeats.len() <= batch,
        "at most the batch in flight again: {repeats:?} in {seen:?}"
    );
    let mut sorted = repeats.clone();
    sorted.dedup();
    assert_eq!(sorted, repeats, "re-sent once at most, in order: {seen:?}");
}

// issue 15: two `tpa-ca serve` replicas on one PostgreSQL database deliver
// a webhook's items and an audit sink's events once each and in order;
// when the replica holding the webhook's lease is killed (SIGKILL) while a
// delivery is in flight, the other takes the sinks over once the lease ran
// out and delivers everything queued before and after, losing nothing and
// repeating at most the delivery that was in flight.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_serving_replicas_deliver_webhooks_and_audit_sinks_once_in_order_across_a_kill() {
    let server = fake_server(|_, _| Reply {
        status: 200,
        delay: Duration::from_millis(300),
        ..Reply::default()
    })
    .await;
    let more = format!(
        "[[webhooks]]\nname = \"hook\"\nurl = \"{0}/hook\"\n\n\
         [[audit_sinks]]\nname = \"siem\"\ntype = \"webhook\"\nurl = \"{0}/siem\"\nsecret_file = \"siem.secret\"\n",
        server.base
    );
    let (data, db) = tokio::task::block_in_place(|| {
        team_on_postgres(None, &more, &[("siem.secret", b"0123456789abcdef0123")])
    });
    let (mut a, mut b) = tokio::task::block_in_place(|| two_replicas(&data));
    let alice = a.login("alice").await;
    for i in 0..6 {
        let replica = if i % 2 == 0 { &a } else { &b };
        replica.submit(&alice, HOTFIX).await;
    }
    assert!(
        wait_until(|| webhook_ids(&server, "/hook").len() >= 2).await,
        "deliveries started"
    );
    // Kill the webhook's holder now: each delivery takes 300 ms, so one is
    // in flight.
    let holder = lease_owner(&db, "outbox_cursors", "hook");
    let survivor = if a.holds(holder.as_deref()) {
        a.kill();
        &b
    } else {
        assert!(b.holds(holder.as_deref()), "{holder:?}");
        b.kill();
        &a
    };
    let delivered_at_kill = webhook_ids(&server, "/hook").len();
    eprintln!("killed the holder {holder:?} after {delivered_at_kill} deliveries");
    // More activity on the survivor after the kill.
    for _ in 0..4 {
        survivor.submit(&alice, HOTFIX).await;
    }
    let expected = outbox_ids(&db, "request.%");
    assert_eq!(expected.len(), 10, "one request.created per submission");
    assert!(delivered_at_kill < expected.len(), "the kill came mid-run");
    let all = wait_until(|| {
        let seen = webhook_ids(&server, "/hook");
        expected.iter().all(|id| seen.contains(id))
    })
    .await;
    assert!(
        all,
        "{:?}\n{}",
        webhook_ids(&server, "/hook"),
        survivor.log_text()
    );
    let head: i64 = query(&db, |c| {
        c.query_one("SELECT max(seq) FROM audit_events", &[])
            .unwrap()
            .get(0)
    });
    let all = wait_until(|| {
        let seen = sink_seqs(&server, "/siem");
        (1..=head).all(|seq| seen.contains(&seq))
    })
    .await;
    assert!(
        all,
        "{:?}\n{}",
        sink_seqs(&server, "/siem"),
        survivor.log_text()
    );
    // Time for a duplicate, if there were one.
    tokio::time::sleep(Duration::from_secs(3)).await;
    eprintln!(
        "webhook deliveries {:?}, audit sink seqs {:?}",
        webhook_ids(&server, "/hook"),
        sink_seqs(&server, "/siem")
    );
    once_in_order_but_the_batch_in_flight(&webhook_ids(&server, "/hook"), &expected, 1);
    let seqs: Vec<i64> = sink_seqs(&server, "/siem")
        .into_iter()
        .filter(|s| *s <= head)
        .collect();
    let events: Vec<i64> = (1..=head).collect();
    once_in_order_but_the_batch_in_flight(&seqs, &events, ca_server::audit::sinks::BATCH as usize);
    // Both sinks were delivered by the survivor at the end.
    assert!(survivor.holds(lease_owner(&db, "outbox_cursors", "hook").as_deref()));
    assert!(survivor.holds(lease_owner(&db, "audit_sink_cursors", "siem").as_deref()));
}

// issue 15: an item queued on the replica that does not hold the sink's
// lease is delivered by the holder at once (the commit's NOTIFY rings the
// holder's outbox bell), not at the holder's next idle poll (10 s).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_item_queued_on_another_replica_is_delivered_at_once() {
    let server = fake_server(|_, _| Reply {
        status: 200,
        ..Reply::default()
    })
    .await;
    let more = format!(
        "[[webhooks]]\nname = \"hook\"\nurl = \"{}/hook\"\n",
        server.base
    );
    let (data, db) = tokio::task::block_in_place(|| team_on_postgres(None, &more, &[]));
    let holder = tokio::task::block_in_place(|| Replica::start(&data));
    assert!(
        wait_until(|| holder.holds(lease_owner(&db, "outbox_cursors", "hook").as_deref())).await,
        "the first replica took the lease"
    );
    let other = tokio::task::block_in_place(|| Replica::start(&data));
    let alice = other.login("alice").await;
    for n in 1..=3 {
        let queued = tokio::time::Instant::now();
        other.submit(&alice, HOTFIX).await;
        assert!(wait_until(|| webhook_ids(&server, "/hook").len() >= n).await);
        let took = queued.elapsed();
        eprintln!("queued on the other replica to delivered: {took:?}");
        assert!(took < Duration::from_secs(3), "delivery {n} took {took:?}");
    }
    assert!(holder.holds(lease_owner(&db, "outbox_cursors", "hook").as_deref()));
}

/// A break-glass request for `host` (one per host: a second for the same
/// role and hosts would answer with the active grant).
fn break_glass(host: &str) -> String {
    format!(
        r#"{{"role":"hotfix-admin","hosts":["{host}"],"duration":"30m","reason":"INC-9 site down","ticket":"INC-9","break_glass":true}}"#
    )
}

// issue 15: with two serving replicas on one PostgreSQL database, the alert
// evaluator runs on one at a time (its lease): each break-glass request
// raises exactly one alert, queued once and delivered once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_serving_replicas_raise_each_alert_once() {
    let server = fake_server(|_, _| Reply {
        status: 200,
        ..Reply::default()
    })
    .await;
    let more = format!(
        "[[alert_destinations]]\nname = \"hook\"\nkind = \"webhook\"\nurl = \"{}/alerts\"\nsecret_file = \"alerts.secret\"\n\n\
         [[alerts]]\nname = \"bg\"\nwhen = \"break_glass\"\ndestinations = [\"hook\"]\n",
        server.base
    );
    let (data, db) = tokio::task::block_in_place(|| {
        team_on_postgres(None, &more, &[("alerts.secret", b"0123456789abcdef0123")])
    });
    let (a, b) = tokio::task::block_in_place(|| two_replicas(&data));
    let alice = b.login("alice").await;
    let mut ids = Vec::new();
    for i in 0..3 {
        let replica = if i % 2 == 0 { &a } else { &b };
        ids.push(
            replica
                .submit(&alice, &break_glass(&format!("web-{i}")))
                .await,
        );
    }
    let arrived = wait_until(|| {
        server
            .received()
            .iter()
            .filter(|s| s.path == "/alerts")
            .count()
            >= 3
    })
    .await;
    assert!(arrived, "{}\n{}", a.log_text(), b.log_text());
    // Both evaluators poll every second: time for a second alert, if any.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let alerts: Vec<Value> = server
        .received()
        .iter()
        .filter(|s| s.path == "/alerts")
        .map(|s| s.json())
        .collect();
    assert_eq!(alerts.len(), 3, "one alert per request: {alerts:#?}");
    for id in &ids {
        let about = alerts
            .iter()
            .filter(|a| {
                a["object"]
                    .as_str()
                    .is_some_and(|o| o.contains(id.as_str()))
            })
            .count();
        assert_eq!(about, 1, "{id}: {alerts:#?}");
    }
    assert_eq!(outbox_ids(&db, "alert").len(), 3, "queued once each");
}

// issue 15: with two serving replicas on one PostgreSQL database, the ticket
// comment of an approval (queued by the replica that took the decision) is
// posted once to Jira, so is the closing comment of a cancellation, and the
// closing comment of a window that ran out is queued once even when two
// replicas' window-end passes run at the same moment.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_serving_replicas_post_each_ticket_comment_once() {
    use crate::fake_provider::{Fake, Seen, TOKEN, hotfix_with, provider};
    use crate::tickets::{issue, jira};
    let j = Fake::start(jira(issue(
        "INC-9",
        "INC",
        "indeterminate",
        "x@example.com",
    )))
    .await;
    let roles =
        hotfix_with(r#"ticket_check = { system = "jira", projects = ["INC"], comment = true }"#);
    let more = provider("jira", "jira", &j.url);
    let (data, db) = tokio::task::block_in_place(|| {
        team_on_postgres(Some(roles), &more, &[("provider.token", TOKEN.as_bytes())])
    });
    let (a, b) = tokio::task::block_in_place(|| two_replicas(&data));
    let (alice, bob, carol) = (
        a.login("alice").await,
        b.login("bob").await,
        a.login("carol").await,
    );
    let mut ids = Vec::new();
    for host in ["web-1", "web-2"] {
        let body = serde_json::json!({ "role": "hotfix-admin", "hosts": [host], "duration": "1h", "reason": "r", "ticket": "INC-9" });
        let id = a.submit(&alice, &body.to_string()).await;
        let r = b
            .post(&bob, &format!("/api/v1/requests/{id}/approve"), "")
            .await;
        assert_eq!(r.status, 200, "{}", r.body);
        let r = a
            .post(&carol, &format!("/api/v1/requests/{id}/approve"), "")
            .await;
        assert_eq!(r.json()["state"], "approved", "{}", r.body);
        ids.push(id);
    }
    let comments = |what: &'static str| {
        let seen: Vec<Seen> = j.seen();
        seen.into_iter()
            .filter(|s| {
                s.method == "POST"
                    && s.path() == "/rest/api/2/issue/INC-9/comment"
                    && s.body.contains(what)
            })
            .count()
    };
    assert!(
        wait_until(|| comments("granted") >= 2).await,
        "{}\n{}",
        a.log_text(),
        b.log_text()
    );
    let r = b
        .post(&alice, &format!("/api/v1/requests/{}/cancel", ids[0]), "")
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(wait_until(|| comments("cancelled") >= 1).await);

    // The second window runs out: both replicas' passes (each on its own
    // pool) at once, at a time after its end.
    let options = ca_server::store::pg::PgOptions {
        url: db.url.clone(),
        password: Some(db.password.clone()),
        ca_file: None,
    };
    let after = chrono::Utc::now() + chrono::TimeDelta::hours(2);
    let queued: Vec<usize> = tokio::task::block_in_place(|| {
        let barrier = std::sync::Barrier::new(2);
        std::thread::scope(|scope| {
            let passes: Vec<_> = (0..2)
                .map(|_| {
                    let (options, config, barrier) = (options.clone(), &data.config, &barrier);
                    scope.spawn(move || {
                        let database =
                            ca_server::store::Database::open_postgres(options, 2).unwrap();
                        barrier.wait();
                        database
                            .session(
                                std::time::Instant::now() + Duration::from_secs(60),
                                |conn| {
                                    ca_server::integrations::window_end::queue_due(
                                        conn,
                                        &config.integrations,
                                        &config.policy,
                                        after,
                                    )
                                },
                            )
                            .unwrap()
                    })
                })
                .collect();
            passes.into_iter().map(|p| p.join().unwrap()).collect()
        })
    });
    assert_eq!(queued.iter().sum::<usize>(), 1, "queued once: {queued:?}");
    // The serving replicas find it at their next look (idle poll).
    assert!(
        wait_until(|| comments("ran out") >= 1).await,
        "{:#?}",
        j.seen()
    );
    // Time for a second replica's duplicate, if there were one.
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(
        (
            comments("granted"),
            comments("cancelled"),
            comments("ran out")
        ),
        (2, 1, 1),
        "{:#?}",
        j.seen()
    );
}
