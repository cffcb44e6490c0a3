//! Issue 11, item 8: `tpa-ca policy explain`, `tpa-ca policy test` and
//! `GET /api/v1/policy/explain`, all answered by one function.

use crate::helpers::spawn_team_app;
use crate::helpers::{DataDir, run, tpa_ca};

// issue 11: the API explains the caller's own request: allowed, the exact
// certificate scope, each stage with who could approve; and why not.
#[tokio::test]
async fn explain_api_answers_for_the_caller() {
    let app = spawn_team_app().await;
    let alice = app.login("alice").await;
    let r = app
        .get_as(
            &alice,
            "/api/v1/policy/explain?role=hotfix-admin&host=WEB-1&for=2h",
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let v = r.json();
    assert_eq!(v["allowed"], true, "{v}");
    assert_eq!(v["user"], "alice");
    assert_eq!(v["host"], "web-1");
    assert_eq!(v["path"], "stages");
    assert_eq!(v["grant"]["principals"], serde_json::json!(["root"]));
    assert_eq!(v["grant"]["extensions"], serde_json::json!(["permit-pty"]));
    assert_eq!(v["stages"][0]["group"], "sre-leads");
    let leads = v["stages"][0]["could_approve"].as_array().unwrap();
    assert!(leads.contains(&serde_json::json!("bob")), "{v}");
    // alice never appears as her own approver.
    assert!(!leads.contains(&serde_json::json!("alice")), "{v}");
    assert_eq!(v["ticket_pattern"], "INC-[0-9]+");
    assert!(v["break_glass"].as_str().unwrap().contains("30m"));

    let r = app
        .get_as(
            &alice,
            "/api/v1/policy/explain?role=hotfix-admin&host=web-1.evil",
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["allowed"], false);
    assert_eq!(r.json()["code"], "host_not_in_role");
    let r = app
        .get_as(&alice, "/api/v1/policy/explain?role=hotfix-admin")
        .await;
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(r.json()["code"].is_string());
}

// Review of issue 11: a role the caller may not request keeps its rules
// (auto-approval group and limits, break-glass) to itself.
#[tokio::test]
async fn explain_hides_the_rules_of_a_role_the_caller_may_not_request() {
    let app = spawn_team_app().await;
    let bob = app.login("bob").await;
    for role in ["read-only-debug", "hotfix-admin"] {
        let r = app
            .get_as(
                &bob,
                &format!("/api/v1/policy/explain?role={role}&host=web-1"),
            )
            .await;
        assert_eq!(r.status, 200, "{}", r.body);
        let v = r.json();
        assert_eq!(v["allowed"], false, "{v}");
        assert_eq!(v["code"], "role_not_allowed", "{v}");
        assert!(v["auto_approve"].is_null(), "{v}");
        assert!(v["break_glass"].is_null(), "{v}");
    }
    let r = app
        .get_as(&bob, "/api/v1/policy/explain?role=x&host=web-1&nope=1")
        .await;
    assert_eq!(r.status, 400, "{}", r.body);
    assert_eq!(r.json()["code"], "invalid_query");
}

fn config_with_roles() -> DataDir {
    let mut data = DataDir::new();
    data.edit_config(|text| format!("{text}{}", ca_server::config::EXAMPLE_ROLES));
    data.add_accounts(&[("alice", &["engineers"]), ("bob", &["sre-leads"])]);
    data
}

// issue 11: `tpa-ca policy explain` prints the decision, the scope and the stages.
#[test]
fn policy_explain_command_prints_scope_and_approvers() {
    let data = config_with_roles();
    let config = data.config_path.to_str().unwrap();
    let (code, out, err) = run(tpa_ca().args([
        "policy",
        "explain",
        "--config",
        config,
        "--user",
        "alice",
        "--role",
        "hotfix-admin",
        "--host",
        "web-1",
        "--for",
        "2h",
    ]));
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("alice asks for hotfix-admin on web-1 for 2h:"),
        "{out}"
    );
    assert!(out.contains("allowed, after approval"), "{out}");
    assert!(out.contains("principals:       root"), "{out}");
    assert!(
        out.contains("stage 1: 1 approval(s) from sre-leads (could approve: bob)"),
        "{out}"
    );
    let (code, out, _) = run(tpa_ca().args([
        "policy",
        "explain",
        "--config",
        config,
        "--user",
        "eve",
        "--group",
        "interns",
        "--role",
        "hotfix-admin",
        "--host",
        "web-1",
    ]));
    assert_eq!(code, 0);
    assert!(out.contains("denied (role_not_allowed)"), "{out}");
    let (code, _, err) = run(tpa_ca().args([
        "policy",
        "explain",
        "--config",
        config,
        "--user",
        "nobody",
        "--role",
        "hotfix-admin",
        "--host",
        "web-1",
    ]));
    assert_ne!(code, 0);
    assert!(err.contains("not a local account"), "{err}");
}

const CASES: &str = r#"
[[case]]
name = "alice asks for hotfix-admin on web-1"
user = "alice"
role = "hotfix-admin"
host = "web-1"
for = "2h"
expect = "allowed"
path = "stages"
approvers = ["sre-leads", "managers"]
principals = ["root"]

[[case]]
name = "web-* does not reach a host with more labels"
user = "alice"
role = "hotfix-admin"
host = "web-1.evil"
expect = "denied"
code = "host_not_in_role"

[[case]]
name = "an SSO engineer gets read-only-debug at once"
user = "dana"
groups = ["engineers"]
role = "read-only-debug"
host = "web-2"
for = "30m"
expect = "allowed"
path = "auto"
principals = ["debug"]
"#;

// issue 11: `tpa-ca policy test` passes on an unchanged policy and exits
// non-zero naming each case whose answer changed.
#[test]
fn policy_test_names_every_changed_case() {
    let mut data = config_with_roles();
    let cases = data.dir.join("cases.toml");
    std::fs::write(&cases, CASES).unwrap();
    let config = data.config_path.to_str().unwrap().to_owned();
    let cases = cases.to_str().unwrap().to_owned();
    let (code, out, err) = run(tpa_ca().args(["policy", "test", "--config", &config, &cases]));
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("3 case(s), 0 changed"), "{out}");
    // A role edit: another login, and one stage fewer.
    data.edit_config(|text| {
        text.replace("logins = [\"root\"]", "logins = [\"postgres\", \"root\"]")
            .replace("  { group = \"managers\", approvals = 1 },\n", "")
    });
    let (code, out, _) = run(tpa_ca().args(["policy", "test", "--config", &config, &cases]));
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("CHANGED  alice asks for hotfix-admin on web-1"),
        "{out}"
    );
    assert!(
        out.contains("expected approvers [sre-leads, managers], got [sre-leads]"),
        "{out}"
    );
    assert!(
        out.contains("expected principals [root], got [postgres, root]"),
        "{out}"
    );
    assert!(
        out.contains("ok       web-* does not reach a host with more labels"),
        "{out}"
    );
    assert!(out.contains("3 case(s), 1 changed"), "{out}");
}
