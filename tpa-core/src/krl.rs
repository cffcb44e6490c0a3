//! OpenSSH Key Revocation Lists (OpenSSH's `PROTOCOL.krl`), written by TPA
//! itself (no crate writes them). Two kinds of section are produced: certificate
//! sections (revoked serials and key ids, per CA key) and one SHA-256
//! fingerprint section for whole keys (a revoked CA key: sshd and
//! `ssh-keygen -Q` check a certificate's CA key against it, so every certificate
//! it signed is refused). sshd reads the result through
//! `RevokedKeys`, and `ssh-keygen -Q -f KRL CERT` checks a certificate against it.

use std::collections::BTreeSet;

use ssh_key::public::KeyData;

/// `SSHKRL\n\0`.
const KRL_MAGIC: u64 = 0x5353_484b_524c_0a00;
const KRL_FORMAT_VERSION: u32 = 1;
const KRL_SECTION_CERTIFICATES: u8 = 1;
const KRL_SECTION_FINGERPRINT_SHA256: u8 = 5;
const KRL_SECTION_CERT_SERIAL_LIST: u8 = 0x20;
const KRL_SECTION_CERT_KEY_ID: u8 = 0x23;

/// What is revoked under one CA key (`None`: any CA, meaningful for key ids).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KrlCertSection {
    /// The CA key the serials belong to; `None` applies to every CA.
    pub ca_key: Option<KeyData>,
    /// Revoked certificate serials (never 0).
    pub serials: BTreeSet<u64>,
    /// Revoked key ids.
    pub key_ids: BTreeSet<String>,
}

/// Why a KRL cannot be written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KrlError {
    /// A CA key could not be encoded.
    #[error("cannot encode a CA key for the KRL: {0}")]
    Key(String),
    /// A field is longer than the format allows.
    #[error("a KRL field is too long")]
    TooLong,
}

fn put_string(out: &mut Vec<u8>, bytes: &[u8]) -> Result<(), KrlError> {
    let len = u32::try_from(bytes.len()).map_err(|_| KrlError::TooLong)?;
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(bytes);
    Ok(())
}

/// Encodes a KRL. `version` must grow with every change (sshd does not care,
/// but hosts syncing it can); `generated` is Unix seconds. `revoked_keys` are
/// the raw SHA-256 digests of whole public keys (for example a CA key) that
/// are revoked.
pub fn encode_krl(
    version: u64,
    generated: u64,
    comment: &str,
    sections: &[KrlCertSection],
    revoked_keys: &BTreeSet<[u8; 32]>,
) -> Result<Vec<u8>, KrlError> {
    let mut out = Vec::new();
    out.extend_from_slice(&KRL_MAGIC.to_be_bytes());
    out.extend_from_slice(&KRL_FORMAT_VERSION.to_be_bytes());
    out.extend_from_slice(&version.to_be_bytes());
    out.extend_from_slice(&generated.to_be_bytes());
    out.extend_from_slice(&0u64.to_be_bytes()); // flags
    put_string(&mut out, b"")?; // reserved
    put_string(&mut out, comment.as_bytes())?;
    for section in sections
        .iter()
        .filter(|s| !s.serials.is_empty() || !s.key_ids.is_empty())
    {
        let mut data = Vec::new();
        let ca_blob = match &section.ca_key {
            Some(key) => ssh_key::PublicKey::new(key.clone(), "")
                .to_bytes()
                .map_err(|e| KrlError::Key(e.to_string()))?,
            None => Vec::new(),
        };
        put_string(&mut data, &ca_blob)?;
        put_string(&mut data, b"")?; // reserved
        let serials: Vec<u64> = section
            .serials
            .iter()
            .copied()
            .filter(|s| *s != 0)
            .collect();
        if !serials.is_empty() {
            let mut list = Vec::with_capacity(serials.len() * 8);
            for s in serials {
                list.extend_from_slice(&s.to_be_bytes());
            }
            data.push(KRL_SECTION_CERT_SERIAL_LIST);
            put_string(&mut data, &list)?;
        }
        if !section.key_ids.is_empty() {
            let mut ids = Vec::new();
            for id in &section.key_ids {
                put_string(&mut ids, id.as_bytes())?;
            }
            data.push(KRL_SECTION_CERT_KEY_ID);
            put_string(&mut data, &ids)?;
        }
        out.push(KRL_SECTION_CERTIFICATES);
        put_string(&mut out, &data)?;
    }
    if !revoked_keys.is_empty() {
        // Sorted (a BTreeSet), as OpenSSH expects of hash lists.
        let mut data = Vec::with_capacity(revoked_keys.len() * 36);
        for digest in revoked_keys {
            put_string(&mut data, digest)?;
        }
        out.push(KRL_SECTION_FINGERPRINT_SHA256);
        put_string(&mut out, &data)?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_krl_is_just_the_header() {
        let none = BTreeSet::new();
        let krl = encode_krl(7, 1_800_000_000, "tpa", &[KrlCertSection::default()], &none).unwrap();
        assert_eq!(&krl[..8], b"SSHKRL\n\0");
        assert_eq!(&krl[8..12], &1u32.to_be_bytes());
        assert_eq!(&krl[12..20], &7u64.to_be_bytes());
        assert_eq!(
            krl.len(),
            8 + 4 + 8 + 8 + 8 + 4 + 4 + 3,
            "empty sections are left out"
        );
    }

    #[test]
    fn sections_hold_serials_and_key_ids() {
        let section = KrlCertSection {
            ca_key: None,
            serials: [5, 0, 9].into(),
            key_ids: ["tpa:request=req_x:user=a".to_owned()].into(),
        };
        let krl = encode_krl(1, 0, "", &[section], &BTreeSet::new()).unwrap();
        let body = &krl[8 + 4 + 8 + 8 + 8 + 4 + 4..];
        assert_eq!(body[0], KRL_SECTION_CERTIFICATES);
        // ca_key "" + reserved "" + serial list (2 serials, zero dropped) + key ids.
        let data = &body[5..];
        assert_eq!(&data[..8], &[0, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(data[8], KRL_SECTION_CERT_SERIAL_LIST);
        assert_eq!(&data[9..13], &16u32.to_be_bytes());
        assert_eq!(&data[13..21], &5u64.to_be_bytes());
        assert_eq!(&data[21..29], &9u64.to_be_bytes());
        assert_eq!(data[29], KRL_SECTION_CERT_KEY_ID);
    }

    #[test]
    fn revoked_keys_form_one_sha256_section() {
        let keys: BTreeSet<[u8; 32]> = [[2u8; 32], [1u8; 32]].into();
        let krl = encode_krl(1, 0, "", &[], &keys).unwrap();
        let body = &krl[8 + 4 + 8 + 8 + 8 + 4 + 4..];
        assert_eq!(body[0], KRL_SECTION_FINGERPRINT_SHA256);
        assert_eq!(&body[1..5], &72u32.to_be_bytes());
        // Sorted: [1; 32] first.
        assert_eq!(&body[5..9], &32u32.to_be_bytes());
        assert_eq!(body[9], 1);
        assert_eq!(body[9 + 32 + 4], 2);
        assert_eq!(body.len(), 5 + 72);
    }
}
