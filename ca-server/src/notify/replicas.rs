//! Wake-ups from other replicas: a [`Listener`] on the shared PostgreSQL
//! relays every committed [`request_changed`](crate::store::changes::request_changed)
//! to this replica's [`Waiters`], so a client waiting here (`/wait`) wakes
//! when any replica decides its request, and every committed
//! [`outbox_queued`](crate::store::changes::outbox_queued) to its
//! [`OutboxBell`], so the replica holding a sink's lease delivers an item
//! another replica queued at once, not at its next idle poll.
//!
//! Nothing is missed: notifications sent while the listener was away are
//! lost by PostgreSQL, so each (re)connect wakes every waiter (each
//! re-reads its request) and rings the bell. A payload this build does not know wakes every
//! waiter too (a re-read too many, never a wake-up too few).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use super::{OutboxBell, Waiters};
use crate::store::changes::{changed_request, is_outbox};
use crate::store::pg::PgOptions;
use crate::store::pg::listen::{Listener, Wake};

/// The running bridge; it stops (and closes its connection) when dropped.
#[derive(Debug)]
pub struct ReplicaWakeups {
    _listener: Listener,
    connects: Arc<AtomicU64>,
}

impl ReplicaWakeups {
    /// Starts listening on the database `options` names, waking `waiters`
    /// and ringing `bell`.
    pub fn spawn(options: PgOptions, waiters: Waiters, bell: OutboxBell) -> std::io::Result<Self> {
        let connects = Arc::new(AtomicU64::new(0));
        let counted = Arc::clone(&connects);
        let listener = Listener::spawn(options, move |wake| match wake {
            Wake::Notified(payload) if is_outbox(&payload) => bell.ring(),
            Wake::Notified(payload) => match changed_request(&payload) {
                Some(id) => waiters.wake(&id),
                None => waiters.wake_all(),
            },
            Wake::Resync => {
                counted.fetch_add(1, Ordering::Relaxed);
                waiters.wake_all();
                bell.ring();
            }
        })?;
        Ok(Self {
            _listener: listener,
            connects,
        })
    }

    /// How many times the listener has (re)connected and woken every waiter.
    pub fn connects(&self) -> u64 {
        self.connects.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests;
