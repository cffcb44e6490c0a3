//! Issue 17: `tpa-ca integrations test --config F` covers the policy hook
//! (one signed test call, its answer's signature and nonce checked) and the
//! alert destinations (listed, not called, unless `--send-test-alert`),
//! against local servers answering like the hook and the vendors.

use std::time::Duration;

use ca_server::notify::signature;
use serde_json::{Value, json};

use crate::fake_http::{FakeServer, Reply, Seen, fake_server};
use crate::helpers::{DataDir, write_private};

const SECRET: &str = "policy-hook-secret-0123456789";
const ROUTING_KEY: &str = "R0UTINGKEY0123456789abcdef012345";
const GENIE_KEY: &str = "eb243592-faa2-4ba2-a551-1afdf565c889";
const SLACK_PATH: &str = "/services/T000/B000/XXXXSECRETPATH";

/// A reply to `call` with `body`, signed with `secret` at `ts`.
fn signed_with(secret: &str, body: &Value) -> Reply {
    let text = body.to_string();
    let ts = chrono::Utc::now().timestamp();
    let sig = signature(secret.as_bytes(), ts, text.as_bytes()).unwrap();
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
    call.json()["nonce"].as_str().unwrap_or_default().to_owned()
}

/// Runs `tpa-ca integrations test` (with `args`) over a configuration with
/// the example roles and `extra` TOML; `files` are written first (mode 0600).
async fn run(extra: &str, files: &[(&str, &str)], args: &[&str]) -> (i32, String, String) {
    let mut data = DataDir::new();
    data.add_example_roles();
    for (name, text) in files {
        write_private(&data.dir.join(name), text.as_bytes());
    }
    data.edit_config(|t| format!("{t}\n{extra}\n"));
    let config = data.config_path.clone();
    let args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
    tokio::task::spawn_blocking(move || {
        let _keep = data;
        crate::helpers::run(
            crate::helpers::tpa_ca()
                .args(["integrations", "test", "--config"])
                .arg(&config)
                .args(&args),
        )
    })
    .await
    .unwrap()
}

fn hook_config(url: &str, extra: &str) -> String {
    format!("[policy_hook]\nurl = \"{url}/tpa-hook\"\nsecret_file = \"hook.secret\"\n{extra}\n")
}

async fn run_hook(hook_url: &str, extra: &str) -> (i32, String, String) {
    run(
        &hook_config(hook_url, extra),
        &[("hook.secret", SECRET)],
        &[],
    )
    .await
}

#[tokio::test]
async fn integrations_test_sends_the_hook_one_signed_test_call() {
    // issue 17: a clearly-marked read-only call ("stage": "test"), signed
    // like every call; the answer's signature and nonce are checked.
    let hook = fake_server(|call, _| {
        signed_with(
            SECRET,
            &json!({ "nonce": nonce(call), "decision": "allow", "extra": [1] }),
        )
    })
    .await;
    let (code, out, err) = run_hook(&hook.base, "").await;
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains(&format!(
            "policy_hook ({}): ok: answered allow to the test call (signature and nonce verified)",
            hook.base
        )),
        "{out}"
    );
    let calls = hook.received();
    assert_eq!(calls.len(), 1, "one call: {calls:#?}");
    let call = &calls[0];
    assert_eq!(
        (call.method.as_str(), call.path.as_str()),
        ("POST", "/tpa-hook")
    );
    assert_eq!(call.header("x-tpa-event"), Some("policy_hook"));
    let ts: i64 = call.header("x-tpa-timestamp").unwrap().parse().unwrap();
    assert_eq!(
        call.header("x-tpa-signature"),
        signature(SECRET.as_bytes(), ts, &call.body).as_deref(),
        "signed like every call"
    );
    let body = call.json();
    assert_eq!(body["stage"], "test");
    assert_eq!(body["request"]["id"], Value::Null);
    assert_eq!(body["request"]["hosts"], json!([]));
    assert_eq!(body["request"]["duration_secs"], 0);
    assert_eq!(body["grant"]["principals"], json!([]));
    assert_eq!(body["nonce"].as_str().unwrap().len(), 32);
    assert!(!out.contains(SECRET) && !err.contains(SECRET));

    // A deny is an answer too: printed with its reason, and the command passes.
    let hook = fake_server(|call, _| {
        signed_with(
            SECRET,
            &json!({ "nonce": nonce(call), "decision": "deny", "reason": "change freeze" }),
        )
    })
    .await;
    let (code, out, err) = run_hook(&hook.base, "").await;
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("ok: answered deny to the test call: change freeze"),
        "{out}"
    );
}

/// The command's verdict on a hook answering with `reply` (per call).
async fn failing_hook(
    extra: &str,
    reply: impl Fn(&Seen) -> Reply + Send + Sync + 'static,
) -> String {
    let hook = fake_server(move |call, _| reply(call)).await;
    let (code, out, err) = run_hook(&hook.base, extra).await;
    assert_eq!(code, 1, "{out}{err}");
    assert!(
        out.contains("policy_hook (") && out.contains(": FAILED: "),
        "{out}"
    );
    assert!(err.contains("1 integration check(s) failed"), "{err}");
    assert_eq!(hook.received().len(), 1, "asked once");
    out
}

#[tokio::test]
async fn integrations_test_fails_clearly_on_a_bad_or_slow_hook() {
    // issue 17: bad signature, unsigned, another nonce (a replay), a missing
    // field, HTTP 500, and an answer slower than the timeout: exit 1, named.
    let out = failing_hook("", |call| {
        signed_with(
            "another-secret-0123456789",
            &json!({ "nonce": nonce(call), "decision": "allow" }),
        )
    })
    .await;
    assert!(
        out.contains("the answer's signature does not verify"),
        "{out}"
    );
    let out = failing_hook("", |call| {
        Reply::json(200, &json!({ "nonce": nonce(call), "decision": "allow" }))
    })
    .await;
    assert!(out.contains("the answer is not signed"), "{out}");
    let out = failing_hook("", |_| {
        signed_with(
            SECRET,
            &json!({ "nonce": "0".repeat(32), "decision": "allow" }),
        )
    })
    .await;
    assert!(out.contains("nonce is not the call's"), "{out}");
    let out = failing_hook("", |call| {
        signed_with(SECRET, &json!({ "nonce": nonce(call) }))
    })
    .await;
    assert!(out.contains("missing field `decision`"), "{out}");
    let out = failing_hook("", |_| Reply::json(500, &json!({}))).await;
    assert!(out.contains("answered HTTP 500"), "{out}");
    let started = std::time::Instant::now();
    let out = failing_hook("timeout = \"1s\"", |call| Reply {
        delay: Duration::from_secs(30),
        ..signed_with(
            SECRET,
            &json!({ "nonce": nonce(call), "decision": "allow" }),
        )
    })
    .await;
    assert!(out.contains("no answer within 1 s"), "{out}");
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn integrations_test_fails_when_the_hook_is_down() {
    // issue 17: nothing listens at the hook's address.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let (code, out, err) = run_hook(&format!("http://127.0.0.1:{port}"), "").await;
    assert_eq!(code, 1, "{out}{err}");
    assert!(
        out.contains("FAILED: request failed: cannot connect"),
        "{out}"
    );
}

/// Local vendor servers, one per destination kind.
struct Vendors {
    pagerduty: FakeServer,
    opsgenie: FakeServer,
    slack: FakeServer,
    webhook: FakeServer,
}

impl Vendors {
    async fn start(pagerduty: impl Fn(&Seen) -> Reply + Send + Sync + 'static) -> Self {
        Self {
            pagerduty: fake_server(move |s, _| pagerduty(s)).await,
            opsgenie: fake_server(|_, _| {
                Reply::json(202, &json!({ "result": "Request will be processed", "took": 0.302, "requestId": "43a29c5c-3dbf-4fa4-9c26-f4f71023e120" }))
            })
            .await,
            slack: fake_server(|_, _| Reply {
                status: 200,
                body: b"ok".to_vec(),
                ..Reply::default()
            })
            .await,
            webhook: fake_server(|_, _| Reply {
                status: 204,
                ..Reply::default()
            })
            .await,
        }
    }

    fn config(&self) -> String {
        format!(
            "[[alert_destinations]]\nname = \"pd\"\nkind = \"pagerduty\"\nurl = \"{}/v2/enqueue\"\nrouting_key_file = \"pd.key\"\n\
             \n[[alert_destinations]]\nname = \"og\"\nkind = \"opsgenie\"\nurl = \"{}/v2/alerts\"\napi_key_file = \"og.key\"\n\
             \n[[alert_destinations]]\nname = \"slack\"\nkind = \"slack\"\nurl = \"{}{SLACK_PATH}\"\n\
             \n[[alert_destinations]]\nname = \"siem\"\nkind = \"webhook\"\nurl = \"{}/alerts\"\nsecret_file = \"alerts.secret\"\n\
             \n[[alerts]]\nname = \"break-glass\"\nwhen = \"break_glass\"\ndestinations = [\"pd\", \"og\", \"slack\", \"siem\"]\n",
            self.pagerduty.base, self.opsgenie.base, self.slack.base, self.webhook.base
        )
    }

    async fn run(&self, args: &[&str]) -> (i32, String, String) {
        run(
            &self.config(),
            &[
                ("pd.key", ROUTING_KEY),
                ("og.key", GENIE_KEY),
                ("alerts.secret", SECRET),
            ],
            args,
        )
        .await
    }

    fn received(&self) -> usize {
        [&self.pagerduty, &self.opsgenie, &self.slack, &self.webhook]
            .iter()
            .map(|f| f.received().len())
            .sum()
    }
}

fn pagerduty_ok(seen: &Seen) -> Reply {
    let key = seen.json()["dedup_key"].clone();
    Reply::json(
        202,
        &json!({ "status": "success", "message": "Event processed", "dedup_key": key }),
    )
}

fn no_secrets(out: &str, err: &str) {
    for secret in [ROUTING_KEY, GENIE_KEY, SLACK_PATH, SECRET] {
        assert!(
            !out.contains(secret) && !err.contains(secret),
            "{secret} printed: {out}{err}"
        );
    }
}

#[tokio::test]
async fn integrations_test_lists_alert_destinations_without_paging_anyone() {
    // issue 17: an alert has no read-only form: by default each destination
    // is listed, said not to be called, and nothing is sent.
    let v = Vendors::start(pagerduty_ok).await;
    let (code, out, err) = v.run(&[]).await;
    assert_eq!(code, 0, "{out}{err}");
    for (name, kind, base) in [
        ("pd", "pagerduty", &v.pagerduty.base),
        ("og", "opsgenie", &v.opsgenie.base),
        ("slack", "slack", &v.slack.base),
        ("siem", "webhook", &v.webhook.base),
    ] {
        let line = format!("alert_destinations {name} ({kind} {base}): not called: ");
        assert!(out.contains(&line), "{line:?} missing from {out}");
    }
    assert!(
        out.contains("would page whoever is on call there; --send-test-alert"),
        "{out}"
    );
    no_secrets(&out, &err);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(v.received(), 0, "no destination was called");
}

#[tokio::test]
async fn integrations_test_sends_one_labelled_test_alert_with_the_flag() {
    // issue 17: `--send-test-alert` sends each destination one alert, labelled
    // as a test, with a dedup key unique to the run, and prints the answer.
    let v = Vendors::start(pagerduty_ok).await;
    let (code, out, err) = v.run(&["--send-test-alert"]).await;
    assert_eq!(code, 0, "{out}{err}");
    no_secrets(&out, &err);
    let pd = v.pagerduty.received();
    assert_eq!(pd.len(), 1, "{pd:#?}");
    let event = pd[0].json();
    assert_eq!(event["routing_key"], ROUTING_KEY);
    assert_eq!(event["event_action"], "trigger");
    assert_eq!(event["payload"]["severity"], "info");
    assert!(
        event["payload"]["summary"]
            .as_str()
            .unwrap()
            .contains("TPA TEST ALERT"),
        "{event}"
    );
    let key = event["dedup_key"].as_str().unwrap().to_owned();
    assert!(key.starts_with("tpa:integrations-test:"), "{key}");
    assert!(
        out.contains(&format!("alert_destinations pd (pagerduty {}): ok: test alert sent (dedup key {key}): HTTP 202: ", v.pagerduty.base))
            && out.contains("Event processed"),
        "{out}"
    );
    let og = v.opsgenie.received();
    assert_eq!(og.len(), 1);
    assert_eq!(
        og[0].header("authorization"),
        Some(&*format!("GenieKey {GENIE_KEY}"))
    );
    assert_eq!(
        (
            og[0].json()["alias"].as_str(),
            og[0].json()["priority"].as_str()
        ),
        (Some(&*key), Some("P5"))
    );
    assert!(
        og[0].json()["message"]
            .as_str()
            .unwrap()
            .contains("TPA TEST ALERT")
    );
    let slack = v.slack.received();
    assert_eq!(slack.len(), 1);
    assert_eq!(slack[0].path, SLACK_PATH);
    assert!(
        slack[0].json()["text"]
            .as_str()
            .unwrap()
            .contains("TPA TEST ALERT")
    );
    let hook = v.webhook.received();
    assert_eq!(hook.len(), 1);
    let ts: i64 = hook[0].header("x-tpa-timestamp").unwrap().parse().unwrap();
    assert_eq!(
        hook[0].header("x-tpa-signature"),
        signature(SECRET.as_bytes(), ts, &hook[0].body).as_deref()
    );
    assert_eq!(
        (
            hook[0].json()["rule"].as_str(),
            hook[0].json()["kind"].as_str()
        ),
        (Some("integrations-test"), Some("test"))
    );
    assert!(
        out.contains("alert_destinations slack (slack") && out.contains("HTTP 200: ok"),
        "{out}"
    );
    assert!(out.contains(&format!("alert_destinations siem (webhook {}): ok: test alert sent (dedup key {key}): HTTP 204\n", v.webhook.base)), "{out}");

    // Another run: another dedup key (it never merges into the first).
    let (code, out, err) = v.run(&["--send-test-alert"]).await;
    assert_eq!(code, 0, "{out}{err}");
    let second = v.pagerduty.received()[1].json()["dedup_key"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_ne!(second, key);
    // issue 17: each run's webhook delivery id is its own (not always 0).
    let run = key.rsplit(':').next().unwrap();
    let deliveries: Vec<String> = v
        .webhook
        .received()
        .iter()
        .map(|s| s.header("x-tpa-delivery").unwrap().to_owned())
        .collect();
    assert_eq!(deliveries.len(), 2);
    assert_eq!(deliveries[0], format!("test-{run}"));
    assert_ne!(deliveries[0], deliveries[1]);
}

#[tokio::test]
async fn integrations_test_alert_refused_with_429_fails_and_shows_retry_after() {
    // issue 17: a destination that does not take the test alert: exit 1, the
    // status and its Retry-After printed.
    let v = Vendors::start(|_| Reply {
        headers: vec![("retry-after".into(), "30".into())],
        ..Reply::json(429, &json!({ "status": "throttle event", "message": "Requests for this service are arriving too quickly." }))
    })
    .await;
    let (code, out, err) = v.run(&["--send-test-alert"]).await;
    assert_eq!(code, 1, "{out}{err}");
    assert!(
        out.contains("alert_destinations pd (pagerduty")
            && out.contains("FAILED: test alert not taken: HTTP 429; retry after 30 s: "),
        "{out}"
    );
    assert!(err.contains("1 integration check(s) failed"), "{err}");
    assert_eq!(v.received(), 4, "one attempt each, no retry");
}
