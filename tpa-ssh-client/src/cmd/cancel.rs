//! `tpa-ssh cancel ID`: withdraws a pending request or ends an active grant
//! early.

use std::process::ExitCode;

/// `tpa-ssh cancel ID`.
pub async fn run(ca: Option<&str>, id: &str) -> anyhow::Result<ExitCode> {
    let (client, _) = super::logged_in(ca)?;
    let r = client.cancel(id).await?;
    println!("Request {} is {}", r.id, r.state);
    Ok(ExitCode::SUCCESS)
}
