//! Signed audit checkpoints: the audit key (Ed25519, its own file, same
//! permission checks as the CA key) signs the chain head (seq and hash) as an
//! OpenSSH signature (`ssh-keygen -Y sign` format, namespace [`NAMESPACE`]).
//!
//! A checkpoint is stored in the database and appended to an external file;
//! exports carry the checkpoints of their range. `audit verify` checks each
//! checkpoint's signature and that the trail still holds the signed hash at
//! the signed seq: a trail rewritten and re-hashed, truncated, or replaced by
//! an older copy no longer matches.

use std::io::{Read as _, Write as _};
use std::path::{Path, PathBuf};

use ssh_key::{HashAlg, LineEnding, PrivateKey, PublicKey};

use crate::signer::{SignerError, open_private_file};

pub use tpa_core::audit::checkpoint::{Checkpoint, NAMESPACE};

/// Why the audit key cannot be used: the CA key's checks, worded for the audit key.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct AuditKeyError(String);

impl From<SignerError> for AuditKeyError {
    fn from(e: SignerError) -> Self {
        let text = match e {
            SignerError::Missing(path) => format!(
                "audit key {} does not exist; `tpa-ca init` creates one, or create it with \
                 `ssh-keygen -t ed25519 -N '' -f FILE` and set audit.key_file",
                path.display()
            ),
            other => other
                .to_string()
                .replacen("CA key", "audit key", 1)
                .replace("ca.key_file", "audit.key_file")
                .replace("a CA key", "a key"),
        };
        Self(text)
    }
}

/// The loaded audit key.
pub struct AuditKey {
    key: PrivateKey,
    path: PathBuf,
}

impl std::fmt::Debug for AuditKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditKey")
            .field("path", &self.path)
            .field("fingerprint", &self.fingerprint())
            .finish()
    }
}

impl AuditKey {
    /// Loads the key: a private regular file of ours (as the CA key),
    /// unencrypted Ed25519.
    pub fn load(path: &Path) -> Result<Self, AuditKeyError> {
        let mut text = Vec::new();
        open_private_file(path)?
            .take(64 * 1024)
            .read_to_end(&mut text)
            .map_err(|source| SignerError::Io {
                path: path.to_owned(),
                source,
            })?;
        let key =
            PrivateKey::from_openssh(&text).map_err(|_| SignerError::Corrupt(path.to_owned()))?;
        if key.is_encrypted() || key.algorithm() != ssh_key::Algorithm::Ed25519 {
            return Err(AuditKeyError(format!(
                "audit key {} must be an unencrypted Ed25519 key",
                path.display()
            )));
        }
        Ok(Self {
            key,
            path: path.to_owned(),
        })
    }

    /// `SHA256:…` of the key.
    pub fn fingerprint(&self) -> String {
        self.key
            .public_key()
            .fingerprint(HashAlg::Sha256)
            .to_string()
    }

    /// Signs the head `(seq, hash)` at `time`.
    pub fn sign(&self, seq: i64, hash: &str, time: &str) -> Result<Checkpoint, SignerError> {
        let message = Checkpoint::message(seq, hash, time);
        let sig = self
            .key
            .sign(NAMESPACE, HashAlg::Sha512, message.as_bytes())
            .map_err(SignerError::Sign)?;
        Ok(Checkpoint {
            seq,
            hash: hash.to_owned(),
            time: time.to_owned(),
            key_fingerprint: self.fingerprint(),
            signature: sig.to_pem(LineEnding::LF).map_err(SignerError::Sign)?,
        })
    }
}

/// Signs the current chain head unless the latest checkpoint already covers
/// it; stores it (one `BEGIN IMMEDIATE` transaction) and then appends it to
/// `file`. Returns the checkpoint covering the head and whether it is new, or
/// `None` for an empty trail.
pub fn make(
    conn: &mut impl crate::store::Transact,
    key: &AuditKey,
    file: Option<&Path>,
    now: chrono::DateTime<chrono::Utc>,
) -> anyhow::Result<Option<(Checkpoint, bool)>> {
    use anyhow::Context as _;
    let made = conn
        .write(|tx| {
            let Some((seq, hash)) = crate::store::audit::head(tx)? else {
                return Ok(None);
            };
            if let Some(latest) = crate::store::audit_checkpoints::latest(tx)?
                && latest.seq >= seq
            {
                return Ok(Some((latest, false)));
            }
            let checkpoint = key
                .sign(seq, &hash, &tpa_core::audit::format_time(now))
                .map_err(|e| crate::store::StoreError::Aborted(format!("cannot sign: {e}")))?;
            // `false` when another replica stored one for this head first.
            let inserted = crate::store::audit_checkpoints::insert(tx, &checkpoint)?;
            Ok::<_, crate::store::StoreError>(Some((checkpoint, inserted)))
        })
        .context("cannot store the audit checkpoint")?;
    if let (Some((checkpoint, true)), Some(file)) = (&made, file) {
        append_to_file(file, checkpoint).with_context(|| {
            format!(
                "checkpoint at seq {} is stored but could not be appended to {}",
                checkpoint.seq,
                file.display()
            )
        })?;
    }
    Ok(made)
}

/// Creates the audit key at `path` (mode 0600, never overwriting) and its
/// public half at `<path>.pub`. Only `init` and `demo` call this.
pub fn generate(path: &Path) -> Result<PublicKey, AuditKeyError> {
    let mut public = crate::signer::generate_ca_key(path, None)?;
    public.set_comment("tpa-audit");
    let mut pub_path = path.as_os_str().to_owned();
    pub_path.push(".pub");
    let pub_path = PathBuf::from(pub_path);
    let io = |source| SignerError::Io {
        path: pub_path.clone(),
        source,
    };
    let line = public.to_openssh().map_err(SignerError::Sign)?;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&pub_path)
        .map_err(io)?;
    file.write_all(format!("{line}\n").as_bytes()).map_err(io)?;
    Ok(public)
}

/// Reads an audit public key file (`audit_key.pub`).
pub fn read_public_key(path: &Path) -> anyhow::Result<PublicKey> {
    use anyhow::Context as _;
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read audit public key {}", path.display()))?;
    PublicKey::from_openssh(text.trim())
        .with_context(|| format!("{} is not an OpenSSH public key", path.display()))
}

/// Appends `checkpoint` to the external checkpoint file and syncs it.
pub fn append_to_file(path: &Path, checkpoint: &Checkpoint) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o644)
        .open(path)?;
    file.write_all(format!("{}\n", checkpoint.to_json()).as_bytes())?;
    file.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn signed_checkpoints_verify_and_edits_do_not() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit_key");
        let public = generate(&path).unwrap();
        let key = AuditKey::load(&path).unwrap();
        let cp = key.sign(5, "ab", "2026-11-23T10:00:00.000000Z").unwrap();
        cp.verify(&public).unwrap();
        let line = cp.to_json();
        assert_eq!(Checkpoint::from_json(&line).unwrap().unwrap(), cp);
        let mut edited = cp.clone();
        edited.seq = 4;
        assert!(edited.verify(&public).is_err());
        let other = generate(&dir.path().join("other")).unwrap();
        assert!(cp.verify(&other).is_err());
        assert!(Checkpoint::from_json(&json!({"seq": 1})).is_none());
    }

    #[test]
    fn the_audit_key_gets_the_ca_key_file_checks() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit_key");
        let e = AuditKey::load(&path).unwrap_err().to_string();
        assert!(
            e.starts_with("audit key") && e.contains("does not exist"),
            "{e}"
        );
        generate(&path).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).unwrap();
        let e = AuditKey::load(&path).unwrap_err().to_string();
        assert!(e.starts_with("audit key") && e.contains("chmod 600"), "{e}");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&path, &link).unwrap();
        let e = AuditKey::load(&link).unwrap_err().to_string();
        assert!(
            e.contains("symbolic link") && e.contains("audit.key_file"),
            "{e}"
        );
        assert!(generate(&path).is_err(), "never overwrites");
        AuditKey::load(&path).unwrap();
    }
}
