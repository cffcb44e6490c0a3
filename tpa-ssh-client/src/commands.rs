//! One function per `tpa-ssh` subcommand.

use std::io::{BufRead as _, IsTerminal as _, Write as _};
use std::process::ExitCode;

use anyhow::{Context as _, bail};
use reqwest::Method;
use tpa_core::api::{
    CertificateBody, CertificateResponse, CreateRequestBody, LoginRequest, LoginResponse,
    RequestList, RequestView, StoredSession, SubmitResponse, WhoAmI,
};

use crate::cli::{Cli, Command, RequestArgs};
use crate::client::Client;
use crate::files;

/// Exit status when a request was denied.
const EXIT_DENIED: u8 = 3;
/// Exit status when a request expired before anyone decided.
const EXIT_EXPIRED: u8 = 4;
/// Exit status when a request was cancelled or revoked while waiting.
const EXIT_ENDED: u8 = 5;

const NONE: Option<&()> = None;

/// Runs one subcommand.
pub async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Login {
            username: Some(username),
            password_stdin,
            ..
        } => login(cli.ca.as_deref(), &username, password_stdin).await,
        Command::Login {
            username: None,
            no_browser,
            ..
        } => crate::sso::login(cli.ca.as_deref(), no_browser).await,
        Command::Logout => logout().await,
        Command::Whoami(j) => whoami(cli.ca.as_deref(), j.json).await,
        Command::Request(args) => request(cli.ca.as_deref(), args).await,
        Command::Status { id, json } => status(cli.ca.as_deref(), id.as_deref(), json.json).await,
        Command::List(j) => list(cli.ca.as_deref(), j.json).await,
        Command::Cancel { id } => cancel(cli.ca.as_deref(), &id).await,
        Command::Cert { id, json } => cert(cli.ca.as_deref(), id.as_deref(), json.json).await,
    }
}

/// The client for the saved login (the CA from `--ca` must match it).
fn logged_in(ca: Option<&str>) -> anyhow::Result<(Client, StoredSession)> {
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
    let interactive = stdin.is_terminal() && !from_stdin;
    if interactive {
        eprint!("Password: ");
        let _ = std::io::stderr().flush();
        // No echo while typing; restored whatever happens.
        let _ = std::process::Command::new("stty").arg("-echo").status();
    }
    let mut line = String::new();
    let read = stdin.lock().read_line(&mut line);
    if interactive {
        let _ = std::process::Command::new("stty").arg("echo").status();
        eprintln!();
    }
    read.context("cannot read the password")?;
    let password = line.trim_end_matches(['\n', '\r']).to_owned();
    if password.is_empty() {
        bail!("no password given");
    }
    Ok(password)
}

async fn login(ca: Option<&str>, username: &str, password_stdin: bool) -> anyhow::Result<ExitCode> {
    let ca = ca.context("give the CA's URL: `tpa-ssh login --ca https://ca.example.com --username NAME` (or set TPA_CA_URL)")?;
    let client = Client::new(ca, None)?;
    let password = read_password(password_stdin)?;
    let body = LoginRequest {
        username: username.to_owned(),
        password,
    };
    let answer: LoginResponse = client
        .call(Method::POST, "/api/v1/login", Some(&body))
        .await?;
    save_login(&client, answer)
}

/// Saves a login answer and says who is logged in.
pub fn save_login(client: &Client, answer: LoginResponse) -> anyhow::Result<ExitCode> {
    files::save_session(&StoredSession {
        ca_url: client.base().to_owned(),
        token: answer.token,
        expires_at: answer.expires_at.clone(),
        username: answer.user.username.clone(),
    })?;
    println!(
        "Logged in to {} as {} (groups: {}); the token expires at {}",
        client.base(),
        answer.user.username,
        answer.user.groups.join(", "),
        answer.expires_at
    );
    Ok(ExitCode::SUCCESS)
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
    println!(
        "{} ({}#{})",
        me.user.username, me.user.identity.issuer, me.user.identity.subject
    );
    println!("  groups: {}", me.user.groups.join(", "));
    println!("  token expires: {}", me.expires_at);
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
        "pending" => match &r.still_needed {
            Some(n) => format!(
                "pending: needs {} approval(s) from {} (stage {})",
                n.approvals, n.group, n.stage
            ),
            None => "pending".to_owned(),
        },
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
    let (client, _) = logged_in(ca)?;
    let body = CreateRequestBody {
        role: args.role,
        hosts: args.hosts,
        duration: args.duration,
        reason: args.reason,
        ticket: args.ticket,
        start: args.start,
        break_glass: false,
    };
    let submitted: SubmitResponse = client
        .call(Method::POST, "/api/v1/requests", Some(&body))
        .await?;
    let mut r = submitted.request;
    if !args.json.json {
        let note = if submitted.existing {
            " (an identical active grant already exists)"
        } else {
            ""
        };
        eprintln!("Request {} {}{note}", r.id, describe(&r));
    }
    if !args.wait {
        if args.json.json {
            println!("{}", serde_json::to_string_pretty(&r)?);
        }
        return Ok(ExitCode::SUCCESS);
    }
    let started = std::time::Instant::now();
    let mut last = describe(&r);
    while r.state == "pending" {
        r = client
            .call(
                Method::GET,
                &format!("/api/v1/requests/{}/wait?timeout=30", r.id),
                NONE,
            )
            .await?;
        let now = describe(&r);
        if now != last && !args.json.json {
            eprintln!("  [{:>4}s] {now}", started.elapsed().as_secs());
        }
        last = now;
    }
    let code = match r.state.as_str() {
        "approved" => None,
        "denied" => Some(EXIT_DENIED),
        "expired" => Some(EXIT_EXPIRED),
        _ => Some(EXIT_ENDED),
    };
    if let Some(code) = code {
        if args.json.json {
            println!("{}", serde_json::to_string_pretty(&r)?);
        } else {
            let what = match code {
                EXIT_DENIED => format!(
                    "was denied: {}",
                    r.comment.as_deref().unwrap_or("no comment")
                ),
                EXIT_EXPIRED => {
                    "expired before anyone decided; ask again or ping an approver".to_owned()
                }
                _ => format!("is {}", r.state),
            };
            eprintln!("Request {} {what}", r.id);
        }
        return Ok(ExitCode::from(code));
    }
    fetch_certificate(&client, &r, args.json.json).await
}

async fn fetch_certificate(
    client: &Client,
    r: &RequestView,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let (keys, public_key) = files::ensure_key()?;
    let body = CertificateBody { public_key };
    let cert: CertificateResponse = client
        .call(
            Method::POST,
            &format!("/api/v1/requests/{}/certificate", r.id),
            Some(&body),
        )
        .await?;
    files::write_private(&keys.cert, format!("{}\n", cert.certificate).as_bytes())?;
    let now = chrono::Utc::now().timestamp().max(0) as u64;
    let lifetime = cert.valid_before.saturating_sub(now);
    let agent = load_into_agent(&keys.private, lifetime);
    if json {
        let out = serde_json::json!({
            "request": r, "certificate": cert,
            "files": { "identity": keys.private, "certificate": keys.cert },
            "agent": agent.as_ref().map_or_else(|e| e.clone(), |()| "loaded".to_owned()),
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        println!(
            "Certificate for {} valid {} s (serial {}), saved to {}",
            cert.principals.join(","),
            lifetime,
            cert.serial,
            keys.cert.display()
        );
        match agent {
            Ok(()) => println!("Loaded into ssh-agent for {lifetime} s."),
            Err(why) => println!(
                "Not loaded into an agent ({why}); use: ssh -i {} {}@HOST",
                keys.private.display(),
                cert.principals.first().map_or("LOGIN", String::as_str)
            ),
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `ssh-add -t LIFETIME KEY` (which also loads `KEY-cert.pub`) when an agent runs.
fn load_into_agent(private: &std::path::Path, lifetime: u64) -> Result<(), String> {
    if std::env::var_os("SSH_AUTH_SOCK").is_none() {
        return Err("no SSH_AUTH_SOCK".to_owned());
    }
    if lifetime == 0 {
        return Err("the certificate has no time left".to_owned());
    }
    let out = std::process::Command::new("ssh-add")
        .arg("-q")
        .arg("-t")
        .arg(lifetime.to_string())
        .arg(private)
        .output()
        .map_err(|e| format!("cannot run ssh-add: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).trim().to_owned())
    }
}

async fn latest(client: &Client, active_only: bool) -> anyhow::Result<RequestView> {
    let mine: RequestList = client
        .call(Method::GET, "/api/v1/requests?scope=mine", NONE)
        .await?;
    mine.requests
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

async fn cert(ca: Option<&str>, id: Option<&str>, json: bool) -> anyhow::Result<ExitCode> {
    let (client, _) = logged_in(ca)?;
    let r: RequestView = match id {
        Some(id) => {
            client
                .call(Method::GET, &format!("/api/v1/requests/{id}"), NONE)
                .await?
        }
        None => latest(&client, true).await?,
    };
    fetch_certificate(&client, &r, json).await
}
