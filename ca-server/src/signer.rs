//! The CA key: loading it safely, generating it (only for `init` and `demo`),
//! and signing certificate templates.
//!
//! Loading refuses a key that is missing, a symlink, not a regular file, not
//! owned by us, readable by group or others, corrupt, or encrypted with a missing
//! or wrong passphrase. The file is opened with `O_NOFOLLOW` and checked through
//! the open descriptor, so nothing can be swapped between check and read.

use std::fs::File;
use std::io::{Read, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use rand::RngExt;
use rustix::fs::{Mode, OFlags};
use ssh_key::public::KeyData;
use ssh_key::{Algorithm, Certificate, HashAlg, LineEnding, PrivateKey, PublicKey};
use tpa_core::CertTemplate;

use crate::config::CaConfig;

/// Why the CA key cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum SignerError {
    /// No file at the configured path.
    #[error(
        "CA key {0} does not exist; create one with `tpa-ca init --data-dir DIR` or fix ca.key_file"
    )]
    Missing(PathBuf),
    /// The path is a symbolic link.
    #[error("CA key {0} is a symbolic link; point ca.key_file at the key file itself")]
    Symlink(PathBuf),
    /// A directory, device or other non-file.
    #[error("CA key {0} is not a regular file")]
    NotAFile(PathBuf),
    /// Owned by another user.
    #[error("CA key {path} is owned by uid {owner}, not by the CA's user (uid {us}); chown it")]
    WrongOwner {
        /// The file.
        path: PathBuf,
        /// Its owner.
        owner: u32,
        /// Our effective uid.
        us: u32,
    },
    /// Readable or writable by group or others.
    #[error(
        "CA key {path} has permissions {mode:04o}; it must not be accessible by group or others: run `chmod 600 {path}`"
    )]
    LoosePermissions {
        /// The file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// Another I/O failure.
    #[error("cannot read CA key {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// Not an OpenSSH private key.
    #[error("CA key {0} is not a valid OpenSSH private key (corrupt or wrong file)")]
    Corrupt(PathBuf),
    /// The key is encrypted and no passphrase file is configured.
    #[error("CA key {0} is encrypted; set ca.passphrase_file to a file holding its passphrase")]
    PassphraseRequired(PathBuf),
    /// The passphrase does not decrypt the key.
    #[error("CA key {0} cannot be decrypted: wrong passphrase in ca.passphrase_file")]
    WrongPassphrase(PathBuf),
    /// The passphrase file is unusable.
    #[error("passphrase file {path}: {message}")]
    PassphraseFile {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// Only Ed25519 and ECDSA CA keys are supported.
    #[error("CA key {path} uses {algorithm}; TPA signs with Ed25519 or ECDSA keys")]
    UnsupportedAlgorithm {
        /// The file.
        path: PathBuf,
        /// The key's algorithm.
        algorithm: String,
    },
    /// An extra trusted public key cannot be read.
    #[error("extra trusted CA public key {path} is unusable: {message}")]
    ExtraKey {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// The key file already exists (`init`).
    #[error("{0} already exists; refusing to overwrite a CA key")]
    AlreadyExists(PathBuf),
    /// Signing failed.
    #[error("signing failed: {0}")]
    Sign(ssh_key::Error),
}

/// The loaded CA: the signing key and every public key we publish as trusted.
pub struct Signer {
    key: PrivateKey,
    key_path: PathBuf,
    /// Signing key first, then the extra trusted keys.
    trusted: Vec<PublicKey>,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signer")
            .field("key_path", &self.key_path)
            .field("fingerprint", &self.fingerprint())
            .finish()
    }
}

/// Opens `path` without following a symlink and checks it is a private regular file of ours.
pub(crate) fn open_private_file(path: &Path) -> Result<File, SignerError> {
    let io = |source| SignerError::Io {
        path: path.to_owned(),
        source,
    };
    let fd = rustix::fs::open(
        path,
        OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC | OFlags::NONBLOCK,
        Mode::empty(),
    )
    .map_err(|e| match e {
        rustix::io::Errno::NOENT => SignerError::Missing(path.to_owned()),
        rustix::io::Errno::LOOP => SignerError::Symlink(path.to_owned()),
        e => io(e.into()),
    })?;
    let file = File::from(fd);
    check_private_metadata(path, &file.metadata().map_err(io)?)?;
    Ok(file)
}

fn check_private_metadata(path: &Path, meta: &std::fs::Metadata) -> Result<(), SignerError> {
    if !meta.is_file() {
        return Err(SignerError::NotAFile(path.to_owned()));
    }
    let us = rustix::process::geteuid().as_raw();
    if meta.uid() != us {
        return Err(SignerError::WrongOwner {
            path: path.to_owned(),
            owner: meta.uid(),
            us,
        });
    }
    let mode = meta.mode() & 0o7777;
    if mode & 0o077 != 0 {
        return Err(SignerError::LoosePermissions {
            path: path.to_owned(),
            mode,
        });
    }
    Ok(())
}

fn read_passphrase(path: &Path) -> Result<Vec<u8>, SignerError> {
    let file = open_private_file(path).map_err(|e| SignerError::PassphraseFile {
        path: path.to_owned(),
        message: e.to_string(),
    })?;
    let mut bytes = Vec::new();
    file.take(4096)
        .read_to_end(&mut bytes)
        .map_err(|e| SignerError::PassphraseFile {
            path: path.to_owned(),
            message: e.to_string(),
        })?;
    while bytes.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
        bytes.pop();
    }
    if bytes.is_empty() {
        return Err(SignerError::PassphraseFile {
            path: path.to_owned(),
            message: "is empty".to_owned(),
        });
    }
    Ok(bytes)
}

impl Signer {
    /// Loads the CA key and the extra trusted public keys named in the configuration.
    pub fn load(config: &CaConfig) -> Result<Self, SignerError> {
        let path = &config.key_file;
        let mut text = Vec::new();
        open_private_file(path)?
            .take(1024 * 1024)
            .read_to_end(&mut text)
            .map_err(|source| SignerError::Io {
                path: path.clone(),
                source,
            })?;
        let key =
            PrivateKey::from_openssh(&text).map_err(|_| SignerError::Corrupt(path.clone()))?;
        let key = if key.is_encrypted() {
            let pass_path = config
                .passphrase_file
                .as_ref()
                .ok_or_else(|| SignerError::PassphraseRequired(path.clone()))?;
            let passphrase = read_passphrase(pass_path)?;
            key.decrypt(&passphrase)
                .map_err(|_| SignerError::WrongPassphrase(path.clone()))?
        } else {
            key
        };
        match key.algorithm() {
            Algorithm::Ed25519 | Algorithm::Ecdsa { .. } => {}
            other => {
                return Err(SignerError::UnsupportedAlgorithm {
                    path: path.clone(),
                    algorithm: other.to_string(),
                });
            }
        }
        let mut trusted = vec![PublicKey::new(
            key.public_key().key_data().clone(),
            "tpa-user-ca",
        )];
        for extra in &config.extra_trusted_public_key_files {
            let bad = |message: String| SignerError::ExtraKey {
                path: extra.clone(),
                message,
            };
            let text = std::fs::read_to_string(extra).map_err(|e| bad(e.to_string()))?;
            // Exactly one key per file: a second line would otherwise be swallowed
            // into the first key's comment and published to every host.
            let mut lines = text
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty() && !l.starts_with('#'));
            let (Some(line), None) = (lines.next(), lines.next()) else {
                return Err(bad("must hold exactly one public key line".to_owned()));
            };
            let public = PublicKey::from_openssh(line)
                .map_err(|e| bad(format!("not an OpenSSH public key ({e})")))?;
            if public.key_data().is_certificate() {
                return Err(bad("is a certificate, not a public key".to_owned()));
            }
            if !trusted.iter().any(|t| t.key_data() == public.key_data()) {
                // A fixed comment: nothing from the file but the key reaches /ca.pub.
                trusted.push(PublicKey::new(
                    public.key_data().clone(),
                    "tpa-user-ca-extra",
                ));
            }
        }
        Ok(Self {
            key,
            key_path: path.clone(),
            trusted,
        })
    }

    /// Signs a decided template. The template is the only input.
    pub fn sign(&self, template: &CertTemplate) -> Result<Certificate, SignerError> {
        let nonce: [u8; 32] = rand::rng().random();
        let builder = template.to_builder(nonce).map_err(SignerError::Sign)?;
        builder.sign(&self.key).map_err(SignerError::Sign)
    }

    /// Every CA public key: the signing key and the extra trusted ones.
    pub fn ca_key_data(&self) -> Vec<KeyData> {
        self.trusted.iter().map(|k| k.key_data().clone()).collect()
    }

    /// `/ca.pub`: one trusted key per line, for sshd's `TrustedUserCAKeys`.
    pub fn trusted_user_ca_keys(&self) -> String {
        self.trusted_user_ca_keys_except(&[])
    }

    /// Like [`Signer::trusted_user_ca_keys`], leaving out the keys whose
    /// SHA-256 fingerprint is in `revoked`.
    pub fn trusted_user_ca_keys_except(&self, revoked: &[String]) -> String {
        self.trusted
            .iter()
            .filter(|k| !revoked.contains(&k.fingerprint(HashAlg::Sha256).to_string()))
            .filter_map(|k| k.to_openssh().ok())
            .map(|line| line + "\n")
            .collect()
    }

    /// The signing key's SHA-256 fingerprint.
    pub fn fingerprint(&self) -> String {
        self.key
            .public_key()
            .fingerprint(HashAlg::Sha256)
            .to_string()
    }

    /// Re-checks the key file's type, owner and permissions (for `/healthz`).
    pub fn check_key_file(&self) -> Result<(), SignerError> {
        open_private_file(&self.key_path).map(drop)
    }
}

/// Creates a new Ed25519 CA key at `path` (mode 0600, never overwriting), optionally
/// encrypted. Only `init` and `demo` call this.
pub fn generate_ca_key(path: &Path, passphrase: Option<&[u8]>) -> Result<PublicKey, SignerError> {
    let io = |source| SignerError::Io {
        path: path.to_owned(),
        source,
    };
    let mut rng = rand::rng();
    let key = PrivateKey::random(&mut rng, Algorithm::Ed25519).map_err(SignerError::Sign)?;
    let mut public = key.public_key().clone();
    public.set_comment("tpa-user-ca");
    let key = match passphrase {
        Some(p) => key.encrypt(&mut rng, p).map_err(SignerError::Sign)?,
        None => key,
    };
    let pem = key.to_openssh(LineEnding::LF).map_err(SignerError::Sign)?;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(OFlags::NOFOLLOW.bits() as i32)
        .open(path)
        .map_err(|e| {
            if e.kind() == std::io::ErrorKind::AlreadyExists {
                SignerError::AlreadyExists(path.to_owned())
            } else {
                io(e)
            }
        })?;
    file.write_all(pem.as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(io)?;
    Ok(public)
}

/// Reads a passphrase for `init` from a file given on the command line.
pub fn read_init_passphrase(path: &Path) -> Result<Vec<u8>, SignerError> {
    read_passphrase(path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn config(dir: &Path) -> CaConfig {
        CaConfig {
            key_file: dir.join("ca_key"),
            passphrase_file: None,
            extra_trusted_public_key_files: vec![],
        }
    }

    fn write_private(path: &Path, bytes: &[u8]) {
        std::fs::write(path, bytes).unwrap();
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
    }

    #[test]
    fn generated_key_loads_and_has_mode_0600() {
        let dir = tempfile::tempdir().unwrap();
        generate_ca_key(&dir.path().join("ca_key"), None).unwrap();
        let mode = std::fs::metadata(dir.path().join("ca_key")).unwrap().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let signer = Signer::load(&config(dir.path())).unwrap();
        assert!(signer.trusted_user_ca_keys().starts_with("ssh-ed25519 "));
        assert!(signer.check_key_file().is_ok());
    }

    #[test]
    fn generate_never_overwrites() {
        let dir = tempfile::tempdir().unwrap();
        generate_ca_key(&dir.path().join("ca_key"), None).unwrap();
        let r = generate_ca_key(&dir.path().join("ca_key"), None);
        assert!(matches!(r, Err(SignerError::AlreadyExists(_))), "{r:?}");
    }

    #[test]
    fn missing_key_is_refused_and_not_created() {
        let dir = tempfile::tempdir().unwrap();
        let e = Signer::load(&config(dir.path())).unwrap_err();
        assert!(matches!(e, SignerError::Missing(_)), "{e:?}");
        assert!(e.to_string().contains("tpa-ca init"));
        assert!(!dir.path().join("ca_key").exists());
    }

    #[test]
    fn loose_permissions_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ca_key");
        generate_ca_key(&path, None).unwrap();
        for mode in [0o644, 0o640, 0o604, 0o660] {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
            let e = Signer::load(&config(dir.path())).unwrap_err();
            assert!(
                matches!(e, SignerError::LoosePermissions { .. }),
                "{mode:o}: {e:?}"
            );
            assert!(e.to_string().contains("chmod 600"));
        }
    }

    #[test]
    fn symlink_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().join("elsewhere");
        generate_ca_key(&real, None).unwrap();
        std::os::unix::fs::symlink(&real, dir.path().join("ca_key")).unwrap();
        let e = Signer::load(&config(dir.path())).unwrap_err();
        assert!(matches!(e, SignerError::Symlink(_)), "{e:?}");
    }

    #[test]
    fn directory_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("ca_key")).unwrap();
        std::fs::set_permissions(
            dir.path().join("ca_key"),
            std::fs::Permissions::from_mode(0o700),
        )
        .unwrap();
        let e = Signer::load(&config(dir.path())).unwrap_err();
        assert!(matches!(e, SignerError::NotAFile(_)), "{e:?}");
    }

    #[test]
    fn corrupt_key_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        write_private(
            &dir.path().join("ca_key"),
            b"-----BEGIN OPENSSH PRIVATE KEY-----\ngarbage\n",
        );
        let e = Signer::load(&config(dir.path())).unwrap_err();
        assert!(matches!(e, SignerError::Corrupt(_)), "{e:?}");
    }

    #[test]
    fn encrypted_key_needs_the_right_passphrase() {
        let dir = tempfile::tempdir().unwrap();
        generate_ca_key(&dir.path().join("ca_key"), Some(b"correct horse")).unwrap();
        let mut c = config(dir.path());
        let e = Signer::load(&c).unwrap_err();
        assert!(matches!(e, SignerError::PassphraseRequired(_)), "{e:?}");

        let pass = dir.path().join("pass");
        write_private(&pass, b"wrong\n");
        c.passphrase_file = Some(pass.clone());
        let e = Signer::load(&c).unwrap_err();
        assert!(matches!(e, SignerError::WrongPassphrase(_)), "{e:?}");

        write_private(&pass, b"correct horse\n");
        assert!(Signer::load(&c).is_ok());

        c.passphrase_file = Some(dir.path().join("nope"));
        let e = Signer::load(&c).unwrap_err();
        assert!(matches!(e, SignerError::PassphraseFile { .. }), "{e:?}");
    }

    #[test]
    fn extra_trusted_keys_are_published() {
        let dir = tempfile::tempdir().unwrap();
        generate_ca_key(&dir.path().join("ca_key"), None).unwrap();
        let old = generate_ca_key(&dir.path().join("old_key"), None).unwrap();
        std::fs::write(dir.path().join("old.pub"), old.to_openssh().unwrap()).unwrap();
        let mut c = config(dir.path());
        c.extra_trusted_public_key_files
            .push(dir.path().join("old.pub"));
        let signer = Signer::load(&c).unwrap();
        assert_eq!(signer.trusted_user_ca_keys().lines().count(), 2);
        assert_eq!(signer.ca_key_data().len(), 2);

        // A second key line must not ride along in the first key's comment.
        let another = generate_ca_key(&dir.path().join("another_key"), None).unwrap();
        let two = format!(
            "{}\n{}\n",
            old.to_openssh().unwrap(),
            another.to_openssh().unwrap()
        );
        std::fs::write(dir.path().join("old.pub"), two).unwrap();
        assert!(matches!(
            Signer::load(&c),
            Err(SignerError::ExtraKey { .. })
        ));

        std::fs::write(dir.path().join("old.pub"), "not a key").unwrap();
        assert!(matches!(
            Signer::load(&c),
            Err(SignerError::ExtraKey { .. })
        ));
    }
}
