//! Refusal reports: every rejected authentication and every refused channel
//! reaches the CA's audit trail (`POST /api/v1/bastion/events`), bounded so
//! that a flood cannot fill it.
//!
//! The [`Reporter`] sink coalesces identical refusals (same kind, client IP,
//! login, request, what was asked and reason) within one window into one
//! report with a count, and keeps at most [`MAX_DISTINCT`] distinct reports
//! per window; refusals beyond that are only counted, and sent as one
//! `events_suppressed` report. At the end of each window the reports go to
//! their own spool, delivered like session records ([`crate::recorder`]).
//! Every refusal is still logged one by one by the server.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use tokio::sync::{mpsc, oneshot};
use tpa_core::api::BastionEvent;

use crate::ca_client::CaClient;
use crate::events::{Event, EventSink};
use crate::recorder::{self, Delivery};

/// How long refusals are coalesced before they are spooled.
pub const WINDOW: Duration = Duration::from_secs(10);
/// Distinct reports per window; more are only counted.
pub const MAX_DISTINCT: usize = 50;
/// Longest text field of a report (the CA takes up to 512 bytes): a client's
/// username or target is cut here, so no client can make a report the CA
/// refuses.
const MAX_TEXT: usize = 200;

/// `text` cut to at most [`MAX_TEXT`] bytes at a character boundary, with `…`.
fn clip(text: &str) -> String {
    if text.len() <= MAX_TEXT {
        return text.to_owned();
    }
    let mut end = MAX_TEXT;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", text.get(..end).unwrap_or_default())
}

/// What makes two refusals the same report.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Key {
    kind: &'static str,
    source: String,
    login: String,
    request: Option<String>,
    what: String,
    reason: String,
}

#[derive(Debug, Clone, Copy)]
struct Tally {
    count: u64,
    first: DateTime<Utc>,
    last: DateTime<Utc>,
    order: usize,
}

impl Tally {
    fn new(now: DateTime<Utc>, order: usize) -> Self {
        Self {
            count: 1,
            first: now,
            last: now,
            order,
        }
    }

    fn add(&mut self, now: DateTime<Utc>) {
        self.count = self.count.saturating_add(1);
        self.last = now;
    }
}

/// The refusals of the current window.
#[derive(Debug, Default)]
pub struct Coalescer {
    pending: HashMap<Key, Tally>,
    suppressed: Option<Tally>,
}

impl Coalescer {
    /// Counts `event` if it is a refusal; other events are ignored.
    pub fn add(&mut self, event: &Event, now: DateTime<Utc>) {
        let key = match event {
            Event::AuthRejected {
                peer,
                login,
                reason,
                ..
            } => Key {
                kind: "auth_rejected",
                source: peer.map_or_else(|| "-".to_owned(), |p| p.ip().to_string()),
                login: clip(login),
                request: None,
                what: "authentication".to_owned(),
                reason: clip(reason),
            },
            Event::ChannelRefused {
                peer,
                login,
                grant_request,
                request,
                reason,
                ..
            } => Key {
                kind: "channel_refused",
                source: peer.map_or_else(|| "-".to_owned(), |p| p.ip().to_string()),
                login: clip(login.as_deref().unwrap_or_default()),
                request: grant_request.clone(),
                what: clip(request),
                reason: clip(reason),
            },
            _ => return,
        };
        let order = self.pending.len();
        if let Some(tally) = self.pending.get_mut(&key) {
            tally.add(now);
        } else if self.pending.len() < MAX_DISTINCT {
            self.pending.insert(key, Tally::new(now, order));
        } else {
            match &mut self.suppressed {
                Some(tally) => tally.add(now),
                None => self.suppressed = Some(Tally::new(now, MAX_DISTINCT)),
            }
        }
    }

    /// The reports of the window, in the order their first refusal came, and
    /// starts a new window.
    pub fn take(&mut self) -> Vec<BastionEvent> {
        let mut pending: Vec<(Key, Tally)> = self.pending.drain().collect();
        pending.sort_by_key(|(_, t)| t.order);
        let mut out: Vec<BastionEvent> = pending
            .into_iter()
            .map(|(key, tally)| report(key, tally))
            .collect();
        if let Some(tally) = self.suppressed.take() {
            out.push(report(
                Key {
                    kind: "events_suppressed",
                    source: "-".to_owned(),
                    login: String::new(),
                    request: None,
                    what: "refusals".to_owned(),
                    reason: format!(
                        "more than {MAX_DISTINCT} distinct refusals within {} s; these were only counted",
                        WINDOW.as_secs()
                    ),
                },
                tally,
            ));
        }
        out
    }
}

fn report(key: Key, tally: Tally) -> BastionEvent {
    let time = |t: DateTime<Utc>| t.to_rfc3339_opts(SecondsFormat::Micros, true);
    let id: u128 = rand::random();
    BastionEvent {
        event_id: format!("evt_{id:032x}"),
        kind: key.kind.to_owned(),
        source: key.source,
        login: key.login,
        request: key.request,
        what: key.what,
        reason: key.reason,
        count: tally.count,
        first_at: time(tally.first),
        last_at: time(tally.last),
    }
}

/// The sink that counts refusals for the current window.
#[derive(Debug, Clone, Default)]
pub struct Reporter {
    window: Arc<Mutex<Coalescer>>,
}

impl EventSink for Reporter {
    fn record(&self, event: &Event) {
        if !matches!(
            event,
            Event::AuthRejected { .. } | Event::ChannelRefused { .. }
        ) {
            return;
        }
        match self.window.lock() {
            Ok(mut window) => window.add(event, Utc::now()),
            Err(_) => tracing::error!("refusal reporter failed; refusal only in the log"),
        }
    }
}

impl Reporter {
    fn take(&self) -> Vec<BastionEvent> {
        self.window.lock().map(|mut w| w.take()).unwrap_or_default()
    }
}

/// Handle on the running reporter: its window task and its delivery.
#[derive(Debug)]
pub struct Reports {
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
    delivery: Delivery,
}

impl Reports {
    /// Spools the current window, tries one last delivery (bounded), stops.
    pub async fn finish(mut self, within: Duration) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = tokio::time::timeout(within, &mut self.task).await;
        self.delivery.finish(within).await;
    }
}

/// Starts reporting: every `window` the coalesced refusals go to `spool` and
/// from there to the CA (when there is a `client`).
pub fn start(spool: PathBuf, client: Option<CaClient>, window: Duration) -> (Reporter, Reports) {
    let reporter = Reporter::default();
    let (to_spool, delivery) = recorder::start_spool::<BastionEvent>(spool, client);
    let (stop, stopped) = oneshot::channel();
    let task = tokio::spawn(window_loop(reporter.clone(), to_spool, window, stopped));
    (
        reporter,
        Reports {
            stop: Some(stop),
            task,
            delivery,
        },
    )
}

async fn window_loop(
    reporter: Reporter,
    to_spool: mpsc::UnboundedSender<BastionEvent>,
    window: Duration,
    mut stopped: oneshot::Receiver<()>,
) {
    let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + window, window);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let stopping = tokio::select! {
            _ = ticker.tick() => false,
            _ = &mut stopped => true,
        };
        for event in reporter.take() {
            if to_spool.send(event).is_err() {
                tracing::error!("refusal spool stopped; refusals only in the log");
            }
        }
        if stopping {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rejected(ip: &str, login: &str, reason: &str) -> Event {
        Event::AuthRejected {
            connection: 1,
            peer: Some(format!("{ip}:5000").parse().unwrap()),
            login: login.to_owned(),
            reason: reason.to_owned(),
        }
    }

    #[test]
    fn identical_refusals_are_coalesced_with_a_count() {
        let mut c = Coalescer::default();
        let t0 = DateTime::from_timestamp(1_800_000_000, 0).unwrap();
        let t1 = DateTime::from_timestamp(1_800_000_005, 0).unwrap();
        c.add(&rejected("10.0.0.1", "root", "password refused"), t0);
        c.add(
            &Event::ChannelRefused {
                connection: 2,
                peer: Some("10.0.0.2:6000".parse().unwrap()),
                login: Some("deploy".into()),
                grant_request: Some("req_x".into()),
                request: "direct-tcpip db-1:22".into(),
                reason: "host db-1 is not approved by the certificate".into(),
            },
            t0,
        );
        c.add(&rejected("10.0.0.1", "root", "password refused"), t1);
        c.add(
            &Event::ConnectionEnded {
                connection: 1,
                end: crate::events::ConnectionEnd::ClientClosed,
            },
            t1,
        );
        let reports = c.take();
        assert_eq!(reports.len(), 2, "{reports:#?}");
        let first = &reports[0];
        assert_eq!(first.kind, "auth_rejected");
        assert_eq!(first.source, "10.0.0.1");
        assert_eq!(first.login, "root");
        assert_eq!(first.what, "authentication");
        assert_eq!(first.count, 2);
        assert_eq!(first.first_at, "2027-01-15T08:00:00.000000Z");
        assert_eq!(first.last_at, "2027-01-15T08:00:05.000000Z");
        assert!(first.event_id.starts_with("evt_") && first.event_id.len() == 36);
        let second = &reports[1];
        assert_eq!(second.kind, "channel_refused");
        assert_eq!(second.request.as_deref(), Some("req_x"));
        assert_eq!(second.what, "direct-tcpip db-1:22");
        assert_eq!(second.count, 1);
        assert!(c.take().is_empty(), "a new window starts empty");
    }

    #[test]
    fn long_client_strings_are_clipped_below_the_cas_limit() {
        let mut c = Coalescer::default();
        let now = DateTime::from_timestamp(1_800_000_000, 0).unwrap();
        let login = "é".repeat(5000);
        c.add(&rejected("10.0.0.1", &login, &"x".repeat(3000)), now);
        let report = c.take().pop().unwrap();
        assert!(report.login.len() <= MAX_TEXT + '…'.len_utf8());
        assert!(report.login.ends_with('…') && report.login.starts_with("éé"));
        assert!(report.reason.len() <= MAX_TEXT + '…'.len_utf8());
    }

    #[test]
    fn a_flood_of_distinct_refusals_is_bounded() {
        let mut c = Coalescer::default();
        let now = DateTime::from_timestamp(1_800_000_000, 0).unwrap();
        for i in 0..1000 {
            c.add(&rejected("10.0.0.1", &format!("user{i}"), "nope"), now);
        }
        let reports = c.take();
        assert_eq!(reports.len(), MAX_DISTINCT + 1);
        let last = reports.last().unwrap();
        assert_eq!(last.kind, "events_suppressed");
        assert_eq!(last.count, 1000 - MAX_DISTINCT as u64);
        assert!(reports[..MAX_DISTINCT].iter().all(|r| r.count == 1));
    }
}
