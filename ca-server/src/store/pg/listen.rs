//! Wake-ups across replicas: a change that waiting clients care about (a
//! request decided, cancelled, revoked) sends `NOTIFY` inside its own
//! transaction, so PostgreSQL delivers it to every replica's listener at
//! commit and never for a rollback. Each replica runs one [`Listener`]
//! thread on a connection of its own.
//!
//! Notifications are not stored: those sent while a listener is
//! disconnected are lost. So after every (re)connect the listener reports
//! [`Wake::Resync`], and its user re-reads what its waiters wait for; a
//! waiter therefore never sleeps through a decision, at worst it re-reads
//! once too often.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use postgres::fallible_iterator::FallibleIterator;

use super::{PgOptions, StoreError, connect};
use crate::store::Fault;
use crate::store::sql::{Engine, Sql};

/// The one channel TPA notifies on; the payload names what changed
/// (`request:<id>`).
pub const CHANNEL: &str = "tpa_changes";

/// What the listener reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Wake {
    /// A committed change, by its payload.
    Notified(String),
    /// The listener (re)connected: anything may have changed meanwhile;
    /// re-read everything waited for.
    Resync,
}

/// Announces `payload` to every replica when the caller's transaction
/// commits. On SQLite (one process) the in-process wake-up already does it,
/// so this is a no-op there.
pub fn notify(tx: &impl Sql, payload: &str) -> Result<(), StoreError> {
    if tx.engine() == Engine::Postgres {
        tx.query_one(
            "SELECT pg_notify(?1, ?2)::text",
            &[&CHANNEL, &payload],
            |_| Ok(()),
        )?;
    }
    Ok(())
}

/// The listening thread; stops (within about half a second) when dropped.
#[derive(Debug)]
pub struct Listener {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

/// How long one wait for a notification lasts before the stop flag is
/// looked at again.
const POLL: Duration = Duration::from_millis(250);
/// The longest pause between reconnect attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(2);

impl Listener {
    /// Starts listening; `on_wake` runs on the listener's thread, so it must
    /// be quick (send on a channel, wake a `Notify`).
    pub fn spawn(
        options: PgOptions,
        on_wake: impl Fn(Wake) + Send + 'static,
    ) -> std::io::Result<Listener> {
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = Arc::clone(&stop);
        let thread = std::thread::Builder::new()
            .name("tpa-pg-listen".into())
            .spawn(move || run(&options, &stopping, &on_wake))?;
        Ok(Listener {
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn run(options: &PgOptions, stop: &AtomicBool, on_wake: &dyn Fn(Wake)) {
    let mut backoff = Duration::from_millis(50);
    while !stop.load(Ordering::Relaxed) {
        match listen_once(options, stop, on_wake) {
            Ok(()) => return,
            Err(e) => {
                tracing::warn!("listening for changes of other replicas failed, reconnecting: {e}");
            }
        }
        let mut slept = Duration::ZERO;
        while slept < backoff && !stop.load(Ordering::Relaxed) {
            std::thread::sleep(POLL.min(backoff));
            slept += POLL.min(backoff);
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// One connection's life: LISTEN, report a resync, then relay
/// notifications until stopped (`Ok`) or the connection fails (`Err`).
fn listen_once(
    options: &PgOptions,
    stop: &AtomicBool,
    on_wake: &dyn Fn(Wake),
) -> Result<(), StoreError> {
    let conn = connect(options)?;
    conn.execute_batch(&format!("LISTEN {CHANNEL}"))?;
    on_wake(Wake::Resync);
    let mut client = conn.client()?;
    let mut polls: u32 = 0;
    while !stop.load(Ordering::Relaxed) {
        let mut notifications = client.notifications();
        let mut batch = notifications.timeout_iter(POLL);
        while let Some(n) = batch.next()? {
            on_wake(Wake::Notified(n.payload().to_owned()));
        }
        drop(batch);
        drop(notifications);
        polls = polls.wrapping_add(1);
        // A quiet connection is checked every few seconds, so that a server
        // that vanished without closing it is noticed and left.
        if client.is_closed()
            || (polls.is_multiple_of(20) && client.simple_query("SELECT 1").is_err())
        {
            return Err(StoreError::Condition(Fault::Unreachable));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc;
    use std::time::Instant;

    use super::*;
    use crate::store::Conn;
    use crate::store::postgres_server::PgServer;

    fn options(server: &PgServer) -> PgOptions {
        let db = server.database();
        PgOptions {
            url: db.url,
            password: Some(db.password),
            ca_file: None,
        }
    }

    fn next(rx: &mpsc::Receiver<Wake>, within: Duration) -> Option<Wake> {
        rx.recv_timeout(within).ok()
    }

    // issue 15: a change committed through one connection (another replica)
    // wakes the listener at once; a rolled-back one never does.
    #[test]
    fn a_commit_wakes_other_replicas_and_a_rollback_does_not() {
        let options = options(PgServer::shared());
        let (tx, rx) = mpsc::channel();
        let _listener = Listener::spawn(options.clone(), move |w| {
            let _ = tx.send(w);
        })
        .unwrap();
        assert_eq!(next(&rx, Duration::from_secs(30)), Some(Wake::Resync));
        let mut writer = Conn::Postgres(Box::new(connect(&options).unwrap()));
        let rolled_back: Result<(), StoreError> = writer.write(|tx| {
            notify(tx, "request:rolled-back")?;
            Err(StoreError::Aborted("no".into()))
        });
        assert!(rolled_back.is_err());
        let start = Instant::now();
        writer.write(|tx| notify(tx, "request:r1")).unwrap();
        let woke = next(&rx, Duration::from_secs(10));
        let took = start.elapsed();
        assert_eq!(woke, Some(Wake::Notified("request:r1".into())));
        // Generous under load; the benchmark measures the real figure.
        assert!(took < Duration::from_secs(2), "took {took:?}");
        assert_eq!(next(&rx, Duration::from_millis(300)), None);
    }

    // issue 15: after the database restarts, the listener reconnects by
    // itself and asks for a re-read (what was notified meanwhile is lost),
    // then relays notifications again.
    #[test]
    fn the_listener_reconnects_and_asks_for_a_resync() {
        let server = PgServer::start();
        let options = options(&server);
        let (tx, rx) = mpsc::channel();
        let _listener = Listener::spawn(options.clone(), move |w| {
            let _ = tx.send(w);
        })
        .unwrap();
        assert_eq!(next(&rx, Duration::from_secs(30)), Some(Wake::Resync));
        server.restart();
        assert_eq!(next(&rx, Duration::from_secs(30)), Some(Wake::Resync));
        let mut writer = Conn::Postgres(Box::new(connect(&options).unwrap()));
        writer.write(|tx| notify(tx, "request:r2")).unwrap();
        assert_eq!(
            next(&rx, Duration::from_secs(10)),
            Some(Wake::Notified("request:r2".into()))
        );
    }

    #[test]
    fn notify_is_a_no_op_on_sqlite() {
        let dir = tempfile::tempdir().unwrap();
        let mut conn = Conn::Sqlite(
            crate::store::open(&dir.path().join("t.db"), crate::store::Create::IfMissing).unwrap(),
        );
        conn.write(|tx| notify(tx, "request:x")).unwrap();
    }
}
