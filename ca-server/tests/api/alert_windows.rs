//! Issue 17: "each alert rule fires once per window with the right payload".
//! All six `[[alerts]]` kinds at once, fed matching audit events at chosen
//! times (two inside one 10-minute window, one 20 minutes later): each
//! (rule, subject) raises exactly one alert per window — the first, and one
//! again in the next window — with its kind, severity, subject, count, the
//! audit seqs that raised it, the event's time and the (rule, subject) dedup
//! key.

use ca_server::store::engine::Transact as _;
use std::collections::BTreeMap;
use std::time::Duration;

use ca_server::alerts::dedup_key;
use ca_server::store;
use chrono::{DateTime, TimeDelta, Timelike as _, Utc};
use serde_json::{Value, json};
use tpa_core::audit::{NewEvent, Outcome, format_time};

use crate::fake_http::{Reply, fake_server};
use crate::helpers::spawn_team_app_with;

const DEBUG: &str =
    r#"{"role":"read-only-debug","hosts":["web-1"],"duration":"30m","reason":"INC-1 logs"}"#;

fn rules(webhook: &str) -> String {
    // Working hours: a one-hour slot at least an hour ahead, so that every
    // event below (now … now + 20 min) is outside them.
    let h = (Utc::now().hour() + 2) % 24;
    format!(
        "\n[[alert_destinations]]\nname = \"hook\"\nkind = \"webhook\"\nurl = \"{webhook}/alerts\"\n\
         \n[[alerts]]\nname = \"bg\"\nwhen = \"break_glass\"\nwindow = \"10m\"\ndestinations = [\"hook\"]\n\
         \n[[alerts]]\nname = \"hours\"\nwhen = \"outside_hours\"\nhours = \"{h:02}:00-{:02}:00\"\n\
         days = [\"mon\", \"tue\", \"wed\", \"thu\", \"fri\", \"sat\", \"sun\"]\nseverity = \"warning\"\nwindow = \"10m\"\ndestinations = [\"hook\"]\n\
         \n[[alerts]]\nname = \"denied\"\nwhen = \"denied_burst\"\nthreshold = 3\nwindow = \"10m\"\ndestinations = [\"hook\"]\n\
         \n[[alerts]]\nname = \"lateral\"\nwhen = \"bastion_host_refused\"\nseverity = \"error\"\nwindow = \"10m\"\ndestinations = [\"hook\"]\n\
         \n[[alerts]]\nname = \"revoked\"\nwhen = \"revocation\"\nseverity = \"info\"\nwindow = \"10m\"\ndestinations = [\"hook\"]\n\
         \n[[alerts]]\nname = \"sensitive\"\nwhen = \"sensitive_role\"\nroles = [\"read-only-debug\"]\nwindow = \"10m\"\ndestinations = [\"hook\"]\n",
        (h + 1) % 24
    )
}

fn event(
    time: DateTime<Utc>,
    (actor, action, object): (&str, &str, &str),
    outcome: Outcome,
    details: Value,
) -> NewEvent {
    NewEvent {
        time,
        actor: actor.into(),
        source: "198.51.100.7".into(),
        action: action.into(),
        object: object.into(),
        outcome,
        reason: "test".into(),
        details,
    }
}

/// What each rule is fed: (rule, kind, severity, subject, count at firing,
/// events per burst) and the events of one burst at `at`.
struct Case {
    rule: &'static str,
    kind: &'static str,
    severity: &'static str,
    subject: String,
    count: u64,
    burst: Box<dyn Fn(DateTime<Utc>) -> Vec<NewEvent> + Send + Sync>,
}

fn cases(request: &str) -> Vec<Case> {
    let one = |f: fn(DateTime<Utc>, &str) -> NewEvent, r: String| {
        Box::new(move |at: DateTime<Utc>| vec![f(at, &r)])
            as Box<dyn Fn(DateTime<Utc>) -> Vec<NewEvent> + Send + Sync>
    };
    let r = request.to_owned();
    vec![
        Case {
            rule: "bg",
            kind: "break_glass",
            severity: "critical",
            subject: "request:req_breakglass".into(),
            count: 1,
            burst: one(
                |at, _| {
                    let who = (
                        "user:local#alice",
                        "request.break_glass",
                        "request:req_breakglass",
                    );
                    event(at, who, Outcome::Success, json!({}))
                },
                r.clone(),
            ),
        },
        Case {
            rule: "hours",
            kind: "outside_hours",
            severity: "warning",
            subject: "session:s1".into(),
            count: 1,
            burst: one(
                |at, _| {
                    let who = ("bastion:b1", "session.record", "session:s1");
                    event(at, who, Outcome::Success, json!({}))
                },
                r.clone(),
            ),
        },
        Case {
            rule: "denied",
            kind: "denied_burst",
            severity: "critical",
            subject: "user:local#mallory".into(),
            count: 3,
            burst: Box::new(|at| {
                (0..3)
                    .map(|i| {
                        let who = ("user:local#mallory", "request.submit", "request:none");
                        event(at + TimeDelta::seconds(i), who, Outcome::Denied, json!({}))
                    })
                    .collect()
            }),
        },
        Case {
            rule: "lateral",
            kind: "bastion_host_refused",
            severity: "error",
            subject: format!("request:{r}"),
            count: 1,
            burst: one(
                |at, r| {
                    let who = ("bastion:b1", "bastion.channel_refused", "bastion:b1");
                    let d = json!({ "what": "direct-tcpip db-1:22", "request": r, "count": 1 });
                    event(at, who, Outcome::Denied, d)
                },
                r.clone(),
            ),
        },
        Case {
            rule: "revoked",
            kind: "revocation",
            severity: "info",
            subject: "request:req_revoked".into(),
            count: 1,
            burst: one(
                |at, _| {
                    let who = ("user:local#bob", "request.revoke", "request:req_revoked");
                    event(at, who, Outcome::Success, json!({}))
                },
                r.clone(),
            ),
        },
        Case {
            rule: "sensitive",
            kind: "sensitive_role",
            severity: "critical",
            subject: format!("request:{r}"),
            count: 1,
            burst: one(
                |at, r| {
                    let who = ("user:local#carol", "cert.issue", "cert:1");
                    event(at, who, Outcome::Success, json!({ "request_id": r }))
                },
                r.clone(),
            ),
        },
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_alert_rule_fires_once_per_window_and_again_in_the_next() {
    // issue 17
    let hook = fake_server(|_, _| Reply {
        status: 204,
        ..Reply::default()
    })
    .await;
    let config = rules(&hook.base);
    let app = spawn_team_app_with(|data| data.edit_config(|t| format!("{t}{config}"))).await;
    let alice = app.login("alice").await;
    let r = app.post_as(&alice, "/api/v1/requests", DEBUG).await;
    assert_eq!(r.status, 201, "{}", r.body);
    let request = r.json()["request"]["id"].as_str().unwrap().to_owned();
    let cases = cases(&request);

    // Per case: a burst at t0, one at t0 + 1 min (same window), one at t0 + 20 min.
    let t0 = Utc::now();
    let times = [t0, t0 + TimeDelta::minutes(1), t0 + TimeDelta::minutes(20)];
    let mut seqs: BTreeMap<(&str, usize), Vec<i64>> = BTreeMap::new();
    app.data
        .blocking(|conn| {
            conn.write(|tx| {
                for (n, at) in times.iter().enumerate() {
                    for case in &cases {
                        for e in (case.burst)(*at) {
                            let seq = store::audit::append(tx, &e)?.seq;
                            seqs.entry((case.rule, n)).or_default().push(seq);
                        }
                    }
                }
                Ok::<_, store::StoreError>(())
            })
        })
        .unwrap();

    // 2 alerts per case, plus the cert.issue events' own outside_hours
    // alerts (carol, 2): wait for them, then a little more for extras.
    let expected = 2 * cases.len() + 2;
    let got = hook.wait_for(expected, Duration::from_secs(30)).await;
    assert!(got.len() >= expected, "{} alerts: {got:#?}", got.len());
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let alerts: Vec<Value> = hook.received().iter().map(|s| s.json()).collect();
    assert_eq!(alerts.len(), expected, "{alerts:#?}");

    for case in &cases {
        let mine: Vec<&Value> = alerts
            .iter()
            .filter(|a| a["rule"] == case.rule && a["subject"] == case.subject.as_str())
            .collect();
        assert_eq!(
            mine.len(),
            2,
            "{}: one alert per window: {mine:#?}",
            case.rule
        );
        for (alert, burst) in mine.iter().zip([0, 2]) {
            let at = times[burst];
            let fired = &seqs[&(case.rule, burst)];
            assert_eq!(alert["event"], "alert");
            assert_eq!(alert["kind"], case.kind, "{alert}");
            assert_eq!(alert["severity"], case.severity, "{alert}");
            assert_eq!(alert["count"], case.count, "{alert}");
            assert_eq!(alert["audit_seqs"], json!(fired), "{alert}");
            let fired_at = at + TimeDelta::seconds(i64::try_from(case.count).unwrap() - 1);
            assert_eq!(alert["at"], format_time(fired_at), "{alert}");
            assert_eq!(
                alert["dedup_key"],
                dedup_key(case.rule, &case.subject),
                "{alert}"
            );
            assert!(
                alert["summary"]
                    .as_str()
                    .unwrap()
                    .starts_with(&format!("TPA alert {}: ", case.rule)),
                "{alert}"
            );
        }
    }
    let carol: Vec<&Value> = alerts
        .iter()
        .filter(|a| a["rule"] == "hours" && a["subject"] == "user:local#carol")
        .collect();
    assert_eq!(
        carol.len(),
        2,
        "a certificate outside hours is also an access: {carol:#?}"
    );
}
