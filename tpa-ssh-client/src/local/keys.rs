//! The key `tpa-ssh` has certified: TPA's own Ed25519 key in
//! `~/.local/share/tpa/` (made on first use) or the user's `key_file`, with
//! the certificate saved next to it.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};
use ssh_key::{Algorithm, LineEnding, PrivateKey};

use super::files::{check_private, write_private};
use super::{dirs, settings};

/// The key to certify (config.toml's `key_file`, or TPA's own) and its
/// public key line.
pub fn to_certify() -> anyhow::Result<(KeyFiles, String)> {
    let configured = settings::load()?
        .key_file
        .map(|k| dirs::expand_home(&k))
        .transpose()?;
    ensure_key(configured.as_deref())
}

/// Paths of the key pair being certified and its certificate.
#[derive(Debug, Clone)]
pub struct KeyFiles {
    /// Private key.
    pub private: PathBuf,
    /// Public key.
    pub public: PathBuf,
    /// Certificate, next to the key.
    pub cert: PathBuf,
}

impl KeyFiles {
    /// `KEY`, `KEY.pub` and `KEY-cert.pub` (the names ssh and ssh-add look for).
    fn next_to(private: PathBuf) -> Self {
        let name = private.file_name().unwrap_or_default().to_string_lossy();
        let public = private.with_file_name(format!("{name}.pub"));
        let cert = private.with_file_name(format!("{name}-cert.pub"));
        Self {
            private,
            public,
            cert,
        }
    }
}

/// The key to certify and its public key line: the configured `key_file`, or
/// TPA's own Ed25519 key in the data directory (created on first use, mode 0600).
fn ensure_key(configured: Option<&Path>) -> anyhow::Result<(KeyFiles, String)> {
    if let Some(private) = configured {
        return configured_key(private);
    }
    let files = KeyFiles::next_to(dirs::data_dir()?.join("id_ed25519"));
    if files.private.exists() {
        check_private(&files.private)?;
        let key = PrivateKey::read_openssh_file(&files.private).with_context(|| {
            format!(
                "{} is not a readable OpenSSH private key; move it away and run tpa-ssh again for a new one",
                files.private.display()
            )
        })?;
        let public = key
            .public_key()
            .to_openssh()
            .context("cannot encode the public key")?;
        return Ok((files, public));
    }
    let key = PrivateKey::random(&mut rand::rng(), Algorithm::Ed25519)
        .context("cannot generate a key")?;
    let pem = key
        .to_openssh(LineEnding::LF)
        .context("cannot encode the key")?;
    write_private(&files.private, pem.as_bytes())?;
    let public = key
        .public_key()
        .to_openssh()
        .context("cannot encode the public key")?;
    write_private(&files.public, format!("{public} tpa-ssh\n").as_bytes())?;
    Ok((files, public))
}

/// A key of the user's own (`key_file` in config.toml): it must exist, be
/// private, and have its `.pub` next to it (it may be passphrase-protected).
fn configured_key(private: &Path) -> anyhow::Result<(KeyFiles, String)> {
    let files = KeyFiles::next_to(private.to_owned());
    if !files.private.exists() {
        bail!(
            "key_file {} does not exist: create it with `ssh-keygen -t ed25519 -f {}` or remove key_file from {}",
            files.private.display(),
            files.private.display(),
            settings::path()?.display()
        );
    }
    check_private(&files.private)?;
    let text = std::fs::read_to_string(&files.public).with_context(|| {
        format!(
            "cannot read the public key {} (make it with `ssh-keygen -y -f {} > {}`)",
            files.public.display(),
            files.private.display(),
            files.public.display()
        )
    })?;
    let public = ssh_key::PublicKey::from_openssh(text.trim())
        .with_context(|| format!("{} is not an OpenSSH public key", files.public.display()))?
        .to_openssh()
        .context("cannot encode the public key")?;
    Ok((files, public))
}

/// The certificate saved next to the key: `None` when there is none, an error
/// saying how to replace it when the file is not a certificate.
pub fn read_certificate(path: &Path) -> anyhow::Result<Option<ssh_key::Certificate>> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    };
    match ssh_key::Certificate::from_openssh(text.trim()) {
        Ok(cert) => Ok(Some(cert)),
        Err(e) => bail!(
            "the certificate file {} is corrupt ({e}): run `tpa-ssh cert --renew` to replace it",
            path.display()
        ),
    }
}
