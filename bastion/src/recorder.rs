//! Session records (and refusal reports, [`crate::refusals`]): spooled to a
//! local file first, then delivered to the CA (`POST /api/v1/sessions`,
//! `POST /api/v1/bastion/events`) in order, without loss or duplicates.
//!
//! The [`Recorder`] sink takes every [`Event::SessionRecord`] without blocking
//! and hands it to the delivery task, which appends it to the spool (JSON
//! lines, `fsync`ed) before anything else. Delivery then sends the spool's
//! records oldest first, in batches; the spool is truncated or rewritten only
//! after the CA confirmed a batch. A crash between the CA's commit and that
//! rewrite means the batch is sent again: the CA recognises each record by its
//! session id and stores it once. While the CA is unreachable records stay in
//! the spool and delivery is retried with a growing delay (1 s to 30 s).

use std::io::Write as _;
use std::os::unix::fs::DirBuilderExt as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::{mpsc, oneshot};
use tpa_core::api::{BastionEvent, SessionRecord};

use crate::ca_client::{CaCallError, CaClient};
use crate::events::{Event, EventSink};

/// Something spooled and delivered to the CA in batches: session records and
/// refusal reports. The CA stores each item once, by its id.
pub trait Spooled:
    Serialize + DeserializeOwned + Clone + Send + Sync + std::fmt::Debug + 'static
{
    /// What these are, for logs.
    const WHAT: &'static str;

    /// Delivers `batch`; answers (stored, duplicates).
    fn deliver(
        client: &CaClient,
        batch: &[Self],
    ) -> impl std::future::Future<Output = Result<(u64, u64), CaCallError>> + Send;
}

impl Spooled for SessionRecord {
    const WHAT: &'static str = "session records";

    async fn deliver(client: &CaClient, batch: &[Self]) -> Result<(u64, u64), CaCallError> {
        client
            .deliver(batch)
            .await
            .map(|r| (r.stored, r.duplicates))
    }
}

impl Spooled for BastionEvent {
    const WHAT: &'static str = "refusal reports";

    async fn deliver(client: &CaClient, batch: &[Self]) -> Result<(u64, u64), CaCallError> {
        client
            .deliver_events(batch)
            .await
            .map(|r| (r.stored, r.duplicates))
    }
}

/// Records sent per delivery.
const BATCH: usize = 50;
/// First and largest delay between failed deliveries.
const RETRY_MIN: Duration = Duration::from_secs(1);
const RETRY_MAX: Duration = Duration::from_secs(30);

/// The sink that feeds the delivery task, and keeps a marker per open forward.
#[derive(Debug, Clone)]
pub struct Recorder {
    records: mpsc::UnboundedSender<SessionRecord>,
    markers: mpsc::UnboundedSender<Marker>,
}

/// What the marker task does, in the order the forwards did it.
#[derive(Debug)]
enum Marker {
    /// A forward opened: keep the record it leaves if the bastion dies.
    Open(Box<SessionRecord>),
    /// It ended (its real record is on its way to the spool).
    Closed(String),
}

impl EventSink for Recorder {
    fn record(&self, event: &Event) {
        match event {
            Event::SessionStarted(record) => {
                let _ = self.markers.send(Marker::Open(record.clone()));
            }
            Event::SessionRecord(record) => {
                if self.records.send(SessionRecord::clone(record)).is_err() {
                    tracing::error!(
                        session = record.session_id,
                        "session recorder stopped; record only in the log"
                    );
                }
                let _ = self.markers.send(Marker::Closed(record.session_id.clone()));
            }
            _ => {}
        }
    }
}

/// The directory of open-forward markers next to `spool`: `<spool>.open`.
pub fn open_dir(spool: &Path) -> PathBuf {
    let mut name = spool.file_name().unwrap_or_default().to_os_string();
    name.push(".open");
    spool.with_file_name(name)
}

/// The marker file of `session_id`, when it is a well-formed session id.
fn marker_path(dir: &Path, session_id: &str) -> Option<PathBuf> {
    let ok = session_id
        .strip_prefix("ses_")
        .is_some_and(|h| h.len() == 32 && h.bytes().all(|b| b.is_ascii_hexdigit()));
    ok.then(|| dir.join(format!("{session_id}.json")))
}

/// Writes or removes markers; a marker left behind means a forward the
/// bastion did not see end.
async fn keep_markers(dir: PathBuf, mut rx: mpsc::UnboundedReceiver<Marker>) {
    while let Some(marker) = rx.recv().await {
        let dir = dir.clone();
        let done = blocking(dir.clone(), move |dir| match marker {
            Marker::Open(record) => {
                let Some(path) = marker_path(&dir, &record.session_id) else {
                    return Ok(());
                };
                std::fs::DirBuilder::new()
                    .recursive(true)
                    .mode(0o700)
                    .create(&dir)?;
                let text = serde_json::to_vec(&record).map_err(std::io::Error::other)?;
                std::fs::write(path, text)
            }
            Marker::Closed(id) => match marker_path(&dir, &id).map(std::fs::remove_file) {
                Some(Err(e)) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
                _ => Ok(()),
            },
        })
        .await;
        if let Err(e) = done {
            tracing::warn!(dir = %dir.display(), error = %e, "cannot keep the open-session marker");
        }
    }
}

/// Moves the markers of forwards a previous run did not see end into the
/// spool (as `end: "error"` records), then removes them. Returns how many.
pub fn recover_open_sessions(spool: &Path) -> std::io::Result<usize> {
    let dir = open_dir(spool);
    let entries = match std::fs::read_dir(&dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(e),
    };
    let mut found = Vec::new();
    for entry in entries {
        let path = entry?.path();
        let text = std::fs::read(&path)?;
        match serde_json::from_slice::<SessionRecord>(&text) {
            Ok(record) => found.push((path, record)),
            Err(e) => {
                tracing::error!(marker = %path.display(), error = %e, "skipping an unreadable open-session marker");
            }
        }
    }
    found.sort_by(|a, b| a.1.started_at.cmp(&b.1.started_at));
    let lines: Vec<String> = found
        .iter()
        .filter_map(|(_, r)| serde_json::to_string(r).ok())
        .collect();
    if !lines.is_empty() {
        append_lines(spool, &lines)?;
    }
    for (path, _) in &found {
        std::fs::remove_file(path)?;
    }
    Ok(found.len())
}

/// Handle on the running delivery task.
#[derive(Debug)]
pub struct Delivery {
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl Delivery {
    /// Spools what is still queued, tries one last delivery (bounded), stops.
    pub async fn finish(mut self, within: Duration) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if tokio::time::timeout(within, &mut self.task).await.is_err() {
            self.task.abort();
        }
    }
}

/// Starts the session-record delivery task over `spool`; without a `client`
/// records are only spooled (and logged).
///
/// First the forwards a previous run did not see end (it crashed) become
/// records in the spool (`end: "error"`).
pub fn start(spool: PathBuf, client: Option<CaClient>) -> (Recorder, Delivery) {
    match recover_open_sessions(&spool) {
        Ok(0) => {}
        Ok(n) => tracing::warn!(
            sessions = n,
            "forwards open when the bastion last stopped are recorded as ended by an error"
        ),
        Err(e) => tracing::error!(
            dir = %open_dir(&spool).display(),
            error = %e,
            "cannot recover the records of forwards open when the bastion last stopped"
        ),
    }
    let (markers, marker_rx) = mpsc::unbounded_channel();
    tokio::spawn(keep_markers(open_dir(&spool), marker_rx));
    let (records, delivery) = start_spool(spool, client);
    (Recorder { records, markers }, delivery)
}

/// Starts a delivery task for `T` over `spool`; send items into the returned sender.
pub fn start_spool<T: Spooled>(
    spool: PathBuf,
    client: Option<CaClient>,
) -> (mpsc::UnboundedSender<T>, Delivery) {
    let (tx, rx) = mpsc::unbounded_channel();
    let (stop, stopped) = oneshot::channel();
    let task = tokio::spawn(deliver_loop(spool, client, rx, stopped));
    (
        tx,
        Delivery {
            stop: Some(stop),
            task,
        },
    )
}

async fn deliver_loop<T: Spooled>(
    spool: PathBuf,
    client: Option<CaClient>,
    mut rx: mpsc::UnboundedReceiver<T>,
    mut stopped: oneshot::Receiver<()>,
) {
    let mut pending = match blocking(spool.clone(), |p| read_spool::<T>(&p).map(|r| r.len())).await
    {
        Ok(n) => n > 0,
        Err(e) => {
            tracing::error!(spool = %spool.display(), error = %e, "cannot read the session spool");
            true
        }
    };
    let mut delay = RETRY_MIN;
    let mut retry_at = tokio::time::Instant::now();
    loop {
        let mut stopping = false;
        tokio::select! {
            received = rx.recv() => match received {
                Some(first) => {
                    let mut batch = vec![first];
                    while let Ok(more) = rx.try_recv() {
                        batch.push(more);
                    }
                    spool_records(&spool, batch).await;
                    pending = true;
                    // New records are worth an attempt now, unless the CA is failing.
                    if delay == RETRY_MIN {
                        retry_at = tokio::time::Instant::now();
                    }
                }
                None => stopping = true,
            },
            () = tokio::time::sleep_until(retry_at), if pending && client.is_some() => {}
            _ = &mut stopped => stopping = true,
        }
        if stopping {
            let mut rest = Vec::new();
            while let Ok(more) = rx.try_recv() {
                rest.push(more);
            }
            if !rest.is_empty() {
                spool_records(&spool, rest).await;
                pending = true;
            }
        }
        if pending
            && let Some(client) = &client
            && (stopping || tokio::time::Instant::now() >= retry_at)
        {
            match deliver_spool::<T>(&spool, client).await {
                Ok(()) => {
                    pending = false;
                    delay = RETRY_MIN;
                }
                Err(e) => {
                    tracing::warn!(error = %e, retry_in = ?delay, what = T::WHAT, "not delivered; they stay in the spool");
                    retry_at = tokio::time::Instant::now() + delay;
                    delay = (delay * 2).min(RETRY_MAX);
                }
            }
        }
        if stopping {
            return;
        }
    }
}

/// Appends `records` to the spool; a failure is logged with the records
/// themselves, so that they survive at least in the log.
async fn spool_records<T: Spooled>(spool: &Path, records: Vec<T>) {
    let lines: Vec<String> = records
        .iter()
        .filter_map(|r| serde_json::to_string(r).ok())
        .collect();
    let result = blocking(spool.to_owned(), move |p| append_lines(&p, &lines)).await;
    if let Err(e) = result {
        for r in &records {
            tracing::error!(spool = %spool.display(), error = %e, record = ?r, what = T::WHAT, "cannot spool");
        }
    }
}

/// Sends the spool's records oldest first; removes each confirmed batch.
async fn deliver_spool<T: Spooled>(spool: &Path, client: &CaClient) -> Result<(), String> {
    loop {
        let records = blocking(spool.to_owned(), |p| read_spool::<T>(&p))
            .await
            .map_err(|e| format!("cannot read the spool: {e}"))?;
        if records.is_empty() {
            return Ok(());
        }
        let take = records.len().min(BATCH);
        let (batch, rest) = records.split_at(take);
        match T::deliver(client, batch).await {
            Ok((stored, duplicates)) => {
                tracing::info!(stored, duplicates, what = T::WHAT, "delivered to the CA");
            }
            Err(e) if e.is_transient() => return Err(e.to_string()),
            Err(e) => {
                // The CA will never take these: keep them aside for an operator
                // rather than blocking every later record behind them.
                tracing::error!(error = %e, what = T::WHAT, "the CA refused them; moving them to the .rejected file");
                let lines: Vec<String> = batch
                    .iter()
                    .filter_map(|r| serde_json::to_string(r).ok())
                    .collect();
                let rejected = rejected_path(spool);
                blocking(rejected, move |p| append_lines(&p, &lines))
                    .await
                    .map_err(|e| format!("cannot write the rejected file: {e}"))?;
            }
        }
        let rest = rest.to_vec();
        blocking(spool.to_owned(), move |p| rewrite_spool(&p, &rest))
            .await
            .map_err(|e| format!("cannot rewrite the spool: {e}"))?;
    }
}

fn rejected_path(spool: &Path) -> PathBuf {
    let mut name = spool.file_name().unwrap_or_default().to_os_string();
    name.push(".rejected");
    spool.with_file_name(name)
}

async fn blocking<T: Send + 'static>(
    path: PathBuf,
    f: impl FnOnce(PathBuf) -> std::io::Result<T> + Send + 'static,
) -> std::io::Result<T> {
    tokio::task::spawn_blocking(move || f(path))
        .await
        .map_err(std::io::Error::other)?
}

/// Appends one JSON line per record and `fsync`s.
pub fn append_lines(path: &Path, lines: &[String]) -> std::io::Result<()> {
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)?;
    let mut text = String::new();
    for line in lines {
        text.push_str(line);
        text.push('\n');
    }
    file.write_all(text.as_bytes())?;
    file.sync_all()
}

/// The spooled records in order. A line that does not parse (a write torn by
/// a crash) is skipped with an error in the log.
pub fn read_spool<T: Spooled>(path: &Path) -> std::io::Result<Vec<T>> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    Ok(text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .filter_map(|line| match serde_json::from_str(line) {
            Ok(record) => Some(record),
            Err(e) => {
                tracing::error!(spool = %path.display(), error = %e, "skipping an unreadable spool line");
                None
            }
        })
        .collect())
}

/// Replaces the spool with `records` (write a temporary file, `fsync`,
/// rename, `fsync` the directory), so a crash leaves the old or the new spool.
fn rewrite_spool<T: Spooled>(path: &Path, records: &[T]) -> std::io::Result<()> {
    if records.is_empty() {
        let file = std::fs::OpenOptions::new().write(true).open(path)?;
        file.set_len(0)?;
        return file.sync_all();
    }
    let mut tmp_name = path.file_name().unwrap_or_default().to_os_string();
    tmp_name.push(".tmp");
    let tmp = path.with_file_name(tmp_name);
    let lines: Vec<String> = records
        .iter()
        .filter_map(|r| serde_json::to_string(r).ok())
        .collect();
    let _ = std::fs::remove_file(&tmp);
    append_lines(&tmp, &lines)?;
    std::fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent() {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(n: u32) -> SessionRecord {
        SessionRecord {
            session_id: format!("ses_{n:032x}"),
            bastion: None,
            serial: "7".into(),
            key_id: "tpa:request=req_x:user=alice".into(),
            request: "req_x".into(),
            login: "deploy".into(),
            requester: "alice".into(),
            source: "127.0.0.1:5000".into(),
            target: "web-1".into(),
            target_address: "127.0.0.1:22".into(),
            started_at: "2026-11-24T09:00:00Z".into(),
            ended_at: "2026-11-24T09:01:00Z".into(),
            bytes_to_target: 1,
            bytes_from_target: 2,
            end: "client_closed".into(),
            error: None,
        }
    }

    /// Security review (rev-bastion): a bastion killed during a forward left
    /// no record of it at all; now its marker becomes an `error` record at
    /// the next start, and a forward that ends leaves no marker.
    #[tokio::test]
    async fn forwards_open_at_a_crash_are_recorded_at_the_next_start() {
        let dir = tempfile::tempdir().unwrap();
        let spool = dir.path().join("s.jsonl");
        let marker = |n| open_dir(&spool).join(format!("{}.json", record(n).session_id));
        let (recorder, _delivery) = start(spool.clone(), None);
        let mut open = record(1);
        open.end = "error".into();
        open.error = Some("stopped".into());
        recorder.record(&Event::SessionStarted(Box::new(open.clone())));
        recorder.record(&Event::SessionStarted(Box::new(record(2))));
        recorder.record(&Event::SessionRecord(Box::new(record(2))));
        recorder.record(&Event::SessionStarted(Box::new(record(3))));
        // Markers are kept in order: once the third exists, the second is done.
        let mut written = false;
        for _ in 0..200 {
            if marker(3).exists() {
                written = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(written, "no marker for an open forward");
        assert!(marker(1).exists(), "no marker for the open forward");
        assert!(!marker(2).exists(), "an ended forward kept its marker");
        // The bastion dies here; the next start records the open forward.
        let (_recorder, _delivery) = start(spool.clone(), None);
        assert!(!marker(1).exists() && !marker(3).exists());
        let spooled = read_spool::<SessionRecord>(&spool).unwrap();
        assert!(spooled.contains(&open), "{spooled:?}");
        assert_eq!(
            spooled
                .iter()
                .filter(|r| r.session_id == open.session_id)
                .count(),
            1
        );
    }

    #[test]
    fn spool_appends_rewrites_and_skips_torn_lines() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.jsonl");
        assert!(read_spool::<SessionRecord>(&path).unwrap().is_empty());
        let line = |n| serde_json::to_string(&record(n)).unwrap();
        append_lines(&path, &[line(1), line(2)]).unwrap();
        // A torn last line from a crash mid-write.
        std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap()
            .write_all(b"{\"session_id\":\"ses_")
            .unwrap();
        append_lines(&path, &[String::new(), line(3)]).unwrap();
        let ids: Vec<String> = read_spool::<SessionRecord>(&path)
            .unwrap()
            .into_iter()
            .map(|r| r.session_id)
            .collect();
        assert_eq!(ids, [record(1), record(2), record(3)].map(|r| r.session_id));
        rewrite_spool(&path, &[record(3)]).unwrap();
        assert_eq!(read_spool::<SessionRecord>(&path).unwrap(), [record(3)]);
        rewrite_spool::<SessionRecord>(&path, &[]).unwrap();
        assert!(read_spool::<SessionRecord>(&path).unwrap().is_empty());
        assert_eq!(rejected_path(&path), dir.path().join("s.jsonl.rejected"));
    }
}
