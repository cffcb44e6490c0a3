//! Issue 15: PostgreSQL stopped for 10 s under load on two `tpa-ca serve`
//! replicas: 503 with Retry-After (never 500, never past the write
//! deadline), `/healthz` red then green, no certificate without its row,
//! and the replicas recover without a restart.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tpa_testkit::postgres_server::PgServer;

use crate::harness::{ca_with_roles, move_to_postgres, try_http};
use crate::replicas::replica;
use crate::replicas_faults::{
    CALL_TIMEOUT, call, certificate_call, check_rows_and_events, token, token_and_request,
};

/// One certificate call under load: which replica, when, how long, and its
/// answer (status, `Retry-After`, serial) or the error.
struct Outcome {
    replica: usize,
    started: Instant,
    took: Duration,
    answer: Result<(u16, Option<String>, Option<String>, String), String>,
}

/// `GET /healthz` of `replica` every 250 ms until `stop`: (when, status).
fn poll_health(
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<Vec<(Instant, u16)>> {
    std::thread::spawn(move || {
        let mut samples = Vec::new();
        while !stop.load(Ordering::Relaxed) {
            let at = Instant::now();
            let status =
                try_http(addr, "GET", "/healthz", &[], "", CALL_TIMEOUT).map_or(0, |r| r.status);
            samples.push((at, status));
            std::thread::sleep(Duration::from_millis(250));
        }
        samples
    })
}

// issue 15: PostgreSQL stopped for 10 s under load: every call is answered
// 200 or 503 with Retry-After (never 500, never past the write deadline),
// no certificate is returned without its row, /healthz is red during the
// outage and green after, and both replicas recover without a restart.
#[test]
fn postgres_stopped_for_ten_seconds_under_load_gives_503s_and_the_replicas_recover() {
    const CLIENTS: usize = 8;
    const OUTAGE: Duration = Duration::from_secs(10);
    // write_deadline (5 s by default) plus a margin for a loaded machine.
    const ANSWER_WITHIN: Duration = Duration::from_secs(12);
    let server = PgServer::start(); // this test's own: it stops it
    let tmp = tempfile::tempdir().unwrap();
    let ca = ca_with_roles(tmp.path(), "");
    let db = move_to_postgres(&server, &ca);
    let replicas = [replica(&ca, "a"), replica(&ca, "b")];
    let addrs = [replicas[0].addr, replicas[1].addr];
    let sessions: Vec<(String, String)> = (0..CLIENTS)
        .map(|n| token_and_request(addrs[n % 2], n))
        .collect();
    let (alice, bob) = (token(addrs[0], "alice"), token(addrs[0], "bob"));

    let stop = Arc::new(AtomicBool::new(false));
    let outcomes: Arc<Mutex<Vec<Outcome>>> = Arc::default();
    let clients: Vec<_> = sessions
        .into_iter()
        .enumerate()
        .map(|(n, (token, id))| {
            let (stop, outcomes) = (stop.clone(), outcomes.clone());
            std::thread::spawn(move || {
                let mut i = 0;
                while !stop.load(Ordering::Relaxed) {
                    let replica = (n + i) % 2;
                    i += 1;
                    let started = Instant::now();
                    let answer = certificate_call(addrs[replica], &token, &id)
                        .map(|r| {
                            let serial = r.json()["serial"].as_str().map(str::to_owned);
                            let retry = r.header("retry-after").map(str::to_owned);
                            (r.status, retry, serial, r.text())
                        })
                        .map_err(|e| e.to_string());
                    let pause = matches!(answer, Ok((503, ..)));
                    outcomes.lock().unwrap().push(Outcome {
                        replica,
                        started,
                        took: started.elapsed(),
                        answer,
                    });
                    if pause {
                        std::thread::sleep(Duration::from_millis(100));
                    }
                }
            })
        })
        .collect();
    let health: Vec<_> = addrs
        .iter()
        .map(|&addr| poll_health(addr, stop.clone()))
        .collect();
    let ok_count = |since: Instant, replica: usize| {
        outcomes
            .lock()
            .unwrap()
            .iter()
            .filter(|o| o.replica == replica && o.started >= since)
            .filter(|o| matches!(o.answer, Ok((200, ..))))
            .count()
    };

    // Load on both replicas, then PostgreSQL stops (SIGINT by PID) for 10 s
    // and starts again on the same port and data directory.
    let begin = Instant::now();
    let deadline = begin + Duration::from_secs(120);
    while ok_count(begin, 0) < 8 || ok_count(begin, 1) < 8 {
        assert!(Instant::now() < deadline, "no load got going");
        std::thread::sleep(Duration::from_millis(20));
    }
    let stopping = Instant::now();
    server.stop();
    let down = Instant::now();
    std::thread::sleep(OUTAGE / 2);
    // Each replica names the database as what is down, and its key as fine.
    for (replica, &addr) in addrs.iter().enumerate() {
        let r = try_http(addr, "GET", "/healthz", &[], "", CALL_TIMEOUT).expect("/healthz");
        assert_eq!(r.status, 503, "replica {replica}: {}", r.text());
        let checks = &r.json()["checks"];
        let ok = |name: &str| {
            checks
                .as_array()
                .and_then(|c| c.iter().find(|c| c["name"] == name))
                .map(|c| c["ok"].clone())
        };
        assert_eq!(
            ok("database"),
            Some(false.into()),
            "replica {replica}: {}",
            r.text()
        );
        assert_eq!(
            ok("ca_key"),
            Some(true.into()),
            "replica {replica}: {}",
            r.text()
        );
    }
    std::thread::sleep((down + OUTAGE).saturating_duration_since(Instant::now()));
    let starting = Instant::now();
    server.restart();
    let up = Instant::now();
    // Recovery without a restart of the replicas: both issue again.
    let deadline = up + Duration::from_secs(60);
    while ok_count(up, 0) < 4 || ok_count(up, 1) < 4 {
        assert!(
            Instant::now() < deadline,
            "the replicas did not recover within 60 s of PostgreSQL's return"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let recovered = Instant::now();
    std::thread::sleep(Duration::from_secs(1));
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.join().expect("a client thread");
    }
    let health: Vec<Vec<(Instant, u16)>> = health
        .into_iter()
        .map(|h| h.join().expect("a health poller"))
        .collect();
    let outcomes = std::mem::take(&mut *outcomes.lock().unwrap());

    let (mut ok, mut unavailable, mut received) = (0, 0, Vec::new());
    let mut slowest = Duration::ZERO;
    for o in &outcomes {
        slowest = slowest.max(o.took);
        let (status, retry_after, serial, body) = match &o.answer {
            Ok(answer) => answer,
            Err(e) => panic!("a call to replica {} got no answer: {e}", o.replica),
        };
        assert!(
            o.took < ANSWER_WITHIN,
            "a call took {:?} (status {status})",
            o.took
        );
        match status {
            200 => {
                ok += 1;
                received.push(serial.clone().expect("a serial"));
            }
            503 => {
                unavailable += 1;
                let secs: u64 = retry_after
                    .as_deref()
                    .expect("a 503 without Retry-After")
                    .parse()
                    .expect("Retry-After in seconds");
                assert!(secs >= 1, "{secs}");
                let error: serde_json::Value = serde_json::from_str(body).expect("a JSON error");
                assert!(
                    error["code"].is_string() && error["message"].is_string(),
                    "{body}"
                );
            }
            other => panic!(
                "{other} from replica {} during the outage: {body}",
                o.replica
            ),
        }
        // Within the outage every call fails cleanly.
        if o.started > down + Duration::from_secs(1) && o.started + o.took < starting {
            assert_eq!(*status, 503, "{status} while PostgreSQL was down: {body}");
        }
    }
    let outage_calls = outcomes
        .iter()
        .filter(|o| o.started > down && o.started < starting)
        .count();
    assert!(
        outage_calls >= 8,
        "only {outage_calls} calls during the outage"
    );

    // /healthz: red on both replicas while PostgreSQL is down, green at the end.
    for (replica, samples) in health.iter().enumerate() {
        let during: Vec<u16> = samples
            .iter()
            .filter(|(at, _)| *at > down + Duration::from_secs(2) && *at < starting)
            .map(|(_, s)| *s)
            .collect();
        assert!(during.len() >= 4, "replica {replica}: {during:?}");
        assert!(
            during.iter().all(|&s| s == 503),
            "replica {replica}'s /healthz during the outage: {during:?}"
        );
        let after = try_http(addrs[replica], "GET", "/healthz", &[], "", CALL_TIMEOUT).unwrap();
        assert_eq!(after.status, 200, "replica {replica}: {}", after.text());
        let green_again = samples
            .iter()
            .find(|(at, s)| *at > up && *s == 200)
            .map(|(at, _)| at.saturating_duration_since(up));
        println!(
            "replica {replica}: /healthz 503 in all {} samples during the outage, \
             first 200 {green_again:?} after PostgreSQL's return",
            during.len(),
        );
    }

    let in_flight: Vec<u16> = outcomes
        .iter()
        .filter(|o| o.started < stopping && o.started + o.took > stopping)
        .filter_map(|o| o.answer.as_ref().ok().map(|a| a.0))
        .collect();
    println!("calls in flight when PostgreSQL was stopped, answered: {in_flight:?}");

    // The wake-ups between replicas came back too (B's listener reconnects
    // within its 2 s backoff): a decision on A wakes a waiter on B at once.
    std::thread::sleep((up + Duration::from_secs(3)).saturating_duration_since(Instant::now()));
    let wake = decision_on_a_wakes_a_waiter_on_b(addrs, &alice, &bob);
    println!("after the outage, decision on A -> waiter on B: {wake:?}");
    assert!(
        wake < Duration::from_millis(2500),
        "woke {wake:?} after the decision"
    );

    let rows = check_rows_and_events(&server, &db, &ca, &received);
    println!(
        "PostgreSQL down {:?} (stop took {:?}, start {:?}): {ok} × 200, {unavailable} × 503, \
         slowest answer {slowest:?}, both replicas issuing again {:?} after its return; \
         {rows} certificate rows for {} certificates returned",
        starting - down,
        down - stopping,
        up - starting,
        recovered - up,
        received.len()
    );
    assert!(unavailable > 0 && ok > 0);
    assert!(rows >= received.len() as i64);
}

/// Submits a request needing bob's approval on A, long-polls it on B, has
/// bob approve on A; returns how long after the approval's answer the wait
/// on B answered `approved`.
fn decision_on_a_wakes_a_waiter_on_b(addrs: [SocketAddr; 2], alice: &str, bob: &str) -> Duration {
    let body = r#"{"role":"incident","hosts":["web-1"],"duration":"1h","reason":"INC-15 after the outage"}"#;
    let r = call(addrs[0], Some(alice), "POST", "/api/v1/requests", body).expect("submit");
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(r.json()["request"]["state"], "pending", "{}", r.text());
    let id = r.json()["request"]["id"].as_str().unwrap().to_owned();
    let (waiter_token, wait_path) = (
        alice.to_owned(),
        format!("/api/v1/requests/{id}/wait?timeout=20"),
    );
    let waiter = std::thread::spawn(move || {
        let r = call(addrs[1], Some(&waiter_token), "GET", &wait_path, "").expect("wait on B");
        (Instant::now(), r)
    });
    std::thread::sleep(Duration::from_millis(500));
    let r = call(
        addrs[0],
        Some(bob),
        "POST",
        &format!("/api/v1/requests/{id}/approve"),
        "",
    )
    .expect("approve on A");
    let decided = Instant::now();
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["state"], "approved", "{}", r.text());
    let (woke, r) = waiter.join().expect("the waiter thread");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["state"], "approved", "{}", r.text());
    woke.saturating_duration_since(decided)
}
