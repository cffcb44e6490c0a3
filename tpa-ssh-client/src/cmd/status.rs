//! `tpa-ssh status [ID]`: one request (default: your most recent), with its
//! approvals.

use std::process::ExitCode;

use super::report::describe;
use crate::grants;

/// `tpa-ssh status [ID] [--json]`.
pub async fn run(ca: Option<&str>, id: Option<&str>, json: bool) -> anyhow::Result<ExitCode> {
    let (client, _) = super::logged_in(ca)?;
    let r = match id {
        Some(id) => client.request(id).await?,
        None => grants::latest(&client, false).await?,
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&r)?);
    } else {
        println!(
            "{} {} on {} for {}: {}",
            r.id,
            r.role,
            r.hosts.join(","),
            r.duration,
            describe(&r)
        );
        for a in &r.approvals {
            println!(
                "  approved by {} (stage {}) at {}",
                a.approver
                    .username
                    .as_deref()
                    .unwrap_or(&a.approver.subject),
                a.stage,
                a.at
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
