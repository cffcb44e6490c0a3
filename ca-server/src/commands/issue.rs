//! `tpa-ca issue`: the administrator's break-glass path. Audited, capped, same
//! signing transaction as the request path; prints the certificate line on stdout.

use std::io::Read as _;
use std::process::ExitCode;

use anyhow::Context as _;
use chrono::{DateTime, Utc};
use tpa_core::Username;

use crate::cli::IssueArgs;
use crate::config::Config;
use crate::signer::Signer;
use crate::workflow::{AdminIssueInput, admin_issue};

/// Public key files larger than this are refused before parsing.
const MAX_PUBKEY_FILE: u64 = 64 * 1024;

pub(super) fn run(args: &IssueArgs) -> anyhow::Result<ExitCode> {
    let config = Config::load(&args.config.config)?;
    let admin_name = match &args.admin {
        Some(name) => name.clone(),
        None => current_login().context("cannot tell who is running this; pass --admin NAME")?,
    };
    let admin = Username::parse(&admin_name).with_context(
        || "the administrator name (from --admin or the current login) is not a valid user name",
    )?;
    let signer =
        Signer::load(&config.ca).context("cannot load the CA key; no certificate was issued")?;
    let mut conn = super::database::open(&config).context("no certificate was issued")?;
    crate::workflow::revocation::check_signing_key(&conn, &signer.fingerprint())
        .map_err(|e| anyhow::anyhow!("{e}; no certificate was issued"))?;
    let mut public_key = String::new();
    std::fs::File::open(&args.pubkey)
        .and_then(|f| f.take(MAX_PUBKEY_FILE).read_to_string(&mut public_key))
        .with_context(|| format!("cannot read public key file {}", args.pubkey.display()))?;
    let input = AdminIssueInput {
        public_key,
        principals: args.principals.clone(),
        ttl: args.ttl.clone(),
        reason: args.reason.clone(),
        extensions: args.extensions.clone(),
        force_command: args.force_command.clone(),
        source_address: args.source_address.clone(),
    };
    let issued = admin_issue(
        &mut conn,
        &signer,
        &config.admin_issue,
        &admin,
        &input,
        Utc::now(),
    )?;
    let line = issued
        .certificate
        .to_openssh()
        .context("cannot encode the certificate")?;
    println!("{line}");
    let until = i64::try_from(issued.certificate.valid_before())
        .ok()
        .and_then(|t| DateTime::from_timestamp(t, 0))
        .map_or_else(|| "never".to_owned(), |t| t.to_rfc3339());
    eprintln!(
        "issued certificate serial {} for {}, valid until {until} (audit event {})",
        issued.serial,
        args.principals.join(","),
        issued.audit_seq
    );
    Ok(ExitCode::SUCCESS)
}

/// The login running this command: `$USER`, `$LOGNAME`, else the passwd entry of our uid.
pub(super) fn current_login() -> anyhow::Result<String> {
    for var in ["USER", "LOGNAME"] {
        if let Ok(name) = std::env::var(var)
            && !name.is_empty()
        {
            return Ok(name);
        }
    }
    let uid = rustix::process::geteuid().as_raw().to_string();
    let passwd = std::fs::read_to_string("/etc/passwd").context("cannot read /etc/passwd")?;
    passwd
        .lines()
        .map(|l| l.split(':').collect::<Vec<_>>())
        .find(|f| f.get(2) == Some(&uid.as_str()))
        .and_then(|f| f.first().map(|s| (*s).to_owned()))
        .with_context(|| format!("uid {uid} has no entry in /etc/passwd"))
}
