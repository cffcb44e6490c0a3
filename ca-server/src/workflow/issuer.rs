//! The issuance writer: one thread that signs certificates for approved
//! requests in batches (group commit).
//!
//! Handlers queue an [`IssueJob`] and await its answer. The thread takes every
//! job waiting in the queue (at most [`MAX_BATCH`]), locks the writer
//! connection, reads the clock once and runs [`issue_batch`]: one
//! `BEGIN IMMEDIATE` transaction in which every job re-reads its request,
//! re-checks it and signs, then one commit (`synchronous=FULL`). Only after
//! that commit does any job get its answer, so no certificate leaves the CA
//! before its rows are durable. One fsync is shared by the whole batch, which
//! is what lifts issuance above one certificate per fsync.

use std::sync::{Arc, Mutex};

use rusqlite::Connection;
use tokio::sync::{mpsc, oneshot};

use super::Issued;
use super::requests::{IssueJob, WorkflowError, issue_batch};
use crate::config::Config;
use crate::identity::Identities;
use crate::signer::Signer;
use crate::store::StoreError;
use crate::store::checkpoint::{self, Checkpointer};

/// The most jobs one transaction takes. Bounds the time the writer
/// connection is held and the latency of the last job of a batch.
pub const MAX_BATCH: usize = 256;

/// How many jobs may wait in the queue before callers wait to enqueue.
const QUEUE: usize = 4096;

/// A job and where its answer goes.
type Pending = (IssueJob, oneshot::Sender<Result<Issued, WorkflowError>>);

/// The handle handlers use to issue; cheap to clone. The writer thread ends
/// when the last handle is dropped.
#[derive(Debug, Clone)]
pub struct Issuer {
    jobs: mpsc::Sender<Pending>,
}

impl Issuer {
    /// Starts the writer thread over the shared writer connection.
    pub fn spawn(
        db: Arc<Mutex<Connection>>,
        signer: Arc<Signer>,
        config: Arc<Config>,
        identities: Arc<Identities>,
    ) -> std::io::Result<Self> {
        let (jobs, queue) = mpsc::channel(QUEUE);
        // Commits of a batch must not also pay for copying the WAL back.
        match db.lock() {
            Ok(conn) => checkpoint::defer_checkpoints(&conn).map_err(std::io::Error::other)?,
            Err(_) => return Err(std::io::Error::other("database mutex poisoned")),
        }
        let checkpointer = Checkpointer::spawn(config.database_path.clone())?;
        std::thread::Builder::new()
            .name("tpa-issuer".to_owned())
            .spawn(move || {
                run(queue, &db, (&signer, &config, &identities));
                // Checkpoints stop with the writer.
                drop(checkpointer);
            })?;
        Ok(Self { jobs })
    }

    /// Queues `job` and waits for its answer, which comes only after the
    /// batch's transaction committed (or failed).
    pub async fn issue(&self, job: IssueJob) -> Result<Issued, WorkflowError> {
        let (reply, answer) = oneshot::channel();
        self.jobs.send((job, reply)).await.map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }
}

fn stopped() -> WorkflowError {
    WorkflowError::Storage(StoreError::Aborted(
        "the issuance writer has stopped".to_owned(),
    ))
}

/// The writer thread: batch, issue, commit, answer; until every handle is gone.
fn run(
    mut queue: mpsc::Receiver<Pending>,
    db: &Mutex<Connection>,
    (signer, config, identities): (&Signer, &Config, &Identities),
) {
    let mut jobs = Vec::with_capacity(MAX_BATCH);
    let mut replies = Vec::with_capacity(MAX_BATCH);
    while let Some((job, reply)) = queue.blocking_recv() {
        jobs.push(job);
        replies.push(reply);
        while jobs.len() < MAX_BATCH {
            let Ok((job, reply)) = queue.try_recv() else {
                break;
            };
            jobs.push(job);
            replies.push(reply);
        }
        let results = match db.lock() {
            Ok(mut conn) => {
                // The rules are checked at signing time, inside the transaction.
                let now = chrono::Utc::now();
                issue_batch(&mut conn, (signer, &config.policy, identities), &jobs, now)
            }
            Err(_) => {
                tracing::error!("database mutex poisoned; refusing to issue");
                jobs.iter()
                    .map(|_| {
                        Err(WorkflowError::Storage(StoreError::Aborted(
                            "database mutex poisoned".to_owned(),
                        )))
                    })
                    .collect()
            }
        };
        // Every job gets exactly one answer; one whose caller left is dropped.
        for (reply, result) in replies.drain(..).zip(results) {
            let _ = reply.send(result);
        }
        jobs.clear();
    }
}
