//! The closing ticket comment of a grant that simply runs out (issue 17).
//!
//! Approval, cancel and revoke queue their comments with the change itself;
//! the end of a window is no change, so a background pass notices it: every
//! approved request with a ticket whose window ended gets one
//! `window_end_notices` row, claimed in the transaction that queues its
//! comment (outbox kind [`KIND`]). The row's primary key makes the comment
//! exactly-once across passes, restarts and replicas. A request that was
//! revoked or cancelled is no longer `approved` and is never noticed here
//! (it got its own comment).

use chrono::{DateTime, TimeDelta, Utc};
use tpa_core::api::{RequestView, WebhookEvent};
use tpa_core::audit::format_time;
use tpa_core::{AccessRequest, Policy, RequestState};

use crate::config::IntegrationsConfig;
use crate::store::{StoreError, outbox, requests, window_ends};

/// The outbox kind of a closing comment (read by the ticket commenters
/// only; no webhook or alert destination takes it).
pub const KIND: &str = "ticket.access_ended";

/// How far back a pass looks for ended windows: a CA that was down longer
/// than this when a window ended does not comment on it (and a pass never
/// walks the whole history of approved requests).
pub const LOOKBACK: TimeDelta = TimeDelta::days(7);

/// At most this many requests per pass (the next pass takes the rest).
const BATCH: i64 = 500;

/// Requests per transaction of a pass (`store::engine::write_chunks`).
const CHUNK: usize = 50;

/// Notices the windows that ended by `now` and queues the closing comment
/// of each whose role comments on its ticket, [`CHUNK`] requests per
/// transaction (each claimed with its comment, so once). Returns how many
/// comments it queued.
pub fn queue_due(
    conn: &mut impl crate::store::Transact,
    integrations: &IntegrationsConfig,
    policy: &Policy,
    now: DateTime<Utc>,
) -> Result<usize, StoreError> {
    let due = window_ends::due(conn, now - LOOKBACK, now, BATCH)?;
    crate::store::engine::write_chunks(conn, &due, CHUNK, |tx, id| {
        let Some(r) = requests::load(tx, id)? else {
            return Ok::<_, StoreError>(false);
        };
        let ended = r.window.is_some_and(|w| w.end <= now);
        if r.state != RequestState::Approved || !ended || r.ticket.is_none() {
            return Ok(false);
        }
        if !window_ends::claim(tx, id, now)? || !comments(integrations, &r) {
            return Ok(false);
        }
        let event = WebhookEvent {
            event: KIND.to_owned(),
            at: format_time(now),
            request: RequestView::of(&r, policy, now),
        };
        let payload =
            serde_json::to_string(&event).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let item = outbox::enqueue(tx, KIND, &payload, now)?;
        window_ends::record_outbox(tx, id, item)?;
        Ok(true)
    })
}

/// Whether `r`'s role comments on its tickets now.
fn comments(integrations: &IntegrationsConfig, r: &AccessRequest) -> bool {
    integrations
        .role_tickets
        .get(&r.role)
        .is_some_and(|rule| rule.comment)
}
