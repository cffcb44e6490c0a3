//! The HTTP surface: `/ca.pub`, `/healthz`, JSON errors, shutdown.

use axum::body::Body;
use axum::http::{Request, StatusCode};
use ca_server::app::AppState;
use tower::ServiceExt as _;

use crate::helpers::spawn_app_over;
use crate::helpers::{DataDir, chmod, http_request, spawn_app, spawn_app_with, ssh_keygen};
use ca_server::store::sql::Engine;

#[tokio::test]
async fn ca_pub_is_the_signing_key_line() {
    let app = spawn_app().await;

    let response = app.get("/ca.pub").await;

    assert_eq!(response.status, 200);
    assert_eq!(response.body, app.data.ca_public_key());
    assert!(
        response.body.starts_with("ssh-ed25519 "),
        "{}",
        response.body
    );
    assert_eq!(response.body.lines().count(), 1);
    assert_eq!(
        response.header("content-type"),
        Some("text/plain; charset=utf-8")
    );
    app.stop().await;
}

#[tokio::test]
async fn ca_pub_includes_the_extra_trusted_keys() {
    let mut old_ed25519 = String::new();
    let mut old_ecdsa = String::new();
    let app = spawn_app_with(|data| {
        old_ed25519 = ssh_keygen(&data.dir, "old_ca", &["-t", "ed25519"]);
        old_ecdsa = ssh_keygen(&data.dir, "older_ca", &["-t", "ecdsa", "-b", "256"]);
        // The signing key listed again as "extra" must not be published twice.
        data.edit_config(|text| {
            text.replace(
                "extra_trusted_public_key_files = []",
                "extra_trusted_public_key_files = [\"old_ca.pub\", \"older_ca.pub\", \"ca_key.pub\"]",
            )
        });
    })
    .await;

    let response = app.get("/ca.pub").await;

    assert_eq!(response.status, 200);
    // Keys compare by algorithm and key material; the CA publishes fixed comments.
    let key_of = |line: &str| {
        line.split_whitespace()
            .take(2)
            .collect::<Vec<_>>()
            .join(" ")
    };
    let lines: Vec<String> = response.body.lines().map(key_of).collect();
    assert_eq!(
        lines,
        vec![
            key_of(&app.data.ca_public_key()),
            key_of(&old_ed25519),
            key_of(&old_ecdsa)
        ]
    );
    assert!(
        response
            .body
            .lines()
            .skip(1)
            .all(|l| l.ends_with(" tpa-user-ca-extra"))
    );
    app.stop().await;
}

#[tokio::test]
async fn healthz_is_ok_when_database_and_key_are_usable() {
    let app = spawn_app().await;

    let response = app.get("/healthz").await;

    assert_eq!(response.status, 200, "{}", response.body);
    let health = response.json();
    assert_eq!(health["status"], "ok");
    let checks = health["checks"].as_array().unwrap();
    let names: Vec<&str> = checks.iter().map(|c| c["name"].as_str().unwrap()).collect();
    // The free space of the database's file system only when it is local
    // (SQLite); a PostgreSQL server's disk is its own (issue 15).
    let expected: &[&str] = match app.data.engine() {
        Engine::Sqlite => &["database", "ca_key", "writes", "writer_queue", "disk_space"],
        Engine::Postgres => &["database", "ca_key", "writes", "writer_queue"],
    };
    assert_eq!(names, expected);
    assert!(checks.iter().all(|c| c["ok"] == true), "{health}");
    app.stop().await;
}

// SQLite only, whatever the run's engine: the database gone is its file
// deleted (issue 15: PostgreSQL down is postgres_serve.rs's and the
// replicas e2e's).
#[tokio::test]
async fn healthz_is_unavailable_when_the_database_is_gone() {
    let app = spawn_app_over(DataDir::sqlite(), |_| {}).await;
    let db = app.data.db_path();
    for suffix in ["", "-wal", "-shm"] {
        let path = format!("{}{suffix}", db.display());
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => panic!("cannot remove {path}: {e}"),
        }
    }

    let response = app.get("/healthz").await;

    assert_eq!(response.status, 503, "{}", response.body);
    let health = response.json();
    assert_eq!(health["status"], "unavailable");
    assert_eq!(health["checks"][0]["name"], "database");
    assert_eq!(health["checks"][0]["ok"], false);
    assert_eq!(health["checks"][1]["ok"], true, "{health}");
    // No internal detail (paths, SQLite messages) reaches the client.
    assert!(!response.body.contains(&*db.to_string_lossy()), "{health}");
    app.stop().await;
}

#[tokio::test]
async fn healthz_is_unavailable_while_the_ca_key_is_world_readable() {
    let app = spawn_app().await;
    chmod(&app.data.key_path(), 0o644);

    let response = app.get("/healthz").await;

    assert_eq!(response.status, 503, "{}", response.body);
    let health = response.json();
    assert_eq!(health["status"], "unavailable");
    assert_eq!(health["checks"][1]["name"], "ca_key");
    assert_eq!(health["checks"][1]["ok"], false, "{health}");
    assert_eq!(health["checks"][0]["ok"], true, "{health}");

    // Checked on every call: fixing the mode makes the CA healthy again.
    chmod(&app.data.key_path(), 0o600);
    assert_eq!(app.get("/healthz").await.status, 200);
    app.stop().await;
}

#[tokio::test]
async fn unknown_route_is_a_json_404() {
    let app = spawn_app().await;

    let response = app.get("/api/v1/nope?x=1").await;

    assert_eq!(response.status, 404);
    assert_eq!(response.header("content-type"), Some("application/json"));
    let body = response.json();
    assert_eq!(body["code"], "not_found");
    assert!(!body["message"].as_str().unwrap().is_empty(), "{body}");
    assert_eq!(body.as_object().unwrap().len(), 2, "{body}");
    app.stop().await;
}

// issue 12: a person who follows a dead link gets a page in plain words with
// the next step; programs keep the JSON answer.
#[tokio::test]
async fn unknown_page_is_a_plain_words_page_for_browsers() {
    let app = spawn_app().await;
    let page = crate::helpers::http_send(
        app.address,
        "GET",
        "/no-such-page",
        &[("Accept", "text/html,application/xhtml+xml")],
        "",
    )
    .await;
    assert_eq!(page.status, 404, "{}", page.body);
    assert!(
        page.header("content-type")
            .unwrap()
            .starts_with("text/html"),
        "{page:?}"
    );
    assert!(page.body.contains("<h1>Not found</h1>"), "{}", page.body);
    assert!(page.body.contains("href=\"/\""), "{}", page.body);
    assert!(page.body.contains("not_found"), "{}", page.body);
    let program = app.get("/no-such-page").await;
    assert_eq!(program.status, 404);
    assert_eq!(program.json()["code"], "not_found");
    let api = crate::helpers::http_send(
        app.address,
        "GET",
        "/api/v1/nope",
        &[("Accept", "text/html")],
        "",
    )
    .await;
    assert_eq!(api.header("content-type"), Some("application/json"));
    app.stop().await;
}

#[tokio::test]
async fn every_response_carries_the_security_headers() {
    let app = spawn_app().await;
    for path in ["/ca.pub", "/healthz", "/nope"] {
        let response = app.get(path).await;
        assert_eq!(response.header("cache-control"), Some("no-store"), "{path}");
        assert_eq!(
            response.header("x-content-type-options"),
            Some("nosniff"),
            "{path}"
        );
    }
    app.stop().await;
}

#[tokio::test]
async fn wrong_method_is_a_json_405_with_allow() {
    let app = spawn_app().await;

    let response = http_request(app.address, "DELETE", "/healthz").await;

    assert_eq!(response.status, 405, "{}", response.body);
    assert_eq!(response.json()["code"], "method_not_allowed");
    let allow = response.header("allow").unwrap_or_default();
    assert!(allow.contains("GET"), "Allow: {allow:?}");
    app.stop().await;
}

#[tokio::test]
async fn graceful_stop_closes_the_listener() {
    let app = spawn_app().await;
    let address = app.address;
    assert_eq!(http_request(address, "GET", "/healthz").await.status, 200);

    app.stop().await;

    assert!(tokio::net::TcpStream::connect(address).await.is_err());
}

/// The router in-process, without a listener. The state is loaded on a
/// thread of its own: opening a PostgreSQL store blocks, which the test's
/// runtime thread must not (issue 15).
fn router(data: &DataDir) -> axum::Router {
    let state = std::thread::scope(|s| {
        s.spawn(|| AppState::load(&data.config).unwrap())
            .join()
            .unwrap()
    });
    ca_server::http::router(state)
}

async fn oneshot(data: &DataDir, method: &str, uri: &str) -> (StatusCode, String) {
    let response = router(data)
        .oneshot(
            Request::builder()
                .method(method)
                .uri(uri)
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    let status = response.status();
    let body = axum::body::to_bytes(response.into_body(), 1 << 20)
        .await
        .unwrap();
    (status, String::from_utf8(body.to_vec()).unwrap())
}

#[tokio::test]
async fn in_process_router_serves_ca_pub() {
    let data = DataDir::new();

    let (status, body) = oneshot(&data, "GET", "/ca.pub").await;

    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, data.ca_public_key());
}

#[tokio::test]
async fn wrong_method_is_a_json_405_in_process() {
    let data = DataDir::new();

    let (status, body) = oneshot(&data, "POST", "/ca.pub").await;

    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    let body: serde_json::Value = serde_json::from_str(&body)
        .unwrap_or_else(|e| panic!("405 body is not JSON ({e}): {body:?}"));
    assert_eq!(body["code"], "method_not_allowed");
    assert!(!body["message"].as_str().unwrap().is_empty(), "{body}");
}

#[tokio::test]
async fn client_config_announces_the_client_section() {
    // Issue 5: `tpa-ssh config` learns the bastion and host patterns here.
    let app = spawn_app().await;
    let response = app.get("/api/v1/client-config").await;
    assert_eq!(response.status, 200, "{}", response.body);
    assert_eq!(
        response.json(),
        serde_json::json!({ "bastion": null, "host_patterns": [], "allowed_suffixes": [] })
    );
    app.stop().await;

    let app = spawn_app_with(|data| {
        data.edit_config(|text| {
            text + "\n[client]\nbastion = \"bastion.example.com:2222\"\nhost_patterns = [\"web-*\", \"*.prod.example.com\"]\nallowed_suffixes = [\"prod.example.com\"]\n"
        });
    })
    .await;
    let response = app.get("/api/v1/client-config").await;
    assert_eq!(response.status, 200, "{}", response.body);
    assert_eq!(
        response.json(),
        serde_json::json!({
            "bastion": "bastion.example.com:2222",
            "host_patterns": ["web-*", "*.prod.example.com"],
            "allowed_suffixes": ["prod.example.com"]
        })
    );
    app.stop().await;
}

/// Issue #7: a revoked CA key leaves `/ca.pub` at once (the running server
/// reads the revocation `tpa-ca revoke ca-key` wrote), `GET /krl` grows its
/// version, and the signing key itself cannot be revoked.
#[tokio::test]
async fn a_revoked_ca_key_leaves_ca_pub_and_the_krl_version_grows() {
    let mut old = String::new();
    let app = spawn_app_with(|data| {
        old = ssh_keygen(&data.dir, "old_ca", &["-t", "ed25519"]);
        data.edit_config(|text| {
            text.replace(
                "extra_trusted_public_key_files = []",
                "extra_trusted_public_key_files = [\"old_ca.pub\"]",
            )
        });
    })
    .await;
    let fingerprint = |line: &str| {
        ssh_key::PublicKey::from_openssh(line.trim())
            .unwrap()
            .fingerprint(ssh_key::HashAlg::Sha256)
            .to_string()
    };
    let before = app.get("/krl").await;
    assert_eq!(before.status, 200);
    let version = |r: &crate::helpers::Response| -> u64 {
        r.header("x-krl-version").unwrap().parse().unwrap()
    };
    assert_eq!(app.get("/ca.pub").await.body.lines().count(), 2);
    let revoke = |fp: String| {
        crate::helpers::run(
            crate::helpers::tpa_ca()
                .args(["revoke", "ca-key", &fp, "--reason", "rotation done"])
                .args(["--admin", "oncall", "--config"])
                .arg(&app.data.config_path),
        )
    };

    let (code, _, stderr) = revoke(fingerprint(&app.data.ca_public_key()));
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("current signing key"), "{stderr}");
    let (code, stdout, stderr) = revoke(fingerprint(&old));
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("CA key revoked"), "{stdout}");

    let ca_pub = app.get("/ca.pub").await.body;
    assert_eq!(ca_pub.lines().count(), 1, "{ca_pub}");
    assert_eq!(
        fingerprint(ca_pub.lines().next().unwrap()),
        fingerprint(&app.data.ca_public_key())
    );
    let after = app.get("/krl").await;
    assert!(version(&after) > version(&before));
    assert_ne!(after.body, before.body);
    app.stop().await;
}
