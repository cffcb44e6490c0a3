//! `tpa-ssh whoami`: the account, its groups, the token's expiry and the
//! active grants.

use std::process::ExitCode;

use tpa_core::api::RequestView;

/// `tpa-ssh whoami [--json]`.
pub async fn run(ca: Option<&str>, json: bool) -> anyhow::Result<ExitCode> {
    let (client, _) = super::logged_in(ca)?;
    let me = client.whoami().await?;
    let mine = client.my_requests().await?;
    let active: Vec<&RequestView> = mine.requests.iter().filter(|r| r.active).collect();
    if json {
        let out = serde_json::json!({ "whoami": me, "active_grants": active });
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(ExitCode::SUCCESS);
    }
    // The display name (the provider's `name` claim, a local account's
    // display_name) first when it says more than the username.
    if me.user.display_name != me.user.username {
        println!("{}", me.user.display_name);
        println!(
            "  username: {} ({}#{})",
            me.user.username, me.user.identity.issuer, me.user.identity.subject
        );
    } else {
        println!(
            "{} ({}#{})",
            me.user.username, me.user.identity.issuer, me.user.identity.subject
        );
    }
    println!("  groups: {}", me.user.groups.join(", "));
    println!("  token expires: {}", me.expires_at);
    if me.device_login {
        // issue 18: a device-login token is the kind a phisher could hold.
        println!("  token from: a device login (tpa-ssh login --no-browser), shorter-lived");
    }
    if active.is_empty() {
        println!("  active grants: none");
    }
    for r in active {
        println!(
            "  active grant: {} {} on {} until {}",
            r.id,
            r.role,
            r.hosts.join(","),
            r.window_end.as_deref().unwrap_or("?")
        );
    }
    Ok(ExitCode::SUCCESS)
}
