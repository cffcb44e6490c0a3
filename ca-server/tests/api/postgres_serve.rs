//! `tpa-ca serve` on PostgreSQL (issue 15): the whole request flow and
//! `/healthz` on a CA whose `[database]` names a PostgreSQL database, with no
//! SQLite file beside it, a webhook delivered from the PostgreSQL outbox,
//! and a waiter woken by another replica's decision.

use std::time::{Duration, Instant};

use ca_server::store::pg::{self, PgOptions};
use tpa_testkit::DataDir;

use crate::fake_http::{Reply, fake_server};
use crate::helpers::{
    HOTFIX, ed25519_public_key, http_send, run_with_timeout, spawn_team_app_with, tpa_ca,
};
use crate::postgres_server::{PgDatabase, PgServer};

/// Moves `data`'s fresh SQLite store into a new PostgreSQL database (with
/// `tpa-ca migrate-store`), deletes the SQLite file and points `[database]`
/// at PostgreSQL.
pub(crate) fn move_to_postgres(data: &mut DataDir) -> PgDatabase {
    let db = PgServer::shared().database();
    let options = PgOptions {
        url: db.url.clone(),
        password: Some(db.password.clone()),
        ca_file: None,
    };
    pg::migrate(&mut pg::connect(&options).unwrap()).unwrap();
    let out = run_with_timeout(
        tpa_ca()
            .arg("migrate-store")
            .arg(format!("--from=sqlite:{}", data.db_path().display()))
            .arg(format!("--to={}", db.url))
            .arg("--to-password-file")
            .arg(&db.password_file),
        Duration::from_secs(120),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::remove_file(data.db_path()).unwrap();
    let section = format!(
        "url = {:?}\npassword_file = {:?}",
        db.url,
        db.password_file.display().to_string()
    );
    data.edit_config(|t| t.replace(ca_server::config::SQLITE_DATABASE, &section));
    db
}

// issue 15: a CA configured on PostgreSQL serves the whole flow (logins,
// submit, two approval stages, a certificate) and a green /healthz, and
// everything lands in PostgreSQL: no SQLite file appears.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_request_flow_runs_on_postgres() {
    let mut pg_db = None;
    let app = spawn_team_app_with(|data| {
        pg_db = Some(tokio::task::block_in_place(|| move_to_postgres(data)));
    })
    .await;
    let pg_db = pg_db.unwrap();
    assert_eq!(
        app.state().database.engine(),
        ca_server::store::sql::Engine::Postgres
    );

    let health = app.get("/healthz").await;
    assert_eq!(health.status, 200, "{}", health.body);

    let (alice, bob, carol) = (
        app.login("alice").await,
        app.login("bob").await,
        app.login("carol").await,
    );
    let id = app.submit(&alice, HOTFIX).await;
    let r = app.approve(&bob, &id).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let r = app.approve(&carol, &id).await;
    assert_eq!(r.json()["state"], "approved", "{}", r.body);
    let key = serde_json::json!({ "public_key": ed25519_public_key() }).to_string();
    let cert = app
        .post_as(&alice, &format!("/api/v1/requests/{id}/certificate"), &key)
        .await;
    assert_eq!(cert.status, 200, "{}", cert.body);
    let mine = app.get_as(&alice, "/api/v1/requests").await;
    assert_eq!(mine.json()["requests"][0]["id"], id.as_str());
    assert!(
        !app.data.dir.join("tpa.db").exists(),
        "no SQLite file beside a PostgreSQL configuration"
    );
    app.stop().await;

    // The blocking client must not run on the runtime's thread.
    let row = tokio::task::block_in_place(|| {
        let mut client = PgServer::shared().connect(&pg_db.name).unwrap();
        client
            .query_one(
                "SELECT (SELECT count(*) FROM certificates), \
                 (SELECT count(*) FROM audit_events WHERE action = 'cert.issue' AND outcome = 'success')",
                &[],
            )
            .unwrap()
    });
    assert_eq!((row.get::<_, i64>(0), row.get::<_, i64>(1)), (1, 1));
}

// issue 15: a PostgreSQL configuration with a webhook starts (it was
// refused while the delivery loops read a SQLite outbox) and the webhook
// receives the request's event from the outbox in PostgreSQL.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webhook_on_postgres_is_delivered() {
    let server = fake_server(|_, _| Reply {
        status: 200,
        ..Reply::default()
    })
    .await;
    let url = format!("{}/hook", server.base);
    let app = spawn_team_app_with(|data| {
        tokio::task::block_in_place(|| move_to_postgres(data));
        data.edit_config(|t| format!("{t}\n[[webhooks]]\nname = \"chat\"\nurl = \"{url}\"\n"));
    })
    .await;
    let alice = app.login("alice").await;
    let id = app.submit(&alice, HOTFIX).await;
    let seen = server.wait_for(1, Duration::from_secs(60)).await;
    assert_eq!(seen.len(), 1, "the event was delivered");
    let event = seen[0].json();
    assert_eq!(event["event"], "request.created", "{event}");
    assert_eq!(event["request"]["id"], id.as_str(), "{event}");
    app.stop().await;
}

// issue 15: two replicas on one PostgreSQL database: a client waiting
// (`/wait`) on replica A hears a decision made on replica B within 200 ms of
// B's answer (LISTEN/NOTIFY at B's commit), not at A's next poll.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_decision_on_one_replica_wakes_a_waiter_on_another() {
    let mut shared = None;
    let a = spawn_team_app_with(|data| {
        tokio::task::block_in_place(|| move_to_postgres(data));
        shared = Some((
            std::fs::read_to_string(&data.config_path).unwrap(),
            data.key_path(),
        ));
    })
    .await;
    let (config_text, key) = shared.unwrap();
    // Replica B: the same configuration, CA key and database.
    let b = spawn_team_app_with(|data| {
        std::fs::copy(&key, data.key_path()).unwrap();
        std::fs::copy(
            key.with_extension("pub"),
            data.key_path().with_extension("pub"),
        )
        .unwrap();
        std::fs::remove_file(data.db_path()).unwrap();
        data.edit_config(|_| config_text);
    })
    .await;
    assert!(!b.data.dir.join("tpa.db").exists());

    let alice = a.login("alice").await;
    let id = a.submit(&alice, HOTFIX).await;
    let bob = b.login("bob").await;
    let r = b.approve(&bob, &id).await;
    assert_eq!(r.status, 200, "{}", r.body);

    let (address, auth) = (a.address, format!("Bearer {alice}"));
    let path = format!("/api/v1/requests/{id}/wait?timeout=30");
    let waiter = tokio::spawn(async move {
        let r = http_send(address, "GET", &path, &[("Authorization", &auth)], "").await;
        (Instant::now(), r)
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!waiter.is_finished(), "still pending: the waiter must wait");
    let carol = b.login("carol").await;
    let r = b.approve(&carol, &id).await;
    let decided = Instant::now();
    assert_eq!(r.json()["state"], "approved", "{}", r.body);
    let (answered, r) = tokio::time::timeout(Duration::from_secs(10), waiter)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(r.json()["state"], "approved", "{}", r.body);
    let latency = answered.saturating_duration_since(decided);
    eprintln!("replica wake-up latency: {latency:?}");
    assert!(
        latency < Duration::from_millis(200),
        "woken by B's commit, not polled: {latency:?}"
    );
    b.stop().await;
    a.stop().await;
}
