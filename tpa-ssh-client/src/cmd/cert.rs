//! `tpa-ssh cert [ID] [--renew]`: the certificate for an active grant
//! (default: your most recent one), saved next to the key and loaded into
//! ssh-agent; also the last step of `tpa-ssh request --wait`.

use std::process::ExitCode;

use anyhow::bail;
use tpa_core::api::RequestView;

use super::report::{describe, human_secs};
use crate::api::Client;
use crate::grants;
use crate::local::{agent, keys};

/// `tpa-ssh cert [ID] [--renew] [--json]`.
pub async fn run(
    ca: Option<&str>,
    id: Option<&str>,
    renew: bool,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let (client, _) = super::logged_in(ca)?;
    let r = match id {
        Some(id) => client.request(id).await?,
        None => grants::latest(&client, true).await?,
    };
    if !r.active {
        bail!(
            "request {} is not an active grant ({}): ask with `tpa-ssh request --role ROLE --host HOST --wait`",
            r.id,
            describe(&r)
        );
    }
    fetch(&client, &r, renew, json).await
}

/// A certificate for the active grant `r` (the saved one while it has time
/// left, unless `renew`), loaded into ssh-agent, and what happened, printed.
pub async fn fetch(
    client: &Client,
    r: &RequestView,
    renew: bool,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let (keys, public_key) = keys::to_certify()?;
    let cert = grants::certificate(client, r, &keys, &public_key, renew).await?;
    let (loaded, removed) = agent::refresh(&keys.private, cert.valid_before, grants::now());
    let lifetime = cert.valid_before.saturating_sub(grants::now());
    if json {
        let out = serde_json::json!({
            "request": r, "certificate": cert,
            "files": { "identity": keys.private, "certificate": keys.cert },
            "agent": loaded.as_ref().map_or_else(|e| e.clone(), |_| "loaded".to_owned()),
            "agent_expired_removed": removed,
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(ExitCode::SUCCESS);
    }
    let how = if cert.reused {
        "still valid, reused"
    } else {
        "new"
    };
    println!(
        "Certificate for {} ({how}) valid {} more, until {} (serial {}), saved to {}",
        cert.principals.join(","),
        human_secs(lifetime),
        chrono::DateTime::from_timestamp(cert.valid_before as i64, 0)
            .map_or_else(|| "?".to_owned(), |t| t.to_rfc3339()),
        cert.serial,
        keys.cert.display()
    );
    if removed > 0 {
        println!("Removed {removed} expired TPA certificate(s) from ssh-agent.");
    }
    match loaded {
        Ok(secs) => println!("Loaded into ssh-agent for {}.", human_secs(secs)),
        Err(why) => println!(
            "Not loaded into an agent ({why}); plain ssh uses the files: ssh -i {} {}@HOST (or run `tpa-ssh config` once)",
            keys.private.display(),
            cert.principals.first().map_or("LOGIN", String::as_str)
        ),
    }
    Ok(ExitCode::SUCCESS)
}
