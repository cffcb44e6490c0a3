//! The issuance writer: one thread that signs certificates for approved
//! requests in batches (group commit).
//!
//! Handlers queue an [`IssueJob`] and await its answer. The thread takes every
//! job waiting in the queue (at most [`MAX_BATCH`]), locks the writer
//! connection (SQLite) or takes a pooled one (PostgreSQL), reads the clock
//! once and runs [`issue_batch`]: one transaction (`BEGIN IMMEDIATE` on
//! SQLite) in which every job re-reads its request, re-checks it and signs,
//! then one commit (`synchronous=FULL`). Only after that commit does any job
//! get its answer, so no certificate leaves the CA before its rows are
//! durable; a commit whose outcome is unknown (the connection broke after
//! COMMIT was sent) answers every job with an error, so such a certificate
//! may be issued but is never delivered; the thread then records each one
//! that did commit with a `cert.undelivered` audit event (see
//! [`undelivered`](super::undelivered)), retrying after each later batch
//! until the database takes it. One fsync is shared by the whole batch, which
//! is what lifts issuance above one certificate per fsync.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot};

use super::Issued;
use super::deadline;
use super::issuance::{IssueJob, issue_batch_reporting};
use super::requests::WorkflowError;
use super::undelivered::{self, Undelivered};
use crate::auth::identity::Identities;
use crate::config::Config;
use crate::signer::Signer;
use crate::store::wal_checkpoint::{self, Checkpointer};
use crate::store::{Database, Fault, MaybeFault as _, StoreError, WriteHealth};

/// The most jobs one transaction takes. Bounds the time the writer
/// connection is held and the latency of the last job of a batch.
pub const MAX_BATCH: usize = 256;

/// How many jobs may wait in the queue before callers wait to enqueue.
const QUEUE: usize = 4096;

/// How long recording issued-not-delivered certificates may hold up the
/// next batch; what is not recorded by then is tried again after it.
const MARK_WITHIN: Duration = Duration::from_secs(2);

/// A job, its deadline and where its answer goes.
type Pending = (
    IssueJob,
    Instant,
    oneshot::Sender<Result<Issued, WorkflowError>>,
);

/// The handle handlers use to issue; cheap to clone. The writer thread ends
/// when the last handle is dropped.
#[derive(Debug, Clone)]
pub struct Issuer {
    jobs: mpsc::Sender<Pending>,
    database: Arc<Database>,
    write_deadline: Duration,
}

impl Issuer {
    /// Starts the writer thread over the configured store.
    pub fn spawn(
        database: Arc<Database>,
        signer: Arc<Signer>,
        config: Arc<Config>,
        identities: Arc<Identities>,
    ) -> std::io::Result<Self> {
        let (jobs, queue) = mpsc::channel(QUEUE);
        // Commits of a batch must not also pay for copying the WAL back
        // (SQLite; PostgreSQL checkpoints on its own).
        let checkpointer = match database.sqlite_writer() {
            Some(writer) => {
                let conn = writer
                    .lock_within(Duration::from_secs(30))
                    .map_err(std::io::Error::other)?;
                wal_checkpoint::defer_checkpoints(&conn).map_err(std::io::Error::other)?;
                Some(Checkpointer::spawn(config.database_path.clone())?)
            }
            None => None,
        };
        let thread_database = database.clone();
        let write_deadline = config.write_deadline;
        std::thread::Builder::new()
            .name("tpa-issuer".to_owned())
            .spawn(move || {
                run(queue, &thread_database, (&signer, &config, &identities));
                // Checkpoints stop with the writer.
                drop(checkpointer);
            })?;
        Ok(Self {
            jobs,
            database,
            write_deadline,
        })
    }

    /// Queues `job` and waits for its answer, which comes only after the
    /// batch's transaction committed (or failed). The job carries the
    /// current request's deadline: past it, it is answered
    /// [`Fault::DeadlinePassed`] instead of waiting on.
    pub async fn issue(&self, job: IssueJob) -> Result<Issued, WorkflowError> {
        let deadline = deadline::current(self.write_deadline);
        // Counted in the writer queue's age until answered.
        let _ticket = self.database.sqlite_writer().map(|w| w.ticket());
        let (reply, answer) = oneshot::channel();
        let until = tokio::time::Instant::from_std(deadline);
        match tokio::time::timeout_at(until, self.jobs.send((job, deadline, reply))).await {
            Ok(Ok(())) => {}
            Ok(Err(_)) => return Err(stopped()),
            Err(_) => {
                self.database.health().failed(Fault::DeadlinePassed);
                return Err(WorkflowError::Storage(StoreError::Condition(
                    Fault::DeadlinePassed,
                )));
            }
        }
        answer.await.map_err(|_| stopped())?
    }
}

fn stopped() -> WorkflowError {
    WorkflowError::Storage(StoreError::Condition(Fault::WriterStopped))
}

/// The writer thread: batch, issue, commit, answer; until every handle is gone.
fn run(
    mut queue: mpsc::Receiver<Pending>,
    database: &Database,
    (signer, config, identities): (&Signer, &Config, &Identities),
) {
    let mut batch: Vec<Pending> = Vec::with_capacity(MAX_BATCH);
    // Certificates of batches whose COMMIT outcome is unknown, not yet
    // recorded as issued-not-delivered.
    let mut unmarked: Vec<Undelivered> = Vec::new();
    while let Some(first) = queue.blocking_recv() {
        batch.push(first);
        while batch.len() < MAX_BATCH {
            let Ok(next) = queue.try_recv() else {
                break;
            };
            batch.push(next);
        }
        // Work whose deadline passed while queued is answered, not done.
        let now = Instant::now();
        let (live, expired): (Vec<_>, Vec<_>) = batch.drain(..).partition(|(_, d, _)| *d > now);
        if !expired.is_empty() {
            database.health().failed(Fault::DeadlinePassed);
        }
        for (_, _, reply) in expired {
            let _ = reply.send(Err(WorkflowError::Storage(StoreError::Condition(
                Fault::DeadlinePassed,
            ))));
        }
        let Some(earliest) = live.iter().map(|(_, d, _)| *d).min() else {
            continue;
        };
        let (jobs, replies): (Vec<IssueJob>, Vec<_>) =
            live.into_iter().map(|(job, _, reply)| (job, reply)).unzip();
        // The batch waits for the lock only until its earliest deadline, so
        // no job of it is answered late.
        let batch = database.hold(earliest, |conn| {
            // The rules are checked at signing time, inside the transaction.
            let now = chrono::Utc::now();
            issue_batch_reporting(conn, (signer, &config.policy, identities), &jobs, now)
        });
        let results = match batch {
            Ok((results, unknown)) => {
                unmarked.extend(unknown);
                results
            }
            Err(e) => {
                let fault = e.fault().unwrap_or(Fault::DeadlinePassed);
                jobs.iter()
                    .map(|_| Err(WorkflowError::Storage(StoreError::Condition(fault))))
                    .collect()
            }
        };
        record(database.health(), &results);
        // Every job gets exactly one answer; one whose caller left is dropped.
        for (reply, result) in replies.into_iter().zip(results) {
            let _ = reply.send(result);
        }
        if !unmarked.is_empty() {
            mark_undelivered(database, &mut unmarked);
        }
    }
}

/// Records the certificates of unknown commits that did commit as issued,
/// not delivered; keeps the list when the database cannot be written yet.
fn mark_undelivered(database: &Database, unmarked: &mut Vec<Undelivered>) {
    let now = chrono::Utc::now();
    match database.write(Instant::now() + MARK_WITHIN, |tx| {
        undelivered::record(tx, unmarked, now)
    }) {
        Ok(marked) => {
            tracing::warn!(
                marked,
                "recorded certificates issued but not delivered (cert.undelivered)"
            );
            unmarked.clear();
        }
        Err(e) => tracing::error!(
            error = format!("{e:#}"),
            pending = unmarked.len(),
            "cannot record certificates issued but not delivered yet; trying again after the next batch"
        ),
    }
}

/// A batch that issued anything turns write health green; one that failed
/// on a condition turns it red.
fn record(health: &WriteHealth, results: &[Result<Issued, WorkflowError>]) {
    if results.iter().any(Result::is_ok) {
        health.succeeded();
    } else if let Some(fault) = results
        .iter()
        .find_map(|r| r.as_ref().err().and_then(|e| e.fault()))
    {
        health.failed(fault);
    }
}
