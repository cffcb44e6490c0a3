//! The one delivery loop of every sender (webhooks, audit sinks, alert
//! destinations, ticket comments): read the next item after the sink's
//! cursor, send it, then advance the cursor or record the failure with the
//! time of the next attempt. Backoff, `Retry-After`, ordering, shutdown and
//! the log lines are written here once; a [`Destination`] only says how to
//! send one item, a [`Queue`] where its items and cursor live.
//!
//! With several replicas on one database, a loop delivers only while it
//! holds its sink's lease (`store::leases`): it takes the lease, renews it
//! before an item once less than 2/3 of [`Lease::ttl`] is left (so an idle
//! loop does not write it at every step) and every ttl/3 while a delivery is
//! in flight, so a replica that lost it stops (dropping the delivery in
//! flight), and a dead replica's sinks are taken over once its lease ran
//! out ([`LEASE_TTL`]).
//! Delivery stays at least once: an item the dead replica had sent but not
//! yet recorded is sent again by the next holder.

use std::future::Future;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use tokio::sync::watch;

use super::OutboxBell;
use super::failure::MAX_RETRY_AFTER;
pub use super::failure::refusing;
pub(crate) use super::failure::{Failure, FailureClass, answered, class_of};
pub use super::lease::{LEASE_TTL, Lease};
pub use super::session::DeliveryStore;
use super::session::{Session, renewal_period};
use crate::store::leases::{self, Cursors};
use crate::store::sql::Sql;
use crate::store::{StoreError, Tx, audit, outbox};
use tpa_core::audit::{NewEvent, Outcome};

/// What the log lines (and [`refusing`]) call each kind of sink: the
/// [`Destination::KIND`] of each, named once so `/metrics` can map them.
pub mod kinds {
    /// `[[webhooks]]`.
    pub const WEBHOOK: &str = "webhook";
    /// `[[alert_destinations]]`.
    pub const ALERT_DESTINATION: &str = "alert destination";
    /// Ticket comments (one sink per commenting ticket system).
    pub const TICKET_COMMENTS: &str = "ticket comments";
    /// `[[audit_sinks]]`.
    pub const AUDIT_SINK: &str = "audit sink";
}

/// The pause after a step that failed on the database side.
const STEP_ERROR_WAIT: Duration = Duration::from_secs(5);
/// The next item of a sink, with the sink's retry state.
#[derive(Debug)]
pub(crate) struct Next<I> {
    /// What to send (one outbox row, or a batch of audit events).
    pub item: I,
    /// Failed attempts at this item so far.
    pub attempts: i64,
    /// Not before this time (after a failure), RFC 3339.
    pub next_attempt_at: Option<String>,
    /// The sink's cursor when the item was read: its outcome is recorded
    /// only while the cursor is still there (and the lease still ours).
    pub cursor: i64,
}

/// Where a sink's items and cursor live (blocking store calls, run off the
/// async runtime).
pub(crate) trait Queue: 'static {
    /// What one delivery sends.
    type Item: Send + Sync + 'static;
    /// The table of its cursors (and their leases).
    const CURSORS: Cursors;
    /// The next item after `sink`'s cursor, if any.
    fn next(conn: &impl Sql, sink: &str) -> Result<Option<Next<Self::Item>>, StoreError>;
    /// Moves `sink`'s cursor from `cursor` past `item`, if the cursor is
    /// still there and `holder` holds the lease; false otherwise.
    fn delivered(
        conn: &impl Sql,
        sink: &str,
        holder: &str,
        cursor: i64,
        item: &Self::Item,
    ) -> Result<bool, StoreError>;
    /// Records a failed attempt and when to try again, under the same
    /// conditions as [`Queue::delivered`].
    fn failed(
        conn: &impl Sql,
        sink: &str,
        holder: &str,
        cursor: i64,
        error: &str,
        retry_at: DateTime<Utc>,
    ) -> Result<bool, StoreError>;
}

/// The outbox (`outbox` rows after an `outbox_cursors` cursor), one row per
/// delivery: webhooks, alert destinations and ticket comments.
pub(crate) struct Outbox;

impl Queue for Outbox {
    type Item = outbox::Pending;
    const CURSORS: Cursors = Cursors::Outbox;

    fn next(conn: &impl Sql, sink: &str) -> Result<Option<Next<Self::Item>>, StoreError> {
        Ok(outbox::next(conn, sink)?.map(|item| Next {
            attempts: item.attempts,
            next_attempt_at: item.next_attempt_at.clone(),
            cursor: item.after,
            item,
        }))
    }

    fn delivered(
        conn: &impl Sql,
        sink: &str,
        holder: &str,
        cursor: i64,
        item: &Self::Item,
    ) -> Result<bool, StoreError> {
        outbox::delivered(conn, sink, holder, cursor, item.id)
    }

    fn failed(
        conn: &impl Sql,
        sink: &str,
        holder: &str,
        cursor: i64,
        error: &str,
        retry_at: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        outbox::failed(conn, sink, holder, cursor, error, retry_at)
    }
}

/// One sink: how to send an item, and the timings of its loop.
pub(crate) trait Destination: Send + 'static {
    /// Where the items come from.
    type Queue: Queue;
    /// What the log lines call it (`webhook`, `audit sink`, …).
    const KIND: &'static str;
    /// The longest backoff between two attempts (a `Retry-After` may ask for more).
    const MAX_BACKOFF: Duration = Duration::from_secs(300);
    /// How long an idle loop waits for a ring of the bell before it looks
    /// again anyway. The bell only hears this process's commits: this
    /// safety poll finds the items another replica committed (and rings
    /// lost to a crash between commit and ring).
    const IDLE_POLL: Duration = Duration::from_secs(10);

    /// The configured name (for the log).
    fn name(&self) -> &str;
    /// The cursor's name.
    fn sink(&self) -> String;
    /// Sends one item. `Ok` for an item this destination passes over.
    fn send(
        &mut self,
        item: &<Self::Queue as Queue>::Item,
    ) -> impl Future<Output = Result<(), Failure>> + Send;
}

/// What every delivery loop of a CA shares: the database, the bell, the
/// shutdown signal and the lease terms.
#[derive(Debug, Clone)]
pub struct Deliveries {
    /// The store holding the outbox and the cursors (either engine): what
    /// the delivery loops and the alert evaluator use.
    pub store: DeliveryStore,
    /// Rung after a commit that queued something.
    pub bell: OutboxBell,
    /// Turns true at shutdown.
    pub shutdown: watch::Receiver<bool>,
    /// Who this process is to the other replicas, and for how long a lease holds.
    pub lease: Lease,
}

impl Deliveries {
    /// Starts the delivery loop of `destination`.
    pub(crate) fn spawn<D: Destination>(&self, destination: D) -> tokio::task::JoinHandle<()> {
        tokio::spawn(run(destination, self.clone()))
    }
}

/// Backoff after `attempts` failures: 1 s, 2 s, 4 s … at most 256 s.
/// A formula over the attempt count stored with each cursor rather than a
/// retry crate (`backoff`, `backon`): the next attempt time lives in the
/// database so that retries survive a restart and run on any replica.
pub fn backoff(attempts: i64) -> Duration {
    Duration::from_secs(1u64 << attempts.clamp(0, 8) as u32).min(Duration::from_secs(300))
}

/// How long a failed delivery still waits before its retry at
/// `next_attempt_at` (stored RFC 3339); `None` when it is due. No wait TPA
/// sets is longer than `longest`: a stored time further ahead was written
/// by a clock that stepped back since (or a replica's far ahead), and is
/// due now rather than parking the sink for as long as the clock error.
fn until_retry(
    next_attempt_at: Option<&str>,
    now: DateTime<Utc>,
    longest: Duration,
) -> Option<Duration> {
    let at = DateTime::parse_from_rfc3339(next_attempt_at?)
        .ok()?
        .with_timezone(&Utc);
    let wait = (at > now).then(|| (at - now).to_std().unwrap_or(Duration::from_secs(1)))?;
    (wait <= longest).then_some(wait)
}

/// The longest wait `D`'s loop ever stores, with the replicas' clock skew
/// allowance ([`LEASE_TTL`]) on top.
fn longest_wait<D: Destination>() -> Duration {
    MAX_RETRY_AFTER.max(D::MAX_BACKOFF) + LEASE_TTL
}

async fn run<D: Destination>(mut destination: D, deliveries: Deliveries) {
    let mut shutdown = deliveries.shutdown.clone();
    // Listening from before the first read: no ring after it is missed.
    let mut bell = deliveries.bell.listener();
    let mut session = Session::new(deliveries.store.clone());
    loop {
        if *shutdown.borrow() {
            break;
        }
        let wait = match step(&mut destination, &deliveries, &mut session).await {
            Ok(wait) => wait,
            Err(e) => {
                tracing::warn!(kind = D::KIND, name = %destination.name(), error = %e, "delivery step failed");
                Some(STEP_ERROR_WAIT)
            }
        };
        if let Some(wait) = wait {
            bell.pause(wait, &mut shutdown).await;
        }
    }
    // Another replica need not wait for the lease to run out.
    let (sink, lease) = (destination.sink(), deliveries.lease.clone());
    session.forget();
    let released = session
        .write(move |tx| leases::release(tx, D::Queue::CURSORS, &sink, &lease.holder))
        .await;
    if let Err(e) = released {
        tracing::warn!(kind = D::KIND, name = %destination.name(), error = %e, "cannot release the delivery lease");
    }
    // The last handle on a PostgreSQL store closes its blocking clients,
    // which run a runtime of their own: not on this runtime's thread.
    let _ = tokio::task::spawn_blocking(move || drop((session, deliveries))).await;
}

/// Delivers the next item, if this loop holds the lease and one is due.
/// Returns how long to wait before the next step (`None`: go on at once).
async fn step<D: Destination>(
    destination: &mut D,
    deliveries: &Deliveries,
    session: &mut Session,
) -> Result<Option<Duration>, StoreError> {
    let sink = destination.sink();
    let lease = &deliveries.lease;
    // Renewed only when less than 2/3 of the TTL is left: an idle loop
    // does not write the lease row at every step.
    if !session.fresh(lease) && !session.take(lease, D::Queue::CURSORS, &sink).await? {
        // Another replica holds the lease: look again before it could run out.
        return Ok(Some(renewal_period(lease)));
    }
    let name = sink.clone();
    let next = session
        .read(move |conn| D::Queue::next(conn, &name))
        .await?;
    let Some(next) = next else {
        return Ok(Some(D::IDLE_POLL));
    };
    if let Some(wait) = until_retry(
        next.next_attempt_at.as_deref(),
        Utc::now(),
        longest_wait::<D>(),
    ) {
        return Ok(Some(wait));
    }
    let Some(result) = send_holding(destination, deliveries, session, &sink, &next.item).await
    else {
        // Another replica took the lease over: it delivers this item now.
        return Ok(Some(renewal_period(lease)));
    };
    let name = destination.name().to_owned();
    log_outcome::<D>(&name, &result);
    let holder = deliveries.lease.holder.clone();
    let recorded = session
        .write(move |tx| record::<D>(tx, &sink, &name, &holder, next, result))
        .await?;
    if !recorded {
        tracing::warn!(kind = D::KIND, name = %destination.name(), "delivery outcome not recorded: the lease or the cursor moved meanwhile");
    }
    Ok(None)
}

/// The log line of a delivery's outcome (a refusal and a skip each time
/// they happen), and the [`refusing`] health signal.
fn log_outcome<D: Destination>(name: &str, result: &Result<(), Failure>) {
    let refused = matches!(result, Err(f) if f.class == FailureClass::Refused);
    super::failure::set_refusing(D::KIND, name, refused);
    let Err(failure) = result else {
        return;
    };
    match failure.class {
        FailureClass::Retryable => {
            tracing::warn!(kind = D::KIND, name, error = %failure.error, "delivery failed; will retry")
        }
        FailureClass::Refused => tracing::warn!(
            kind = D::KIND, name, error = %failure.error,
            "delivery refused by the receiver; retrying at the longest backoff until the receiver or the configuration is fixed (later items wait)"
        ),
        FailureClass::Unbuildable => tracing::error!(
            kind = D::KIND, name, error = %failure.error,
            "delivery item cannot be built; skipped (audit event delivery.skipped)"
        ),
    }
}

/// Records the outcome of `next` (blocking): the cursor moved past it on
/// success or when it can never be built (with a `delivery.skipped` audit
/// event in the same transaction); otherwise the failure and the next
/// attempt's time (at the longest backoff for a refusal). False when the
/// lease or the cursor moved meanwhile (nothing recorded).
fn record<D: Destination>(
    tx: &Tx<'_>,
    sink: &str,
    name: &str,
    holder: &str,
    next: Next<<D::Queue as Queue>::Item>,
    result: Result<(), Failure>,
) -> Result<bool, StoreError> {
    let failure = match result {
        Ok(()) => return D::Queue::delivered(tx, sink, holder, next.cursor, &next.item),
        Err(failure) => failure,
    };
    if failure.class == FailureClass::Unbuildable {
        if !D::Queue::delivered(tx, sink, holder, next.cursor, &next.item)? {
            return Ok(false);
        }
        audit::append(
            tx,
            &skipped_event(D::KIND, name, sink, next.cursor, &failure.error),
        )?;
        return Ok(true);
    }
    let base = match failure.class {
        FailureClass::Refused => D::MAX_BACKOFF,
        _ => backoff(next.attempts).min(D::MAX_BACKOFF),
    };
    let wait = base.max(failure.retry_after.unwrap_or_default());
    let at = Utc::now() + TimeDelta::from_std(wait).unwrap_or(TimeDelta::seconds(5));
    D::Queue::failed(tx, sink, holder, next.cursor, &failure.error, at)
}

/// The audit event of an item skipped because it can never be built.
fn skipped_event(kind: &str, name: &str, sink: &str, after: i64, error: &str) -> NewEvent {
    NewEvent {
        time: Utc::now(),
        actor: "system".to_owned(),
        source: format!("delivery:{kind}"),
        action: "delivery.skipped".to_owned(),
        object: format!("sink:{sink}"),
        outcome: Outcome::Error,
        reason: format!("the {kind} {name} skipped an item it can never deliver: {error}"),
        details: serde_json::json!({ "sink": sink, "after": after, "error": error }),
    }
}

/// Sends `item`, renewing the lease every ttl/3 while the delivery is in
/// flight; `None` when a renewal found the lease taken by another replica,
/// which then delivers the item itself: the send is dropped rather than let
/// run on. (Its outcome could not be recorded anyway: recording is
/// conditional on the lease and the cursor.) A renewal that fails on the
/// database side lets the send go on.
async fn send_holding<D: Destination>(
    destination: &mut D,
    deliveries: &Deliveries,
    session: &mut Session,
    sink: &str,
    item: &<D::Queue as Queue>::Item,
) -> Option<Result<(), Failure>> {
    let send = destination.send(item);
    tokio::pin!(send);
    let mut renew = tokio::time::interval(renewal_period(&deliveries.lease));
    renew.tick().await; // The first tick is at once; the lease was just taken.
    loop {
        tokio::select! {
            result = &mut send => return Some(result),
            _ = renew.tick() => {
                match session.take(&deliveries.lease, D::Queue::CURSORS, sink).await {
                    Ok(true) => {}
                    Ok(false) => {
                        tracing::warn!(kind = D::KIND, sink, "delivery lease lost during a delivery; the delivery is abandoned");
                        return None;
                    }
                    Err(e) => {
                        tracing::warn!(kind = D::KIND, sink, error = %e, "cannot renew the delivery lease during a delivery");
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_caps() {
        assert_eq!(backoff(0), Duration::from_secs(1));
        assert_eq!(backoff(3), Duration::from_secs(8));
        assert_eq!(backoff(50), Duration::from_secs(256));
        assert!(backoff(i64::MAX) <= Duration::from_secs(300));
    }

    const HOUR: Duration = Duration::from_secs(3600);

    #[test]
    fn a_retry_in_the_past_or_unreadable_is_due() {
        let now = Utc::now();
        assert_eq!(until_retry(None, now, HOUR), None);
        assert_eq!(until_retry(Some("not a time"), now, HOUR), None);
        let past = tpa_core::audit::format_time(now - TimeDelta::seconds(3));
        assert_eq!(until_retry(Some(&past), now, HOUR), None);
        let future = tpa_core::audit::format_time(now + TimeDelta::seconds(3));
        let wait = until_retry(Some(&future), now, HOUR).unwrap();
        assert!(wait > Duration::from_secs(2) && wait <= Duration::from_secs(3));
    }

    // issue 15: after a backwards clock step (or from a replica whose clock
    // is far ahead) a stored retry time a day away does not park the sink
    // for a day: no wait the loop sets is that long, so it is due now.
    #[test]
    fn a_retry_further_ahead_than_any_wait_is_due() {
        let now = Utc::now();
        let day = tpa_core::audit::format_time(now + TimeDelta::days(1));
        assert_eq!(until_retry(Some(&day), now, HOUR), None);
        let hour = tpa_core::audit::format_time(now + TimeDelta::seconds(3590));
        assert!(until_retry(Some(&hour), now, HOUR).is_some());
        struct Slow;
        impl Destination for Slow {
            type Queue = Outbox;
            const KIND: &'static str = "test";
            const MAX_BACKOFF: Duration = Duration::from_secs(7200);
            fn name(&self) -> &str {
                "slow"
            }
            fn sink(&self) -> String {
                "slow".into()
            }
            async fn send(&mut self, _: &outbox::Pending) -> Result<(), Failure> {
                Ok(())
            }
        }
        assert_eq!(
            longest_wait::<Slow>(),
            Duration::from_secs(7200) + LEASE_TTL
        );
        assert!(longest_wait::<Slow>() < Duration::from_secs(86_400));
    }
}
