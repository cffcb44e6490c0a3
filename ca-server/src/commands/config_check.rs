//! `tpa-ca config check`: everything `serve` would load, without serving.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;

use super::config_findings::{self, Level};
use crate::config::Config;
use crate::signer::Signer;
use crate::store;

pub(super) fn run(config_path: &Path, bastion_configs: &[PathBuf]) -> anyhow::Result<ExitCode> {
    let config = Config::load(config_path)?;
    let signer = Signer::load(&config.ca).context("CA key")?;
    let conn = super::database::open(&config).context("database")?;
    let certificates = store::certificates::count(&conn)?;
    let head = store::audit::head(&conn)?.map_or(0, |(seq, _)| seq);
    println!("configuration {} is valid", config_path.display());
    println!("  listen: {}", config.listen);
    println!(
        "  CA key: {} ({})",
        config.ca.key_file.display(),
        signer.fingerprint()
    );
    println!(
        "  trusted CA keys published: {}",
        signer.ca_key_data().len()
    );
    println!(
        "  database: {} ({certificates} certificates, {head} audit events)",
        super::database::describe(&config)
    );
    println!("  admin_issue.max_ttl: {}", config.admin_issue.max_ttl);
    let auditors: Vec<&str> = config.auditors.groups.iter().map(|g| g.as_str()).collect();
    println!(
        "  auditor groups: {}",
        if auditors.is_empty() {
            "none (nobody may read the audit pages)".to_owned()
        } else {
            auditors.join(", ")
        }
    );
    for sink in &config.audit_sinks {
        let backlog = store::audit_sinks::backlog(&conn, &sink.name)?;
        println!(
            "  audit sink {}: {backlog} events not yet delivered",
            sink.name
        );
    }
    let admins: Vec<&str> = config
        .auth
        .admin_groups
        .iter()
        .map(|g| g.as_str())
        .collect();
    println!(
        "  auth.admin_groups: {}",
        if admins.is_empty() {
            "none".to_owned()
        } else {
            admins.join(", ")
        }
    );
    match &config.audit {
        Some(audit) => {
            let key = crate::audit::checkpoint::AuditKey::load(&audit.key_file)
                .context("audit key (audit.key_file)")?;
            println!(
                "  audit key: {} ({}), checkpoint every {}, checkpoint file {}",
                audit.key_file.display(),
                key.fingerprint(),
                audit.checkpoint_interval,
                audit
                    .checkpoint_file
                    .as_ref()
                    .map_or("none".to_owned(), |f| f.display().to_string())
            );
        }
        None => println!(
            "  audit key: none; no signed checkpoints (add [audit] key_file, see docs/configuration.md)"
        ),
    }
    // issue 12: bastions, the [client] announcement, bastion token files and
    // OpenID providers, which loading the file alone does not prove.
    let mut findings = config_findings::bastions_and_client(&config);
    findings.extend(config_findings::bastion_token_files(
        &config,
        bastion_configs,
    ));
    if !config.oidc.is_empty() || !config.ldap.is_empty() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("cannot start the async runtime")?;
        findings.extend(runtime.block_on(config_findings::oidc_providers(&config)));
        findings.extend(runtime.block_on(super::ldap_findings::ldap_directories(&config)));
    }
    for f in &findings {
        println!("{f}");
    }
    let errors = findings.iter().filter(|f| f.level == Level::Error).count();
    if errors > 0 {
        eprintln!(
            "tpa-ca: {errors} problem{} found (the lines marked error above)",
            if errors == 1 { "" } else { "s" }
        );
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}
