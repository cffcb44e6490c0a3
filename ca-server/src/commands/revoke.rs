//! `tpa-ca revoke serial|request|user|ca-key … --reason …`: the operator's
//! revocation on the CA's host, against the database like `tpa-ca issue`,
//! audited with the operator as actor. A running server picks it up at once
//! (`GET /krl` and the bastion feed read the database).

use std::process::ExitCode;

use anyhow::Context as _;
use chrono::Utc;
use tpa_core::Username;

use super::issue::current_login;
use crate::cli::{RevokeArgs, RevokeTarget};
use crate::config::Config;
use crate::signer::Signer;
use crate::workflow::requests::WorkflowError;
use crate::workflow::revocation::{self, Revoker, Target};

pub(super) fn run(target: &RevokeTarget) -> anyhow::Result<ExitCode> {
    let (kind, value, args): (&str, &str, &RevokeArgs) = match target {
        RevokeTarget::Serial { serial, common } => ("serial", serial, common),
        RevokeTarget::Request { id, common } => ("request", id, common),
        RevokeTarget::User { username, common } => ("user", username, common),
        RevokeTarget::CaKey {
            fingerprint,
            common,
        } => ("ca_key", fingerprint, common),
    };
    let config = Config::load(&args.config.config)?;
    let admin_name = match &args.admin {
        Some(name) => name.clone(),
        None => current_login().context("cannot tell who is running this; pass --admin NAME")?,
    };
    let admin = Username::parse(&admin_name).with_context(
        || "the operator name (from --admin or the current login) is not a valid user name",
    )?;
    let target = Target::parse(kind, value).map_err(|e| anyhow::anyhow!("{e}"))?;
    // The signing key's fingerprint, so that it cannot be revoked while it signs.
    let signer = Signer::load(&config.ca).context("cannot load the CA key")?;
    let mut conn = super::database::open(&config)?;
    let done = revocation::revoke(
        &mut conn,
        &config.policy,
        &Revoker::operator(&admin),
        &target,
        &args.reason,
        &signer.fingerprint(),
        Utc::now(),
    );
    match done {
        Ok(done) if done.already => println!(
            "{kind} {}: nothing left to revoke (already revoked, or no live certificate); nothing changed (audit event {})",
            target.value(),
            done.audit_seq
        ),
        Ok(done) => {
            println!(
                "revoked {kind} {}: {} certificate(s), {} grant(s) ended{}; KRL version {} (audit event {})",
                target.value(),
                done.certificates,
                done.requests.len(),
                if done.ca_key { ", CA key revoked" } else { "" },
                done.krl_version,
                done.audit_seq
            );
            println!(
                "hosts refuse it after their next KRL sync (GET /krl or `tpa-ca krl --out FILE`); bastions within one feed poll"
            );
        }
        Err(WorkflowError::Refused { code, message }) => anyhow::bail!("{message} ({code})"),
        Err(e) => return Err(anyhow::Error::new(e).context("nothing was revoked")),
    }
    Ok(ExitCode::SUCCESS)
}
