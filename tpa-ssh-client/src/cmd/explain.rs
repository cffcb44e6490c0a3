//! `tpa-ssh explain`: the CA's policy answer for a role on a host, asked as
//! the logged-in user.

use std::process::ExitCode;

/// `tpa-ssh explain --role ROLE --host HOST [--for DURATION] [--json]`.
pub async fn run(
    ca: Option<&str>,
    (role, host, duration): (&str, &str, Option<&str>),
    json: bool,
) -> anyhow::Result<ExitCode> {
    let (client, _) = super::logged_in(ca)?;
    let view = client.explain(role, host, duration).await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&view)?);
    } else {
        print!("{view}");
    }
    Ok(ExitCode::SUCCESS)
}
