//! A delivery loop's hold on the database: one connection kept for the
//! loop's life (not one opened, and migration-checked, per step; reopened
//! after an error), and when the loop last took or renewed its sink's lease,
//! so that an idle loop renews only when less than 2/3 of the TTL is left
//! instead of writing (and syncing) the lease row at every step.

use std::path::PathBuf;
use std::time::Duration;

use rusqlite::Connection;
use tokio::time::Instant;

use super::lease::Lease;
use crate::store::leases::Cursors;
use crate::store::{self, Create, StoreError};

/// One loop's connection and lease state.
pub(super) struct Session {
    database: PathBuf,
    conn: Option<Connection>,
    /// When the lease was last taken or renewed (before the write), while held.
    renewed: Option<Instant>,
}

impl Session {
    pub(super) fn new(database: PathBuf) -> Self {
        Self {
            database,
            conn: None,
            renewed: None,
        }
    }

    /// Runs `f` on the loop's connection (opened when it has none), off the
    /// async runtime. A connection that saw an error is dropped, so the
    /// next call starts afresh.
    pub(super) async fn run<T: Send + 'static>(
        &mut self,
        f: impl FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let (database, conn) = (self.database.clone(), self.conn.take());
        let (conn, result) = tokio::task::spawn_blocking(move || {
            let mut conn = match conn {
                Some(conn) => conn,
                None => match store::open(&database, Create::Never) {
                    Ok(conn) => conn,
                    Err(e) => return (None, Err(e)),
                },
            };
            let result = f(&mut conn);
            (result.is_ok().then_some(conn), result)
        })
        .await
        .map_err(|e| StoreError::Corrupt(e.to_string()))?;
        self.conn = conn;
        result
    }

    /// Whether the lease was taken or renewed less than a third of its TTL
    /// ago: more than 2/3 of it is left, and no other replica can have it.
    pub(super) fn fresh(&self, lease: &Lease) -> bool {
        self.renewed
            .is_some_and(|at| at.elapsed() < renewal_period(lease))
    }

    /// Takes or renews `sink`'s lease; false when another replica holds it.
    pub(super) async fn take(
        &mut self,
        lease: &Lease,
        cursors: Cursors,
        sink: &str,
    ) -> Result<bool, StoreError> {
        let started = Instant::now();
        let (lease, sink) = (lease.clone(), sink.to_owned());
        let taken = self.run(move |conn| lease.take(conn, cursors, &sink)).await;
        self.renewed = matches!(taken, Ok(true)).then_some(started);
        taken
    }

    /// Forgets the lease (given up, or found lost).
    pub(super) fn forget(&mut self) {
        self.renewed = None;
    }
}

/// How long after a renewal the next is due (a third of the TTL).
pub(super) fn renewal_period(lease: &Lease) -> Duration {
    lease.ttl / 3
}
