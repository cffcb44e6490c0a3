//! Alerts on unusual activity: `[[alerts]]` rules evaluated on the audit
//! stream as events commit, delivered to `[[alert_destinations]]`.
//!
//! One evaluator task follows the audit trail after its cursor (like an audit
//! sink, never inside the append's transaction, so issuance does not wait for
//! it), matches each committed event against the rules ([`rules`]), and in
//! one transaction per batch queues the alerts in the outbox (kind `alert`),
//! records each (rule, subject)'s window and advances its cursor. A (rule,
//! subject) raises at most one alert per window: a storm of 1,000 denied
//! events is one alert, the rest counted as suppressed. One sender task per
//! destination then delivers from the outbox with retries
//! ([`destinations`]).
//!
//! With several replicas, only the holder of the evaluator's lease
//! (`store::leases`, sink `alerts:evaluator`, taken with the delivery
//! loops' [`Lease`] terms) evaluates; another takes over from the same
//! cursor once a dead holder's lease ran out. Burst counts
//! (`denied_burst`) live in the holder's memory: a burst that straddles a
//! takeover is counted from the takeover on.

use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use serde_json::json;
use sha2::{Digest as _, Sha256};
use tokio::sync::watch;
use tpa_core::RequestId;
use tpa_core::api::AlertEvent;

use crate::config::{AlertDestination, AlertRule};
use crate::notify::delivery::{DeliveryStore, Lease};
use crate::notify::{Deliveries, OutboxBell};
use crate::store::leases::{self, ALERT_EVALUATOR, Cursors};
use crate::store::{self, StoreError, Tx, audit_sinks, outbox, requests};
use tpa_core::audit::{Event, format_time};

pub mod destinations;
pub mod rules;
pub mod test_alert;

/// Outbox kind of a queued alert.
pub const KIND: &str = "alert";
/// Events evaluated per transaction.
const BATCH: u32 = 500;
/// How often an idle evaluator looks for new events.
const POLL: Duration = Duration::from_secs(1);
/// How long ended windows are kept.
const KEEP_WINDOWS: TimeDelta = TimeDelta::days(7);
/// Characters of user text (reasons, objects) in an alert.
const TEXT_CHARS: usize = 300;

/// The outbox cursor name of a destination.
pub fn sink_name(destination: &AlertDestination) -> String {
    format!("alert:{}", destination.name)
}

/// Gives the evaluator and every destination a cursor (start-up, before serving).
pub fn register(
    conn: &impl crate::store::sql::Sql,
    rules: &[AlertRule],
    destinations: &[AlertDestination],
) -> Result<(), StoreError> {
    if rules.is_empty() {
        store::alerts::unregister(conn)?;
    } else {
        store::alerts::register(conn)?;
    }
    for d in destinations {
        outbox::register_sink(conn, &sink_name(d))?;
    }
    Ok(())
}

/// Starts the evaluator (when there are rules) and one sender per
/// destination; they stop when `shutdown` turns true.
pub fn spawn(
    deliveries: &Deliveries,
    rules: Vec<AlertRule>,
    destinations: Vec<AlertDestination>,
) -> Result<Vec<tokio::task::JoinHandle<()>>, StoreError> {
    let mut tasks = destinations::spawn(deliveries, destinations)?;
    if !rules.is_empty() {
        let evaluator = Evaluator {
            store: deliveries.store.clone(),
            rules,
            bursts: rules::Bursts::default(),
            bell: deliveries.bell.clone(),
            lease: deliveries.lease.clone(),
        };
        tasks.push(tokio::spawn(evaluator.run(deliveries.shutdown.clone())));
    }
    Ok(tasks)
}

/// The dedup key of (rule, subject): the same for every alert about them,
/// short and free of user text (PagerDuty's `dedup_key`, Opsgenie's `alias`).
pub fn dedup_key(rule: &str, subject: &str) -> String {
    let digest = Sha256::digest(subject.as_bytes());
    format!("tpa:{rule}:{}", &hex::encode(digest)[..32])
}

fn clean(text: &str) -> String {
    tpa_core::text::printable(text, false, TEXT_CHARS)
}

/// The alert for match `m` of `event`.
pub fn alert_event(
    rule: &AlertRule,
    m: &rules::Match,
    event: &Event,
    at: DateTime<Utc>,
) -> AlertEvent {
    AlertEvent {
        event: KIND.to_owned(),
        rule: rule.name.clone(),
        kind: rule.kind.as_str().to_owned(),
        severity: rule.severity.as_str().to_owned(),
        summary: clean(&format!(
            "TPA alert {}: {} ({} {} {})",
            rule.name, m.what, event.actor, event.action, event.object
        )),
        subject: clean(&m.subject),
        dedup_key: dedup_key(&rule.name, &m.subject),
        at: format_time(at),
        count: m.count,
        audit_seqs: m.seqs.clone(),
        actor: clean(&event.actor),
        action: clean(&event.action),
        object: clean(&event.object),
        source: clean(&event.source),
        reason: clean(&event.reason),
    }
}

struct Evaluator {
    store: DeliveryStore,
    rules: Vec<AlertRule>,
    bursts: rules::Bursts,
    bell: OutboxBell,
    lease: Lease,
}

/// What one evaluation step did.
#[derive(Debug, PartialEq, Eq)]
enum Step {
    /// Another replica holds the evaluator's lease.
    NotHolder,
    /// Evaluated this many events (and queued their alerts).
    Evaluated(usize),
}

impl Evaluator {
    async fn run(mut self, mut shutdown: watch::Receiver<bool>) {
        let mut bell = self.bell.listener();
        loop {
            if *shutdown.borrow() {
                break;
            }
            let wait = match self.step().await {
                Ok(Step::Evaluated(read)) if read >= BATCH as usize => continue,
                Ok(Step::Evaluated(_)) => POLL,
                // Look again before the holder's lease could run out.
                Ok(Step::NotHolder) => self.lease.ttl / 3,
                Err(e) => {
                    tracing::warn!(error = %e, "alert evaluation failed; will retry");
                    Duration::from_secs(5)
                }
            };
            bell.pause(wait, &mut shutdown).await;
        }
        // Another replica need not wait for the lease to run out.
        let holder = self.lease.holder.clone();
        let released = self
            .store
            .write(move |tx| leases::release(tx, Cursors::Alerts, ALERT_EVALUATOR, &holder))
            .await;
        if let Err(e) = released {
            tracing::warn!(error = %e, "cannot release the alert evaluator's lease");
        }
        // The last handle on a PostgreSQL store closes its blocking clients,
        // which run a runtime of their own: not on this runtime's thread.
        let _ = tokio::task::spawn_blocking(move || drop(self)).await;
    }

    /// Evaluates the next batch if this replica holds the evaluator's lease.
    ///
    /// The lease is taken (or renewed) inside the batch's write transaction,
    /// which also reads the cursor and the events and moves the cursor: a
    /// replica that lost the lease (paused past its TTL) finds out there and
    /// queues nothing, so no event is evaluated by two replicas and the next
    /// holder starts exactly where the last committed batch ended.
    async fn step(&mut self) -> Result<Step, StoreError> {
        let rules = self.rules.clone();
        let lease = self.lease.clone();
        // Counted on a copy, kept only when the batch commits.
        let mut bursts = self.bursts.clone();
        let (step, queued, bursts) = self
            .store
            .write(move |tx| {
                if !lease.take(tx, Cursors::Alerts, ALERT_EVALUATOR)? {
                    // No cursor (no rules) counts as not holding it too.
                    return Ok((Step::NotHolder, 0, bursts));
                }
                let Some(cursor) = store::alerts::cursor(tx)? else {
                    return Ok((Step::NotHolder, 0, bursts));
                };
                let events = audit_sinks::events_after(tx, cursor, BATCH)?;
                let Some(last) = events.last().map(|e| e.seq) else {
                    return Ok((Step::Evaluated(0), 0, bursts));
                };
                let mut queued = 0;
                for event in &events {
                    queued += evaluate_one(tx, &rules, &mut bursts, event)?;
                }
                store::alerts::advance(tx, last)?;
                store::alerts::prune(tx, Utc::now() - KEEP_WINDOWS)?;
                Ok::<_, StoreError>((Step::Evaluated(events.len()), queued, bursts))
            })
            .await?;
        self.bursts = bursts;
        if queued > 0 {
            tracing::info!(alerts = queued, "alerts queued");
            self.bell.ring();
        }
        Ok(step)
    }
}

/// Evaluates one event inside the batch transaction; returns how many alerts it queued.
fn evaluate_one(
    tx: &Tx<'_>,
    rules: &[AlertRule],
    bursts: &mut rules::Bursts,
    event: &Event,
) -> Result<usize, StoreError> {
    let at = DateTime::parse_from_rfc3339(&event.time)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| StoreError::Corrupt(format!("audit event {} time: {e}", event.seq)))?;
    let mut role_of = |id: &str| {
        let id = RequestId::parse(id).ok()?;
        requests::load(tx, &id)
            .ok()
            .flatten()
            .map(|r| r.role.to_string())
    };
    let mut queued = 0;
    for m in rules::evaluate(rules, bursts, event, at, &mut role_of) {
        let Some(rule) = rules.get(m.rule) else {
            continue;
        };
        let until = at + TimeDelta::from_std(rule.window).unwrap_or(TimeDelta::minutes(15));
        if store::alerts::open_window(tx, &rule.name, &m.subject, at, until)? {
            let payload = json!({
                "destinations": rule.destinations,
                "alert": alert_event(rule, &m, event, at),
            });
            outbox::enqueue(tx, KIND, &payload.to_string(), Utc::now())?;
            queued += 1;
        }
    }
    Ok(queued)
}
