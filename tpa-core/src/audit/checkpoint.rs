//! A signed audit checkpoint: the chain head (seq and hash) signed by the
//! audit key as an OpenSSH signature in namespace [`NAMESPACE`]; its signed
//! text and its JSON line. Signing and the key file live in the CA.

use serde_json::{Value, json};
use ssh_key::{HashAlg, PublicKey, SshSig};

/// The signature namespace: a checkpoint signature is valid for nothing else.
pub const NAMESPACE: &str = "tpa-audit-checkpoint@tpa";

/// A signed chain head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    /// The last event's seq.
    pub seq: i64,
    /// Its hash.
    pub hash: String,
    /// When it was signed (RFC 3339 UTC).
    pub time: String,
    /// `SHA256:…` of the audit key.
    pub key_fingerprint: String,
    /// The OpenSSH signature (PEM) over [`Checkpoint::message`].
    pub signature: String,
}

impl Checkpoint {
    /// The signed text.
    pub fn message(seq: i64, hash: &str, time: &str) -> String {
        format!("tpa audit checkpoint v1\nseq {seq}\nhash {hash}\ntime {time}\n")
    }

    /// Checks the signature with `key`.
    pub fn verify(&self, key: &PublicKey) -> Result<(), String> {
        let sig = SshSig::from_pem(self.signature.as_bytes())
            .map_err(|e| format!("checkpoint at seq {}: unreadable signature ({e})", self.seq))?;
        key.verify(
            NAMESPACE,
            Self::message(self.seq, &self.hash, &self.time).as_bytes(),
            &sig,
        )
        .map_err(|_| {
            format!(
                "checkpoint at seq {} (signed {}): the signature does not verify with audit key {}",
                self.seq,
                self.time,
                key.fingerprint(HashAlg::Sha256)
            )
        })
    }

    /// One line of an export or of the checkpoint file.
    pub fn to_json(&self) -> Value {
        json!({ "checkpoint": {
            "seq": self.seq,
            "hash": self.hash,
            "time": self.time,
            "key": self.key_fingerprint,
            "signature": self.signature,
        }})
    }

    /// Reads a line written by [`Checkpoint::to_json`]; `None` when the line is
    /// not a checkpoint (an event).
    pub fn from_json(v: &Value) -> Option<Result<Self, String>> {
        let c = v.get("checkpoint")?;
        let text = |k: &str| {
            c.get(k)
                .and_then(Value::as_str)
                .map(str::to_owned)
                .ok_or_else(|| format!("checkpoint field {k:?} missing or not a string"))
        };
        Some((|| {
            Ok(Self {
                seq: c
                    .get("seq")
                    .and_then(Value::as_i64)
                    .ok_or("checkpoint field \"seq\" missing or not an integer")?,
                hash: text("hash")?,
                time: text("time")?,
                key_fingerprint: text("key")?,
                signature: text("signature")?,
            })
        })())
    }
}
