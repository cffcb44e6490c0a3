//! User-certificate verification, as the bastion (and any relying party) must do it.
//!
//! russh's server checks only that a certificate's signature is consistent and
//! that its validity window holds. Everything else is here: the CA is one we
//! trust, the certificate is a user certificate, the login is an exact principal,
//! no unknown critical option, `source-address` holds, nothing is revoked.

use std::collections::HashSet;
use std::net::IpAddr;

use chrono::{DateTime, Utc};
use ssh_key::certificate::CertType;
use ssh_key::public::KeyData;
use ssh_key::{Certificate, HashAlg};

use crate::cert_options::{KNOWN_CRITICAL_OPTIONS, SourceAddresses};
use crate::serial::CertSerial;

/// The CA public keys whose user certificates are accepted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedCas(Vec<KeyData>);

impl TrustedCas {
    /// Trusts exactly these keys.
    pub fn new(keys: Vec<KeyData>) -> Self {
        Self(keys)
    }

    /// Whether `key` is trusted.
    pub fn contains(&self, key: &KeyData) -> bool {
        self.0.contains(key)
    }
}

/// What has been revoked: serials, key ids, whole CA keys.
#[derive(Debug, Clone, Default)]
pub struct Revocations {
    /// Revoked certificate serials.
    pub serials: HashSet<u64>,
    /// Revoked key ids (all certificates of a request share one).
    pub key_ids: HashSet<String>,
    /// Revoked CA keys, by SHA-256 fingerprint (`SHA256:…`).
    pub ca_fingerprints: HashSet<String>,
}

/// Why a certificate was rejected. Each variant is one check.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CertRejection {
    /// Signed by a key that is not a trusted CA.
    #[error("certificate is signed by an untrusted CA ({0})")]
    UntrustedCa(String),
    /// The signature does not verify.
    #[error("certificate signature is invalid")]
    BadSignature,
    /// A host certificate presented as a user certificate.
    #[error("certificate is a host certificate, not a user certificate")]
    NotUserCertificate,
    /// Serial 0 cannot be revoked by serial; TPA never issues it.
    #[error("certificate has serial 0, which TPA never issues")]
    SerialZero,
    /// The signing CA key is revoked.
    #[error("certificate's CA key is revoked ({0})")]
    RevokedCa(String),
    /// The serial is revoked.
    #[error("certificate serial {0} is revoked")]
    RevokedSerial(u64),
    /// The key id is revoked.
    #[error("certificate key id {0:?} is revoked")]
    RevokedKeyId(String),
    /// Before `valid_after`.
    #[error("certificate is not valid yet (valid after {valid_after}, now {now})")]
    NotYetValid {
        /// Unix seconds.
        valid_after: u64,
        /// Unix seconds.
        now: u64,
    },
    /// At or after `valid_before`.
    #[error("certificate expired (valid before {valid_before}, now {now})")]
    Expired {
        /// Unix seconds.
        valid_before: u64,
        /// Unix seconds.
        now: u64,
    },
    /// An empty principal list would mean "any login".
    #[error("certificate has no principals")]
    NoPrincipals,
    /// The login is not one of the principals.
    #[error("login {login:?} is not a principal of the certificate")]
    PrincipalMismatch {
        /// The requested login.
        login: String,
    },
    /// A critical option we do not understand.
    #[error("certificate has unknown critical option {0:?}")]
    UnknownCriticalOption(String),
    /// `source-address` is malformed.
    #[error("certificate has a malformed source-address option")]
    BadSourceAddress,
    /// The client address is outside `source-address`, or unknown.
    #[error("client address {0} is not allowed by the certificate's source-address")]
    SourceAddressMismatch(String),
}

/// A certificate that passed every check, with what the caller still enforces.
#[derive(Debug, Clone)]
pub struct VerifiedUserCert {
    /// The serial.
    pub serial: CertSerial,
    /// The key id (names the request).
    pub key_id: String,
    /// Unix seconds at which the certificate stops being valid.
    pub valid_before: u64,
    /// `force-command`, when present: the caller must run only this.
    pub force_command: Option<String>,
    /// The extensions the certificate grants (the caller enforces them).
    pub extensions: Vec<String>,
}

/// Verifies a user certificate for `login` presented from `peer` at `now`.
///
/// `peer` is the client's address; when the certificate has `source-address`
/// and `peer` is `None`, the certificate is rejected (deny when in doubt).
pub fn verify_user_cert(
    cert: &Certificate,
    trusted: &TrustedCas,
    login: &str,
    now: DateTime<Utc>,
    revocations: &Revocations,
    peer: Option<IpAddr>,
) -> Result<VerifiedUserCert, CertRejection> {
    let ca = cert.signature_key();
    let ca_fingerprint = ca.fingerprint(HashAlg::Sha256).to_string();
    if !trusted.contains(ca) {
        return Err(CertRejection::UntrustedCa(ca_fingerprint));
    }
    cert.verify_signature()
        .map_err(|_| CertRejection::BadSignature)?;
    if cert.cert_type() != CertType::User {
        return Err(CertRejection::NotUserCertificate);
    }
    let serial = CertSerial::new(cert.serial()).map_err(|_| CertRejection::SerialZero)?;
    if revocations.ca_fingerprints.contains(&ca_fingerprint) {
        return Err(CertRejection::RevokedCa(ca_fingerprint));
    }
    if revocations.serials.contains(&serial.get()) {
        return Err(CertRejection::RevokedSerial(serial.get()));
    }
    if revocations.key_ids.contains(cert.key_id()) {
        return Err(CertRejection::RevokedKeyId(cert.key_id().to_owned()));
    }
    let now = u64::try_from(now.timestamp()).unwrap_or(0);
    if now < cert.valid_after() {
        return Err(CertRejection::NotYetValid {
            valid_after: cert.valid_after(),
            now,
        });
    }
    if now >= cert.valid_before() {
        return Err(CertRejection::Expired {
            valid_before: cert.valid_before(),
            now,
        });
    }
    if cert.valid_principals().is_empty() {
        return Err(CertRejection::NoPrincipals);
    }
    if !cert.valid_principals().iter().any(|p| p == login) {
        return Err(CertRejection::PrincipalMismatch {
            login: login.to_owned(),
        });
    }
    if let Some(name) = cert
        .critical_options()
        .keys()
        .find(|k| !KNOWN_CRITICAL_OPTIONS.contains(&k.as_str()))
    {
        return Err(CertRejection::UnknownCriticalOption(name.clone()));
    }
    if let Some(list) = cert.critical_options().get("source-address") {
        let allowed = SourceAddresses::parse(list).map_err(|_| CertRejection::BadSourceAddress)?;
        match peer {
            Some(ip) if allowed.contains(ip) => {}
            Some(ip) => return Err(CertRejection::SourceAddressMismatch(ip.to_string())),
            None => return Err(CertRejection::SourceAddressMismatch("unknown".to_owned())),
        }
    }
    Ok(VerifiedUserCert {
        serial,
        key_id: cert.key_id().to_owned(),
        valid_before: cert.valid_before(),
        force_command: cert.critical_options().get("force-command").cloned(),
        extensions: cert.extensions().keys().cloned().collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use ssh_key::certificate::Builder;
    use ssh_key::{Algorithm, PrivateKey};

    const NOW: i64 = 1_800_000_000;

    struct Fixture {
        ca: PrivateKey,
        user: PrivateKey,
    }

    impl Fixture {
        fn new() -> Self {
            let mut rng = rand::rng();
            Self {
                ca: PrivateKey::random(&mut rng, Algorithm::Ed25519).unwrap(),
                user: PrivateKey::random(&mut rng, Algorithm::Ed25519).unwrap(),
            }
        }

        fn trusted(&self) -> TrustedCas {
            TrustedCas::new(vec![self.ca.public_key().key_data().clone()])
        }

        /// A valid certificate; `edit` changes one thing.
        fn cert(&self, edit: impl FnOnce(&mut Builder)) -> Certificate {
            self.cert_as(7, CertType::User, edit)
        }

        /// A certificate with the given serial and type (the builder sets each once).
        fn cert_as(
            &self,
            serial: u64,
            cert_type: CertType,
            edit: impl FnOnce(&mut Builder),
        ) -> Certificate {
            let now = NOW as u64;
            let mut b = Builder::new(
                [1; 32],
                self.user.public_key().key_data().clone(),
                now - 60,
                now + 600,
            )
            .unwrap();
            b.serial(serial).unwrap();
            b.cert_type(cert_type).unwrap();
            b.key_id("tpa:request=req_aaaaaaaaaaaaaaaaaaaaaaaaaa:user=alice")
                .unwrap();
            b.valid_principal("deploy").unwrap();
            edit(&mut b);
            b.sign(&self.ca).unwrap()
        }

        fn check(&self, cert: &Certificate) -> Result<VerifiedUserCert, CertRejection> {
            self.check_with(
                cert,
                &Revocations::default(),
                Some("10.1.1.1".parse().unwrap()),
            )
        }

        fn check_with(
            &self,
            cert: &Certificate,
            revocations: &Revocations,
            peer: Option<IpAddr>,
        ) -> Result<VerifiedUserCert, CertRejection> {
            let now = DateTime::from_timestamp(NOW, 0).unwrap();
            verify_user_cert(cert, &self.trusted(), "deploy", now, revocations, peer)
        }
    }

    #[test]
    fn valid_certificate_passes() {
        let f = Fixture::new();
        let v = f.check(&f.cert(|_| {})).unwrap();
        assert_eq!(v.serial.get(), 7);
        assert_eq!(v.valid_before, NOW as u64 + 600);
        assert_eq!(v.force_command, None);
    }

    #[test]
    fn rejects_untrusted_ca() {
        let f = Fixture::new();
        let other = Fixture::new();
        let cert = other.cert(|_| {});
        assert!(matches!(f.check(&cert), Err(CertRejection::UntrustedCa(_))));
    }

    #[test]
    fn rejects_bad_signature() {
        let f = Fixture::new();
        let cert = f.cert(|_| {});
        // Re-encode with one byte of the signed body flipped (the key id).
        let mut bytes = cert.to_bytes().unwrap();
        let pos = bytes.windows(3).position(|w| w == b"tpa").unwrap();
        bytes[pos] = b'T';
        let tampered = Certificate::from_bytes(&bytes).unwrap();
        assert_eq!(f.check(&tampered).unwrap_err(), CertRejection::BadSignature);
    }

    #[test]
    fn rejects_host_certificate() {
        let f = Fixture::new();
        let cert = f.cert_as(7, CertType::Host, |_| {});
        assert_eq!(
            f.check(&cert).unwrap_err(),
            CertRejection::NotUserCertificate
        );
    }

    #[test]
    fn rejects_serial_zero() {
        let f = Fixture::new();
        let cert = f.cert_as(0, CertType::User, |_| {});
        assert_eq!(f.check(&cert).unwrap_err(), CertRejection::SerialZero);
    }

    #[test]
    fn rejects_expired_and_not_yet_valid() {
        let f = Fixture::new();
        let now = NOW as u64;
        let expired = {
            let mut b = Builder::new(
                [1; 32],
                f.user.public_key().key_data().clone(),
                now - 600,
                now,
            )
            .unwrap();
            b.serial(7).unwrap();
            b.valid_principal("deploy").unwrap();
            b.sign(&f.ca).unwrap()
        };
        assert!(matches!(
            f.check(&expired),
            Err(CertRejection::Expired { .. })
        ));
        let future = {
            let mut b = Builder::new(
                [1; 32],
                f.user.public_key().key_data().clone(),
                now + 1,
                now + 600,
            )
            .unwrap();
            b.serial(7).unwrap();
            b.valid_principal("deploy").unwrap();
            b.sign(&f.ca).unwrap()
        };
        assert!(matches!(
            f.check(&future),
            Err(CertRejection::NotYetValid { .. })
        ));
    }

    #[test]
    fn rejects_other_principal() {
        let f = Fixture::new();
        let cert = f.cert(|_| {});
        let now = DateTime::from_timestamp(NOW, 0).unwrap();
        for login in ["root", "Deploy", "deploy ", "deplo", ""] {
            let r = verify_user_cert(
                &cert,
                &f.trusted(),
                login,
                now,
                &Revocations::default(),
                None,
            );
            assert!(
                matches!(r, Err(CertRejection::PrincipalMismatch { .. })),
                "{login:?}"
            );
        }
    }

    #[test]
    fn rejects_empty_principals() {
        let f = Fixture::new();
        let now = NOW as u64;
        let mut b = Builder::new(
            [1; 32],
            f.user.public_key().key_data().clone(),
            now - 60,
            now + 600,
        )
        .unwrap();
        b.serial(7).unwrap();
        b.all_principals_valid().unwrap();
        let cert = b.sign(&f.ca).unwrap();
        assert_eq!(f.check(&cert).unwrap_err(), CertRejection::NoPrincipals);
    }

    #[test]
    fn rejects_unknown_critical_option() {
        let f = Fixture::new();
        let cert = f.cert(|b| {
            b.critical_option("verify-required", "").unwrap();
        });
        assert_eq!(
            f.check(&cert).unwrap_err(),
            CertRejection::UnknownCriticalOption("verify-required".into())
        );
    }

    #[test]
    fn source_address_is_enforced() {
        let f = Fixture::new();
        let cert = f.cert(|b| {
            b.critical_option("source-address", "10.0.0.0/8").unwrap();
        });
        assert!(f.check(&cert).is_ok());
        let r = f.check_with(
            &cert,
            &Revocations::default(),
            Some("192.0.2.1".parse().unwrap()),
        );
        assert!(matches!(r, Err(CertRejection::SourceAddressMismatch(_))));
        let r = f.check_with(&cert, &Revocations::default(), None);
        assert!(matches!(r, Err(CertRejection::SourceAddressMismatch(_))));
        let bad = f.cert(|b| {
            b.critical_option("source-address", "10.0.0.0/99").unwrap();
        });
        assert_eq!(f.check(&bad).unwrap_err(), CertRejection::BadSourceAddress);
    }

    #[test]
    fn force_command_is_returned() {
        let f = Fixture::new();
        let cert = f.cert(|b| {
            b.critical_option("force-command", "uptime").unwrap();
        });
        assert_eq!(
            f.check(&cert).unwrap().force_command.as_deref(),
            Some("uptime")
        );
    }

    #[test]
    fn rejects_revoked_serial() {
        let f = Fixture::new();
        let mut r = Revocations::default();
        r.serials.insert(7);
        assert_eq!(
            f.check_with(&f.cert(|_| {}), &r, None).unwrap_err(),
            CertRejection::RevokedSerial(7)
        );
    }

    #[test]
    fn rejects_revoked_key_id() {
        let f = Fixture::new();
        let mut r = Revocations::default();
        r.key_ids
            .insert("tpa:request=req_aaaaaaaaaaaaaaaaaaaaaaaaaa:user=alice".into());
        assert!(matches!(
            f.check_with(&f.cert(|_| {}), &r, None),
            Err(CertRejection::RevokedKeyId(_))
        ));
    }

    #[test]
    fn rejects_revoked_ca() {
        let f = Fixture::new();
        let mut r = Revocations::default();
        r.ca_fingerprints
            .insert(f.ca.public_key().fingerprint(HashAlg::Sha256).to_string());
        assert!(matches!(
            f.check_with(&f.cert(|_| {}), &r, None),
            Err(CertRejection::RevokedCa(_))
        ));
    }
}
