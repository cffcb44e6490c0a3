//! Waiting for a decision: long-polls the CA's `/wait` endpoint (the answer comes
//! the moment the decision commits) and, on a terminal, shows a live status
//! line with indicatif's spinner.

use std::io::IsTerminal as _;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressFinish, ProgressState, ProgressStyle};
use tpa_core::api::RequestView;

use crate::api::{self, Client};

/// How long a wait rides out an unreachable CA by default (`--ca-retry`).
const DEFAULT_CA_RETRY: Duration = Duration::from_secs(120);
/// The longest pause between two attempts while the CA is unreachable.
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// How long one long poll of `/wait` may stay open at the CA: the answer
/// comes at once when the decision lands; this only refreshes the approvals
/// shown while earlier stages are approved.
const POLL_SECS: u64 = 5;

/// What a pending request has and still needs, in words.
pub fn progress(r: &RequestView) -> String {
    let got = match r.approvals.len() {
        0 => "no approvals yet".to_owned(),
        1 => "1 approval".to_owned(),
        n => format!("{n} approvals"),
    };
    match &r.still_needed {
        Some(n) => format!(
            "{got}; needs {} more from {} (stage {})",
            n.approvals, n.group, n.stage
        ),
        None => got,
    }
}

fn elapsed(since: Instant) -> String {
    waited(since.elapsed())
}

/// `42s`, `3m05s`.
fn waited(time: Duration) -> String {
    let s = time.as_secs();
    if s < 60 {
        format!("{s}s")
    } else {
        format!("{}m{:02}s", s / 60, s % 60)
    }
}

/// Waits until `r` is no longer pending and returns it as decided. On a
/// terminal a spinner line shows the approvals so far, what is still needed
/// and the time waited; elsewhere (unless `quiet`) a line per change. An
/// unreachable CA (a restart) is retried for [`DEFAULT_CA_RETRY`].
pub async fn until_decided(
    client: &Client,
    r: RequestView,
    quiet: bool,
) -> anyhow::Result<RequestView> {
    until_decided_retrying(client, r, quiet, DEFAULT_CA_RETRY).await
}

/// The message shown while the CA is unreachable (issue 13).
fn unreachable_note(id: &str) -> String {
    format!(
        "CA unreachable, retrying… (Ctrl-C leaves the request pending; resume with `tpa-ssh cert {id}`)"
    )
}

/// The live status line on a terminal: `⠋ ID waiting 12s: STATUS`, redrawn
/// by indicatif's own ticker while the long poll is open, and cleared when
/// dropped (decided, failed or interrupted).
fn status_line(id: &str) -> ProgressBar {
    let style = ProgressStyle::with_template("{spinner} {prefix} waiting {waited}: {msg}")
        .expect("a constant template parses")
        .tick_chars("⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏ ")
        .with_key(
            "waited",
            |state: &ProgressState, out: &mut dyn std::fmt::Write| {
                let _ = out.write_str(&waited(state.elapsed()));
            },
        );
    let line = ProgressBar::new_spinner()
        .with_style(style)
        .with_prefix(id.to_owned())
        .with_finish(ProgressFinish::AndClear);
    line.enable_steady_tick(Duration::from_millis(120));
    line
}

/// [`until_decided`], riding out an unreachable CA for up to `retry_for`
/// (backing off from 0.5 s to 5 s between attempts), then failing with how
/// to resume; the request stays pending at the CA either way.
pub async fn until_decided_retrying(
    client: &Client,
    mut r: RequestView,
    quiet: bool,
    retry_for: Duration,
) -> anyhow::Result<RequestView> {
    let started = Instant::now();
    let mut down_since: Option<Instant> = None;
    let mut backoff = Duration::from_millis(500);
    let live = (!quiet && std::io::stderr().is_terminal()).then(|| status_line(&r.id));
    // Lines per change, where there is no live line.
    let lines = !quiet && live.is_none();
    let mut last = String::new();
    while r.state == "pending" {
        // Past its pending deadline nobody can decide it any more; the CA marks
        // it expired on its next sweep, but the answer is already known.
        let deadline = chrono::DateTime::parse_from_rfc3339(&r.pending_until);
        if deadline.is_ok_and(|d| d <= chrono::Utc::now()) {
            r.state = "expired".to_owned();
            break;
        }
        let now = progress(&r);
        if lines && now != last {
            eprintln!("  [{:>4}] waiting: {now}", elapsed(started));
        }
        last = now;
        if let Some(line) = &live {
            line.set_message(if down_since.is_some() {
                unreachable_note(&r.id)
            } else {
                last.clone()
            });
        }
        let polled = Instant::now();
        r = match client.wait(&r.id, POLL_SECS).await {
            Ok(view) => {
                if down_since.take().is_some() && lines {
                    eprintln!("  [{:>4}] the CA answers again", elapsed(started));
                }
                backoff = Duration::from_millis(500);
                view
            }
            Err(e) if api::is_transient(&e) => {
                let since = *down_since.get_or_insert_with(|| {
                    if lines {
                        eprintln!("  [{:>4}] {}", elapsed(started), unreachable_note(&r.id));
                    }
                    Instant::now()
                });
                if since.elapsed() >= retry_for {
                    return Err(e.context(format!(
                        "the CA was unreachable for {}s; request {id} stays pending: resume with `tpa-ssh cert {id}` (or `tpa-ssh status {id}`)",
                        since.elapsed().as_secs(),
                        id = r.id
                    )));
                }
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
                continue;
            }
            Err(e) => return Err(e),
        };
        if r.state == "pending" && polled.elapsed() < Duration::from_secs(1) {
            // An early answer with nothing decided: never poll in a tight loop.
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tpa_core::api::{Person, StillNeeded};

    fn view(approvals: usize, needed: Option<(u32, &str, usize)>) -> RequestView {
        let person = Person {
            issuer: "tpa:local".into(),
            subject: "bob".into(),
            username: Some("bob".into()),
        };
        RequestView {
            id: "req_x".into(),
            state: "pending".into(),
            active: false,
            role: "hotfix-admin".into(),
            hosts: vec!["web-1".into()],
            duration_secs: 3600,
            duration: "1h".into(),
            reason: "x".into(),
            ticket: None,
            requester: person.clone(),
            approval_path: "stages".into(),
            created_at: String::new(),
            pending_until: String::new(),
            start: None,
            window_start: None,
            window_end: None,
            approvals: (0..approvals)
                .map(|i| tpa_core::api::ApprovalView {
                    approver: person.clone(),
                    stage: i + 1,
                    group: None,
                    at: String::new(),
                    comment: None,
                })
                .collect(),
            still_needed: needed.map(|(approvals, group, stage)| StillNeeded {
                stage,
                group: group.into(),
                approvals,
            }),
            decided_by: None,
            comment: None,
            grant: None,
            on_call_approval: None,
            checks: Vec::new(),
        }
    }

    #[test]
    fn progress_says_what_is_there_and_what_is_missing() {
        assert_eq!(
            progress(&view(0, Some((1, "sre-leads", 1)))),
            "no approvals yet; needs 1 more from sre-leads (stage 1)"
        );
        assert_eq!(
            progress(&view(1, Some((1, "managers", 2)))),
            "1 approval; needs 1 more from managers (stage 2)"
        );
        assert_eq!(progress(&view(2, None)), "2 approvals");
    }
}
