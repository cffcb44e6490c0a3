//! The user's public key that a certificate is issued for, and what we accept.
//!
//! Accepted: Ed25519, ECDSA P-256/P-384/P-521, RSA of 3072 to 16384 bits.
//! Refused: DSA, short RSA, security-key and unknown algorithms, certificates,
//! authorized_keys option prefixes, multi-line input, over-long input, and any
//! of the CA's own keys (a certificate for the CA key would let the CA key's
//! holder log in as a user with no trace of a user key).

use ssh_key::public::{KeyData, PublicKey};
use ssh_key::{Algorithm, EcdsaCurve, HashAlg};

use crate::identifiers::shown;

/// Longest public key text accepted (a 16384-bit RSA key is under 3 KiB).
pub const MAX_PUBLIC_KEY_TEXT: usize = 16 * 1024;
/// Smallest RSA modulus accepted, in bits.
pub const MIN_RSA_BITS: u32 = 3072;
/// Largest RSA modulus accepted, in bits (bounds verification cost).
pub const MAX_RSA_BITS: u32 = 16384;

/// Why a public key cannot be certified.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SubjectKeyError {
    /// No key text at all.
    #[error("the public key is empty")]
    Empty,
    /// The text is larger than any real public key.
    #[error(
        "the public key text is {0} bytes; at most {MAX_PUBLIC_KEY_TEXT} are accepted (is the comment huge?)"
    )]
    TooLong(usize),
    /// More than one key line.
    #[error("the public key file holds more than one line; give exactly one public key")]
    MultipleLines,
    /// An authorized_keys line with options in front of the key.
    #[error(
        "the public key has an authorized_keys options prefix ({0}); give the bare key as in a .pub file"
    )]
    OptionsPrefix(String),
    /// The key is an OpenSSH certificate, not a plain key.
    #[error(
        "the key is a certificate ({0}); give the plain public key (the .pub file, not -cert.pub)"
    )]
    Certificate(String),
    /// DSA keys are broken and disabled in OpenSSH.
    #[error("DSA keys (ssh-dss) are not accepted; use an Ed25519 key (ssh-keygen -t ed25519)")]
    Dsa,
    /// RSA key below the minimum size.
    #[error(
        "RSA key of {0} bits is too short; at least {MIN_RSA_BITS} bits are required (or use ssh-keygen -t ed25519)"
    )]
    RsaTooShort(u32),
    /// RSA key above the maximum size.
    #[error("RSA key of {0} bits is too large; at most {MAX_RSA_BITS} bits are accepted")]
    RsaTooLarge(u32),
    /// An algorithm we do not certify.
    #[error(
        "key algorithm {0} is not accepted; use Ed25519, ECDSA (P-256, P-384, P-521) or RSA of at least 3072 bits"
    )]
    UnsupportedAlgorithm(String),
    /// The text is not an OpenSSH public key.
    #[error(
        "the public key is not valid OpenSSH public key text (\"ALGORITHM BASE64 [COMMENT]\"): {0}"
    )]
    Malformed(String),
    /// The key is one of the CA's own keys.
    #[error("the key is one of this CA's own keys; the CA never certifies its own key")]
    CaKey,
}

/// The exact bit length of an RSA modulus (ssh-key rounds to whole bytes).
fn rsa_modulus_bits(rsa: &ssh_key::public::RsaPublicKey) -> u32 {
    let bytes = rsa.n().as_positive_bytes().unwrap_or_default();
    match bytes.first() {
        None => 0,
        Some(&top) => {
            let len = u32::try_from(bytes.len()).unwrap_or(u32::MAX);
            len.saturating_mul(8).saturating_sub(top.leading_zeros())
        }
    }
}

/// A public key that passed every check and may be certified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubjectKey(KeyData);

const CERT_SUFFIX: &str = "-cert-v01@openssh.com";

impl SubjectKey {
    /// Parses one public key in `.pub` form (`ALGORITHM BASE64 [COMMENT]`).
    ///
    /// The comment is discarded: nothing the user wrote reaches the certificate.
    /// `ca_keys` are the CA's signing and trusted keys, which are refused.
    pub fn parse(text: &str, ca_keys: &[KeyData]) -> Result<Self, SubjectKeyError> {
        if text.len() > MAX_PUBLIC_KEY_TEXT {
            return Err(SubjectKeyError::TooLong(text.len()));
        }
        let mut lines = text.lines().map(str::trim).filter(|l| !l.is_empty());
        let line = lines.next().ok_or(SubjectKeyError::Empty)?;
        if lines.next().is_some() {
            return Err(SubjectKeyError::MultipleLines);
        }
        let first = line.split_ascii_whitespace().next().unwrap_or_default();
        if first.ends_with(CERT_SUFFIX) {
            return Err(SubjectKeyError::Certificate(shown(first)));
        }
        if first == "ssh-dss" {
            return Err(SubjectKeyError::Dsa);
        }
        if Algorithm::new(first).is_err() {
            let looks_like_options =
                first.contains('=') || first.contains('"') || first.contains(',');
            return Err(if looks_like_options {
                SubjectKeyError::OptionsPrefix(shown(first))
            } else {
                SubjectKeyError::UnsupportedAlgorithm(shown(first))
            });
        }
        let key =
            PublicKey::from_openssh(line).map_err(|e| SubjectKeyError::Malformed(e.to_string()))?;
        Self::from_key_data(key.key_data().clone(), ca_keys)
    }

    /// Checks key material that arrived already decoded (e.g. from a certificate).
    pub fn from_key_data(key: KeyData, ca_keys: &[KeyData]) -> Result<Self, SubjectKeyError> {
        match &key {
            KeyData::Ed25519(_) => {}
            KeyData::Ecdsa(ecdsa) => match ecdsa.curve() {
                EcdsaCurve::NistP256 | EcdsaCurve::NistP384 | EcdsaCurve::NistP521 => {}
            },
            KeyData::Rsa(rsa) => {
                let bits = rsa_modulus_bits(rsa);
                if bits < MIN_RSA_BITS {
                    return Err(SubjectKeyError::RsaTooShort(bits));
                }
                if bits > MAX_RSA_BITS {
                    return Err(SubjectKeyError::RsaTooLarge(bits));
                }
            }
            KeyData::Dsa(_) => return Err(SubjectKeyError::Dsa),
            KeyData::Certificate(_) => {
                return Err(SubjectKeyError::Certificate(key.algorithm().to_string()));
            }
            other => {
                return Err(SubjectKeyError::UnsupportedAlgorithm(
                    other.algorithm().to_string(),
                ));
            }
        }
        if ca_keys.contains(&key) {
            return Err(SubjectKeyError::CaKey);
        }
        Ok(Self(key))
    }

    /// The key material.
    pub fn key_data(&self) -> &KeyData {
        &self.0
    }

    /// The SHA-256 fingerprint as `ssh-keygen -l` prints it (`SHA256:…`).
    pub fn fingerprint(&self) -> String {
        self.0.fingerprint(HashAlg::Sha256).to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ssh_key::PrivateKey;

    fn rng() -> rand::rngs::ThreadRng {
        rand::rng()
    }

    fn ed25519_line() -> String {
        let key = PrivateKey::random(&mut rng(), Algorithm::Ed25519).unwrap();
        key.public_key().to_openssh().unwrap()
    }

    #[test]
    fn accepts_ed25519_and_ecdsa() {
        assert!(SubjectKey::parse(&ed25519_line(), &[]).is_ok());
        for curve in [
            EcdsaCurve::NistP256,
            EcdsaCurve::NistP384,
            EcdsaCurve::NistP521,
        ] {
            let key = PrivateKey::random(&mut rng(), Algorithm::Ecdsa { curve }).unwrap();
            let line = key.public_key().to_openssh().unwrap();
            assert!(SubjectKey::parse(&line, &[]).is_ok(), "{curve:?}");
        }
    }

    #[test]
    fn comment_is_dropped_and_trailing_newline_accepted() {
        let line = format!("{} alice@laptop\n", ed25519_line());
        assert!(SubjectKey::parse(&line, &[]).is_ok());
    }

    #[test]
    fn refuses_empty_and_multiple_lines() {
        assert_eq!(SubjectKey::parse("", &[]), Err(SubjectKeyError::Empty));
        assert_eq!(SubjectKey::parse(" \n\n", &[]), Err(SubjectKeyError::Empty));
        let two = format!("{}\n{}\n", ed25519_line(), ed25519_line());
        assert_eq!(
            SubjectKey::parse(&two, &[]),
            Err(SubjectKeyError::MultipleLines)
        );
    }

    #[test]
    fn refuses_huge_comment() {
        let line = format!("{} {}", ed25519_line(), "x".repeat(100_000));
        assert!(matches!(
            SubjectKey::parse(&line, &[]),
            Err(SubjectKeyError::TooLong(_))
        ));
    }

    #[test]
    fn refuses_options_prefix() {
        let line = format!("command=\"x\" {}", ed25519_line());
        assert!(matches!(
            SubjectKey::parse(&line, &[]),
            Err(SubjectKeyError::OptionsPrefix(_))
        ));
        let line = format!("no-pty,from=\"10.0.0.1\" {}", ed25519_line());
        assert!(matches!(
            SubjectKey::parse(&line, &[]),
            Err(SubjectKeyError::OptionsPrefix(_))
        ));
    }

    #[test]
    fn refuses_bad_base64() {
        let r = SubjectKey::parse("ssh-ed25519 AAAA!!!notbase64 x", &[]);
        assert!(matches!(r, Err(SubjectKeyError::Malformed(_))), "{r:?}");
        let r = SubjectKey::parse("ssh-ed25519", &[]);
        assert!(matches!(r, Err(SubjectKeyError::Malformed(_))), "{r:?}");
    }

    #[test]
    fn refuses_algorithm_mismatch() {
        // An Ed25519 blob labelled as ECDSA.
        let blob = ed25519_line();
        let b64 = blob.split(' ').nth(1).unwrap();
        let r = SubjectKey::parse(&format!("ecdsa-sha2-nistp256 {b64}"), &[]);
        assert!(matches!(r, Err(SubjectKeyError::Malformed(_))), "{r:?}");
    }

    #[test]
    fn refuses_dsa_and_unknown() {
        assert_eq!(
            SubjectKey::parse("ssh-dss AAAAB3NzaC1kc3MAAACBAP", &[]),
            Err(SubjectKeyError::Dsa)
        );
        let r = SubjectKey::parse("ssh-foo AAAA", &[]);
        assert!(
            matches!(r, Err(SubjectKeyError::UnsupportedAlgorithm(_))),
            "{r:?}"
        );
    }

    #[test]
    fn refuses_certificate() {
        let ca = PrivateKey::random(&mut rng(), Algorithm::Ed25519).unwrap();
        let user = PrivateKey::random(&mut rng(), Algorithm::Ed25519).unwrap();
        let mut b = ssh_key::certificate::Builder::new(
            [0u8; 16],
            user.public_key().key_data().clone(),
            0,
            100,
        )
        .unwrap();
        b.serial(1).unwrap();
        b.valid_principal("x").unwrap();
        let cert = b.sign(&ca).unwrap();
        let r = SubjectKey::parse(&cert.to_openssh().unwrap(), &[]);
        assert!(matches!(r, Err(SubjectKeyError::Certificate(_))), "{r:?}");
    }

    #[test]
    fn refuses_the_ca_key() {
        let ca = PrivateKey::random(&mut rng(), Algorithm::Ed25519).unwrap();
        let line = ca.public_key().to_openssh().unwrap();
        let ca_keys = [ca.public_key().key_data().clone()];
        assert_eq!(
            SubjectKey::parse(&line, &ca_keys),
            Err(SubjectKeyError::CaKey)
        );
    }

    #[test]
    fn rsa_sizes() {
        // Only the modulus size matters to this check, so a synthetic modulus will do
        // (generating real 3072-bit keys takes seconds in a debug build).
        let check = |bits: usize| {
            let mut n = vec![0xffu8; bits.div_ceil(8)];
            if !bits.is_multiple_of(8) {
                n[0] >>= 8 - bits % 8;
            }
            let n = ssh_key::Mpint::from_positive_bytes(&n);
            let e = ssh_key::Mpint::from_positive_bytes(&[1, 0, 1]);
            let public = ssh_key::public::RsaPublicKey::new(e, n).unwrap();
            let line = PublicKey::new(KeyData::Rsa(public), "")
                .to_openssh()
                .unwrap();
            SubjectKey::parse(&line, &[])
        };
        assert_eq!(check(1024), Err(SubjectKeyError::RsaTooShort(1024)));
        assert_eq!(check(2048), Err(SubjectKeyError::RsaTooShort(2048)));
        assert_eq!(check(3071), Err(SubjectKeyError::RsaTooShort(3071)));
        assert!(check(3072).is_ok());
        assert!(check(4096).is_ok());
        assert_eq!(check(16392), Err(SubjectKeyError::RsaTooLarge(16392)));
    }

    proptest::proptest! {
        #[test]
        fn parse_never_panics(text in proptest::prelude::any::<String>()) {
            let _ = SubjectKey::parse(&text, &[]);
        }

        #[test]
        fn parse_never_panics_on_plausible_lines(
            alg in "(ssh-ed25519|ecdsa-sha2-nistp256|ssh-rsa|ssh-dss|sk-ssh-ed25519@openssh.com)",
            b64 in "[A-Za-z0-9+/=]{0,120}",
            comment in "\\PC{0,20}",
        ) {
            let _ = SubjectKey::parse(&format!("{alg} {b64} {comment}"), &[]);
        }
    }
}
