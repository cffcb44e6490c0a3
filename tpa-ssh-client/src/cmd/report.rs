//! What commands print about a request: its state in a few words, why a
//! wait ended without access (and its exit status), who approved it, and
//! durations as people read them.

use std::process::ExitCode;

use tpa_core::api::RequestView;

use crate::wait;

/// Exit status when a request was denied.
const EXIT_DENIED: u8 = 3;
/// Exit status when a request expired before anyone decided.
const EXIT_EXPIRED: u8 = 4;
/// Exit status when a request was cancelled or revoked while waiting.
const EXIT_ENDED: u8 = 5;

/// A request's state in a few words.
pub fn describe(r: &RequestView) -> String {
    match r.state.as_str() {
        "pending" => format!("pending: {}", wait::progress(r)),
        "approved" if r.active => format!(
            "approved, active until {}",
            r.window_end.as_deref().unwrap_or("?")
        ),
        "approved" => format!(
            "approved for {} from {}",
            r.duration,
            r.window_start.as_deref().unwrap_or("?")
        ),
        "denied" => format!("denied: {}", r.comment.as_deref().unwrap_or("no comment")),
        other => other.to_owned(),
    }
}

/// The exit status and message for a request that was not approved; `None`
/// when it was.
pub fn not_approved(r: &RequestView, json: bool) -> anyhow::Result<Option<ExitCode>> {
    let (code, what) = match r.state.as_str() {
        "approved" => return Ok(None),
        "denied" => (
            EXIT_DENIED,
            format!(
                "was denied by {}: {}",
                r.decided_by
                    .as_ref()
                    .and_then(|p| p.username.as_deref())
                    .unwrap_or("an approver"),
                r.comment.as_deref().unwrap_or("no comment")
            ),
        ),
        "expired" => (
            EXIT_EXPIRED,
            "expired before anyone decided; ask again (`tpa-ssh request …`) and ping an approver"
                .to_owned(),
        ),
        other => (EXIT_ENDED, format!("is {other}")),
    };
    if json {
        println!("{}", serde_json::to_string_pretty(r)?);
    } else {
        eprintln!("Request {} {what}", r.id);
    }
    Ok(Some(ExitCode::from(code)))
}

/// Says that `r` was approved: by whom, what, until when.
pub fn announce_approval(r: &RequestView) {
    let by: Vec<&str> = r
        .approvals
        .iter()
        .map(|a| {
            a.approver
                .username
                .as_deref()
                .unwrap_or(&a.approver.subject)
        })
        .collect();
    let by = if let Some(on_call) = &r.on_call_approval {
        format!("automatically, you are on call ({})", on_call.source)
    } else if by.is_empty() {
        format!("({})", r.approval_path)
    } else {
        format!("by {}", by.join(", "))
    };
    let window = match (&r.window_start, &r.window_end) {
        (_, Some(end)) if r.active => format!("until {end}"),
        (Some(start), _) => format!("from {start}"),
        _ => String::new(),
    };
    eprintln!(
        "Request {} approved {by}: {} on {} for {} {window}",
        r.id,
        r.role,
        r.hosts.join(","),
        r.duration
    );
}

/// `90` → `1m30s`.
pub fn human_secs(secs: u64) -> String {
    match (secs / 3600, secs / 60 % 60, secs % 60) {
        (0, 0, s) => format!("{s}s"),
        (0, m, s) => format!("{m}m{s:02}s"),
        (h, m, _) => format!("{h}h{m:02}m"),
    }
}
