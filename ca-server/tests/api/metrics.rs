//! `GET /metrics`: the Prometheus text format, counts that move, and who may
//! scrape (issue 7, item 5).

use crate::helpers::{HOTFIX, spawn_team_app, spawn_team_app_with};
use crate::helpers::{TestApp, http_send, write_private};

/// Checks the text format and returns the samples: `name{labels}` → value.
fn parse(text: &str) -> Vec<(String, i64)> {
    let mut typed = std::collections::BTreeSet::new();
    let mut helped = std::collections::BTreeSet::new();
    let mut samples = vec![];
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, help) = rest.split_once(' ').unwrap();
            assert!(!help.is_empty());
            helped.insert(name.to_owned());
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap();
            assert!(["counter", "gauge"].contains(&kind), "{line}");
            assert!(helped.contains(name), "HELP before TYPE: {line}");
            typed.insert(name.to_owned());
        } else {
            let (series, value) = line.rsplit_once(' ').unwrap();
            let name = series.split('{').next().unwrap();
            assert!(
                !name.is_empty()
                    && name
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b':')
                    && !name.as_bytes()[0].is_ascii_digit(),
                "{line}"
            );
            if let Some(labels) = series.strip_prefix(name)
                && !labels.is_empty()
            {
                let inner = labels.strip_prefix('{').and_then(|l| l.strip_suffix('}'));
                let inner = inner.unwrap_or_else(|| panic!("bad labels: {line}"));
                for pair in inner.split("\",") {
                    let (k, v) = pair.split_once("=\"").unwrap_or_else(|| panic!("{line}"));
                    assert!(
                        k.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'),
                        "{line}"
                    );
                    assert!(!v.trim_end_matches('"').contains('\n'));
                }
            }
            assert!(typed.contains(name), "sample before its TYPE: {line}");
            samples.push((series.to_owned(), value.parse().unwrap()));
        }
    }
    samples
}

fn value(samples: &[(String, i64)], series: &str) -> i64 {
    samples
        .iter()
        .find(|(s, _)| s == series)
        .map(|(_, v)| *v)
        .unwrap_or_else(|| panic!("no {series}"))
}

async fn scrape(app: &TestApp) -> Vec<(String, i64)> {
    let r = app.get("/metrics").await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(
        r.header("content-type")
            .unwrap()
            .starts_with("text/plain; version=0.0.4")
    );
    parse(&r.body)
}

#[tokio::test]
async fn metrics_parse_and_counts_move() {
    let app = spawn_team_app().await;
    let before = scrape(&app).await;
    assert_eq!(value(&before, "tpa_requests{state=\"pending\"}"), 0);
    assert_eq!(value(&before, "tpa_certificates_issued_total"), 0);
    assert!(value(&before, "process_resident_memory_bytes") > 0);

    let (alice, bob, carol) = (
        app.login("alice").await,
        app.login("bob").await,
        app.login("carol").await,
    );
    let id = app.submit(&alice, HOTFIX).await;
    let pending = scrape(&app).await;
    assert_eq!(value(&pending, "tpa_requests{state=\"pending\"}"), 1);
    assert_eq!(value(&pending, "tpa_requests_submitted_total"), 1);
    // Self-approval is refused: a denial.
    let r = app.approve(&alice, &id).await;
    assert_eq!(r.status, 403);
    app.approve(&bob, &id).await;
    app.approve(&carol, &id).await;
    let key = serde_json::json!({ "public_key": crate::helpers::ed25519_public_key() });
    let r = app
        .post_as(
            &alice,
            &format!("/api/v1/requests/{id}/certificate"),
            &key.to_string(),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    app.post_as(
        &bob,
        &format!("/api/v1/requests/{id}/revoke"),
        r#"{"comment":"done"}"#,
    )
    .await;

    let after = scrape(&app).await;
    assert_eq!(value(&after, "tpa_requests{state=\"pending\"}"), 0);
    assert_eq!(value(&after, "tpa_requests{state=\"revoked\"}"), 1);
    assert_eq!(
        value(&after, "tpa_decisions_total{decision=\"approve\"}"),
        2
    );
    assert_eq!(value(&after, "tpa_certificates_issued_total"), 1);
    assert_eq!(
        value(&after, "tpa_denials_total{action=\"request.approve\"}"),
        1
    );
    assert_eq!(value(&after, "tpa_revocations_total"), 1);
    assert_eq!(value(&after, "tpa_bastion_sessions_total"), 0);
    assert!(value(&after, "tpa_audit_chain_head") > value(&before, "tpa_audit_chain_head"));
    // No personal data: no user names, request ids or reasons.
    let text = app.get("/metrics").await.body;
    for secret in ["alice", "bob", id.as_str(), "INC-9"] {
        assert!(!text.contains(secret), "{secret} in metrics");
    }
    app.stop().await;
}

#[tokio::test]
async fn metrics_need_the_token_when_loopback_is_closed() {
    const TOKEN: &str = "metrics-token-0123456789abcdef";
    let app = spawn_team_app_with(|data| {
        write_private(
            &data.dir.join("metrics.token"),
            format!("{TOKEN}\n").as_bytes(),
        );
        data.edit_config(|text| {
            format!("{text}\n[metrics]\ntoken_file = \"metrics.token\"\nopen_to_loopback = false\n")
        });
    })
    .await;
    let r = app.get("/metrics").await;
    assert_eq!(
        (r.status, r.json()["code"].as_str()),
        (403, Some("metrics_forbidden"))
    );
    let get = |auth: String| {
        let address = app.address;
        async move { http_send(address, "GET", "/metrics", &[("Authorization", &auth)], "").await }
    };
    assert_eq!(
        get("Bearer wrong-token-0123456789abcdef".into())
            .await
            .status,
        403
    );
    let alice = app.login("alice").await;
    assert_eq!(
        get(format!("Bearer {alice}")).await.status,
        403,
        "a user token is no metrics token"
    );
    let r = get(format!("Bearer {TOKEN}")).await;
    assert_eq!(r.status, 200, "{}", r.body);
    parse(&r.body);
    app.stop().await;
}

#[tokio::test]
async fn every_metric_in_the_prometheus_rules_file_is_exported() {
    // issue 17: docs/prometheus-alerts.yml only names metrics /metrics serves.
    let rules = include_str!("../../../docs/prometheus-alerts.yml");
    let mut named = std::collections::BTreeSet::new();
    for line in rules
        .lines()
        .filter(|l| l.trim_start().starts_with("expr:"))
    {
        let mut rest = line;
        while let Some(at) = rest.find("tpa_") {
            let name: String = rest[at..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            rest = &rest[at + name.len()..];
            named.insert(name);
        }
    }
    assert!(named.len() >= 8, "{named:?}");
    let app = spawn_team_app().await;
    let text = app.get("/metrics").await.body;
    let samples = parse(&text);
    // A family is exported when it is declared, even while it has no sample
    // (no sink configured yet, no denial yet).
    let families: std::collections::BTreeSet<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split(' ').next())
        .collect();
    let missing: Vec<&String> = named
        .iter()
        .filter(|n| !families.contains(n.as_str()))
        .collect();
    assert!(missing.is_empty(), "not exported by /metrics: {missing:?}");
    assert_eq!(value(&samples, "tpa_database_ok"), 1);
    assert_eq!(value(&samples, "tpa_ca_key_ok"), 1);
}

// issue 15: every sink the delivery loop serves has its backlog on
// /metrics — webhooks, alert destinations, audit sinks and ticket
// comments, which were missing. Jira accepts the ticket check but refuses
// comments (500): the approval's comment stays undelivered and counted.
#[tokio::test]
async fn sink_backlog_covers_every_sink_kind_including_ticket_comments() {
    use crate::fake_provider::{Answer, Fake, app_edited, json, provider};
    use serde_json::json as value;
    let jira = Fake::start(|s| match (s.method.as_str(), s.path()) {
        ("GET", "/rest/api/2/issue/INC-9") => json(
            200,
            crate::tickets::issue("INC-9", "INC", "indeterminate", "x@example.com"),
        ),
        _ => Answer::Body(500, Vec::new(), "{}".into()),
    })
    .await;
    // A syslog receiver that is gone: the audit sink cannot deliver.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let syslog = closed.local_addr().unwrap();
    drop(closed);
    let url = &jira.url;
    let sinks = format!(
        "{}\n[[webhooks]]\nname = \"hook\"\nurl = \"{url}/hook\"\n\
         \n[[audit_sinks]]\nname = \"siem\"\ntype = \"syslog\"\naddress = \"{syslog}\"\ntransport = \"tcp\"\n\
         \n[[alert_destinations]]\nname = \"pager\"\nkind = \"webhook\"\nurl = \"{url}/alerts\"\n\
         \n[[alerts]]\nname = \"bg\"\nwhen = \"break_glass\"\ndestinations = [\"pager\"]\n",
        provider("jira", "jira", url)
    );
    let rule = r#"ticket_check = { system = "jira", projects = ["INC"], comment = true }"#;
    let app = app_edited(&sinks, rule, None, |t| t).await;
    let body = value!({ "role": "hotfix-admin", "hosts": ["web-1"], "duration": "1h", "reason": "r", "ticket": "INC-9" });
    let alice = app.login("alice").await;
    let r = app
        .post_as(&alice, "/api/v1/requests", &body.to_string())
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let id = r.json()["request"]["id"].as_str().unwrap().to_owned();
    let (bob, carol) = (app.login("bob").await, app.login("carol").await);
    assert_eq!(app.approve(&bob, &id).await.status, 200);
    assert_eq!(app.approve(&carol, &id).await.json()["state"], "approved");
    // The commenter tried the approval's comment and was refused.
    jira.wait_for("a comment", |s| {
        s.method == "POST" && s.path() == "/rest/api/2/issue/INC-9/comment"
    })
    .await;

    let samples = scrape(&app).await;
    let backlog = |kind: &str, sink: &str| {
        value(
            &samples,
            &format!("tpa_sink_backlog{{kind=\"{kind}\",sink=\"{sink}\"}}"),
        )
    };
    assert!(backlog("ticket", "jira") >= 1, "the refused comment");
    assert!(backlog("webhook", "hook") >= 1, "the refused notifications");
    assert!(backlog("audit", "siem") >= 1, "the unreachable syslog");
    // Present (`value` panics otherwise); it passes over request events, so
    // its count may be 0.
    backlog("alert", "pager");
    let kinds: std::collections::BTreeSet<&str> = samples
        .iter()
        .filter_map(|(s, _)| s.strip_prefix("tpa_sink_backlog{kind=\""))
        .filter_map(|s| s.split('"').next())
        .collect();
    assert_eq!(
        kinds,
        ["alert", "audit", "ticket", "webhook"].into(),
        "one kind per sender of the delivery loop"
    );
    app.stop().await;
}
