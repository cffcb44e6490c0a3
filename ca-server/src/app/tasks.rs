//! The CA's background tasks: webhook senders, audit sinks, alert rules and
//! destinations, ticket comments, expiry of pending requests, the ends of
//! approved windows (closing ticket comments), the write probe and audit
//! checkpoints. All stop when `stopped` turns true.

use std::time::Instant;

use anyhow::Context as _;
use tokio::task::JoinHandle;

use super::AppState;
use crate::store;

/// Starts every background task of a serving CA.
pub fn spawn(
    state: &AppState,
    stopped: &tokio::sync::watch::Receiver<bool>,
) -> anyhow::Result<Vec<JoinHandle<()>>> {
    let state = state.clone();
    let deliveries = crate::notify::Deliveries {
        // The CA's own store (either engine): on SQLite the loops share its
        // one writer with the handlers, on PostgreSQL the replica's pool.
        store: crate::notify::delivery::DeliveryStore::shared(state.database.clone()),
        bell: state.bell.clone(),
        shutdown: stopped.clone(),
        lease: crate::notify::delivery::Lease::for_process(),
    };
    let mut background = crate::notify::spawn_senders(&deliveries, state.config.webhooks.clone())
        .context("cannot start the webhook senders")?;
    background.extend(
        crate::audit::sinks::spawn(&deliveries, state.config.audit_sinks.clone())
            .context("cannot start the audit sinks")?,
    );
    background.extend(
        crate::alerts::spawn(
            &deliveries,
            state.config.alerts.clone(),
            state.config.alert_destinations.clone(),
        )
        .context("cannot start the alert tasks")?,
    );
    background.extend(crate::integrations::comments::spawn(
        &deliveries,
        state.integrations.clone(),
        state.config.public_url.as_ref().map(|u| u.origin()),
    ));
    background.push(tokio::spawn(expire_pending(state.clone(), stopped.clone())));
    background.push(tokio::spawn(notice_window_ends(
        state.clone(),
        stopped.clone(),
    )));
    background.push(tokio::spawn(probe_writes(state.clone(), stopped.clone())));
    background.push(tokio::spawn(sign_checkpoints(
        state.clone(),
        stopped.clone(),
    )));
    Ok(background)
}

/// Expires pending requests whose pending TTL ran out, every 15 seconds, so
/// that their notifications go out even when nobody looks at them.
async fn expire_pending(state: AppState, mut stop: tokio::sync::watch::Receiver<bool>) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(std::time::Duration::from_secs(15)) => {}
            _ = stop.changed() => return,
        }
        let st = state.clone();
        let db = state.database.clone();
        let deadline = Instant::now() + state.config.write_deadline;
        let done = tokio::task::spawn_blocking(move || {
            db.session(deadline, |conn| {
                crate::workflow::requests::expire_due(conn, &st.config.policy, chrono::Utc::now())
                    .map_err(anyhow::Error::from)
            })
        })
        .await;
        match done {
            Ok(Ok(0)) => {}
            Ok(Ok(n)) => {
                tracing::info!(expired = n, "expired pending requests");
                state.bell.ring();
            }
            Ok(Err(e)) => {
                tracing::warn!(error = format!("{e:#}"), "cannot expire pending requests")
            }
            Err(e) => tracing::warn!(error = %e, "expiry task failed"),
        }
    }
}

/// Every 15 seconds, notices the approved windows that ran out and queues
/// their closing ticket comments (`integrations::window_end`).
async fn notice_window_ends(state: AppState, mut stop: tokio::sync::watch::Receiver<bool>) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(std::time::Duration::from_secs(15)) => {}
            _ = stop.changed() => return,
        }
        let st = state.clone();
        let db = state.database.clone();
        let deadline = Instant::now() + state.config.write_deadline;
        let done = tokio::task::spawn_blocking(move || {
            db.session(deadline, |conn| {
                crate::integrations::window_end::queue_due(
                    conn,
                    st.integrations.config(),
                    &st.config.policy,
                    chrono::Utc::now(),
                )
                .map_err(anyhow::Error::from)
            })
        })
        .await;
        match done {
            Ok(Ok(0)) => {}
            Ok(Ok(n)) => {
                tracing::info!(queued = n, "queued closing ticket comments");
                state.bell.ring();
            }
            Ok(Err(e)) => {
                tracing::warn!(error = format!("{e:#}"), "cannot notice ended windows")
            }
            Err(e) => tracing::warn!(error = %e, "window end task failed"),
        }
    }
}

/// The write probe: rewrites the heartbeat row every `health.probe_interval`
/// under the usual write deadline, so that `/healthz` turns red when the
/// database stops taking writes even if nobody else writes, and green again
/// when it takes them.
async fn probe_writes(state: AppState, mut stop: tokio::sync::watch::Receiver<bool>) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(state.config.health.probe_interval) => {}
            _ = stop.changed() => return,
        }
        let db = state.database.clone();
        let deadline = Instant::now() + state.config.write_deadline;
        let done = tokio::task::spawn_blocking(move || {
            db.write(deadline, |tx| {
                store::heartbeat::beat(tx, chrono::Utc::now())
            })
        })
        .await;
        if let Err(e) = done {
            tracing::warn!(error = %e, "write probe task failed");
        }
        // A failed probe was logged and recorded by `Database::write`.
    }
}

/// Signs the audit chain head every `audit.checkpoint_interval` (when it
/// moved), and once more at shutdown.
async fn sign_checkpoints(state: AppState, mut stop: tokio::sync::watch::Receiver<bool>) {
    let (Some(key), Some(audit)) = (state.audit_key.clone(), state.config.audit.clone()) else {
        return;
    };
    loop {
        let stopping = tokio::select! {
            _ = tokio::time::sleep(audit.checkpoint_interval.get()) => false,
            _ = stop.changed() => true,
        };
        let db = state.database.clone();
        let (key, file) = (key.clone(), audit.checkpoint_file.clone());
        let deadline = Instant::now() + state.config.write_deadline;
        let done = tokio::task::spawn_blocking(move || {
            db.session(deadline, |conn| {
                crate::audit::checkpoint::make(conn, &key, file.as_deref(), chrono::Utc::now())
            })
        })
        .await;
        match done {
            Ok(Ok(Some((c, true)))) => {
                tracing::info!(seq = c.seq, hash = c.hash, "signed audit checkpoint")
            }
            Ok(Ok(_)) => {}
            Ok(Err(e)) => tracing::error!(error = format!("{e:#}"), "cannot sign audit checkpoint"),
            Err(e) => tracing::error!(error = %e, "checkpoint task failed"),
        }
        if stopping {
            return;
        }
    }
}
