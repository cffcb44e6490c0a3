//! `tpa-ssh ssh [LOGIN@]HOST`: uses an active grant covering HOST, or asks
//! for one (role and reason from the flags, or asked on a terminal) and
//! waits; then the certificate, and `exec` of the system `ssh` with the
//! command line of `command_line.rs`.

mod command_line;
mod target;

use std::io::IsTerminal as _;
use std::os::unix::process::CommandExt as _;
use std::process::ExitCode;

use anyhow::{Context as _, bail};
use tpa_core::api::{CreateRequestBody, RequestView};
use tpa_core::{HostName, Principal};

use super::report::{announce_approval, human_secs, not_approved};
use crate::api::Client;
use crate::cli::SshArgs;
use crate::local::{agent, keys};
use crate::{grants, prompt, wait};

/// Role and reason from the flags, or asked on a terminal.
fn role_and_reason(args: &SshArgs, host: &HostName) -> anyhow::Result<(String, String)> {
    let interactive = std::io::stdin().is_terminal() && std::io::stderr().is_terminal();
    let role = match (&args.role, interactive) {
        (Some(r), _) => r.clone(),
        (None, true) => {
            eprintln!("No active grant covers {host}; asking for one.");
            prompt::ask("Role")?
        }
        (None, false) => bail!(
            "no active grant covers {host}: give the role and reason to ask for one (`tpa-ssh ssh {host} --role ROLE --reason TEXT`), or see your grants with `tpa-ssh list`"
        ),
    };
    let reason = match (&args.reason, interactive) {
        (Some(r), _) => r.clone(),
        (None, true) => prompt::ask("Reason")?,
        (None, false) => String::new(),
    };
    Ok((role, reason))
}

/// The grant covering `host`: an active one, or a new request, decided.
async fn grant_for(
    client: &Client,
    host: &HostName,
    args: &SshArgs,
) -> anyhow::Result<Result<RequestView, ExitCode>> {
    let mine = client.my_requests().await?.requests;
    if let Some(r) = grants::covering(&mine, host.as_str()) {
        return Ok(Ok(r.clone()));
    }
    let (role, reason) = role_and_reason(args, host)?;
    let body = CreateRequestBody {
        role,
        hosts: vec![host.to_string()],
        duration: args.duration.clone(),
        reason,
        ticket: args.ticket.clone(),
        start: None,
        break_glass: false,
    };
    let submitted = client.submit(&body).await?;
    let r = submitted.request;
    eprintln!("Request {} for {host}: {}", r.id, r.state);
    let r = wait::until_decided(client, r, false).await?;
    if let Some(code) = not_approved(&r, false)? {
        return Ok(Err(code));
    }
    announce_approval(&r);
    if !r.active {
        bail!(
            "request {} is approved from {}; run this again then",
            r.id,
            r.window_start.as_deref().unwrap_or("its scheduled start")
        );
    }
    Ok(Ok(r))
}

/// `tpa-ssh ssh [LOGIN@]HOST [-- ssh args]`.
pub async fn run(ca: Option<&str>, args: SshArgs) -> anyhow::Result<ExitCode> {
    let (login, host) = target::parse(&args.host)?;
    let (client, _) = super::logged_in(ca)?;
    let r = match grant_for(&client, &host, &args).await? {
        Ok(r) => r,
        Err(code) => return Ok(code),
    };
    let (keys, public_key) = keys::to_certify()?;
    let cert = grants::certificate(&client, &r, &keys, &public_key, false).await?;
    if !cert.reused {
        eprintln!(
            "New certificate for request {} ({} left).",
            r.id,
            human_secs(cert.valid_before.saturating_sub(grants::now()))
        );
    }
    let _ = agent::refresh(&keys.private, cert.valid_before, grants::now());
    let bastion = client.announced().await?.bastion;

    // The user's own `-l` (after `--`) reaches ssh as it is; every other login
    // is passed with `-l` here, so ssh never falls back to the local user name.
    let login_in_ssh_args =
        login.is_none() && command_line::ssh_option(&args.ssh_args, 'l').is_some();
    let login = login
        .map(|l| l.as_str().to_owned())
        .or_else(|| command_line::ssh_option(&args.ssh_args, 'l').map(str::to_owned));
    let login = login.or_else(|| {
        let me = command_line::local_user();
        match me {
            Some(me) if cert.principals.contains(&me) => Some(me),
            _ => cert.principals.first().cloned(),
        }
    });
    // The login goes onto ssh's command line and into the ProxyCommand's shell
    // line: it must be a principal by TPA's strict grammar, whoever chose it.
    if let Some(l) = &login {
        Principal::parse(l).with_context(|| format!("the login {l:?} cannot be used"))?;
    }
    let mut command = std::process::Command::new("ssh");
    command.args(command_line::ssh_command_args(
        &keys,
        bastion.as_ref(),
        login.as_deref(),
        login_in_ssh_args,
        &host,
        &args.ssh_args,
    )?);
    let err = command.exec();
    bail!("cannot run ssh: {err} (install openssh-client)")
}
