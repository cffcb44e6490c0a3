//! Ticket comments, delivered from the outbox like webhooks: one sender per
//! ticket system (cursor `ticket:<name>`) reads the request events in order
//! and, for roles whose `ticket_check` sets `comment = true`, comments when
//! access is approved, when it ends early (cancelled, revoked) and when its
//! window runs out (queued by [`super::window_end`]). A failed comment is
//! retried with backoff; an outage only delays it.

use std::sync::Arc;

use tpa_core::RoleName;
use tpa_core::api::WebhookEvent;

use super::Integrations;
use super::client::ProviderError;
use crate::config::IntegrationsConfig;
use crate::notify::Deliveries;
use crate::notify::delivery::{Destination, Failure, FailureClass, Outbox, class_of};
use crate::store::{StoreError, outbox};

/// The outbox cursor name of a ticket system's comments.
pub fn sink_name(system: &str) -> String {
    format!("ticket:{system}")
}

/// Gives every ticket system that comments a cursor (start-up, before serving).
pub fn register_sinks(
    conn: &impl crate::store::sql::Sql,
    integrations: &Integrations,
) -> Result<(), StoreError> {
    for name in commenting_systems(integrations.config()) {
        outbox::register_sink(conn, &sink_name(&name))?;
    }
    Ok(())
}

/// The ticket systems some role comments on: each has a comment sender
/// (and a `tpa_sink_backlog{kind="ticket"}` gauge).
pub fn commenting_systems(config: &IntegrationsConfig) -> Vec<String> {
    let mut names: Vec<String> = config
        .role_tickets
        .values()
        .filter(|r| r.comment)
        .map(|r| r.system.clone())
        .collect();
    names.sort();
    names.dedup();
    names
}

/// The comment for `event`, when it is one TPA comments on: who, what, until
/// when, and the request's link.
pub fn comment_text(event: &WebhookEvent, public_origin: Option<&str>) -> Option<String> {
    let r = &event.request;
    let who = r
        .requester
        .username
        .as_deref()
        .unwrap_or(&r.requester.subject);
    let link = match public_origin {
        Some(origin) => format!("{origin}/requests/{}", r.id),
        None => format!("request {}", r.id),
    };
    let hosts = r.hosts.join(", ");
    match event.event.as_str() {
        "request.approved" | "request.break_glass" => Some(format!(
            "TPA: {who} was granted role {} on {hosts} until {} ({} approval). Reason: {}. {link}",
            r.role,
            r.window_end.as_deref().unwrap_or("-"),
            r.approval_path.replace('_', "-"),
            r.reason,
        )),
        "request.cancelled" | "request.revoked" if r.window_start.is_some() => Some(format!(
            "TPA: access of {who} to role {} on {hosts} ended at {} ({}). {link}",
            r.role,
            r.window_end.as_deref().unwrap_or("-"),
            event.event.trim_start_matches("request."),
        )),
        super::window_end::KIND => Some(format!(
            "TPA: access of {who} to role {} on {hosts} ended at {} when its approved window ran out. {link}",
            r.role,
            r.window_end.as_deref().map_or_else(|| "-".to_owned(), utc),
        )),
        _ => None,
    }
}

/// A stored RFC 3339 time as `2026-12-07 10:00:00 UTC`.
fn utc(text: &str) -> String {
    chrono::DateTime::parse_from_rfc3339(text).map_or_else(
        |_| text.to_owned(),
        |t| {
            t.with_timezone(&chrono::Utc)
                .format("%Y-%m-%d %H:%M:%S UTC")
                .to_string()
        },
    )
}

/// Starts one comment sender per ticket system that comments.
pub fn spawn(
    deliveries: &Deliveries,
    integrations: Arc<Integrations>,
    public_origin: Option<String>,
) -> Vec<tokio::task::JoinHandle<()>> {
    commenting_systems(integrations.config())
        .into_iter()
        .map(|system| {
            deliveries.spawn(Commenter {
                integrations: integrations.clone(),
                system,
                public_origin: public_origin.clone(),
            })
        })
        .collect()
}

struct Commenter {
    integrations: Arc<Integrations>,
    system: String,
    public_origin: Option<String>,
}

impl Destination for Commenter {
    type Queue = Outbox;
    const KIND: &'static str = crate::notify::delivery::kinds::TICKET_COMMENTS;

    fn name(&self) -> &str {
        &self.system
    }

    fn sink(&self) -> String {
        sink_name(&self.system)
    }

    async fn send(&mut self, item: &outbox::Pending) -> Result<(), Failure> {
        self.deliver(item).await
    }
}

impl Commenter {
    /// Comments for `item` when it is an event of a role that comments on
    /// this system; anything else is passed over.
    async fn deliver(&self, item: &outbox::Pending) -> Result<(), Failure> {
        if !item.kind.starts_with("request.") && item.kind != super::window_end::KIND {
            return Ok(());
        }
        let event = serde_json::from_str::<WebhookEvent>(&item.payload)
            .map_err(|e| Failure::unbuildable(format!("bad payload: {e}")))?;
        let rule = RoleName::parse(&event.request.role)
            .ok()
            .and_then(|role| self.integrations.config().role_tickets.get(&role).cloned());
        let (Some(rule), Some(ticket)) = (rule, event.request.ticket.as_deref()) else {
            return Ok(());
        };
        if !rule.comment || rule.system != self.system {
            return Ok(());
        }
        let Some(text) = comment_text(&event, self.public_origin.as_deref()) else {
            return Ok(());
        };
        let Some(system) = self.integrations.ticket_system(&self.system) else {
            return Ok(());
        };
        match system.comment(ticket, &rule, &text).await {
            Ok(()) => Ok(()),
            // A ticket that is gone (or a key the system never takes) stays
            // gone: retrying would hold up every later comment.
            Err(ProviderError::NotFound) => {
                tracing::warn!(ticket_system = %self.system, request = %event.request.id, "ticket not found; comment dropped");
                Ok(())
            }
            // The ticket system's Retry-After holds the comment back (and
            // every later one: comments go in order).
            Err(e @ ProviderError::RateLimited { retry_after }) => Err(Failure::retry_after(
                format!("ticket system {} {e}", self.system),
                retry_after,
            )),
            // Credentials refused: retried at the longest backoff, loudly,
            // until an operator fixes them (no comment is lost meanwhile).
            Err(e @ ProviderError::Unauthorized(_)) => Err(Failure::refused(format!(
                "ticket system {} {e}",
                self.system
            ))),
            // The system refuses this comment (400, 409, 422 …): it never
            // will take it, and comments are not a trail whose order or
            // completeness matters more than the ones after it: skipped,
            // audited.
            Err(e @ ProviderError::Status(status)) if class_of(status) == FailureClass::Refused => {
                Err(Failure::unbuildable(format!(
                    "ticket system {} refused the comment on {ticket}: {e}",
                    self.system
                )))
            }
            Err(e) => Err(format!("ticket system {} {e}", self.system).into()),
        }
    }
}
