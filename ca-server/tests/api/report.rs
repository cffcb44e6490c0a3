//! The access report (issue #7): exactly the grants whose window overlaps the
//! period, edges included when they overlap and excluded when they only touch.

use ca_server::workflow::report::access_report;
use ca_server::workflow::requests as wf;
use chrono::{DateTime, TimeDelta, Utc};
use tpa_core::{RequestId, RequestInput, User};

use crate::helpers::{Fixture, bob, carol, hotfix, run, tpa_ca};
use crate::helpers::{alice, user};

fn t(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text)
        .unwrap()
        .with_timezone(&Utc)
}

/// An auto-approved 30-minute grant starting at `at`.
fn grant(f: &mut Fixture, who: &User, host: &str, at: &str) -> RequestId {
    let input = RequestInput {
        role: "read-only-debug".into(),
        hosts: vec![host.into()],
        duration: Some("30m".into()),
        reason: format!("look at {host}"),
        ticket: Some("INC-1".into()),
        ..RequestInput::default()
    };
    let c = &f.data.config;
    wf::submit(
        &mut f.conn,
        &c.policy,
        &c.workflow,
        who,
        &input,
        "test",
        t(at),
    )
    .unwrap()
    .request
    .id
}

fn ids(f: &Fixture, since: &str, until: &str) -> Vec<String> {
    let report = access_report(&f.conn, t(since), t(until), t("2026-06-01T12:00:00Z")).unwrap();
    report.grants.into_iter().map(|g| g.request).collect()
}

#[test]
fn lists_exactly_the_grants_in_the_period() {
    let mut f = Fixture::with_roles();
    let dave = user("dave", &["engineers"]);
    let g1 = grant(&mut f, &alice(), "web-1", "2026-06-01T00:00:00Z"); // 00:00-00:30
    let g2 = grant(&mut f, &dave, "web-2", "2026-06-01T01:00:00Z"); // 01:00-01:30
    let g3 = grant(&mut f, &alice(), "web-3", "2026-06-01T02:00:00Z"); // 02:00-02:10 (cancelled)
    wf::cancel(
        &mut f.conn,
        &f.data.config.policy,
        &alice(),
        &g3,
        "test",
        t("2026-06-01T02:10:00Z"),
    )
    .unwrap();
    // A pending request (needs approval) had no access at all.
    let pending = RequestInput {
        role: "hotfix-admin".into(),
        hosts: vec!["web-1".into()],
        duration: Some("1h".into()),
        reason: "INC-2".into(),
        ticket: Some("INC-2".into()),
        ..RequestInput::default()
    };
    let c = &f.data.config;
    wf::submit(
        &mut f.conn,
        &c.policy,
        &c.workflow,
        &alice(),
        &pending,
        "test",
        t("2026-06-01T00:10:00Z"),
    )
    .unwrap();

    let s = |r: &RequestId| r.to_string();
    assert_eq!(
        ids(&f, "2026-06-01T00:00:00Z", "2026-06-01T03:00:00Z"),
        [s(&g1), s(&g2), s(&g3)]
    );
    // Ends exactly at since: excluded; starts exactly at until: excluded.
    assert_eq!(
        ids(&f, "2026-06-01T00:30:00Z", "2026-06-01T02:00:00Z"),
        [s(&g2)]
    );
    // One second of overlap on each edge: included.
    assert_eq!(
        ids(&f, "2026-06-01T00:29:59Z", "2026-06-01T02:00:01Z"),
        [s(&g1), s(&g2), s(&g3)]
    );
    // The cancelled grant ended at 02:10, not at 02:30.
    assert!(ids(&f, "2026-06-01T02:10:00Z", "2026-06-01T02:30:00Z").is_empty());
    assert!(ids(&f, "2026-05-01T00:00:00Z", "2026-05-31T00:00:00Z").is_empty());

    let report = access_report(
        &f.conn,
        t("2026-06-01T00:00:00Z"),
        t("2026-06-01T03:00:00Z"),
        t("2026-06-01T01:15:00Z"),
    )
    .unwrap();
    let (a, b, c) = (&report.grants[0], &report.grants[1], &report.grants[2]);
    assert_eq!(
        (a.user.as_str(), a.role.as_str()),
        ("alice", "read-only-debug")
    );
    assert_eq!(a.hosts, ["web-1"]);
    assert_eq!(
        (a.reason.as_str(), a.ticket.as_deref()),
        ("look at web-1", Some("INC-1"))
    );
    assert_eq!(a.path, "auto");
    assert_eq!(a.ended, "window_ended");
    assert_eq!(b.ended, "active");
    assert_eq!(c.ended, "cancelled");
    assert_eq!(c.window_end, "2026-06-01T02:10:00.000000Z");
    assert_eq!(c.ended_by.as_deref(), Some("tpa:local#alice"));
    assert!(
        access_report(
            &f.conn,
            t("2026-06-02T00:00:00Z"),
            t("2026-06-01T00:00:00Z"),
            Utc::now()
        )
        .is_err()
    );
    let _ = TimeDelta::zero();
}

#[test]
fn approvers_and_tickets_of_a_staged_grant_are_listed() {
    let mut f = Fixture::with_roles();
    let id = f
        .submit(&alice(), &hotfix(&["web-1"], "1h"))
        .unwrap()
        .request
        .id;
    f.approve(&bob(), &id).unwrap();
    f.approve(&carol(), &id).unwrap();
    let now = Utc::now();
    let report = access_report(
        &f.conn,
        now - TimeDelta::minutes(1),
        now + TimeDelta::minutes(1),
        now,
    )
    .unwrap();
    assert_eq!(report.grants.len(), 1);
    let g = &report.grants[0];
    assert_eq!(g.request, id.to_string());
    assert_eq!((g.path.as_str(), g.ended.as_str()), ("stages", "active"));
    assert_eq!(g.approvers, ["bob", "carol"]);
    assert_eq!(g.ticket.as_deref(), Some("INC-4411"));
    assert_eq!(g.reason, "INC-4411 disk full");
}

#[test]
fn tpa_ca_report_access_prints_csv_and_json() {
    let mut f = Fixture::with_roles();
    grant(&mut f, &alice(), "web-1", "2026-06-01T00:00:00Z");
    let config = f.data.config_path.clone();
    let (code, csv, stderr) = run(tpa_ca()
        .args(["report", "access", "--since", "2026-06-01T00:00:00Z"])
        .args(["--until", "2026-06-02T00:00:00Z", "--config"])
        .arg(&config));
    assert_eq!(code, 0, "{stderr}");
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines.len(), 2, "{csv}");
    assert!(
        lines[0].starts_with("request,user,identity,role,hosts,reason"),
        "{csv}"
    );
    assert!(
        lines[1].contains(",alice,tpa:local#alice,read-only-debug,web-1,look at web-1,INC-1,auto,"),
        "{csv}"
    );

    let (code, json, stderr) = run(tpa_ca()
        .args([
            "report",
            "access",
            "--since",
            "2026-06-01T00:00:00Z",
            "--format",
            "json",
        ])
        .args(["--until", "2026-06-02T00:00:00Z", "--config"])
        .arg(&config));
    assert_eq!(code, 0, "{stderr}");
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["grants"].as_array().unwrap().len(), 1);
    assert_eq!(v["grants"][0]["user"], "alice");

    let (code, _, stderr) = run(tpa_ca()
        .args(["report", "access", "--since", "last week", "--config"])
        .arg(&config));
    assert_eq!(code, 1);
    assert!(stderr.contains("RFC 3339"), "{stderr}");
}
