//! `tpa-ssh logout`: revokes the saved login's token at the CA and forgets it.

use std::process::ExitCode;

use crate::local::session;

/// `tpa-ssh logout`.
pub async fn run() -> anyhow::Result<ExitCode> {
    let (client, saved) = match super::logged_in(None) {
        Ok(s) => s,
        Err(_) => {
            println!("Not logged in.");
            return Ok(ExitCode::SUCCESS);
        }
    };
    // Revoke at the CA first; a token the CA no longer knows is gone anyway.
    let revoked = client.logout().await;
    session::remove()?;
    match revoked {
        Ok(()) => println!("Logged out of {}; the token is revoked.", saved.ca_url),
        Err(e) => println!("Forgot the local token; the CA could not revoke it: {e:#}"),
    }
    Ok(ExitCode::SUCCESS)
}
