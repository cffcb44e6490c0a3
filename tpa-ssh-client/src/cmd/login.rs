//! `tpa-ssh login`: with a local account's password (`--username`), or with
//! the company SSO in a browser (`browser.rs`, through the loopback listener
//! of `loopback.rs`) or on another machine (`device.rs`). Every way ends in
//! [`save`]: the previous login's token is revoked, the new one saved, and
//! the account printed in a frame.

mod browser;
mod device;
mod loopback;

use std::io::{BufRead as _, IsTerminal as _};
use std::process::ExitCode;

use anyhow::{Context as _, bail};
use tpa_core::api::{LoginRequest, LoginResponse, StoredSession};

use crate::api::{ApiFailure, Client};
use crate::local::{session, settings};
use crate::prompt;

/// The CA to log in to: `--ca` / `$TPA_CA_URL`, else `ca_url` in config.toml.
fn login_ca(flag: Option<&str>) -> anyhow::Result<Option<String>> {
    match flag {
        Some(ca) => Ok(Some(ca.to_owned())),
        None => Ok(settings::load()?.ca_url),
    }
}

/// `tpa-ssh login --username NAME [--password-stdin]`.
pub async fn with_password(
    ca: Option<&str>,
    username: &str,
    password_stdin: bool,
) -> anyhow::Result<ExitCode> {
    let ca = login_ca(ca)?;
    let ca = ca.as_deref().context("give the CA's URL: `tpa-ssh login --ca https://ca.example.com --username NAME` (or set TPA_CA_URL, or ca_url in ~/.config/tpa/config.toml)")?;
    let client = Client::anonymous(ca)?;
    let password = read_password(password_stdin)?;
    let body = LoginRequest {
        username: username.to_owned(),
        password,
    };
    let answer = client.login(&body).await?;
    save(&client, answer).await
}

/// `tpa-ssh login [--no-browser]`: SSO.
pub async fn with_sso(ca: Option<&str>, no_browser: bool) -> anyhow::Result<ExitCode> {
    let ca = login_ca(ca)?;
    let ca = ca.as_deref().context(
        "give the CA's URL: `tpa-ssh login --ca https://ca.example.com` (or set TPA_CA_URL)",
    )?;
    let client = Client::anonymous(ca)?;
    if no_browser {
        device::login(&client).await
    } else {
        browser::login(&client).await
    }
}

/// The password: asked on the terminal, or the first line of standard input
/// (`--password-stdin`, or no terminal).
fn read_password(from_stdin: bool) -> anyhow::Result<String> {
    let stdin = std::io::stdin();
    let password = if stdin.is_terminal() && !from_stdin {
        prompt::hidden("Password: ")?
    } else {
        let mut line = String::new();
        stdin
            .lock()
            .read_line(&mut line)
            .context("cannot read the password")?;
        line.trim_end_matches(['\n', '\r']).to_owned()
    };
    if password.is_empty() {
        if stdin.is_terminal() {
            bail!("no password given");
        }
        // issue 12: without a terminal there is no prompt; say how to give it.
        bail!(
            "no password given: there is no terminal to ask on, so pipe the password in with --password-stdin (e.g. `printf '%s\\n' \"$PASSWORD\" | tpa-ssh login --username NAME --password-stdin`)"
        );
    }
    Ok(password)
}

/// Saves a login answer, once the token of the login it replaces is revoked,
/// and says who is logged in.
async fn save(client: &Client, answer: LoginResponse) -> anyhow::Result<ExitCode> {
    let previous = logout_previous().await;
    let banner = logged_in_banner(client.base(), &answer);
    session::save(&StoredSession {
        ca_url: client.base().to_owned(),
        token: answer.token,
        expires_at: answer.expires_at.clone(),
        username: answer.user.username.clone(),
    })?;
    println!("{banner}");
    if let Some(note) = previous {
        println!("{note}");
    }
    Ok(ExitCode::SUCCESS)
}

/// What a finished login prints: the account in a frame that cannot be
/// missed (issue 18: someone who learns a loopback login's challenge can
/// send the listener a code for their own account, so the person must see
/// whose account the CLI now acts as), and how to check it later.
fn logged_in_banner(ca: &str, answer: &LoginResponse) -> String {
    let account = format!(
        "LOGGED IN AS: {} ({}#{})",
        answer.user.username, answer.user.identity.issuer, answer.user.identity.subject
    );
    let rule = "=".repeat(account.chars().count().min(100) + 4);
    format!(
        "{rule}\n  {account}\n{rule}\nLogged in to {ca} as {} (groups: {}); the token expires at {}.\nIf this is not YOUR account, run `tpa-ssh logout` now. `tpa-ssh whoami` shows the account at any time.",
        answer.user.username,
        answer.user.groups.join(", "),
        answer.expires_at
    )
}

/// Revokes the saved login's token at its CA before a new login replaces it
/// (review: a second login overwrote the first token, which stayed valid at
/// the CA until it expired). Best effort: a token the CA no longer accepts is
/// gone anyway, and a CA that cannot be reached is reported, not fatal, since
/// the new token is already in hand. Returns what to tell the user.
async fn logout_previous() -> Option<String> {
    let previous = match session::load() {
        Ok(saved) => saved,
        // No saved login: nothing to revoke.
        Err(_) if !session::exists() => return None,
        Err(e) => {
            return Some(format!(
                "The previous login could not be read, so its token was not revoked: {e:#}"
            ));
        }
    };
    let not_revoked = |e: &anyhow::Error| {
        format!(
            "The previous login ({} at {}) could not be revoked: {e:#}; its token stays valid until {}.",
            previous.username, previous.ca_url, previous.expires_at
        )
    };
    let client = match Client::logged_in(&previous) {
        Ok(client) => client,
        Err(e) => return Some(not_revoked(&e)),
    };
    match client.logout().await {
        Ok(()) => Some(format!(
            "The previous login ({} at {}) is revoked.",
            previous.username, previous.ca_url
        )),
        Err(e) => match e.downcast_ref::<ApiFailure>() {
            // Expired or revoked already.
            Some(failure) if failure.code == "unauthenticated" => None,
            _ => Some(not_revoked(&e)),
        },
    }
}
