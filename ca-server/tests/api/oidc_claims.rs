//! OpenID Connect claims beyond the ID token, against the real npm
//! `oidc-provider` in its "claims only in userinfo" mode (as
//! django-oidc-provider does by default): userinfo completes the username,
//! groups and display name; a claim missing from both is named on the error
//! page for the administrator; a userinfo answer for another subject and a
//! userinfo endpoint that is down are refused. Issue 12.

use serde_json::json;

use crate::helpers::sso::{
    Browser, Provider, add_connector, callback_uri, reserve, set_public_url, users,
};
use crate::helpers::{TestApp, audit_rows, count};

/// A CA with connector `idp` on a provider started with `extra` settings and
/// the test users plus `nameless` (no `preferred_username` anywhere);
/// `connector_lines` are appended to the `[[oidc]]` entry.
async fn ca_with(extra: serde_json::Value, connector_lines: &str) -> (Provider, TestApp) {
    let listener = reserve().await;
    let address = listener.local_addr().unwrap();
    let mut users = users();
    users["nameless"] = json!({"sub": "nameless-sub-4", "name": "No Username", "groups": []});
    users["alice"]["name"] = json!("Alice Userinfo");
    let provider = Provider::start(&callback_uri(address), users, extra);
    let issuer = provider.issuer();
    let lines = connector_lines.to_owned();
    let app = crate::helpers::spawn_app_bound(listener, move |data, address| {
        set_public_url(data, address);
        add_connector(data, "idp", &issuer);
        data.edit_config(|text| format!("{text}{lines}"));
    })
    .await;
    (provider, app)
}

/// Log lines written while it is the thread's subscriber (the test's
/// current-thread runtime runs the server's handlers on this thread).
#[derive(Clone, Default)]
struct Logs(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Logs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Logs {
    type Writer = Logs;
    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

impl Logs {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

fn userinfo_only() -> serde_json::Value {
    json!({"claims_in_userinfo_only": true})
}

fn denied_reasons(app: &TestApp) -> Vec<String> {
    audit_rows(&app.data.open_plain())
        .into_iter()
        .filter(|r| r.action == "auth.login" && r.outcome == "denied")
        .map(|r| r.reason)
        .collect()
}

// issue 12: a provider that puts preferred_username, groups and name only in
// userinfo; without the userinfo call every login is refused.
#[tokio::test]
async fn claims_only_in_userinfo_complete_the_login() {
    let (provider, app) = ca_with(userinfo_only(), "").await;
    let mut browser = Browser::default();
    let done = browser.web_login(&app, "idp", "alice", "/my").await;
    assert_eq!(done.status, 200, "{}", done.body);
    let me = browser.whoami(&app).await;
    assert_eq!(me.status, 200, "{}", me.body);
    let me = me.json();
    assert_eq!(me["user"]["identity"]["issuer"], provider.issuer());
    assert_eq!(me["user"]["identity"]["subject"], "alice-sub-1");
    assert_eq!(me["user"]["username"], "alice");
    assert_eq!(me["user"]["groups"], json!(["engineers", "sre-leads"]));
    assert_eq!(me["user"]["display_name"], "Alice Userinfo");
    // Pages show the display name.
    let page = browser.get(&format!("http://{}/my", app.address)).await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(page.body.contains("Alice Userinfo"), "{}", page.body);
}

// issue 12: the username claim in neither the ID token nor userinfo: the page
// names the claim (for the administrator) instead of blaming the user.
#[tokio::test]
async fn a_username_claim_missing_everywhere_is_named_on_the_error_page() {
    let logs = Logs::default();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(logs.clone())
        .with_ansi(false)
        .finish();
    let _logging = tracing::subscriber::set_default(subscriber);
    let (_provider, app) = ca_with(userinfo_only(), "").await;
    let mut browser = Browser::default();
    let r = browser.web_login(&app, "idp", "nameless", "/").await;
    assert_eq!(r.status, 403, "{}", r.body);
    assert!(r.body.contains("missing_claim"), "{}", r.body);
    let named = "the provider sent no `preferred_username` claim in the ID token or userinfo";
    assert!(r.body.contains(named), "{}", r.body);
    assert!(r.body.contains("administrator"), "{}", r.body);
    assert!(
        !r.body.contains("has no username TPA can use"),
        "{}",
        r.body
    );
    assert_eq!(count(&app.data.open_plain(), "auth_tokens"), 0);
    let reasons = denied_reasons(&app);
    assert!(reasons.iter().any(|r| r.contains(named)), "{reasons:?}");
    // And a WARN line for the administrator, naming the claim.
    let logs = logs.text();
    assert!(
        logs.lines()
            .any(|l| l.contains("WARN") && l.contains(named) && l.contains("connector=idp")),
        "{logs}"
    );
}

// issue 12: userinfo answering for another subject than the ID token's is refused.
#[tokio::test]
async fn userinfo_for_another_subject_is_refused() {
    let extra = json!({"claims_in_userinfo_only": true, "userinfo_sub": "mallory-sub-2"});
    let (_provider, app) = ca_with(extra, "").await;
    let mut browser = Browser::default();
    let r = browser.web_login(&app, "idp", "alice", "/").await;
    assert_eq!(r.status, 403, "{}", r.body);
    assert!(r.body.contains("login_not_verified"), "{}", r.body);
    assert_eq!(count(&app.data.open_plain(), "auth_tokens"), 0);
    let reasons = denied_reasons(&app);
    assert!(
        reasons.iter().any(|r| r.contains("another subject")),
        "{reasons:?}"
    );
    assert_eq!(browser.whoami(&app).await.status, 401);
}

// issue 12: a userinfo endpoint that is down is a fault of the world: 503
// with Retry-After, no session.
#[tokio::test]
async fn userinfo_down_gives_a_503_page_and_no_session() {
    let extra = json!({"claims_in_userinfo_only": true, "userinfo_down": true});
    let (_provider, app) = ca_with(extra, "").await;
    let mut browser = Browser::default();
    let r = browser.web_login(&app, "idp", "alice", "/").await;
    assert_eq!(r.status, 503, "{}", r.body);
    assert!(r.body.contains("idp_unavailable"), "{}", r.body);
    assert_eq!(r.header("retry-after"), Some("30"));
    assert!(r.header("content-type").unwrap().starts_with("text/html"));
    assert_eq!(count(&app.data.open_plain(), "auth_tokens"), 0);
}

// issue 12: claims in the ID token need no userinfo call, and the shown name
// comes from `display_name_claim` when it is set.
#[tokio::test]
async fn display_name_claim_is_configurable() {
    let (_provider, app) = ca_with(json!({}), "display_name_claim = \"email\"\n").await;
    let mut browser = Browser::default();
    let done = browser.web_login(&app, "idp", "alice", "/").await;
    assert_eq!(done.status, 200, "{}", done.body);
    let me = browser.whoami(&app).await.json();
    assert_eq!(me["user"]["username"], "alice");
    assert_eq!(me["user"]["display_name"], "shared@example.com");
}
