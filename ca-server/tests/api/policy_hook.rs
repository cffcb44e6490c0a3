//! The external policy hook (issue 17): a signed call at submission and at
//! issuance; a signed `allow` lets the request through, a `deny` refuses it
//! with the hook's reason, and anything else (timeout, bad or missing
//! signature, malformed, oversized, replayed, HTTP 500) fails closed.

use std::time::{Duration, Instant};

use ca_server::notify::signature;
use serde_json::{Value, json};

use crate::fake_http::{FakeServer, Reply, Seen, fake_server};
use crate::helpers::spawn_team_app_with;
use crate::helpers::{TestApp, audit_rows, ed25519_public_key, write_private};

const SECRET: &str = "policy-hook-secret-0123456789";
const DEBUG: &str =
    r#"{"role":"read-only-debug","hosts":["web-1"],"duration":"30m","reason":"INC-1 logs"}"#;

/// A signed answer to `call` with `body` (the call's nonce filled in when `nonce` is true).
fn signed(body: Value) -> Reply {
    let text = body.to_string();
    let ts = chrono::Utc::now().timestamp();
    let sig = signature(SECRET.as_bytes(), ts, text.as_bytes()).unwrap();
    Reply {
        status: 200,
        headers: vec![
            ("content-type".into(), "application/json".into()),
            ("x-tpa-timestamp".into(), ts.to_string()),
            ("x-tpa-signature".into(), sig),
        ],
        body: text.into_bytes(),
        delay: Duration::ZERO,
    }
}

fn nonce(call: &Seen) -> String {
    call.json()["nonce"].as_str().unwrap().to_owned()
}

fn allow(call: &Seen) -> Reply {
    signed(json!({ "nonce": nonce(call), "decision": "allow" }))
}

/// The app with `[policy_hook]` pointing at `hook` (and `extra` keys in it).
async fn app(hook: &FakeServer, extra: &str) -> TestApp {
    let url = format!("{}/tpa-hook", hook.base);
    let extra = extra.to_owned();
    spawn_team_app_with(move |data| {
        write_private(&data.dir.join("hook.secret"), SECRET.as_bytes());
        data.edit_config(|text| {
            format!(
                "{text}\n[policy_hook]\nurl = \"{url}\"\nsecret_file = \"hook.secret\"\n{extra}\n"
            )
        });
    })
    .await
}

/// Submits `body` as alice and returns the answer.
async fn submit_as_alice(app: &TestApp, body: &str) -> crate::helpers::Response {
    let alice = app.login("alice").await;
    app.post_as(&alice, "/api/v1/requests", body).await
}

/// The last audit row, as (action, outcome, reason, details).
fn last_audit(app: &TestApp) -> (String, String, String, Value) {
    let rows = audit_rows(&app.data.open_store());
    let last = rows.last().unwrap();
    (
        last.action.clone(),
        last.outcome.clone(),
        last.reason.clone(),
        serde_json::from_str(&last.details).unwrap(),
    )
}

/// Submission refused with `code`; the refusal is audited with that code.
async fn assert_refused(app: &TestApp, body: &str, status: u16, code: &str) {
    let r = submit_as_alice(app, body).await;
    assert_eq!(
        (r.status, r.json()["code"].as_str()),
        (status, Some(code)),
        "{}",
        r.body
    );
    let (action, outcome, _, details) = last_audit(app);
    assert_eq!(
        (action.as_str(), outcome.as_str()),
        ("request.submit", "denied")
    );
    assert_eq!(details["code"], code);
    assert_eq!(details["policy_hook"], "submit");
}

#[tokio::test]
async fn allow_lets_submission_and_certificate_through_with_signed_calls() {
    // issue 17
    let hook = fake_server(|call, _| allow(call)).await;
    let app = app(&hook, "").await;
    let alice = app.login("alice").await;
    let r = app.post_as(&alice, "/api/v1/requests", DEBUG).await;
    assert_eq!(r.status, 201, "{}", r.body);
    let id = r.json()["request"]["id"].as_str().unwrap().to_owned();
    let key = json!({ "public_key": ed25519_public_key() }).to_string();
    let cert = app
        .post_as(&alice, &format!("/api/v1/requests/{id}/certificate"), &key)
        .await;
    assert_eq!(cert.status, 200, "{}", cert.body);

    let calls = hook.wait_for(2, Duration::from_secs(1)).await;
    assert_eq!(calls.len(), 2);
    for call in &calls {
        assert_eq!(
            (call.method.as_str(), call.path.as_str()),
            ("POST", "/tpa-hook")
        );
        let ts: i64 = call.header("x-tpa-timestamp").unwrap().parse().unwrap();
        assert_eq!(
            call.header("x-tpa-signature").unwrap(),
            signature(SECRET.as_bytes(), ts, &call.body).unwrap(),
            "every call is signed like the webhooks"
        );
    }
    let (submit, issue) = (calls[0].json(), calls[1].json());
    assert_eq!(submit["stage"], "submit");
    assert_eq!(submit["requester"]["username"], "alice");
    assert_eq!(submit["requester"]["groups"], json!(["engineers"]));
    assert_eq!(submit["request"]["role"], "read-only-debug");
    assert_eq!(submit["request"]["id"], Value::Null);
    assert_eq!(submit["grant"]["principals"], json!(["debug"]));
    assert_eq!(
        submit["grant"]["force_command"],
        "journalctl --no-pager -n 500"
    );
    assert_eq!(issue["stage"], "issue");
    assert_eq!(issue["request"]["id"], id.as_str());
    assert_eq!(issue["request"]["content_hash"].as_str().unwrap().len(), 64);
    assert!(
        issue["public_key_fingerprint"]
            .as_str()
            .unwrap()
            .starts_with("SHA256:")
    );
    assert_ne!(submit["nonce"], issue["nonce"], "a fresh nonce per call");
}

#[tokio::test]
async fn deny_at_submission_shows_the_hooks_reason_and_is_audited() {
    // issue 17
    let hook = fake_server(|call, _| {
        signed(json!({ "nonce": nonce(call), "decision": "deny", "reason": "change freeze until Monday" }))
    })
    .await;
    let app = app(&hook, "").await;
    let r = submit_as_alice(&app, DEBUG).await;
    assert_eq!(
        (r.status, r.json()["code"].as_str()),
        (403, Some("policy_hook_denied"))
    );
    assert!(
        r.json()["message"]
            .as_str()
            .unwrap()
            .contains("change freeze until Monday"),
        "{}",
        r.body
    );
    let (action, outcome, reason, details) = last_audit(&app);
    assert_eq!(
        (action.as_str(), outcome.as_str()),
        ("request.submit", "denied")
    );
    assert!(reason.contains("change freeze until Monday"), "{reason}");
    assert_eq!(details["code"], "policy_hook_denied");
    assert_eq!(details["role"], "read-only-debug");
    assert_eq!(crate::helpers::count(&app.data.open_store(), "requests"), 0);
}

#[tokio::test]
async fn deny_at_issuance_refuses_the_certificate() {
    // issue 17: allowed at submission, denied when the certificate is asked for.
    let hook = fake_server(|call, _| {
        if call.json()["stage"] == "issue" {
            signed(
                json!({ "nonce": nonce(call), "decision": "deny", "reason": "host owner said no" }),
            )
        } else {
            allow(call)
        }
    })
    .await;
    let app = app(&hook, "").await;
    let alice = app.login("alice").await;
    let r = app.post_as(&alice, "/api/v1/requests", DEBUG).await;
    assert_eq!(r.status, 201, "{}", r.body);
    let id = r.json()["request"]["id"].as_str().unwrap().to_owned();
    let key = json!({ "public_key": ed25519_public_key() }).to_string();
    let cert = app
        .post_as(&alice, &format!("/api/v1/requests/{id}/certificate"), &key)
        .await;
    assert_eq!(
        (cert.status, cert.json()["code"].as_str()),
        (403, Some("policy_hook_denied")),
        "{}",
        cert.body
    );
    assert_eq!(
        crate::helpers::count(&app.data.open_store(), "certificates"),
        0
    );
    let (action, outcome, _, details) = last_audit(&app);
    assert_eq!(
        (action.as_str(), outcome.as_str()),
        ("cert.issue", "denied")
    );
    assert_eq!(details["request_id"], id.as_str());
}

#[tokio::test]
async fn hook_that_never_answers_fails_closed_after_the_default_timeout() {
    // issue 17: default timeout (3 s), then 503 with Retry-After.
    let hook = fake_server(|call, _| Reply {
        delay: Duration::from_secs(60),
        ..allow(call)
    })
    .await;
    let app = app(&hook, "").await;
    let alice = app.login("alice").await;
    let started = Instant::now();
    let r = app.post_as(&alice, "/api/v1/requests", DEBUG).await;
    let took = started.elapsed();
    assert_eq!(
        (r.status, r.json()["code"].as_str()),
        (503, Some("policy_hook_unavailable")),
        "{}",
        r.body
    );
    assert!(r.header("retry-after").is_some());
    assert!(
        took >= Duration::from_millis(2900) && took < Duration::from_secs(20),
        "{took:?}"
    );
    let (_, _, reason, _) = last_audit(&app);
    assert!(reason.contains("no answer within 3 s"), "{reason}");
}

#[tokio::test]
async fn answer_after_30_s_is_refused_at_the_configured_timeout() {
    // issue 17: a 30 s delay is a timeout (here timeout = "1s").
    let hook = fake_server(|call, _| Reply {
        delay: Duration::from_secs(30),
        ..allow(call)
    })
    .await;
    let app = app(&hook, "timeout = \"1s\"").await;
    let started = Instant::now();
    assert_refused(&app, DEBUG, 503, "policy_hook_unavailable").await;
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn answer_with_a_bad_signature_is_refused() {
    // issue 17
    let hook = fake_server(|call, _| {
        let mut reply = allow(call);
        reply.headers[2].1 = format!("sha256={}", "0".repeat(64));
        reply
    })
    .await;
    let app = app(&hook, "").await;
    assert_refused(&app, DEBUG, 503, "policy_hook_unavailable").await;
    assert!(last_audit(&app).2.contains("signature does not verify"));
}

#[tokio::test]
async fn unsigned_allow_is_refused() {
    // issue 17: TLS alone does not authenticate the answer.
    let hook = fake_server(|call, _| {
        Reply::json(200, &json!({ "nonce": nonce(call), "decision": "allow" }))
    })
    .await;
    let app = app(&hook, "").await;
    assert_refused(&app, DEBUG, 503, "policy_hook_unavailable").await;
    assert!(last_audit(&app).2.contains("not signed"));
}

#[tokio::test]
async fn answer_with_extra_fields_is_accepted() {
    // issue 17
    let hook = fake_server(|call, _| {
        signed(json!({ "nonce": nonce(call), "decision": "allow", "policy_version": 7, "checks": [{"freeze": false}] }))
    })
    .await;
    let app = app(&hook, "").await;
    assert_eq!(submit_as_alice(&app, DEBUG).await.status, 201);
}

#[tokio::test]
async fn answer_missing_the_decision_is_refused() {
    // issue 17
    let hook = fake_server(|call, _| signed(json!({ "nonce": nonce(call), "reason": "ok" }))).await;
    let app = app(&hook, "").await;
    assert_refused(&app, DEBUG, 503, "policy_hook_unavailable").await;
    assert!(
        last_audit(&app).2.contains("missing field `decision`"),
        "{}",
        last_audit(&app).2
    );
}

#[tokio::test]
async fn deny_without_a_reason_is_refused_as_malformed() {
    // issue 17: the requester must be told why.
    let hook =
        fake_server(|call, _| signed(json!({ "nonce": nonce(call), "decision": "deny" }))).await;
    let app = app(&hook, "").await;
    assert_refused(&app, DEBUG, 503, "policy_hook_unavailable").await;
}

#[tokio::test]
async fn answer_that_is_not_json_is_refused() {
    // issue 17
    let hook = fake_server(|_, _| {
        let mut reply = signed(json!({}));
        let text = b"<html>allow</html>".to_vec();
        let ts = chrono::Utc::now().timestamp();
        reply.headers[1].1 = ts.to_string();
        reply.headers[2].1 = signature(SECRET.as_bytes(), ts, &text).unwrap();
        reply.body = text;
        reply
    })
    .await;
    let app = app(&hook, "").await;
    assert_refused(&app, DEBUG, 503, "policy_hook_unavailable").await;
    assert!(
        last_audit(&app).2.contains("not JSON"),
        "{}",
        last_audit(&app).2
    );
}

#[tokio::test]
async fn answer_of_10_mb_is_refused() {
    // issue 17: the answer is read up to 64 KiB, never into memory whole.
    let hook = fake_server(|call, _| {
        let padding = "x".repeat(10 * 1024 * 1024);
        signed(json!({ "nonce": nonce(call), "decision": "allow", "padding": padding }))
    })
    .await;
    let app = app(&hook, "timeout = \"10s\"").await;
    assert_refused(&app, DEBUG, 503, "policy_hook_unavailable").await;
    assert!(
        last_audit(&app).2.contains("larger than 65536 bytes"),
        "{}",
        last_audit(&app).2
    );
}

#[tokio::test]
async fn replayed_answer_with_another_nonce_is_refused() {
    // issue 17: a signed allow recorded earlier does not count again.
    let hook = fake_server(|_, _| {
        signed(json!({ "nonce": "00112233445566778899aabbccddeeff", "decision": "allow" }))
    })
    .await;
    let app = app(&hook, "").await;
    assert_refused(&app, DEBUG, 503, "policy_hook_unavailable").await;
}

#[tokio::test]
async fn hook_answering_500_fails_closed() {
    // issue 17
    let hook = fake_server(|_, _| Reply::json(500, &json!({ "error": "boom" }))).await;
    let app = app(&hook, "").await;
    assert_refused(&app, DEBUG, 503, "policy_hook_unavailable").await;
}

#[tokio::test]
async fn hook_is_asked_only_for_its_roles_and_stages() {
    // issue 17: roles = ["hotfix-admin"], stages = ["submit"]: read-only-debug never asks.
    let hook = fake_server(|_, _| Reply::json(500, &json!({}))).await;
    let app = app(&hook, "roles = [\"hotfix-admin\"]\nstages = [\"submit\"]").await;
    assert_eq!(submit_as_alice(&app, DEBUG).await.status, 201);
    assert!(hook.received().is_empty());
}

#[test]
fn certificate_is_refused_when_the_request_no_longer_hashes_to_what_the_hook_allowed() {
    // issue 17: the hook's allow binds the content hash it saw; the signing
    // transaction re-checks it like an approval's.
    use ca_server::workflow::issuance::{IssueJob, issue_batch};
    use ca_server::workflow::requests::WorkflowError;

    use crate::helpers::{Fixture, alice, bob, carol, hotfix, now};

    let mut f = Fixture::with_roles();
    let id = f
        .submit(&alice(), &hotfix(&["web-1"], "1h"))
        .unwrap()
        .request
        .id;
    f.approve(&bob(), &id).unwrap();
    f.approve(&carol(), &id).unwrap();
    let job = |hash: &str| IssueJob {
        caller: alice(),
        id: id.clone(),
        public_key: ed25519_public_key(),
        source: "test".to_owned(),
        hook_allowed: Some(hash.to_owned()),
    };
    let policy = f.data.config.policy.clone();
    let identities = f.data.identities();
    let actual = ca_server::store::requests::load(&f.conn, &id)
        .unwrap()
        .unwrap()
        .content_hash();
    let results = issue_batch(
        &mut f.conn,
        (&f.signer, &policy, &identities),
        &[job(&"0".repeat(64)), job(&actual)],
        now(),
    );
    assert!(
        matches!(
            &results[0],
            Err(WorkflowError::Refused {
                code: ca_server::refusal::Refusal::ContentChanged,
                ..
            })
        ),
        "{:?}",
        results[0]
    );
    assert!(results[1].is_ok(), "{:?}", results[1]);
}

/// A role whose first approval stage is the policy hook's automated check.
const CHECKED_ROLE: &str = r#"
[[roles]]
name = "db-admin"
logins = ["postgres"]
hosts = ["@db"]
max_duration = "2h"
requestable_by = ["engineers"]
stages = [{ group = "automated-check" }, { group = "managers" }]
"#;
const DB_ADMIN: &str =
    r#"{"role":"db-admin","hosts":["db-1"],"duration":"1h","reason":"INC-3 vacuum"}"#;

/// The app with the automated-check role and the hook approving as its group.
async fn checked_app(hook: &FakeServer, extra: &str) -> TestApp {
    let url = format!("{}/tpa-hook", hook.base);
    let extra = extra.to_owned();
    spawn_team_app_with(move |data| {
        write_private(&data.dir.join("hook.secret"), SECRET.as_bytes());
        data.edit_config(|text| {
            format!(
                "{text}{CHECKED_ROLE}\n[policy_hook]\nurl = \"{url}\"\nsecret_file = \"hook.secret\"\n\
                 approves_as = \"automated-check\"\n{extra}\n"
            )
        });
    })
    .await
}

#[tokio::test]
async fn automated_check_counts_as_its_stage_against_the_snapshot() {
    // issue 17: submit → the hook approves stage 1 → carol approves stage 2 →
    // the certificate issues (the hook's approval survives re-validation).
    let hook = fake_server(|call, _| allow(call)).await;
    let app = checked_app(&hook, "").await;
    let alice = app.login("alice").await;
    let r = app.post_as(&alice, "/api/v1/requests", DB_ADMIN).await;
    assert_eq!(r.status, 201, "{}", r.body);
    let view = r.json()["request"].clone();
    let id = view["id"].as_str().unwrap().to_owned();
    assert_eq!(view["state"], "pending");
    assert_eq!(view["approvals"][0]["approver"]["username"], "policy-hook");
    assert_eq!(view["approvals"][0]["group"], "automated-check");
    assert_eq!(view["still_needed"]["group"], "managers");
    let calls = hook.received();
    let stages: Vec<String> = calls
        .iter()
        .map(|c| c.json()["stage"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(stages, ["submit", "approve"]);
    let approve_call = calls[1].json();
    assert_eq!(approve_call["request"]["id"], id.as_str());
    assert_eq!(
        approve_call["request"]["content_hash"]
            .as_str()
            .unwrap()
            .len(),
        64
    );
    let (action, outcome, _, details) = {
        let rows = audit_rows(&app.data.open_store());
        let row = rows
            .iter()
            .rev()
            .find(|r| r.action == "request.approve")
            .unwrap()
            .clone();
        (
            row.action,
            row.outcome,
            row.reason,
            serde_json::from_str::<Value>(&row.details).unwrap(),
        )
    };
    assert_eq!(
        (action.as_str(), outcome.as_str()),
        ("request.approve", "success")
    );
    assert_eq!(
        details["content_hash"],
        approve_call["request"]["content_hash"]
    );

    let carol = app.login("carol").await;
    let r = app.approve(&carol, &id).await;
    assert_eq!(r.json()["state"], "approved", "{}", r.body);
    let key = json!({ "public_key": ed25519_public_key() }).to_string();
    let cert = app
        .post_as(&alice, &format!("/api/v1/requests/{id}/certificate"), &key)
        .await;
    assert_eq!(cert.status, 200, "{}", cert.body);
}

#[tokio::test]
async fn automated_check_deny_denies_the_request_with_the_reason() {
    // issue 17
    let hook = fake_server(|call, _| {
        if call.json()["stage"] == "approve" {
            signed(json!({ "nonce": nonce(call), "decision": "deny", "reason": "db-1 is in a change freeze" }))
        } else {
            allow(call)
        }
    })
    .await;
    let app = checked_app(&hook, "").await;
    let r = submit_as_alice(&app, DB_ADMIN).await;
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(r.json()["request"]["state"], "denied");
    assert!(
        r.json()["request"]["comment"]
            .as_str()
            .unwrap()
            .contains("change freeze"),
        "{}",
        r.body
    );
}

#[tokio::test]
async fn automated_check_without_a_valid_answer_leaves_the_stage_open() {
    // issue 17: fail closed: no approval, the request stays pending, audited.
    let hook = fake_server(|call, _| {
        if call.json()["stage"] == "approve" {
            Reply::json(500, &json!({}))
        } else {
            allow(call)
        }
    })
    .await;
    let app = checked_app(&hook, "").await;
    let r = submit_as_alice(&app, DB_ADMIN).await;
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(r.json()["request"]["state"], "pending");
    assert_eq!(
        r.json()["request"]["approvals"].as_array().unwrap().len(),
        0
    );
    assert_eq!(
        r.json()["request"]["still_needed"]["group"],
        "automated-check"
    );
    let (action, outcome, reason, details) = last_audit(&app);
    assert_eq!(
        (action.as_str(), outcome.as_str()),
        ("request.approve", "denied")
    );
    assert!(reason.contains("HTTP 500"), "{reason}");
    assert_eq!(details["code"], "policy_hook_unavailable");
}

#[test]
fn automated_check_approval_on_a_changed_request_is_refused() {
    // issue 17: the approval binds the content hash the hook saw.
    use ca_server::workflow::requests::{self as wf, ApproveInput, WorkflowError};

    use crate::helpers::{Fixture, alice, bob, hotfix, now};

    let mut f = Fixture::with_roles();
    let id = f
        .submit(&alice(), &hotfix(&["web-1"], "1h"))
        .unwrap()
        .request
        .id;
    let policy = f.data.config.policy.clone();
    let input = ApproveInput {
        seen_content_hash: Some("0".repeat(64)),
        ..ApproveInput::default()
    };
    let refused = wf::approve(
        &mut f.conn,
        &policy,
        &f.data.identities(),
        &bob(),
        &id,
        input,
        "t",
        now(),
    );
    assert!(
        matches!(
            refused,
            Err(WorkflowError::Refused {
                code: ca_server::refusal::Refusal::ContentChanged,
                ..
            })
        ),
        "{refused:?}"
    );
}
