//! A delivery loop's hold on the database: the CA's [`Database`] (on SQLite
//! its one writer and reader pool, not a connection opened and
//! migration-checked per step; on PostgreSQL the replica's pool), and when
//! the loop last took or renewed its sink's lease, so that an idle loop
//! renews only when less than 2/3 of the TTL is left instead of writing
//! (and syncing) the lease row at every step.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::lease::Lease;
use crate::store::leases::Cursors;
use crate::store::{Conn, Database, StoreError, Tx};

/// How long one store call of a delivery loop may wait (for the writer,
/// or a PostgreSQL connection).
const DEADLINE: Duration = Duration::from_secs(10);

/// The store of the delivery loops: the CA's own (either engine), shared
/// with the handlers through `AppState`.
#[derive(Debug, Clone)]
pub struct DeliveryStore {
    database: Arc<Database>,
}

impl DeliveryStore {
    /// An open store of the loops' own.
    pub fn open(database: Database) -> Self {
        Self::shared(Arc::new(database))
    }

    /// An open store shared with its other users (the CA's `AppState`).
    /// On PostgreSQL, whoever drops the last handle must not do it on an
    /// async runtime's thread (its blocking clients run a runtime of their
    /// own): the loops drop theirs in `spawn_blocking`.
    pub fn shared(database: Arc<Database>) -> Self {
        Self { database }
    }

    /// Runs `f` in one write transaction (through the SQLite writer, or on
    /// a pooled PostgreSQL connection), off the async runtime.
    pub(crate) async fn write<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Tx<'_>) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let database = self.clone();
        tokio::task::spawn_blocking(move || {
            database
                .database
                .write(std::time::Instant::now() + DEADLINE, f)
        })
        .await
        .map_err(|e| StoreError::Corrupt(e.to_string()))?
    }

    /// Runs `f` on a connection for reading, off the async runtime.
    pub(crate) async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Conn) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let database = self.clone();
        tokio::task::spawn_blocking(move || {
            database
                .database
                .read(std::time::Instant::now() + DEADLINE, f)
        })
        .await
        .map_err(|e| StoreError::Corrupt(e.to_string()))?
    }
}

/// One loop's database and lease state.
pub(super) struct Session {
    database: DeliveryStore,
    /// When the lease was last taken or renewed (before the write), while held.
    renewed: Option<Instant>,
}

impl Session {
    pub(super) fn new(database: DeliveryStore) -> Self {
        Self {
            database,
            renewed: None,
        }
    }

    /// Runs `f` in one write transaction, off the async runtime.
    pub(super) async fn write<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Tx<'_>) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        self.database.write(f).await
    }

    /// Runs `f` on a connection for reading, off the async runtime.
    pub(super) async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Conn) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        self.database.read(f).await
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
        let taken = self.write(move |tx| lease.take(tx, cursors, &sink)).await;
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
