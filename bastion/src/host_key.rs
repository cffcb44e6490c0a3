//! The bastion's own Ed25519 host key, persisted so that clients can pin it.
//!
//! The key lives at the configured `host_key_file`. On the first start, when the
//! file does not exist, it is generated and written with mode 0600 (never
//! overwriting anything: `create_new`), and its public half is written next to it
//! as `<file>.pub` for the known_hosts line. A key file that the group or others
//! can read is refused, as OpenSSH refuses one.

use std::io::Write as _;
use std::os::unix::fs::{MetadataExt as _, OpenOptionsExt as _};
use std::path::{Path, PathBuf};

use russh::keys::ssh_key::{Algorithm, HashAlg, LineEnding, PrivateKey};

/// Why the host key cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum HostKeyError {
    /// The file exists but cannot be read.
    #[error("cannot read host key {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The group or others may read or write it.
    #[error(
        "host key {path} has mode {mode:o}; it must not be accessible by group or others (chmod 600 {path})"
    )]
    Permissions {
        /// The file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// Not an unencrypted OpenSSH private key.
    #[error("host key {path} is not an unencrypted OpenSSH private key: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What the parser said.
        message: String,
    },
    /// A new key cannot be written.
    #[error("cannot create host key {path}: {source}")]
    Create {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// Key generation or encoding failed.
    #[error("cannot generate a host key: {0}")]
    Generate(String),
}

/// The host key and whether it was created by this call.
#[derive(Debug)]
pub struct HostKey {
    /// The private key russh serves.
    pub key: PrivateKey,
    /// Whether this start created it.
    pub created: bool,
}

impl HostKey {
    /// The `SHA256:…` fingerprint, for logs and for pinning.
    pub fn fingerprint(&self) -> String {
        self.key
            .public_key()
            .fingerprint(HashAlg::Sha256)
            .to_string()
    }
}

/// Loads the key at `path`, or creates it there when the file does not exist.
pub fn load_or_create(path: &Path) -> Result<HostKey, HostKeyError> {
    match std::fs::metadata(path) {
        Ok(_) => load(path).map(|key| HostKey {
            key,
            created: false,
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            create(path).map(|key| HostKey { key, created: true })
        }
        Err(source) => Err(HostKeyError::Read {
            path: path.to_owned(),
            source,
        }),
    }
}

fn load(path: &Path) -> Result<PrivateKey, HostKeyError> {
    let read_err = |source| HostKeyError::Read {
        path: path.to_owned(),
        source,
    };
    let mode = std::fs::metadata(path).map_err(read_err)?.mode() & 0o7777;
    if mode & 0o077 != 0 {
        return Err(HostKeyError::Permissions {
            path: path.to_owned(),
            mode,
        });
    }
    let text = std::fs::read_to_string(path).map_err(read_err)?;
    let parse_err = |message: String| HostKeyError::Parse {
        path: path.to_owned(),
        message,
    };
    let key = PrivateKey::from_openssh(&text).map_err(|e| parse_err(e.to_string()))?;
    if key.is_encrypted() {
        return Err(parse_err("it is encrypted".to_owned()));
    }
    Ok(key)
}

fn create(path: &Path) -> Result<PrivateKey, HostKeyError> {
    let key = PrivateKey::random(&mut rand::rng(), Algorithm::Ed25519)
        .map_err(|e| HostKeyError::Generate(e.to_string()))?;
    let private = key
        .to_openssh(LineEnding::LF)
        .map_err(|e| HostKeyError::Generate(e.to_string()))?;
    let public = key
        .public_key()
        .to_openssh()
        .map_err(|e| HostKeyError::Generate(e.to_string()))?;
    let create_err = |source| HostKeyError::Create {
        path: path.to_owned(),
        source,
    };
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(create_err)?;
    file.write_all(private.as_bytes()).map_err(create_err)?;
    file.sync_all().map_err(create_err)?;
    let mut pub_path = path.as_os_str().to_owned();
    pub_path.push(".pub");
    std::fs::write(PathBuf::from(pub_path), format!("{public}\n")).map_err(create_err)?;
    Ok(key)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt as _;

    #[test]
    fn created_once_with_mode_0600_then_reloaded() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("host_ed25519");
        let first = load_or_create(&path).unwrap();
        assert!(first.created);
        assert_eq!(std::fs::metadata(&path).unwrap().mode() & 0o777, 0o600);
        let public = std::fs::read_to_string(dir.path().join("host_ed25519.pub")).unwrap();
        assert!(public.starts_with("ssh-ed25519 "), "{public}");
        let second = load_or_create(&path).unwrap();
        assert!(!second.created);
        assert_eq!(first.fingerprint(), second.fingerprint());
    }

    #[test]
    fn readable_key_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("host_ed25519");
        load_or_create(&path).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = load_or_create(&path).unwrap_err();
        assert!(
            matches!(err, HostKeyError::Permissions { mode: 0o644, .. }),
            "{err}"
        );
    }

    #[test]
    fn garbage_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("host_ed25519");
        std::fs::write(&path, "not a key").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert!(matches!(
            load_or_create(&path).unwrap_err(),
            HostKeyError::Parse { .. }
        ));
    }
}
