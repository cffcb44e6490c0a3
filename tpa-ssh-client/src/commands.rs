//! One function per `tpa-ssh` subcommand.

use std::io::{BufRead as _, IsTerminal as _, Write as _};
use std::process::ExitCode;

use anyhow::{Context as _, bail};
use reqwest::Method;
use tpa_core::api::{
    CreateRequestBody, LoginRequest, LoginResponse, RequestList, RequestView, StoredSession,
    SubmitResponse, WhoAmI,
};

use crate::cli::{Cli, Command, RequestArgs};
use crate::client::{ApiFailure, Client};
use crate::files::{self, KeyFiles};
use crate::grants::CertInUse;
use crate::{agent, grants, settings, wait};

/// Exit status when a request was denied.
const EXIT_DENIED: u8 = 3;
/// Exit status when a request expired before anyone decided.
const EXIT_EXPIRED: u8 = 4;
/// Exit status when a request was cancelled or revoked while waiting.
const EXIT_ENDED: u8 = 5;

const NONE: Option<&()> = None;

/// Runs one subcommand.
pub async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    if !matches!(cli.command, Command::Completions { .. }) {
        // A broken settings file is reported whatever the command.
        settings::load()?;
    }
    match cli.command {
        Command::Login {
            username: Some(username),
            password_stdin,
            ..
        } => login(login_ca(cli.ca)?.as_deref(), &username, password_stdin).await,
        Command::Login {
            username: None,
            no_browser,
            ..
        } => crate::sso::login(login_ca(cli.ca)?.as_deref(), no_browser).await,
        Command::Logout => logout().await,
        Command::Whoami(j) => whoami(cli.ca.as_deref(), j.json).await,
        Command::Request(args) => request(cli.ca.as_deref(), args).await,
        Command::Status { id, json } => status(cli.ca.as_deref(), id.as_deref(), json.json).await,
        Command::List(j) => list(cli.ca.as_deref(), j.json).await,
        Command::Explain {
            role,
            host,
            duration,
            json,
        } => {
            explain(
                cli.ca.as_deref(),
                (&role, &host, duration.as_deref()),
                json.json,
            )
            .await
        }
        Command::Cancel { id } => cancel(cli.ca.as_deref(), &id).await,
        Command::Cert { id, renew, json } => {
            cert(cli.ca.as_deref(), id.as_deref(), renew, json.json).await
        }
        Command::Config(args) => crate::host_config::config(cli.ca.as_deref(), args).await,
        Command::Ssh(args) => crate::connect::ssh(cli.ca.as_deref(), args).await,
        Command::Completions { shell } => {
            let mut command = <Cli as clap::CommandFactory>::command();
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut command, "tpa-ssh", &mut script);
            match std::io::stdout().write_all(&script) {
                Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
                    Err(e).context("cannot write the completions")
                }
                _ => Ok(ExitCode::SUCCESS),
            }
        }
    }
}

/// The CA to log in to: `--ca` / `$TPA_CA_URL`, else `ca_url` in config.toml.
fn login_ca(flag: Option<String>) -> anyhow::Result<Option<String>> {
    match flag {
        Some(ca) => Ok(Some(ca)),
        None => Ok(settings::load()?.ca_url),
    }
}

/// The key to certify (config.toml's `key_file`, or TPA's own).
pub fn key() -> anyhow::Result<(KeyFiles, String)> {
    let configured = settings::load()?
        .key_file
        .map(|k| settings::expand_home(&k))
        .transpose()?;
    files::ensure_key(configured.as_deref())
}

/// The client for the saved login (the CA from `--ca` must match it).
pub fn logged_in(ca: Option<&str>) -> anyhow::Result<(Client, StoredSession)> {
    let session = files::load_session()?;
    if let Some(ca) = ca
        && ca.trim_end_matches('/') != session.ca_url
    {
        bail!(
            "you are logged in to {}, not {ca}: run `tpa-ssh login --ca {ca} …`",
            session.ca_url
        );
    }
    let client = Client::new(&session.ca_url, Some(session.token.clone()))?;
    Ok((client, session))
}

fn read_password(from_stdin: bool) -> anyhow::Result<String> {
    let stdin = std::io::stdin();
    let password = if stdin.is_terminal() && !from_stdin {
        crate::password::read_hidden("Password: ")?
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

async fn login(ca: Option<&str>, username: &str, password_stdin: bool) -> anyhow::Result<ExitCode> {
    let ca = ca.context("give the CA's URL: `tpa-ssh login --ca https://ca.example.com --username NAME` (or set TPA_CA_URL, or ca_url in ~/.config/tpa/config.toml)")?;
    let client = Client::new(ca, None)?;
    let password = read_password(password_stdin)?;
    let body = LoginRequest {
        username: username.to_owned(),
        password,
    };
    let answer: LoginResponse = client
        .call(Method::POST, "/api/v1/login", Some(&body))
        .await?;
    save_login(&client, answer).await
}

/// Saves a login answer, once the token of the login it replaces is revoked,
/// and says who is logged in.
pub async fn save_login(client: &Client, answer: LoginResponse) -> anyhow::Result<ExitCode> {
    let previous = revoke_previous().await;
    let banner = logged_in_banner(client.base(), &answer);
    files::save_session(&StoredSession {
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
async fn revoke_previous() -> Option<String> {
    let session = match files::load_session() {
        Ok(session) => session,
        // No saved login: nothing to revoke.
        Err(_) if !files::session_exists() => return None,
        Err(e) => {
            return Some(format!(
                "The previous login could not be read, so its token was not revoked: {e:#}"
            ));
        }
    };
    let not_revoked = |e: &anyhow::Error| {
        format!(
            "The previous login ({} at {}) could not be revoked: {e:#}; its token stays valid until {}.",
            session.username, session.ca_url, session.expires_at
        )
    };
    let client = match Client::new(&session.ca_url, Some(session.token.clone())) {
        Ok(client) => client,
        Err(e) => return Some(not_revoked(&e)),
    };
    let revoked: anyhow::Result<()> = client.call(Method::POST, "/api/v1/logout", NONE).await;
    match revoked {
        Ok(()) => Some(format!(
            "The previous login ({} at {}) is revoked.",
            session.username, session.ca_url
        )),
        Err(e) => match e.downcast_ref::<ApiFailure>() {
            // Expired or revoked already.
            Some(failure) if failure.code == "unauthenticated" => None,
            _ => Some(not_revoked(&e)),
        },
    }
}

async fn logout() -> anyhow::Result<ExitCode> {
    let (client, session) = match logged_in(None) {
        Ok(s) => s,
        Err(_) => {
            println!("Not logged in.");
            return Ok(ExitCode::SUCCESS);
        }
    };
    // Revoke at the CA first; a token the CA no longer knows is gone anyway.
    let revoked: anyhow::Result<()> = client.call(Method::POST, "/api/v1/logout", NONE).await;
    files::remove_session()?;
    match revoked {
        Ok(()) => println!("Logged out of {}; the token is revoked.", session.ca_url),
        Err(e) => println!("Forgot the local token; the CA could not revoke it: {e:#}"),
    }
    Ok(ExitCode::SUCCESS)
}

async fn whoami(ca: Option<&str>, json: bool) -> anyhow::Result<ExitCode> {
    let (client, _) = logged_in(ca)?;
    let me: WhoAmI = client.call(Method::GET, "/api/v1/whoami", NONE).await?;
    let mine: RequestList = client
        .call(Method::GET, "/api/v1/requests?scope=mine", NONE)
        .await?;
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

fn describe(r: &RequestView) -> String {
    match r.state.as_str() {
        "pending" => format!("pending: {}", wait::progress(r)),
        "approved" if r.active => format!(
            "approved, active until {}",
            r.window_end.as_deref().unwrap_or("?")
        ),
        "approved" => format!(
            "approved for {} from {}",
            r.duration,
            r.window_start.as_deref().unwrap_or("?")
        ),
        "denied" => format!("denied: {}", r.comment.as_deref().unwrap_or("no comment")),
        other => other.to_owned(),
    }
}

async fn request(ca: Option<&str>, args: RequestArgs) -> anyhow::Result<ExitCode> {
    // Checked before anything is submitted.
    let ca_retry = tpa_core::HumanDuration::parse(&args.ca_retry)
        .map(tpa_core::HumanDuration::get)
        .map_err(|e| {
            anyhow::anyhow!(
                "--ca-retry {:?}: {e} (for example 2m or 30s)",
                args.ca_retry
            )
        })?;
    let (client, _) = logged_in(ca)?;
    let body = CreateRequestBody {
        role: args.role,
        hosts: args.hosts,
        duration: args.duration,
        reason: args.reason,
        ticket: args.ticket.or(args.incident),
        start: args.start,
        break_glass: args.break_glass,
    };
    let submitted: SubmitResponse = client
        .call(Method::POST, "/api/v1/requests", Some(&body))
        .await?;
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
    if let Some(code) = refused(&r, args.json.json)? {
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
    fetch_certificate(&client, &r, false, args.json.json).await
}

/// The exit status and message for a request that was not approved; `None`
/// when it was.
pub fn refused(r: &RequestView, json: bool) -> anyhow::Result<Option<ExitCode>> {
    let (code, what) = match r.state.as_str() {
        "approved" => return Ok(None),
        "denied" => (
            EXIT_DENIED,
            format!(
                "was denied by {}: {}",
                r.decided_by
                    .as_ref()
                    .and_then(|p| p.username.as_deref())
                    .unwrap_or("an approver"),
                r.comment.as_deref().unwrap_or("no comment")
            ),
        ),
        "expired" => (
            EXIT_EXPIRED,
            "expired before anyone decided; ask again (`tpa-ssh request …`) and ping an approver"
                .to_owned(),
        ),
        other => (EXIT_ENDED, format!("is {other}")),
    };
    if json {
        println!("{}", serde_json::to_string_pretty(r)?);
    } else {
        eprintln!("Request {} {what}", r.id);
    }
    Ok(Some(ExitCode::from(code)))
}

/// Says that `r` was approved: by whom, what, until when.
pub fn announce_approval(r: &RequestView) {
    let by: Vec<&str> = r
        .approvals
        .iter()
        .map(|a| {
            a.approver
                .username
                .as_deref()
                .unwrap_or(&a.approver.subject)
        })
        .collect();
    let by = if let Some(on_call) = &r.on_call_approval {
        format!("automatically, you are on call ({})", on_call.source)
    } else if by.is_empty() {
        format!("({})", r.approval_path)
    } else {
        format!("by {}", by.join(", "))
    };
    let window = match (&r.window_start, &r.window_end) {
        (_, Some(end)) if r.active => format!("until {end}"),
        (Some(start), _) => format!("from {start}"),
        _ => String::new(),
    };
    eprintln!(
        "Request {} approved {by}: {} on {} for {} {window}",
        r.id,
        r.role,
        r.hosts.join(","),
        r.duration
    );
}

/// Removes expired TPA certificates from the agent, then loads the key and
/// certificate with a lifetime equal to the certificate's remaining validity.
/// Returns what happened, for the user.
pub fn update_agent(keys: &KeyFiles, cert: &CertInUse) -> (Result<u64, String>, usize) {
    let now = grants::now();
    let removed = agent::remove_expired(now).unwrap_or(0);
    let lifetime = cert.valid_before.saturating_sub(now);
    (
        agent::load(&keys.private, lifetime).map(|()| lifetime),
        removed,
    )
}

async fn fetch_certificate(
    client: &Client,
    r: &RequestView,
    renew: bool,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let (keys, public_key) = key()?;
    let cert = grants::certificate(client, r, &keys, &public_key, renew).await?;
    let (loaded, removed) = update_agent(&keys, &cert);
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

/// `90` → `1m30s`.
pub fn human_secs(secs: u64) -> String {
    match (secs / 3600, secs / 60 % 60, secs % 60) {
        (0, 0, s) => format!("{s}s"),
        (0, m, s) => format!("{m}m{s:02}s"),
        (h, m, _) => format!("{h}h{m:02}m"),
    }
}

async fn latest(client: &Client, active_only: bool) -> anyhow::Result<RequestView> {
    grants::mine(client)
        .await?
        .into_iter()
        .find(|r| !active_only || r.active)
        .context(if active_only {
            "no active grant: ask with `tpa-ssh request --role ROLE --host HOST --wait`"
        } else {
            "you have no requests yet"
        })
}

async fn status(ca: Option<&str>, id: Option<&str>, json: bool) -> anyhow::Result<ExitCode> {
    let (client, _) = logged_in(ca)?;
    let r: RequestView = match id {
        Some(id) => {
            client
                .call(Method::GET, &format!("/api/v1/requests/{id}"), NONE)
                .await?
        }
        None => latest(&client, false).await?,
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

/// `tpa-ssh explain`: `GET /api/v1/policy/explain` as the logged-in user.
async fn explain(
    ca: Option<&str>,
    (role, host, duration): (&str, &str, Option<&str>),
    json: bool,
) -> anyhow::Result<ExitCode> {
    let (client, _) = logged_in(ca)?;
    let mut url = reqwest::Url::parse("http://ca.invalid/api/v1/policy/explain")
        .context("cannot build the explain URL")?;
    {
        let mut query = url.query_pairs_mut();
        query.append_pair("role", role).append_pair("host", host);
        if let Some(d) = duration {
            query.append_pair("for", d);
        }
    }
    let path = format!("{}?{}", url.path(), url.query().unwrap_or(""));
    let view: tpa_core::api::ExplainView = client.call(Method::GET, &path, NONE).await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&view)?);
    } else {
        print!("{view}");
    }
    Ok(ExitCode::SUCCESS)
}

async fn list(ca: Option<&str>, json: bool) -> anyhow::Result<ExitCode> {
    let (client, _) = logged_in(ca)?;
    let mine: RequestList = client
        .call(Method::GET, "/api/v1/requests?scope=mine", NONE)
        .await?;
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

async fn cancel(ca: Option<&str>, id: &str) -> anyhow::Result<ExitCode> {
    let (client, _) = logged_in(ca)?;
    let r: RequestView = client
        .call(Method::POST, &format!("/api/v1/requests/{id}/cancel"), NONE)
        .await?;
    println!("Request {} is {}", r.id, r.state);
    Ok(ExitCode::SUCCESS)
}

async fn cert(
    ca: Option<&str>,
    id: Option<&str>,
    renew: bool,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let (client, _) = logged_in(ca)?;
    let r: RequestView = match id {
        Some(id) => {
            client
                .call(Method::GET, &format!("/api/v1/requests/{id}"), NONE)
                .await?
        }
        None => latest(&client, true).await?,
    };
    if !r.active {
        bail!(
            "request {} is not an active grant ({}): ask with `tpa-ssh request --role ROLE --host HOST --wait`",
            r.id,
            describe(&r)
        );
    }
    fetch_certificate(&client, &r, renew, json).await
}
