//! Two replicas on one PostgreSQL database behind a round-robin balancer
//! (issue 15: "a browser or CLI whose requests alternate between replicas
//! works"): every request of a flow goes to the other replica than the one
//! before, so password sessions and their CSRF tokens, API tokens and
//! logout, OpenID Connect state and nonce, and device codes must all live in
//! the database, not in one process.

use serde_json::json;

use crate::helpers::sso::{Browser, Provider, add_connector, callback_uri, cli_pkce};
use crate::helpers::sso::{query_param, set_public_url, users};
use crate::helpers::{Balancer, DataDir, HOTFIX, PW, TestApp, decide, form_encode, http_send};
use crate::helpers::{open_consent, spawn_team_app_with};

/// Replica A (its `address` replaced by the balancer's, so that every
/// helper call goes through the balancer), replica B and the balancer.
struct Replicas {
    via: TestApp,
    b: TestApp,
    balancer: Balancer,
}

impl Replicas {
    /// Two replicas of the team CA on one fresh PostgreSQL database, with
    /// `server.public_url` the balancer's; `more` edits the configuration
    /// both run with.
    async fn start(more: impl FnOnce(&mut DataDir)) -> Self {
        let balancer = Balancer::bind();
        let mut shared = None;
        let a = spawn_team_app_with(|data| {
            if !tpa_testkit::postgres_requested() {
                let section = tpa_testkit::move_to_postgres(&data.db_path());
                data.edit_config(|t| t.replace(ca_server::config::SQLITE_DATABASE, &section));
            }
            set_public_url(data, balancer.address);
            more(data);
            shared = Some((
                std::fs::read_to_string(&data.config_path).unwrap(),
                data.key_path(),
            ));
        })
        .await;
        let (config_text, key) = shared.unwrap();
        let b = spawn_team_app_with(|data| {
            std::fs::copy(&key, data.key_path()).unwrap();
            std::fs::copy(
                key.with_extension("pub"),
                data.key_path().with_extension("pub"),
            )
            .unwrap();
            let _ = std::fs::remove_file(data.db_path());
            data.edit_config(|_| config_text);
        })
        .await;
        balancer.set_backends(vec![a.address, b.address]);
        let mut via = a;
        via.address = balancer.address;
        Self { via, b, balancer }
    }

    /// Both replicas answered some of the flow's requests.
    fn assert_both_served(&self) {
        let counts = self.balancer.counts();
        assert!(
            counts.len() == 2 && counts.iter().all(|&n| n > 0),
            "both replicas must have served: {counts:?}"
        );
    }

    async fn stop(self) {
        self.b.stop().await;
        self.via.stop().await;
    }
}

/// The CSRF token of a page's form.
fn form_csrf(body: &str) -> String {
    let marker = "name=\"csrf_token\" value=\"";
    let start = body.find(marker).expect("a CSRF field") + marker.len();
    let end = start + body[start..].find('"').unwrap();
    body[start..end].to_owned()
}

// issue 15: a password web session made on one replica is known to the
// other, its CSRF token too (an approval posted as a form lands), an API
// token works on both, and a logout on one ends it on both.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_tokens_and_csrf_work_whichever_replica_answers() {
    let r = Replicas::start(|_| {}).await;
    let app = &r.via;
    let alice = app.login("alice").await;
    let id = app.submit(&alice, HOTFIX).await;

    let bob = app.browser("bob", PW).await;
    for _ in 0..2 {
        let page = app.page(&bob, "/").await;
        assert_eq!(
            page.status, 200,
            "signed in on both replicas: {}",
            page.body
        );
        assert!(page.body.contains(&id), "{}", page.body);
    }
    let approved = app
        .post_form(&bob, &format!("/requests/{id}/approve"), &[])
        .await;
    assert!(
        matches!(approved.status, 200 | 303),
        "a form approval with the session's CSRF token: {} {}",
        approved.status,
        approved.body
    );
    let carol = app.login("carol").await;
    let decided = app.approve(&carol, &id).await;
    assert_eq!(decided.json()["state"], "approved", "{}", decided.body);

    for _ in 0..2 {
        let me = app.whoami(&alice).await;
        assert_eq!(me.status, 200, "{}", me.body);
    }
    let out = app.post_as(&alice, "/api/v1/logout", "").await;
    assert_eq!(out.status, 204, "{}", out.body);
    for _ in 0..2 {
        let me = app.whoami(&alice).await;
        assert_eq!(me.status, 401, "logged out on both replicas: {}", me.body);
    }
    r.assert_both_served();
    r.stop().await;
}

// issue 15: an OpenID Connect login started on one replica (state, nonce
// and PKCE verifier stored) completes when the provider's redirect lands on
// the other; the session then works on both; and a `tpa-ssh login`
// through the consent page does too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oidc_and_cli_logins_complete_across_replicas() {
    let mut provider = None;
    let r = Replicas::start(|data| {
        let started = tokio::task::block_in_place(|| {
            Provider::start(&callback_uri(balancer_of(data)), users(), json!({}))
        });
        add_connector(data, "idp", &started.issuer());
        provider = Some(started);
    })
    .await;
    let _provider = provider.unwrap();
    let mut browser = Browser::default();
    let done = browser.web_login(&r.via, "idp", "alice", "/").await;
    assert_eq!(done.status, 200, "{}", done.body);
    for _ in 0..2 {
        let me = browser.whoami(&r.via).await;
        assert_eq!(me.status, 200, "{}", me.body);
        assert_eq!(me.json()["user"]["username"], "alice", "{}", me.body);
    }

    // `tpa-ssh login` (loopback): the login, the consent page, the decision
    // and the code exchange each reach the replica after the last one's.
    let redirect = "http://127.0.0.1:49999/callback";
    let (verifier, challenge) = cli_pkce();
    let start = format!(
        "/cli/login?redirect_uri={}&code_challenge={challenge}&code_challenge_method=S256",
        form_encode(redirect)
    );
    let mut browser = Browser::default();
    let back = browser.login_at_provider(&r.via, &start, "alice").await;
    let signed_in = browser.get(&back).await;
    let page = open_consent(&mut browser, &r.via, &signed_in).await;
    let to = decide(&mut browser, &r.via, &page, "approve").await;
    let body = json!({
        "code": query_param(&to, "code"),
        "code_verifier": verifier,
        "redirect_uri": redirect,
    })
    .to_string();
    let token = http_send(
        r.via.address,
        "POST",
        "/api/v1/cli/token",
        &[("Content-Type", "application/json")],
        &body,
    )
    .await;
    assert_eq!(token.status, 200, "{}", token.body);
    assert_eq!(token.json()["user"]["username"], "alice", "{}", token.body);
    r.assert_both_served();
    r.stop().await;
}

// issue 15: a device login (`tpa-ssh login --no-browser`) started on one
// replica is confirmed in a browser whose requests alternate, and the CLI's
// poll collects its token from whichever replica answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_login_crosses_replicas() {
    let r = Replicas::start(|_| {}).await;
    let app = &r.via;
    let started = http_send(
        app.address,
        "POST",
        "/api/v1/cli/device",
        &[("Content-Type", "application/json")],
        "",
    )
    .await;
    assert_eq!(started.status, 200, "{}", started.body);
    let device = started.json()["device_code"].as_str().unwrap().to_owned();
    let code = started.json()["user_code"].as_str().unwrap().to_owned();

    let mut bob = Browser::default();
    let url = |path: &str| format!("http://{}{path}", app.address);
    let logged_in = bob
        .post_form(&url("/login"), &[("username", "bob"), ("password", PW)])
        .await;
    assert_eq!(logged_in.status, 303, "{}", logged_in.body);
    let form = bob.get(&url("/device")).await;
    assert_eq!(form.status, 200, "{}", form.body);
    let csrf = form_csrf(&form.body);
    let confirm = bob
        .post_form(
            &url("/device"),
            &[("csrf_token", &csrf), ("user_code", &code)],
        )
        .await;
    assert_eq!(confirm.status, 200, "{}", confirm.body);
    let approved = bob
        .post_form(
            &url("/device/decision"),
            &[
                ("csrf_token", &csrf),
                ("user_code", &code),
                ("decision", "approve"),
            ],
        )
        .await;
    assert_eq!(approved.status, 200, "{}", approved.body);

    let polled = http_send(
        app.address,
        "POST",
        "/api/v1/cli/device/token",
        &[("Content-Type", "application/json")],
        &json!({ "device_code": device }).to_string(),
    )
    .await;
    assert_eq!(polled.status, 200, "{}", polled.body);
    let token = polled.json()["token"].as_str().unwrap().to_owned();
    for _ in 0..2 {
        let me = app.whoami(&token).await;
        assert_eq!(me.json()["user"]["username"], "bob", "{}", me.body);
    }
    // The code is spent on both replicas.
    let again = http_send(
        app.address,
        "POST",
        "/api/v1/cli/device/token",
        &[("Content-Type", "application/json")],
        &json!({ "device_code": device }).to_string(),
    )
    .await;
    assert_eq!(again.json()["code"], "invalid_grant", "{}", again.body);
    r.assert_both_served();
    r.stop().await;
}

/// The balancer's address, as `set_public_url` wrote it into `data`'s
/// configuration (the provider must know the redirect URI first).
fn balancer_of(data: &DataDir) -> std::net::SocketAddr {
    let text = std::fs::read_to_string(&data.config_path).unwrap();
    let url = text
        .lines()
        .find_map(|l| l.strip_prefix("public_url = \"http://"))
        .expect("public_url is set before `more` runs");
    url.trim_end_matches('"').parse().unwrap()
}
