//! Waiting for a decision: long-polls the CA's `/wait` endpoint (the answer comes
//! the moment the decision commits) and shows a live status line on a terminal.

use std::io::{IsTerminal as _, Write as _};
use std::time::{Duration, Instant};

use reqwest::Method;
use tpa_core::api::RequestView;

use crate::client::Client;

const SPINNER: [char; 10] = ['⠋', '⠙', '⠹', '⠸', '⠼', '⠴', '⠦', '⠧', '⠇', '⠏'];
const NONE: Option<&()> = None;

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
    let s = since.elapsed().as_secs();
    if s < 60 {
        format!("{s}s")
    } else {
        format!("{}m{:02}s", s / 60, s % 60)
    }
}

/// Waits until `r` is no longer pending and returns it as decided. On a
/// terminal a spinner line shows the approvals so far, what is still needed
/// and the time waited; elsewhere (unless `quiet`) a line per change.
pub async fn until_decided(
    client: &Client,
    mut r: RequestView,
    quiet: bool,
) -> anyhow::Result<RequestView> {
    let started = Instant::now();
    let live = !quiet && std::io::stderr().is_terminal();
    let mut last = String::new();
    let mut frame = 0usize;
    while r.state == "pending" {
        // Past its pending deadline nobody can decide it any more; the CA marks
        // it expired on its next sweep, but the answer is already known.
        let deadline = chrono::DateTime::parse_from_rfc3339(&r.pending_until);
        if deadline.is_ok_and(|d| d <= chrono::Utc::now()) {
            r.state = "expired".to_owned();
            break;
        }
        let now = progress(&r);
        if !live && !quiet && now != last {
            eprintln!("  [{:>4}] waiting: {now}", elapsed(started));
        }
        last = now;
        // The CA answers at once when the decision lands; the short timeout only
        // refreshes the approvals shown while earlier stages are approved.
        let path = format!("/api/v1/requests/{}/wait?timeout=5", r.id);
        let poll = client.call::<(), RequestView>(Method::GET, &path, NONE);
        tokio::pin!(poll);
        let mut tick = tokio::time::interval(Duration::from_millis(120));
        let polled = Instant::now();
        r = loop {
            tokio::select! {
                answer = &mut poll => break answer?,
                _ = tick.tick(), if live => {
                    frame = frame.wrapping_add(1);
                    let spin = SPINNER.get(frame % SPINNER.len()).copied().unwrap_or('*');
                    eprint!("\r\x1b[2K{spin} {} waiting {}: {last}", r.id, elapsed(started));
                    let _ = std::io::stderr().flush();
                }
            }
        };
        if r.state == "pending" && polled.elapsed() < Duration::from_secs(1) {
            // An early answer with nothing decided: never poll in a tight loop.
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }
    if live {
        eprint!("\r\x1b[2K");
        let _ = std::io::stderr().flush();
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
