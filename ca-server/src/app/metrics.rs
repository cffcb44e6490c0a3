//! `GET /metrics`: counters and gauges in the Prometheus text format
//! (version 0.0.4, encoded by `prometheus-client`). They hold counts only,
//! never names, request ids or reasons.

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric as _, prometheus_text};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;

use crate::config::Config;
use crate::integrations::comments;
use crate::notify::delivery::kinds;
use crate::store::audit_views::{self, Counts};
use crate::store::{StoreError, audit_sinks, outbox};

/// What one scrape reports.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Snapshot {
    /// Database counts.
    pub counts: Counts,
    /// `(sink kind, sink name, undelivered items)`.
    pub backlogs: Vec<(&'static str, String, i64)>,
    /// `(sink kind, sink name)` of the sinks whose last delivery by this
    /// process was refused by the receiver (`notify::delivery::refusing`).
    pub refusing: Vec<(&'static str, String)>,
}

/// Reads everything a scrape reports from the database: with a backlog
/// for every sink the delivery loop serves (webhooks, alert destinations,
/// ticket comments, audit sinks), and which of them this process found
/// refusing.
pub fn collect(
    conn: &impl crate::store::sql::Sql,
    config: &Config,
) -> Result<Snapshot, StoreError> {
    let counts = audit_views::counts(conn)?;
    let mut backlogs = Vec::new();
    for w in &config.webhooks {
        backlogs.push(("webhook", w.name.clone(), outbox::backlog(conn, &w.name)?));
    }
    for d in &config.alert_destinations {
        let sink = crate::alerts::sink_name(d);
        backlogs.push(("alert", d.name.clone(), outbox::backlog(conn, &sink)?));
    }
    for system in comments::commenting_systems(&config.integrations) {
        let sink = comments::sink_name(&system);
        backlogs.push(("ticket", system, outbox::backlog(conn, &sink)?));
    }
    for s in &config.audit_sinks {
        backlogs.push((
            "audit",
            s.name.clone(),
            audit_sinks::backlog(conn, &s.name)?,
        ));
    }
    let refusing = refusing_sinks(&backlogs, &crate::notify::delivery::refusing());
    Ok(Snapshot {
        counts,
        backlogs,
        refusing,
    })
}

/// The sinks of `backlogs` that are in `refusing` (the delivery loops'
/// `(Destination::KIND, name)` pairs), under their backlog kind.
fn refusing_sinks(
    backlogs: &[(&'static str, String, i64)],
    refusing: &[(&'static str, String)],
) -> Vec<(&'static str, String)> {
    backlogs
        .iter()
        .filter(|(kind, name, _)| {
            let loop_kind = match *kind {
                "webhook" => kinds::WEBHOOK,
                "alert" => kinds::ALERT_DESTINATION,
                "ticket" => kinds::TICKET_COMMENTS,
                "audit" => kinds::AUDIT_SINK,
                _ => return false,
            };
            refusing.iter().any(|(k, n)| *k == loop_kind && n == name)
        })
        .map(|(kind, name, _)| (*kind, name.clone()))
        .collect()
}

/// Label pairs of one sample, in the order they are written.
type Labels = Vec<(&'static str, String)>;

/// One family: its name (counters without the `_total` the crate appends
/// to their samples), help text, type and samples in order.
#[derive(Debug)]
struct FamilyOf {
    name: String,
    help: String,
    counter: bool,
    samples: Vec<(Labels, i64)>,
}

/// One scrape being built: families of counters and gauges, encoded by
/// `prometheus-client` in the Prometheus text format 0.0.4 (its escaping
/// and layout, `HELP` before `TYPE`). The values are read from the database
/// and the counters at scrape time, so the families are handed to the crate
/// as a [`Collector`] that lives for one scrape, which also keeps the
/// samples in the order they were added.
#[derive(Debug, Default)]
pub struct Exposition {
    families: Vec<FamilyOf>,
}

impl Exposition {
    /// The `Content-Type` of [`Exposition::text`].
    pub const CONTENT_TYPE: &'static str = prometheus_text::CONTENT_TYPE;

    /// A gauge family `name` with one sample per `(labels, value)`.
    pub fn gauges(
        &mut self,
        name: &str,
        help: &str,
        samples: impl IntoIterator<Item = (Labels, i64)>,
    ) {
        self.families.push(FamilyOf {
            name: name.to_owned(),
            help: help.to_owned(),
            counter: false,
            samples: samples.into_iter().collect(),
        });
    }

    /// A gauge `name` without labels.
    pub fn gauge(&mut self, name: &str, help: &str, value: i64) {
        self.gauges(name, help, [(Labels::new(), value)]);
    }

    /// A counter family `name` (which ends in `_total`, as its samples are
    /// named) with one sample per `(labels, value)`. Negative counts (none
    /// are expected from the database) are written as 0.
    pub fn counters(
        &mut self,
        name: &str,
        help: &str,
        samples: impl IntoIterator<Item = (Labels, i64)>,
    ) {
        self.families.push(FamilyOf {
            // The crate names a counter's samples `<name>_total` itself.
            name: name.strip_suffix("_total").unwrap_or(name).to_owned(),
            help: help.to_owned(),
            counter: true,
            samples: samples.into_iter().collect(),
        });
    }

    /// A counter `name` (ending in `_total`) without labels.
    pub fn counter(&mut self, name: &str, help: &str, value: i64) {
        self.counters(name, help, [(Labels::new(), value)]);
    }

    /// The scrape as Prometheus text.
    pub fn text(self) -> String {
        let mut registry = Registry::default();
        registry.register_collector(Box::new(self));
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_text::encode(&mut out, &registry);
        out
    }
}

impl Collector for Exposition {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        for family in &self.families {
            let kind = if family.counter {
                MetricType::Counter
            } else {
                MetricType::Gauge
            };
            let mut metric = encoder.encode_descriptor(&family.name, &family.help, None, kind)?;
            for (labels, value) in &family.samples {
                let sample = metric.encode_family(labels)?;
                if family.counter {
                    ConstCounter::new(u64::try_from(*value).unwrap_or(0)).encode(sample)?;
                } else {
                    ConstGauge::new(*value).encode(sample)?;
                }
            }
        }
        Ok(())
    }
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

/// Adds the database's figures and the process's (`resident` and
/// `open_fds`, when known) to `out`.
pub fn render(out: &mut Exposition, s: &Snapshot, resident: Option<u64>, open_fds: Option<u64>) {
    let c = &s.counts;
    let events = |pred: &dyn Fn(&str, &str) -> bool| -> i64 {
        c.events_by_action
            .iter()
            .filter(|(a, o, _)| pred(a, o))
            .map(|(_, _, n)| n)
            .sum()
    };
    out.gauges(
        "tpa_requests",
        "Access requests by current state.",
        STATES.map(|state| {
            let n = c
                .requests_by_state
                .iter()
                .find(|(s, _)| s == state)
                .map_or(0, |(_, n)| *n);
            (vec![("state", state.to_owned())], n)
        }),
    );
    out.counter(
        "tpa_requests_submitted_total",
        "Access requests submitted.",
        events(&|a, o| a == "request.submit" && o == "success"),
    );
    out.counters(
        "tpa_decisions_total",
        "Approvals and denials recorded.",
        [("approve", "request.approve"), ("deny", "request.deny")].map(|(decision, action)| {
            (
                vec![("decision", decision.to_owned())],
                events(&|a, o| a == action && o == "success"),
            )
        }),
    );
    out.counter(
        "tpa_certificates_issued_total",
        "Certificates signed.",
        c.certificates,
    );
    out.counters(
        "tpa_denials_total",
        "Audited attempts a rule refused (outcome denied), by action.",
        c.events_by_action
            .iter()
            .filter(|(_, outcome, _)| outcome == "denied")
            .map(|(action, _, n)| (vec![("action", action.clone())], *n)),
    );
    out.counter(
        "tpa_revocations_total",
        "Revocations recorded.",
        events(&|a, o| is_revocation(a) && o == "success"),
    );
    out.counter(
        "tpa_bastion_sessions_total",
        "Bastion session records received.",
        c.sessions,
    );
    out.counters(
        "tpa_audit_events_total",
        "Audit events by action and outcome.",
        c.events_by_action.iter().map(|(action, outcome, n)| {
            (
                vec![("action", action.clone()), ("outcome", outcome.clone())],
                *n,
            )
        }),
    );
    out.gauge(
        "tpa_audit_chain_head",
        "Sequence number of the last audit event.",
        c.audit_head,
    );
    out.gauges(
        "tpa_sink_backlog",
        "Items a notification or audit sink has not delivered yet.",
        s.backlogs.iter().map(|(kind, name, n)| {
            (
                vec![("kind", (*kind).to_owned()), ("sink", name.clone())],
                *n,
            )
        }),
    );
    out.gauges(
        "tpa_sink_refusing",
        "1 when this replica's last delivery to the sink was refused by the receiver (a 4xx but 408 and 429): the sink waits until the receiver or the configuration is fixed.",
        s.backlogs.iter().map(|(kind, name, _)| {
            let refused = s.refusing.iter().any(|(k, n)| k == kind && n == name);
            (
                vec![("kind", (*kind).to_owned()), ("sink", name.clone())],
                i64::from(refused),
            )
        }),
    );
    let saturating = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
    if let Some(bytes) = resident {
        out.gauge(
            "process_resident_memory_bytes",
            "Resident memory size in bytes.",
            saturating(bytes),
        );
    }
    if let Some(fds) = open_fds {
        out.gauge(
            "process_open_fds",
            "Number of open file descriptors.",
            saturating(fds),
        );
    }
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
            backlogs: vec![("audit", "siem".into(), 7), ("webhook", "chat".into(), 1)],
            refusing: vec![("webhook", "chat".into())],
        };
        let mut out = Exposition::default();
        render(&mut out, &snapshot, Some(1024), None);
        let text = out.text();
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
            "tpa_sink_refusing{kind=\"audit\",sink=\"siem\"} 0",
            "tpa_sink_refusing{kind=\"webhook\",sink=\"chat\"} 1",
            "process_resident_memory_bytes 1024",
            "# HELP tpa_requests Access requests by current state.",
            "# TYPE tpa_requests gauge",
            "# HELP tpa_denials_total Audited attempts a rule refused (outcome denied), by action.",
            "# TYPE tpa_denials_total counter",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} missing in\n{text}");
        }
        assert!(!text.contains("process_open_fds"));
    }

    // issue 15: the delivery loops' refusing list (their own kind names)
    // maps onto the sinks of the scrape, each kind to its backlog kind.
    #[test]
    fn every_delivery_kind_maps_to_its_backlog_sink() {
        let backlogs: Vec<(&'static str, String, i64)> = ["webhook", "alert", "ticket", "audit"]
            .into_iter()
            .map(|kind| (kind, "s".to_owned(), 0))
            .collect();
        let refusing = [
            (kinds::WEBHOOK, "s".to_owned()),
            (kinds::ALERT_DESTINATION, "s".to_owned()),
            (kinds::TICKET_COMMENTS, "s".to_owned()),
            (kinds::AUDIT_SINK, "s".to_owned()),
            (kinds::WEBHOOK, "other".to_owned()),
        ];
        let got = refusing_sinks(&backlogs, &refusing);
        assert_eq!(
            got,
            ["webhook", "alert", "ticket", "audit"].map(|k| (k, "s".to_owned()))
        );
        assert!(refusing_sinks(&backlogs, &[]).is_empty());
    }
}
