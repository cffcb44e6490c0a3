//! `tpa-ca init`: a new data directory with a CA key, an audit key (signs
//! audit checkpoints), a configuration file and an empty database.

use std::fs::DirBuilder;
use std::net::SocketAddr;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context as _, bail};
use chrono::Utc;
use serde_json::json;

use crate::config::initial_config_text;
use crate::signer::{generate_ca_key, read_init_passphrase};
use crate::store::{self, Create};
use tpa_core::audit::{NewEvent, Outcome};

/// What `init` creates.
#[derive(Debug)]
pub struct InitOptions {
    /// The data directory.
    pub data_dir: PathBuf,
    /// Passphrase for the CA key.
    pub passphrase_file: Option<PathBuf>,
    /// The server's listen address written into the configuration.
    pub listen: SocketAddr,
}

pub(super) fn run(options: &InitOptions) -> anyhow::Result<ExitCode> {
    let config_path = init_data_dir(options)?;
    let ca_pub = std::fs::read_to_string(options.data_dir.join("ca_key.pub")).unwrap_or_default();
    println!("Initialised TPA in {}", options.data_dir.display());
    println!("  CA public key: {}", ca_pub.trim());
    println!("  configuration: {}", config_path.display());
    println!();
    println!("Next:");
    println!("  tpa-ca serve --config {}", config_path.display());
    println!(
        "  on each host: curl -o /etc/ssh/tpa_ca.pub http://{}/ca.pub",
        options.listen
    );
    println!(
        "                echo 'TrustedUserCAKeys /etc/ssh/tpa_ca.pub' >> /etc/ssh/sshd_config"
    );
    Ok(ExitCode::SUCCESS)
}

/// Creates the data directory's contents; returns the configuration path.
/// Refuses to touch a directory that already holds a key, config or database.
pub fn init_data_dir(options: &InitOptions) -> anyhow::Result<PathBuf> {
    let dir = &options.data_dir;
    DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("cannot create data directory {}", dir.display()))?;
    let key_path = dir.join("ca_key");
    let audit_key_path = dir.join("audit_key");
    let config_path = dir.join("tpa.toml");
    let db_path = dir.join("tpa.db");
    for existing in [&key_path, &audit_key_path, &config_path, &db_path] {
        if existing.symlink_metadata().is_ok() {
            bail!(
                "{} already exists; `init` never overwrites a CA. Use a new --data-dir, or serve the existing one with `tpa-ca serve --config {}`",
                existing.display(),
                config_path.display()
            );
        }
    }
    let passphrase = options
        .passphrase_file
        .as_deref()
        .map(read_init_passphrase)
        .transpose()
        .context("cannot use --passphrase-file")?;
    let passphrase_path = options
        .passphrase_file
        .as_deref()
        .map(|p| std::path::absolute(p).with_context(|| format!("cannot resolve {}", p.display())))
        .transpose()?;
    let public =
        generate_ca_key(&key_path, passphrase.as_deref()).context("cannot create the CA key")?;
    let public_line = public
        .to_openssh()
        .context("cannot encode the CA public key")?;
    write_new(&dir.join("ca_key.pub"), &(public_line + "\n"))?;
    crate::audit::checkpoint::generate(&audit_key_path)
        .context("cannot create the audit key (it signs audit checkpoints)")?;
    write_new(
        &config_path,
        &initial_config_text(options.listen, passphrase_path.as_deref()),
    )?;
    // Created private first: SQLite gives its -wal and -shm files the same mode.
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&db_path)
        .with_context(|| format!("cannot create {}", db_path.display()))?;
    let mut conn = store::open(&db_path, Create::Never).context("cannot create the database")?;
    let fingerprint = public.fingerprint(ssh_key::HashAlg::Sha256).to_string();
    store::write(&mut conn, |tx| {
        store::audit::append(
            tx,
            &NewEvent {
                time: Utc::now(),
                actor: "system".to_owned(),
                source: "cli".to_owned(),
                action: "ca.init".to_owned(),
                object: format!("ca_key:{fingerprint}"),
                outcome: Outcome::Success,
                reason: "tpa-ca init".to_owned(),
                details: json!({ "encrypted": passphrase.is_some() }),
            },
        )
    })
    .context("cannot write the first audit event")?;
    Ok(config_path)
}

fn write_new(path: &Path, text: &str) -> anyhow::Result<()> {
    use std::io::Write as _;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    file.write_all(text.as_bytes())
        .with_context(|| format!("cannot write {}", path.display()))
}
