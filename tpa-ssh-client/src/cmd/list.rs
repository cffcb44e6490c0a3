//! `tpa-ssh list`: your requests, newest first, one line each.

use std::process::ExitCode;

use super::report::describe;

/// `tpa-ssh list [--json]`.
pub async fn run(ca: Option<&str>, json: bool) -> anyhow::Result<ExitCode> {
    let (client, _) = super::logged_in(ca)?;
    let mine = client.my_requests().await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&mine)?);
        return Ok(ExitCode::SUCCESS);
    }
    if mine.requests.is_empty() {
        println!("No requests yet.");
    }
    for r in &mine.requests {
        println!(
            "{}  {:<16} {:<20} {:>5}  {}",
            r.id,
            r.role,
            r.hosts.join(","),
            r.duration,
            describe(r)
        );
    }
    Ok(ExitCode::SUCCESS)
}
