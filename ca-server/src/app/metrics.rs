//! `GET /metrics`: counters and gauges in the Prometheus text format
//! (version 0.0.4), written by hand. They hold counts only, never names,
//! request ids or reasons.

use std::fmt::Write as _;

use rusqlite::Connection;

use crate::config::Config;
use crate::store::audit_views::{self, Counts};
use crate::store::{StoreError, audit_sinks, outbox};

/// What one scrape reports.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Snapshot {
    /// Database counts.
    pub counts: Counts,
    /// `(sink kind, sink name, undelivered items)`.
    pub backlogs: Vec<(&'static str, String, i64)>,
}

/// Reads everything a scrape reports from the database.
pub fn collect(conn: &Connection, config: &Config) -> Result<Snapshot, StoreError> {
    let counts = audit_views::counts(conn)?;
    let mut backlogs = Vec::new();
    for w in &config.webhooks {
        backlogs.push(("webhook", w.name.clone(), outbox::backlog(conn, &w.name)?));
    }
    for d in &config.alert_destinations {
        let sink = crate::alerts::sink_name(d);
        backlogs.push(("alert", d.name.clone(), outbox::backlog(conn, &sink)?));
    }
    for s in &config.audit_sinks {
        backlogs.push((
            "audit",
            s.name.clone(),
            audit_sinks::backlog(conn, &s.name)?,
        ));
    }
    Ok(Snapshot { counts, backlogs })
}

/// A label value with `\`, `"` and newlines escaped.
fn label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// The request states, so that every state has a line even at zero.
const STATES: [&str; 6] = [
    "pending",
    "approved",
    "denied",
    "expired",
    "cancelled",
    "revoked",
];

/// Whether an audit action revokes something (requests today; serials,
/// users and CA keys are named `*.revoke` too).
fn is_revocation(action: &str) -> bool {
    action.ends_with(".revoke") || action.starts_with("revoke.")
}

/// The scrape as Prometheus text. `resident` and `open_fds` are the
/// process's, when known.
pub fn render(s: &Snapshot, resident: Option<u64>, open_fds: Option<u64>) -> String {
    let c = &s.counts;
    let events = |pred: &dyn Fn(&str, &str) -> bool| -> i64 {
        c.events_by_action
            .iter()
            .filter(|(a, o, _)| pred(a, o))
            .map(|(_, _, n)| n)
            .sum()
    };
    let mut out = String::new();
    family(
        &mut out,
        "tpa_requests",
        "gauge",
        "Access requests by current state.",
    );
    for state in STATES {
        let n = c
            .requests_by_state
            .iter()
            .find(|(s, _)| s == state)
            .map_or(0, |(_, n)| *n);
        let _ = writeln!(out, "tpa_requests{{state=\"{state}\"}} {n}");
    }
    family(
        &mut out,
        "tpa_requests_submitted_total",
        "counter",
        "Access requests submitted.",
    );
    let _ = writeln!(
        out,
        "tpa_requests_submitted_total {}",
        events(&|a, o| a == "request.submit" && o == "success")
    );
    family(
        &mut out,
        "tpa_decisions_total",
        "counter",
        "Approvals and denials recorded.",
    );
    for (decision, action) in [("approve", "request.approve"), ("deny", "request.deny")] {
        let _ = writeln!(
            out,
            "tpa_decisions_total{{decision=\"{decision}\"}} {}",
            events(&|a, o| a == action && o == "success")
        );
    }
    family(
        &mut out,
        "tpa_certificates_issued_total",
        "counter",
        "Certificates signed.",
    );
    let _ = writeln!(out, "tpa_certificates_issued_total {}", c.certificates);
    family(
        &mut out,
        "tpa_denials_total",
        "counter",
        "Audited attempts a rule refused (outcome denied), by action.",
    );
    for (action, outcome, n) in &c.events_by_action {
        if outcome == "denied" {
            let _ = writeln!(out, "tpa_denials_total{{action=\"{}\"}} {n}", label(action));
        }
    }
    family(
        &mut out,
        "tpa_revocations_total",
        "counter",
        "Revocations recorded.",
    );
    let _ = writeln!(
        out,
        "tpa_revocations_total {}",
        events(&|a, o| is_revocation(a) && o == "success")
    );
    family(
        &mut out,
        "tpa_bastion_sessions_total",
        "counter",
        "Bastion session records received.",
    );
    let _ = writeln!(out, "tpa_bastion_sessions_total {}", c.sessions);
    family(
        &mut out,
        "tpa_audit_events_total",
        "counter",
        "Audit events by action and outcome.",
    );
    for (action, outcome, n) in &c.events_by_action {
        let _ = writeln!(
            out,
            "tpa_audit_events_total{{action=\"{}\",outcome=\"{}\"}} {n}",
            label(action),
            label(outcome)
        );
    }
    family(
        &mut out,
        "tpa_audit_chain_head",
        "gauge",
        "Sequence number of the last audit event.",
    );
    let _ = writeln!(out, "tpa_audit_chain_head {}", c.audit_head);
    family(
        &mut out,
        "tpa_sink_backlog",
        "gauge",
        "Items a notification or audit sink has not delivered yet.",
    );
    for (kind, name, n) in &s.backlogs {
        let _ = writeln!(
            out,
            "tpa_sink_backlog{{kind=\"{kind}\",sink=\"{}\"}} {n}",
            label(name)
        );
    }
    if let Some(bytes) = resident {
        family(
            &mut out,
            "process_resident_memory_bytes",
            "gauge",
            "Resident memory size in bytes.",
        );
        let _ = writeln!(out, "process_resident_memory_bytes {bytes}");
    }
    if let Some(fds) = open_fds {
        family(
            &mut out,
            "process_open_fds",
            "gauge",
            "Number of open file descriptors.",
        );
        let _ = writeln!(out, "process_open_fds {fds}");
    }
    out
}

/// The process's resident memory (Linux `/proc/self/status`), in bytes.
pub fn resident_memory() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    kb.checked_mul(1024)
}

/// The process's open file descriptors (Linux `/proc/self/fd`).
pub fn open_fds() -> Option<u64> {
    Some(std::fs::read_dir("/proc/self/fd").ok()?.count() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn render_names_every_family_and_escapes_labels() {
        let snapshot = Snapshot {
            counts: Counts {
                requests_by_state: vec![("approved".into(), 2)],
                events_by_action: vec![
                    ("cert.issue".into(), "denied".into(), 1),
                    ("request.approve".into(), "success".into(), 3),
                    ("request.revoke".into(), "success".into(), 1),
                    ("we\"ird".into(), "success".into(), 1),
                ],
                certificates: 4,
                sessions: 5,
                audit_head: 9,
            },
            backlogs: vec![("audit", "siem".into(), 7)],
        };
        let text = render(&snapshot, Some(1024), None);
        for line in [
            "tpa_requests{state=\"approved\"} 2",
            "tpa_requests{state=\"pending\"} 0",
            "tpa_decisions_total{decision=\"approve\"} 3",
            "tpa_certificates_issued_total 4",
            "tpa_denials_total{action=\"cert.issue\"} 1",
            "tpa_revocations_total 1",
            "tpa_bastion_sessions_total 5",
            "tpa_audit_events_total{action=\"we\\\"ird\",outcome=\"success\"} 1",
            "tpa_sink_backlog{kind=\"audit\",sink=\"siem\"} 7",
            "process_resident_memory_bytes 1024",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} missing in\n{text}");
        }
        assert!(!text.contains("process_open_fds"));
    }
}
