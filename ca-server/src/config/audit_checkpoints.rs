//! `[audit]`: the audit key that signs checkpoints of the hash chain, how
//! often the server signs one, and the external file each checkpoint is also
//! appended to (so that restoring an older database copy can be detected).

use std::path::{Path, PathBuf};

use serde::Deserialize;
use tpa_core::HumanDuration;

/// Checkpoint settings; `None` in [`super::Config`] when `[audit]` has no key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditConfig {
    /// The Ed25519 audit key (OpenSSH private key, mode 0600); its public half
    /// is `<key_file>.pub`.
    pub key_file: PathBuf,
    /// How often `serve` signs the chain head (when it moved).
    pub checkpoint_interval: HumanDuration,
    /// Every checkpoint is also appended here (JSON lines), outside the database.
    pub checkpoint_file: Option<PathBuf>,
}

impl AuditConfig {
    /// The public half of the audit key: `<key_file>.pub`.
    pub fn public_key_file(&self) -> PathBuf {
        let mut name = self.key_file.clone().into_os_string();
        name.push(".pub");
        PathBuf::from(name)
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAudit {
    key_file: Option<PathBuf>,
    checkpoint_interval: Option<String>,
    checkpoint_file: Option<PathBuf>,
}

/// Checks `[audit]`.
pub(super) fn audit(
    raw: &RawAudit,
    resolve: &impl Fn(&Path) -> PathBuf,
) -> Result<Option<AuditConfig>, String> {
    let interval = HumanDuration::parse(raw.checkpoint_interval.as_deref().unwrap_or("10m"))
        .map_err(|e| format!("audit.checkpoint_interval: {e}"))?;
    if interval.as_secs() < 10 {
        return Err("audit.checkpoint_interval must be at least 10s".to_owned());
    }
    match &raw.key_file {
        None if raw.checkpoint_file.is_some() || raw.checkpoint_interval.is_some() => Err(
            "audit.key_file is required for signed checkpoints (tpa-ca init creates audit_key)"
                .to_owned(),
        ),
        None => Ok(None),
        Some(key) if key.as_os_str().is_empty() => {
            Err("audit.key_file must not be empty".to_owned())
        }
        Some(key) => Ok(Some(AuditConfig {
            key_file: resolve(key),
            checkpoint_interval: interval,
            checkpoint_file: raw.checkpoint_file.as_deref().map(resolve),
        })),
    }
}
