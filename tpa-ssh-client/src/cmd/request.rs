//! `tpa-ssh request`: asks for a role on some hosts for a while; with
//! `--wait`, waits for the decision (exit 3 denied, 4 expired, 5 cancelled)
//! and fetches the certificate.

use std::process::ExitCode;

use tpa_core::api::CreateRequestBody;

use super::cert;
use super::report::{announce_approval, describe, not_approved};
use crate::cli::RequestArgs;
use crate::wait;

/// `tpa-ssh request …`.
pub async fn run(ca: Option<&str>, args: RequestArgs) -> anyhow::Result<ExitCode> {
    // Checked before anything is submitted.
    let ca_retry = tpa_core::HumanDuration::parse(&args.ca_retry)
        .map(tpa_core::HumanDuration::get)
        .map_err(|e| {
            anyhow::anyhow!(
                "--ca-retry {:?}: {e} (for example 2m or 30s)",
                args.ca_retry
            )
        })?;
    let (client, _) = super::logged_in(ca)?;
    let body = CreateRequestBody {
        role: args.role,
        hosts: args.hosts,
        duration: args.duration,
        reason: args.reason,
        ticket: args.ticket.or(args.incident),
        start: args.start,
        break_glass: args.break_glass,
    };
    let submitted = client.submit(&body).await?;
    let r = submitted.request;
    if !args.json.json {
        let note = if submitted.existing {
            " (an identical active grant already exists)"
        } else {
            ""
        };
        eprintln!("Request {} {}{note}", r.id, describe(&r));
        if args.break_glass && r.approval_path == "break_glass" {
            eprintln!(
                "Break-glass: every approver has been notified, and the grant waits for a post-incident review."
            );
        }
        // What the on-call and ticket checks found (issue 17); the client
        // has already made the CA's text printable.
        for c in &r.checks {
            eprintln!(
                "{} check ({}): {}",
                c.kind.replace('_', "-"),
                c.provider,
                c.summary
            );
        }
    }
    if !args.wait {
        if args.json.json {
            println!("{}", serde_json::to_string_pretty(&r)?);
        }
        return Ok(ExitCode::SUCCESS);
    }
    let r = wait::until_decided_retrying(&client, r, args.json.json, ca_retry).await?;
    if let Some(code) = not_approved(&r, args.json.json)? {
        return Ok(code);
    }
    if !args.json.json {
        announce_approval(&r);
    }
    if !r.active {
        // A scheduled window: the certificate comes with `tpa-ssh cert` once it opens.
        if args.json.json {
            println!("{}", serde_json::to_string_pretty(&r)?);
            return Ok(ExitCode::SUCCESS);
        }
        println!(
            "The window opens at {}; run `tpa-ssh cert {}` then.",
            r.window_start.as_deref().unwrap_or("its scheduled start"),
            r.id
        );
        return Ok(ExitCode::SUCCESS);
    }
    cert::fetch(&client, &r, false, args.json.json).await
}
