//! `TestApp`: the CA built by `Application::build` on 127.0.0.1 port 0 over a
//! fresh [`DataDir`], run on a tokio task, and spoken to in the domain's words
//! (`app.login("bob")`, `app.submit(…)`, `app.approve(…)`).

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use ca_server::server::Application;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::data_dir::DataDir;
use crate::http::{Response, http_send};

/// The password of every account of [`spawn_team_app`].
pub const PW: &str = "a long enough test password";

/// A hotfix-admin request body for web-1 (with markup in its reason, which
/// every page must escape).
pub const HOTFIX: &str = r#"{"role":"hotfix-admin","hosts":["web-1"],"duration":"1h","reason":"INC-9 <script>x</script>","ticket":"INC-9"}"#;

/// A server built by `Application::build` and running on a tokio task.
#[derive(Debug)]
pub struct TestApp {
    /// Where it listens.
    pub address: SocketAddr,
    /// Its data directory.
    pub data: DataDir,
    state: ca_server::app::AppState,
    shutdown: Option<oneshot::Sender<()>>,
    server: Option<JoinHandle<anyhow::Result<()>>>,
}

/// A server over a fresh data directory.
pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

/// A server over a fresh data directory that `prepare` may change first.
pub async fn spawn_app_with(prepare: impl FnOnce(&mut DataDir)) -> TestApp {
    spawn_app_over(DataDir::new(), prepare).await
}

/// Like [`spawn_app_with`], with the data directory under `parent`.
pub async fn spawn_app_in(parent: &Path, prepare: impl FnOnce(&mut DataDir)) -> TestApp {
    spawn_app_over(DataDir::new_in(parent), prepare).await
}

/// The brief's roles and the team of the request tests: alice (engineers),
/// bob (sre-leads), carol (managers) and mallory (all three), password [`PW`].
pub async fn spawn_team_app() -> TestApp {
    spawn_team_app_with(|_| {}).await
}

/// Like [`spawn_team_app`], then `more`.
pub async fn spawn_team_app_with(more: impl FnOnce(&mut DataDir)) -> TestApp {
    spawn_app_with(|data| {
        data.add_example_roles();
        data.add_account("alice", PW, &["engineers"]);
        data.add_account("bob", PW, &["sre-leads"]);
        data.add_account("carol", PW, &["managers"]);
        data.add_account("mallory", PW, &["engineers", "sre-leads", "managers"]);
        more(data);
    })
    .await
}

/// A server over `data` (a SQLite one from [`DataDir::sqlite`], for
/// instance) that `prepare` may change first.
pub async fn spawn_app_over(mut data: DataDir, prepare: impl FnOnce(&mut DataDir)) -> TestApp {
    prepare(&mut data);
    let app = Application::build(&data.config, Some("127.0.0.1:0".parse().unwrap()))
        .await
        .unwrap();
    let address = app.local_addr().unwrap();
    assert_ne!(address.port(), 0);
    TestApp::run(address, data, app)
}

/// A server whose address is known before its configuration is loaded:
/// `prepare` gets the data directory and the bound address (to write
/// `server.public_url`, for instance).
pub async fn spawn_app_at(prepare: impl FnOnce(&mut DataDir, SocketAddr)) -> TestApp {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    spawn_app_bound(listener, prepare).await
}

/// Like [`spawn_app_at`] on a listener the caller bound (and whose address
/// it had to give another process first).
pub async fn spawn_app_bound(
    listener: tokio::net::TcpListener,
    prepare: impl FnOnce(&mut DataDir, SocketAddr),
) -> TestApp {
    let address = listener.local_addr().unwrap();
    let mut data = DataDir::new();
    prepare(&mut data, address);
    let app = Application::build_on(&data.config, listener).await.unwrap();
    TestApp::run(address, data, app)
}

impl TestApp {
    fn run(address: SocketAddr, data: DataDir, app: Application) -> Self {
        let state = app.state().clone();
        let (tx, rx) = oneshot::channel::<()>();
        let server = tokio::spawn(app.run_until_stopped(async move {
            let _ = rx.await;
        }));
        Self {
            address,
            data,
            state,
            shutdown: Some(tx),
            server: Some(server),
        }
    }

    /// The running server's shared state: for tests that drive a background
    /// pass at a chosen time (an injected clock) and ring its outbox bell.
    pub fn state(&self) -> &ca_server::app::AppState {
        &self.state
    }

    /// `GET path`, unauthenticated.
    pub async fn get(&self, path: &str) -> Response {
        self.send("GET", path, &[], "").await
    }

    /// Any request to this server.
    pub async fn send(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &str,
    ) -> Response {
        http_send(self.address, method, path, headers, body).await
    }

    /// `GET path` with a bearer token.
    pub async fn get_as(&self, token: &str, path: &str) -> Response {
        let auth = format!("Bearer {token}");
        self.send("GET", path, &[("Authorization", &auth)], "")
            .await
    }

    /// `POST path` with a bearer token and a JSON body.
    pub async fn post_as(&self, token: &str, path: &str, body: &str) -> Response {
        let auth = format!("Bearer {token}");
        self.send(
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

    /// `POST /api/v1/login` as it comes back.
    pub async fn api_login(&self, username: &str, password: &str) -> Response {
        let body = serde_json::json!({ "username": username, "password": password }).to_string();
        self.send(
            "POST",
            "/api/v1/login",
            &[("Content-Type", "application/json")],
            &body,
        )
        .await
    }

    /// An API token for `username` with `password` (the login must succeed).
    pub async fn login_as(&self, username: &str, password: &str) -> String {
        let r = self.api_login(username, password).await;
        assert_eq!(r.status, 200, "{}", r.body);
        r.json()["token"].as_str().unwrap().to_owned()
    }

    /// An API token for `username` with the team password [`PW`].
    pub async fn login(&self, username: &str) -> String {
        self.login_as(username, PW).await
    }

    /// `GET /api/v1/whoami` with `token`.
    pub async fn whoami(&self, token: &str) -> Response {
        self.get_as(token, "/api/v1/whoami").await
    }

    /// Submits a request (`body` is its JSON) as `token`; returns its id.
    pub async fn submit(&self, token: &str, body: &str) -> String {
        let r = self.post_as(token, "/api/v1/requests", body).await;
        assert_eq!(r.status, 201, "{}", r.body);
        r.json()["request"]["id"].as_str().unwrap().to_owned()
    }

    /// `POST /api/v1/requests/{id}/approve` as `token`.
    pub async fn approve(&self, token: &str, id: &str) -> Response {
        self.post_as(token, &format!("/api/v1/requests/{id}/approve"), "")
            .await
    }

    /// `POST /api/v1/requests/{id}/deny` as `token`, with `comment`.
    pub async fn deny(&self, token: &str, id: &str, comment: &str) -> Response {
        let body = serde_json::json!({ "comment": comment }).to_string();
        self.post_as(token, &format!("/api/v1/requests/{id}/deny"), &body)
            .await
    }

    /// `POST /api/v1/requests/{id}/certificate` for `public_key` as `token`.
    pub async fn certificate(&self, token: &str, id: &str, public_key: &str) -> Response {
        let body = serde_json::json!({ "public_key": public_key }).to_string();
        self.post_as(token, &format!("/api/v1/requests/{id}/certificate"), &body)
            .await
    }

    /// Stops the server gracefully and checks that it ended without error.
    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(server) = self.server.take() {
            tokio::time::timeout(Duration::from_secs(10), server)
                .await
                .expect("server did not stop within 10 s")
                .unwrap()
                .unwrap();
        }
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}
