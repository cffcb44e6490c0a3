//! Alerts on unusual activity (issue 17): each `[[alerts]]` rule raises one
//! alert per subject per window from the committed audit stream, delivered
//! to local servers answering like PagerDuty Events v2, Opsgenie, Slack and a
//! signed webhook, with retries (429 Retry-After, 500).

use ca_server::store::engine::Transact as _;
use std::time::{Duration, Instant};

use ca_server::notify::signature;
use ca_server::store;
use chrono::{Timelike as _, Utc};
use serde_json::{Value, json};
use tpa_core::audit::{NewEvent, Outcome};

use crate::fake_http::{FakeServer, Reply, fake_server};
use crate::helpers::spawn_team_app_with;
use crate::helpers::{DataDir, TestApp, ed25519_public_key, write_private};

const SECRET: &str = "alert-webhook-secret-0123456789";
/// How long a delivery may take here (the evaluator polls every second).
const WAIT: Duration = Duration::from_secs(20);
const DEBUG: &str =
    r#"{"role":"read-only-debug","hosts":["web-1"],"duration":"30m","reason":"INC-1 logs"}"#;
const BREAK_GLASS: &str = r#"{"role":"hotfix-admin","hosts":["web-1"],"duration":"30m","reason":"INC-9 site down","ticket":"INC-9","break_glass":true}"#;

fn pagerduty_ok(seen: &crate::fake_http::Seen) -> Reply {
    // PagerDuty Events API v2: 202 with status, message and the dedup key.
    let key = seen.json()["dedup_key"].clone();
    Reply::json(
        202,
        &json!({ "status": "success", "message": "Event processed", "dedup_key": key }),
    )
}

fn opsgenie_ok() -> Reply {
    // Opsgenie Alert API: 202 with result, took and requestId.
    Reply::json(
        202,
        &json!({ "result": "Request will be processed", "took": 0.302, "requestId": "43a29c5c-3dbf-4fa4-9c26-f4f71023e120" }),
    )
}

fn slack_ok() -> Reply {
    Reply {
        status: 200,
        body: b"ok".to_vec(),
        ..Reply::default()
    }
}

/// Local vendor servers, one per destination kind.
struct Vendors {
    pagerduty: FakeServer,
    opsgenie: FakeServer,
    slack: FakeServer,
    webhook: FakeServer,
}

async fn vendors() -> Vendors {
    Vendors {
        pagerduty: fake_server(|seen, _| pagerduty_ok(seen)).await,
        opsgenie: fake_server(|_, _| opsgenie_ok()).await,
        slack: fake_server(|_, _| slack_ok()).await,
        webhook: fake_server(|_, _| Reply {
            status: 204,
            ..Reply::default()
        })
        .await,
    }
}

/// The four destinations, pointed at `v`.
fn destinations(data: &mut DataDir, v: &Vendors) -> String {
    write_private(
        &data.dir.join("pd.key"),
        b"R0UTINGKEY0123456789abcdef012345",
    );
    write_private(
        &data.dir.join("og.key"),
        b"eb243592-faa2-4ba2-a551-1afdf565c889",
    );
    write_private(&data.dir.join("alerts.secret"), SECRET.as_bytes());
    format!(
        "\n[[alert_destinations]]\nname = \"pd\"\nkind = \"pagerduty\"\nurl = \"{}/v2/enqueue\"\nrouting_key_file = \"pd.key\"\n\
         \n[[alert_destinations]]\nname = \"og\"\nkind = \"opsgenie\"\nurl = \"{}/v2/alerts\"\napi_key_file = \"og.key\"\n\
         \n[[alert_destinations]]\nname = \"slack\"\nkind = \"slack\"\nurl = \"{}/services/T000/B000/XXXX\"\n\
         \n[[alert_destinations]]\nname = \"hook\"\nkind = \"webhook\"\nurl = \"{}/alerts\"\nsecret_file = \"alerts.secret\"\n",
        v.pagerduty.base, v.opsgenie.base, v.slack.base, v.webhook.base
    )
}

/// The app with the four destinations and `rules` (TOML `[[alerts]]` text).
async fn app(v: &Vendors, rules: &str) -> TestApp {
    spawn_team_app_with(|data| {
        let d = destinations(data, v);
        data.edit_config(|t| format!("{t}{d}{rules}"));
    })
    .await
}

/// The alerts the webhook destination received, as JSON, after waiting for `n`.
async fn webhook_alerts(v: &Vendors, n: usize) -> Vec<Value> {
    v.webhook
        .wait_for(n, WAIT)
        .await
        .iter()
        .map(|s| s.json())
        .collect()
}

/// Waits a little more so that an extra (wrong) alert would have arrived.
async fn settle() {
    tokio::time::sleep(Duration::from_millis(2500)).await;
}

async fn debug_grant(app: &TestApp, user: &str) -> (String, String) {
    let t = app.login(user).await;
    let r = app.post_as(&t, "/api/v1/requests", DEBUG).await;
    assert!(r.status == 201 || r.status == 200, "{}", r.body);
    (t, r.json()["request"]["id"].as_str().unwrap().to_owned())
}

async fn certificate(app: &TestApp, token: &str, id: &str) {
    let key = json!({ "public_key": ed25519_public_key() }).to_string();
    let r = app
        .post_as(token, &format!("/api/v1/requests/{id}/certificate"), &key)
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn break_glass_reaches_every_destination_in_its_format() {
    // issue 17
    let v = vendors().await;
    let app = app(
        &v,
        "\n[[alerts]]\nname = \"bg\"\nwhen = \"break_glass\"\ndestinations = [\"pd\", \"og\", \"slack\", \"hook\"]\n",
    )
    .await;
    let alice = app.login("alice").await;
    let r = app.post_as(&alice, "/api/v1/requests", BREAK_GLASS).await;
    assert_eq!(r.status, 201, "{}", r.body);
    let id = r.json()["request"]["id"].as_str().unwrap().to_owned();

    let pd = v.pagerduty.wait_for(1, WAIT).await;
    let og = v.opsgenie.wait_for(1, WAIT).await;
    let slack = v.slack.wait_for(1, WAIT).await;
    let hook = v.webhook.wait_for(1, WAIT).await;
    settle().await;

    let pd_body = pd[0].json();
    assert_eq!(pd[0].path, "/v2/enqueue");
    assert_eq!(pd_body["routing_key"], "R0UTINGKEY0123456789abcdef012345");
    assert_eq!(pd_body["event_action"], "trigger");
    assert_eq!(pd_body["payload"]["severity"], "critical");
    assert_eq!(pd_body["payload"]["source"], "tpa-ca");
    assert_eq!(pd_body["payload"]["class"], "break_glass");
    let dedup = pd_body["dedup_key"].as_str().unwrap().to_owned();
    assert!(
        dedup.starts_with("tpa:bg:") && dedup.len() <= 255,
        "{dedup}"
    );
    assert!(
        pd_body["payload"]["summary"]
            .as_str()
            .unwrap()
            .contains("break-glass")
    );

    let og_body = og[0].json();
    assert_eq!(og[0].path, "/v2/alerts");
    assert_eq!(
        og[0].header("authorization"),
        Some("GenieKey eb243592-faa2-4ba2-a551-1afdf565c889")
    );
    assert_eq!(og_body["alias"], dedup.as_str(), "one dedup key everywhere");
    assert_eq!(og_body["priority"], "P1");
    assert!(og_body["message"].as_str().unwrap().chars().count() <= 130);
    assert!(
        og_body["details"]
            .as_object()
            .unwrap()
            .values()
            .all(Value::is_string)
    );

    let slack_body = slack[0].json();
    assert!(
        slack_body["text"]
            .as_str()
            .unwrap()
            .contains("*TPA alert bg*"),
        "{slack_body}"
    );
    assert_eq!(slack_body["blocks"][0]["text"]["type"], "mrkdwn");

    let hook_body = hook[0].json();
    let ts: i64 = hook[0].header("x-tpa-timestamp").unwrap().parse().unwrap();
    assert_eq!(
        hook[0].header("x-tpa-signature").unwrap(),
        signature(SECRET.as_bytes(), ts, &hook[0].body).unwrap()
    );
    assert_eq!(hook[0].header("x-tpa-event"), Some("alert"));
    assert_eq!(hook_body["event"], "alert");
    assert_eq!(hook_body["kind"], "break_glass");
    assert_eq!(hook_body["subject"], format!("request:{id}"));
    assert_eq!(hook_body["count"], 1);

    for (name, server) in [
        ("pd", &v.pagerduty),
        ("og", &v.opsgenie),
        ("slack", &v.slack),
        ("hook", &v.webhook),
    ] {
        assert_eq!(server.received().len(), 1, "{name}: exactly one alert");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn storm_of_1000_denied_events_in_a_minute_is_one_alert_per_window() {
    // issue 17
    let v = vendors().await;
    let app = app(
        &v,
        "\n[[alerts]]\nname = \"denied\"\nwhen = \"denied_burst\"\nthreshold = 5\nper = \"actor\"\nwindow = \"10m\"\ndestinations = [\"hook\"]\n",
    )
    .await;
    let start = Utc::now();
    app.data
        .blocking(|conn| {
            conn.write(|tx| {
                for i in 0..1000 {
                    store::audit::append(
                        tx,
                        &NewEvent {
                            time: start + chrono::TimeDelta::milliseconds(i * 50),
                            actor: "user:local#mallory".into(),
                            source: "198.51.100.7".into(),
                            action: "request.submit".into(),
                            object: "request:none".into(),
                            outcome: Outcome::Denied,
                            reason: "role hotfix-admin is not requestable by you".into(),
                            details: json!({}),
                        },
                    )?;
                }
                Ok::<_, store::StoreError>(())
            })
        })
        .unwrap();
    let alerts = webhook_alerts(&v, 1).await;
    settle().await;
    assert_eq!(v.webhook.received().len(), 1, "one alert, not 1,000");
    assert_eq!(alerts[0]["kind"], "denied_burst");
    assert_eq!(alerts[0]["subject"], "user:local#mallory");
    assert_eq!(alerts[0]["count"], 5, "fired at the threshold");
    assert_eq!(alerts[0]["audit_seqs"].as_array().unwrap().len(), 5);
    let suppressed: i64 = app.data.open_store().one(
        "SELECT suppressed FROM alert_windows WHERE rule = 'denied'",
        &[],
    );
    assert_eq!(suppressed, 995);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn denied_events_below_the_threshold_raise_nothing_and_sources_count_apart() {
    // issue 17: per = "source": three addresses with 2 refusals each and threshold 3.
    let v = vendors().await;
    let app = app(
        &v,
        "\n[[alerts]]\nname = \"denied\"\nwhen = \"denied_burst\"\nthreshold = 3\nper = \"source\"\ndestinations = [\"hook\"]\n",
    )
    .await;
    let now = Utc::now();
    let deny = |source: &str| NewEvent {
        time: now,
        actor: "user:local#x".into(),
        source: source.into(),
        action: "cert.issue".into(),
        object: "cert:none".into(),
        outcome: Outcome::Denied,
        reason: "no".into(),
        details: json!({}),
    };
    app.data
        .blocking(|conn| {
            conn.write(|tx| {
                for source in [
                    "192.0.2.1",
                    "192.0.2.2",
                    "192.0.2.3",
                    "192.0.2.1",
                    "192.0.2.2",
                    "192.0.2.3",
                ] {
                    store::audit::append(tx, &deny(source))?;
                }
                Ok::<_, store::StoreError>(())
            })
        })
        .unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(v.webhook.received().is_empty(), "2 per address is below 3");
    app.data
        .blocking(|conn| conn.write(|tx| store::audit::append(tx, &deny("192.0.2.2")).map(drop)))
        .unwrap();
    let alerts = webhook_alerts(&v, 1).await;
    settle().await;
    assert_eq!(v.webhook.received().len(), 1);
    assert_eq!(alerts[0]["subject"], "192.0.2.2");
    assert_eq!(alerts[0]["count"], 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificate_outside_working_hours_fires_once_per_window() {
    // issue 17: working hours that exclude now (a one-hour slot two hours ahead).
    let v = vendors().await;
    let h = (Utc::now().hour() + 2) % 24;
    let rule = format!(
        "\n[[alerts]]\nname = \"after-hours\"\nwhen = \"outside_hours\"\nhours = \"{h:02}:00-{:02}:00\"\n\
         days = [\"mon\", \"tue\", \"wed\", \"thu\", \"fri\", \"sat\", \"sun\"]\nseverity = \"warning\"\nwindow = \"1h\"\ndestinations = [\"hook\"]\n",
        (h + 1) % 24
    );
    let app = app(&v, &rule).await;
    let (alice, id) = debug_grant(&app, "alice").await;
    certificate(&app, &alice, &id).await;
    certificate(&app, &alice, &id).await;
    let alerts = webhook_alerts(&v, 1).await;
    settle().await;
    assert_eq!(
        v.webhook.received().len(),
        1,
        "two certificates, one window"
    );
    assert_eq!(alerts[0]["kind"], "outside_hours");
    assert_eq!(alerts[0]["severity"], "warning");
    assert_eq!(alerts[0]["action"], "cert.issue");
    assert!(alerts[0]["subject"].as_str().unwrap().starts_with("user:"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificate_inside_working_hours_raises_nothing() {
    // issue 17: the same rule with hours around now.
    let v = vendors().await;
    let rule = "\n[[alerts]]\nname = \"after-hours\"\nwhen = \"outside_hours\"\nhours = \"00:00-24:00\"\n\
                days = [\"mon\", \"tue\", \"wed\", \"thu\", \"fri\", \"sat\", \"sun\"]\ndestinations = [\"hook\"]\n";
    let app = app(&v, rule).await;
    let (alice, id) = debug_grant(&app, "alice").await;
    certificate(&app, &alice, &id).await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert!(v.webhook.received().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bastion_refusal_for_a_host_outside_the_request_fires() {
    // issue 17
    let v = vendors().await;
    let app = app(
        &v,
        "\n[[alerts]]\nname = \"lateral\"\nwhen = \"bastion_host_refused\"\ndestinations = [\"hook\", \"slack\"]\n",
    )
    .await;
    let (_, id) = debug_grant(&app, "alice").await;
    let event = |n: u32, what: &str| tpa_core::api::BastionEvent {
        event_id: format!("evt_{n:032x}"),
        kind: "channel_refused".into(),
        source: "203.0.113.9".into(),
        login: "debug".into(),
        request: Some(id.clone()),
        what: what.into(),
        reason: "host not in the request".into(),
        count: 1,
        first_at: "2026-12-07T08:00:00Z".into(),
        last_at: "2026-12-07T08:00:00Z".into(),
    };
    app.data
        .blocking(|conn| {
            ca_server::workflow::bastion::record_events(
                conn,
                "bastion-1",
                "127.0.0.1",
                &[
                    event(1, "session"),
                    event(2, "direct-tcpip db-1:22"),
                    event(3, "direct-tcpip db-2:22"),
                ],
                Utc::now(),
            )
        })
        .unwrap();
    let alerts = webhook_alerts(&v, 1).await;
    let slack = v.slack.wait_for(1, WAIT).await;
    settle().await;
    assert_eq!(
        v.webhook.received().len(),
        1,
        "one alert per request per window"
    );
    assert_eq!(alerts[0]["kind"], "bastion_host_refused");
    assert_eq!(alerts[0]["subject"], format!("request:{id}"));
    assert!(
        alerts[0]["summary"]
            .as_str()
            .unwrap()
            .contains("direct-tcpip db-1:22")
    );
    assert!(
        slack[0].json()["text"]
            .as_str()
            .unwrap()
            .contains("bastion refused")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revocation_fires_with_the_revoked_object() {
    // issue 17
    let v = vendors().await;
    let app = app(
        &v,
        "\n[[alerts]]\nname = \"revoked\"\nwhen = \"revocation\"\nseverity = \"info\"\ndestinations = [\"og\"]\n",
    )
    .await;
    let (_, id) = debug_grant(&app, "alice").await;
    let bob = app.login("bob").await;
    let r = app
        .post_as(
            &bob,
            &format!("/api/v1/requests/{id}/revoke"),
            r#"{"comment":"left the team"}"#,
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let og = v.opsgenie.wait_for(1, WAIT).await;
    settle().await;
    assert_eq!(v.opsgenie.received().len(), 1);
    let body = og[0].json();
    assert_eq!(body["priority"], "P5");
    assert_eq!(body["details"]["object"], format!("request:{id}"));
    assert_eq!(body["details"]["action"], "request.revoke");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificate_for_a_sensitive_role_fires_and_others_do_not() {
    // issue 17: read-only-debug marked sensitive; a hotfix-admin request raises nothing.
    let v = vendors().await;
    let app = app(
        &v,
        "\n[[alerts]]\nname = \"sensitive\"\nwhen = \"sensitive_role\"\nroles = [\"read-only-debug\"]\ndestinations = [\"pd\"]\n",
    )
    .await;
    let alice = app.login("alice").await;
    let r = app.post_as(&alice, "/api/v1/requests", BREAK_GLASS).await;
    assert_eq!(r.status, 201, "{}", r.body);
    let hotfix = r.json()["request"]["id"].as_str().unwrap().to_owned();
    certificate(&app, &alice, &hotfix).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(
        v.pagerduty.received().is_empty(),
        "hotfix-admin is not marked sensitive"
    );
    let (alice, id) = debug_grant(&app, "alice").await;
    certificate(&app, &alice, &id).await;
    let pd = v.pagerduty.wait_for(1, WAIT).await;
    settle().await;
    assert_eq!(v.pagerduty.received().len(), 1);
    let body = pd[0].json();
    assert_eq!(body["payload"]["class"], "sensitive_role");
    assert_eq!(
        body["payload"]["custom_details"]["subject"],
        format!("request:{id}")
    );
    assert!(
        body["payload"]["summary"]
            .as_str()
            .unwrap()
            .contains("read-only-debug")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pagerduty_429_with_retry_after_is_retried_after_the_wait() {
    // issue 17: rate limited once (Retry-After: 2), then accepted; same dedup key.
    let pagerduty = fake_server(|seen, i| {
        if i == 0 {
            Reply {
                headers: vec![("retry-after".into(), "2".into())],
                ..Reply::json(429, &json!({ "status": "throttle event", "message": "Requests for this service are arriving too quickly." }))
            }
        } else {
            pagerduty_ok(seen)
        }
    })
    .await;
    let v = Vendors {
        pagerduty,
        ..vendors().await
    };
    let app = app(
        &v,
        "\n[[alerts]]\nname = \"bg\"\nwhen = \"break_glass\"\ndestinations = [\"pd\"]\n",
    )
    .await;
    let alice = app.login("alice").await;
    assert_eq!(
        app.post_as(&alice, "/api/v1/requests", BREAK_GLASS)
            .await
            .status,
        201
    );
    let first = v.pagerduty.wait_for(1, WAIT).await;
    assert_eq!(first.len(), 1);
    let rate_limited_at = Instant::now();
    let both = v.pagerduty.wait_for(2, WAIT).await;
    assert_eq!(both.len(), 2, "retried");
    assert!(
        rate_limited_at.elapsed() >= Duration::from_millis(1500),
        "{:?}",
        rate_limited_at.elapsed()
    );
    assert_eq!(both[0].json()["dedup_key"], both[1].json()["dedup_key"]);
    settle().await;
    assert_eq!(v.pagerduty.received().len(), 2, "delivered once accepted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn opsgenie_500_is_retried_until_accepted() {
    // issue 17
    let opsgenie = fake_server(|_, i| {
        if i < 2 {
            Reply::json(
                500,
                &json!({ "message": "Internal Server Error", "took": 0.001, "requestId": "x" }),
            )
        } else {
            opsgenie_ok()
        }
    })
    .await;
    let v = Vendors {
        opsgenie,
        ..vendors().await
    };
    let app = app(
        &v,
        "\n[[alerts]]\nname = \"bg\"\nwhen = \"break_glass\"\ndestinations = [\"og\"]\n",
    )
    .await;
    let alice = app.login("alice").await;
    assert_eq!(
        app.post_as(&alice, "/api/v1/requests", BREAK_GLASS)
            .await
            .status,
        201
    );
    let seen = v.opsgenie.wait_for(3, WAIT).await;
    assert_eq!(seen.len(), 3, "two failures then the delivery");
    settle().await;
    assert_eq!(v.opsgenie.received().len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_webhooks_never_receive_alerts() {
    // issue 17: alerts share the outbox; a [[webhooks]] entry gets request events only.
    let v = vendors().await;
    let requests_hook = fake_server(|_, _| Reply {
        status: 200,
        ..Reply::default()
    })
    .await;
    let rules = format!(
        "\n[[alerts]]\nname = \"bg\"\nwhen = \"break_glass\"\ndestinations = [\"hook\"]\n\
         \n[[webhooks]]\nname = \"requests\"\nurl = \"{}/requests\"\n",
        requests_hook.base
    );
    let app = app(&v, &rules).await;
    let alice = app.login("alice").await;
    assert_eq!(
        app.post_as(&alice, "/api/v1/requests", BREAK_GLASS)
            .await
            .status,
        201
    );
    webhook_alerts(&v, 1).await;
    let seen = requests_hook.wait_for(2, WAIT).await;
    settle().await;
    let kinds: Vec<String> = requests_hook
        .received()
        .iter()
        .map(|s| s.json()["event"].as_str().unwrap().to_owned())
        .collect();
    assert!(seen.len() >= 2);
    assert_eq!(kinds, ["request.created", "request.break_glass"]);
}
