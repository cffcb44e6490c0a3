//! The one writer connection, handed out under a deadline, and the record of
//! how the last writes went (for `/healthz` and `/metrics`).
//!
//! Every write carries one deadline, set when its request arrived. Waiting
//! for the connection and SQLite's busy wait both end at that deadline: the
//! busy timeout is set to the time left each time the connection is handed
//! out, so lock waits never add up across queued writers.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use rusqlite::Connection;

use super::engine::{Tx, write_sqlite};
use super::{Fault, MaybeFault, StoreError};

/// The writer connection and its health.
#[derive(Debug)]
pub struct Writer {
    /// `None` while a [`WriterGuard`] holds the connection.
    slot: Mutex<Option<Connection>>,
    free: Condvar,
    /// Writes waiting for (or running on) the connection, by ticket: when each began to wait.
    waiting: Mutex<BTreeMap<u64, Instant>>,
    next_ticket: AtomicU64,
    health: WriteHealth,
    disk: OnceLock<DiskGuard>,
}

/// Where the database lives and the free space it needs: after a write
/// failed on a full disk, the connection is not handed out again while free
/// space stays below `min_free`. Without it, whether the next write fits
/// depends on slack in the WAL (a checkpoint, a rolled-back page): some
/// writes would commit and some fail, at random, while `/healthz` is red.
#[derive(Debug)]
struct DiskGuard {
    dir: PathBuf,
    min_free: u64,
}

/// The writer connection, held until dropped.
#[derive(Debug)]
pub struct WriterGuard<'a> {
    writer: &'a Writer,
    conn: Option<Connection>,
    _ticket: Ticket<'a>,
}

/// A write counted in the writer queue until dropped.
#[derive(Debug)]
pub struct Ticket<'a> {
    writer: &'a Writer,
    id: u64,
}

impl Writer {
    /// Wraps the (already configured and migrated) writer connection.
    pub fn new(conn: Connection) -> Self {
        Self {
            slot: Mutex::new(Some(conn)),
            free: Condvar::new(),
            waiting: Mutex::new(BTreeMap::new()),
            next_ticket: AtomicU64::new(0),
            health: WriteHealth::default(),
            disk: OnceLock::new(),
        }
    }

    /// After a write failed on a full disk, refuse writes (503, disk full)
    /// until the file system holding `dir` has `min_free` bytes free again
    /// (`health.min_free_space_mb`). Set once, at start-up.
    pub fn guard_disk(&self, dir: PathBuf, min_free: u64) {
        // A second call keeps the first guard: there is one database.
        let _ = self.disk.set(DiskGuard { dir, min_free });
    }

    /// Whether the last write failed on a full disk and the disk has not
    /// got its minimum free space back. One `statvfs`, only after such a failure.
    fn disk_still_full(&self) -> bool {
        let Some(guard) = self.disk.get() else {
            return false;
        };
        self.health.status().failing() == Some(Fault::DiskFull)
            && super::heartbeat::free_bytes(&guard.dir).is_ok_and(|free| free < guard.min_free)
    }

    /// Counts one write in the queue until the ticket is dropped (the
    /// issuance writer's jobs wait in their own channel).
    pub fn ticket(&self) -> Ticket<'_> {
        let id = self.next_ticket.fetch_add(1, Ordering::Relaxed);
        lock(&self.waiting).insert(id, Instant::now());
        Ticket { writer: self, id }
    }

    /// How long the oldest write still waiting for (or running on) the
    /// connection has been at it; zero when there is none.
    pub fn queue_age(&self) -> Duration {
        lock(&self.waiting)
            .values()
            .min()
            .map_or(Duration::ZERO, Instant::elapsed)
    }

    /// Hands out the connection, waiting at most until `deadline`, with
    /// SQLite's busy timeout set to the time left. Blocking.
    pub fn lock_until(&self, deadline: Instant) -> Result<WriterGuard<'_>, StoreError> {
        if self.disk_still_full() {
            return Err(StoreError::Condition(Fault::DiskFull));
        }
        let ticket = self.ticket();
        let slot = lock(&self.slot);
        let wait = deadline.saturating_duration_since(Instant::now());
        let (mut slot, _) = self
            .free
            .wait_timeout_while(slot, wait, |s| s.is_none())
            .unwrap_or_else(PoisonError::into_inner);
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() || slot.is_none() {
            if slot.is_some() {
                // Pass the wake-up on to a writer that still has time.
                self.free.notify_one();
            }
            return Err(StoreError::Condition(Fault::DeadlinePassed));
        }
        let conn = slot.take();
        drop(slot);
        let guard = WriterGuard {
            writer: self,
            conn,
            _ticket: ticket,
        };
        // Never less than a millisecond: zero would turn the busy wait off.
        guard.busy_timeout(left.max(Duration::from_millis(1)))?;
        Ok(guard)
    }

    /// [`Writer::lock_until`] `now + within`.
    pub fn lock_within(&self, within: Duration) -> Result<WriterGuard<'_>, StoreError> {
        self.lock_until(Instant::now() + within)
    }

    /// Runs `f` on the connection under `deadline` and records the outcome:
    /// a fault turns the write health red; a call that committed changes
    /// turns it green. Refusals and bugs leave it as it was. Blocking.
    pub fn run<T, E>(
        &self,
        deadline: Instant,
        f: impl FnOnce(&mut Connection) -> Result<T, E>,
    ) -> Result<T, E>
    where
        E: From<StoreError> + MaybeFault,
    {
        let mut guard = match self.lock_until(deadline) {
            Ok(guard) => guard,
            Err(e) => {
                let e = E::from(e);
                self.record(&e);
                return Err(e);
            }
        };
        let before = guard.total_changes();
        let result = f(&mut guard);
        match &result {
            Ok(_) if guard.total_changes() != before => self.health.succeeded(),
            Ok(_) => {}
            Err(e) => self.record(e),
        }
        result
    }

    /// [`Writer::run`] with the engine-neutral transaction the table files
    /// take: `BEGIN IMMEDIATE`, `f`, commit, under `deadline`. The same
    /// closure runs on PostgreSQL through [`super::pg_pool::PgPool::write`] (see
    /// [`super::Database`]). Blocking.
    pub fn write_tx<T, E>(
        &self,
        deadline: Instant,
        f: impl FnOnce(&Tx<'_>) -> Result<T, E>,
    ) -> Result<T, E>
    where
        E: From<StoreError> + MaybeFault,
    {
        self.run(deadline, |conn| write_sqlite(conn, f))
    }

    fn record(&self, e: &impl MaybeFault) {
        if let Some(fault) = e.fault() {
            self.health.failed(fault);
        }
    }

    /// How the last writes went.
    pub fn health(&self) -> &WriteHealth {
        &self.health
    }
}

impl std::ops::Deref for WriterGuard<'_> {
    type Target = Connection;
    fn deref(&self) -> &Connection {
        // Some from construction until drop.
        self.conn.as_ref().unwrap_or_else(|| unreachable!())
    }
}

impl std::ops::DerefMut for WriterGuard<'_> {
    fn deref_mut(&mut self) -> &mut Connection {
        self.conn.as_mut().unwrap_or_else(|| unreachable!())
    }
}

impl Drop for WriterGuard<'_> {
    fn drop(&mut self) {
        let mut slot = lock(&self.writer.slot);
        *slot = self.conn.take();
        drop(slot);
        self.writer.free.notify_one();
    }
}

impl Drop for Ticket<'_> {
    fn drop(&mut self) {
        lock(&self.writer.waiting).remove(&self.id);
    }
}

/// Counters and times of the last successful and failed writes.
#[derive(Debug, Default)]
pub struct WriteHealth {
    state: Mutex<HealthState>,
}

#[derive(Debug, Default, Clone, Copy)]
struct HealthState {
    last_success: Option<Instant>,
    last_fault: Option<(Instant, Fault)>,
    successes: u64,
    faults: u64,
}

/// A snapshot of [`WriteHealth`].
#[derive(Debug, Clone, Copy)]
pub struct WriteStatus {
    /// How long ago a write last committed.
    pub since_success: Option<Duration>,
    /// How long ago a write last failed on a condition, and which.
    pub last_fault: Option<(Duration, Fault)>,
    /// Writes that committed since start.
    pub successes: u64,
    /// Writes that failed on a condition since start.
    pub faults: u64,
}

impl WriteStatus {
    /// Whether the last write outcome was a fault (red until a write succeeds).
    pub fn failing(&self) -> Option<Fault> {
        let (fault_age, fault) = self.last_fault?;
        match self.since_success {
            Some(ok_age) if ok_age < fault_age => None,
            _ => Some(fault),
        }
    }
}

impl WriteHealth {
    /// Records a committed write.
    pub fn succeeded(&self) {
        let mut state = lock(&self.state);
        let recovered = state
            .last_fault
            .is_some_and(|(at, _)| state.last_success.is_none_or(|ok| ok < at));
        state.last_success = Some(Instant::now());
        state.successes += 1;
        drop(state);
        if recovered {
            tracing::info!("writes succeed again");
        }
    }

    /// Records a write that failed on a condition of the world.
    pub fn failed(&self, fault: Fault) {
        let mut state = lock(&self.state);
        state.last_fault = Some((Instant::now(), fault));
        state.faults += 1;
        drop(state);
        tracing::warn!(cause = fault.name(), "a write failed: {fault}");
    }

    /// The current snapshot.
    pub fn status(&self) -> WriteStatus {
        let state = *lock(&self.state);
        WriteStatus {
            since_success: state.last_success.map(|t| t.elapsed()),
            last_fault: state.last_fault.map(|(t, f)| (t.elapsed(), f)),
            successes: state.successes,
            faults: state.faults,
        }
    }
}

/// Locks a mutex whose data a panic cannot leave half-updated.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{Create, open};

    fn writer() -> (tempfile::TempDir, Writer) {
        let dir = tempfile::tempdir().unwrap();
        let conn = open(&dir.path().join("t.db"), Create::IfMissing).unwrap();
        (dir, Writer::new(conn))
    }

    // issue 13: a queued writer gives up at its own deadline, not after the
    // holder's whole wait.
    #[test]
    fn a_queued_writer_gives_up_at_its_deadline() {
        let (_dir, writer) = writer();
        let held = writer.lock_within(Duration::from_secs(5)).unwrap();
        let start = Instant::now();
        let refused = writer.lock_within(Duration::from_millis(200));
        assert!(matches!(
            refused,
            Err(StoreError::Condition(Fault::DeadlinePassed))
        ));
        assert!(start.elapsed() < Duration::from_secs(2));
        assert!(
            writer.queue_age() > Duration::ZERO,
            "the holder still counts"
        );
        drop(held);
        assert_eq!(writer.queue_age(), Duration::ZERO);
        writer.lock_within(Duration::from_millis(200)).unwrap();
    }

    // issue 13: after a disk-full failure, no write is tried while the disk
    // stays below its minimum free space, so none commits at random on WAL
    // slack; once space is back, writes are tried again.
    #[test]
    fn after_a_full_disk_writes_wait_for_free_space() {
        let (dir, writer) = writer();
        let deadline = || Instant::now() + Duration::from_secs(5);
        writer.guard_disk(dir.path().to_path_buf(), u64::MAX);
        writer.lock_until(deadline()).unwrap();
        let fail: Result<(), StoreError> =
            writer.run(deadline(), |_| Err(StoreError::Condition(Fault::DiskFull)));
        assert!(fail.is_err());
        assert!(matches!(
            writer.lock_until(deadline()),
            Err(StoreError::Condition(Fault::DiskFull))
        ));
        let (dir, writer) = {
            let w = Writer::new(
                crate::store::open(&dir.path().join("u.db"), crate::store::Create::IfMissing)
                    .unwrap(),
            );
            w.guard_disk(dir.path().to_path_buf(), 0);
            (dir, w)
        };
        let fail: Result<(), StoreError> =
            writer.run(deadline(), |_| Err(StoreError::Condition(Fault::DiskFull)));
        assert!(fail.is_err());
        writer.lock_until(deadline()).unwrap();
        drop(dir);
    }

    #[test]
    fn health_is_red_after_a_fault_and_green_after_a_commit() {
        let (_dir, writer) = writer();
        let deadline = || Instant::now() + Duration::from_secs(5);
        let fail: Result<(), StoreError> =
            writer.run(deadline(), |_| Err(StoreError::Condition(Fault::DiskFull)));
        assert!(fail.is_err());
        assert_eq!(writer.health().status().failing(), Some(Fault::DiskFull));
        // A read commits nothing and does not turn it green.
        writer
            .run(deadline(), |c| {
                c.query_row("SELECT 1", [], |r| r.get::<_, i64>(0))
                    .map_err(StoreError::from)
            })
            .unwrap();
        assert_eq!(writer.health().status().failing(), Some(Fault::DiskFull));
        writer
            .run(deadline(), |c| {
                crate::store::write(c, |tx| {
                    crate::store::heartbeat::beat(tx, chrono::Utc::now())
                })
            })
            .unwrap();
        assert_eq!(writer.health().status().failing(), None);
    }
}
