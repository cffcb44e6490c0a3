//! Issue 11, reproduction 4 with the real npm `oidc-provider`: a local
//! account and SSO identities with one username are one person, whatever
//! their issuer and subject.

use serde_json::json;

use crate::helpers::sso::{
    Browser, Provider, add_connector, callback_uri, csrf, post_json, reserve, set_public_url,
};
use crate::helpers::{HOTFIX, PW};
use crate::helpers::{TestApp, spawn_app_bound};

fn sso_users() -> serde_json::Value {
    json!({
        // Two SSO subjects whose username is also alice, in both approver groups.
        "alice-lead": {"sub": "alice-sso-lead", "preferred_username": "alice",
                       "groups": ["sre-leads"]},
        "alice-mgr": {"sub": "alice-sso-mgr", "preferred_username": "alice",
                      "groups": ["managers"]},
        // A username differing only in case from a local account's.
        "Alice": {"sub": "alice-sso-upper", "preferred_username": "Alice",
                  "groups": ["sre-leads", "managers"]},
        "bob-sso": {"sub": "bob-sso-1", "preferred_username": "bob",
                    "groups": ["sre-leads"]},
        "carol-sso": {"sub": "carol-sso-1", "preferred_username": "carol",
                      "groups": ["managers"]},
    })
}

/// A CA with the example roles, a local account `alice` (engineers) and the
/// provider as connector `idp`.
async fn ca() -> (Provider, TestApp) {
    let listener = reserve().await;
    let address = listener.local_addr().unwrap();
    let provider = Provider::start(&callback_uri(address), sso_users(), json!({}));
    let issuer = provider.issuer();
    let app = spawn_app_bound(listener, move |data, address| {
        set_public_url(data, address);
        data.edit_config(|t| format!("{t}{}", ca_server::config::EXAMPLE_ROLES));
        data.add_account("alice", PW, &["engineers"]);
        add_connector(data, "idp", &issuer);
    })
    .await;
    (provider, app)
}

fn denied_approvals(app: &TestApp) -> usize {
    crate::helpers::audit_rows(&app.data.open_plain())
        .iter()
        .filter(|r| r.action == "request.approve" && r.outcome == "denied")
        .count()
}

// issue 11, reproduction 4: local alice requests; two SSO subjects whose
// username is alice (in sre-leads and managers) try to approve; both are
// refused as the requester and no certificate is issued.
#[tokio::test]
async fn one_person_with_two_identities_cannot_approve_own_request() {
    let (_provider, app) = ca().await;
    let alice = app.login("alice").await;
    let id = app.submit(&alice, HOTFIX).await;
    for login in ["alice-lead", "alice-mgr"] {
        let mut browser = Browser::default();
        assert_eq!(browser.web_login(&app, "idp", login, "/").await.status, 200);
        let me = browser.whoami(&app).await.json();
        assert_eq!(me["user"]["username"], "alice");
        assert_ne!(me["user"]["identity"]["issuer"], "tpa:local");
        let token = csrf(&mut browser, &app).await;
        let r = post_json(
            &browser,
            &app,
            &format!("/api/v1/requests/{id}/approve"),
            &token,
            "{}",
        )
        .await;
        assert_eq!(r.status, 403, "{login}: {}", r.body);
        assert_eq!(r.json()["code"], "own_request", "{login}: {}", r.body);
    }
    assert_eq!(denied_approvals(&app), 2);
    let view = app.get_as(&alice, &format!("/api/v1/requests/{id}")).await;
    assert_eq!(view.json()["state"], "pending", "{}", view.body);
    assert_eq!(view.json()["approvals"], json!([]));
    let cert = app
        .post_as(
            &alice,
            &format!("/api/v1/requests/{id}/certificate"),
            &json!({ "public_key": crate::helpers::ed25519_public_key() }).to_string(),
        )
        .await;
    assert_eq!(cert.status, 409, "{}", cert.body);
    assert_eq!(
        crate::helpers::count(&app.data.open_plain(), "certificates"),
        0
    );
}

// issue 11: `Alice` at the provider is not a second `alice`: usernames are
// lowercase by grammar, so the login is refused and nobody can approve as it.
// Real SSO approvers (bob, carol) still complete the request, and the page
// and API show the group each approval was counted for.
#[tokio::test]
async fn alice_and_capital_alice_across_connectors() {
    let (_provider, app) = ca().await;
    let alice = app.login("alice").await;
    let id = app.submit(&alice, HOTFIX).await;
    let mut upper = Browser::default();
    let r = upper.web_login(&app, "idp", "Alice", "/").await;
    assert_eq!(r.status, 403, "{}", r.body);
    assert!(r.body.contains("unusable_username"), "{}", r.body);
    let audit = crate::helpers::audit_rows(&app.data.open_plain());
    assert!(
        audit
            .iter()
            .any(|r| r.action == "auth.login" && r.outcome != "success"),
        "the refused login is audited"
    );
    for login in ["bob-sso", "carol-sso"] {
        let mut browser = Browser::default();
        assert_eq!(browser.web_login(&app, "idp", login, "/").await.status, 200);
        let token = csrf(&mut browser, &app).await;
        let r = post_json(
            &browser,
            &app,
            &format!("/api/v1/requests/{id}/approve"),
            &token,
            r#"{"comment":"checked"}"#,
        )
        .await;
        assert_eq!(r.status, 200, "{login}: {}", r.body);
    }
    let view = app
        .get_as(&alice, &format!("/api/v1/requests/{id}"))
        .await
        .json();
    assert_eq!(view["state"], "approved");
    let groups: Vec<&str> = view["approvals"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["group"].as_str().unwrap())
        .collect();
    assert_eq!(groups, ["sre-leads", "managers"]);
    assert_eq!(view["approvals"][0]["comment"], "checked");
    assert_eq!(view["grant"]["principals"], json!(["root"]));
    let cert = app
        .post_as(
            &alice,
            &format!("/api/v1/requests/{id}/certificate"),
            &json!({ "public_key": crate::helpers::ed25519_public_key() }).to_string(),
        )
        .await;
    assert_eq!(cert.status, 200, "{}", cert.body);
}
