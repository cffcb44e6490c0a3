//! Certificate checks: the only way into the bastion.
//!
//! russh checks a certificate's signature and validity window, nothing else.
//! Every certificate goes through [`tpa_core::verify_user_cert`] for the SSH
//! username of the attempt (trusted CA, user type, principal, critical options,
//! `source-address`, revocations), and must then carry the `tpa-request@tpa`
//! extension naming the approved request and hosts: a certificate without it
//! (an administrator break-glass certificate) grants nothing to forward to.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::net::IpAddr;

use chrono::{DateTime, Utc};
use russh::keys::ssh_key::public::KeyData;
use russh::keys::ssh_key::{Certificate, HashAlg};
use tpa_core::template::{JUMP_LOGIN, REQUEST_EXTENSION, RequestGrant, RequestGrantError};
use tpa_core::{CertRejection, HostName, RequestId, Revocations, TrustedCas, verify_user_cert};

/// Whom the bastion trusts and what has been revoked. Swapped as a whole when
/// refreshed, so one check never sees half an update.
#[derive(Debug, Clone, Default)]
pub struct Trust {
    /// The user-CA keys.
    pub cas: TrustedCas,
    /// Revoked serials, key ids and CA keys.
    pub revocations: Revocations,
    /// Key id → Unix second at which its request's approved window ends
    /// (from the CA's revocation feed); sessions are cut then.
    pub windows: HashMap<String, u64>,
    /// True while the bastion has a revocation feed but does not know its
    /// state yet (no saved state, no successful poll): every login is refused.
    pub revocations_pending: bool,
    /// Set when the bastion has a revocation feed: a certificate is accepted
    /// only while the feed lists its request as active (approved, window open;
    /// the keys of `windows`).
    pub require_active: bool,
    /// The subject keys (`SHA256:…`) of the CA's unexpired certificates,
    /// from the feed: a key's probe is answered only for these. `None` without
    /// a feed (every probe is answered; the signed attempt decides).
    pub certified_keys: Option<HashSet<String>>,
}

impl Trust {
    /// Whether `grant` has been revoked since it was accepted: its key id,
    /// serial or CA key is revoked, or its CA key is no longer trusted.
    pub fn revokes(&self, grant: &Grant) -> bool {
        self.revocations.key_ids.contains(&grant.key_id)
            || self.revocations.serials.contains(&grant.serial)
            || self
                .revocations
                .ca_fingerprints
                .contains(&grant.ca_fingerprint)
            || !self.cas.contains(&grant.ca_key)
    }

    /// When a session of `grant` must end, and whether that is the window's
    /// end (rather than the certificate's).
    pub fn deadline(&self, grant: &Grant) -> (u64, bool) {
        match self.windows.get(&grant.key_id) {
            Some(&end) if end < grant.valid_before => (end, true),
            _ => (grant.valid_before, false),
        }
    }
}

/// What an accepted certificate allows on this connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    /// The SSH username the certificate was accepted for.
    pub login: String,
    /// The certificate serial.
    pub serial: u64,
    /// The certificate key id.
    pub key_id: String,
    /// The approved request.
    pub request: RequestId,
    /// The approved hosts.
    pub hosts: BTreeSet<HostName>,
    /// Unix seconds: the connection is cut then.
    pub valid_before: u64,
    /// The CA key that signed the certificate.
    pub ca_key: KeyData,
    /// Its `SHA256:…` fingerprint.
    pub ca_fingerprint: String,
}

/// Why an authentication attempt was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    /// `tpa_core::verify_user_cert` refused the certificate.
    #[error(transparent)]
    Certificate(#[from] CertRejection),
    /// No `tpa-request@tpa` extension: nothing approved to forward to.
    #[error(
        "certificate has no {REQUEST_EXTENSION} extension (no approved hosts; break-glass certificates are for direct sshd use)"
    )]
    NoRequestExtension,
    /// The extension is malformed or names no host.
    #[error(transparent)]
    BadRequestExtension(#[from] RequestGrantError),
    /// A plain public key, not a certificate.
    #[error("plain public key {0} refused: only TPA certificates are accepted")]
    PlainKey(String),
    /// A key whose probe was refused: not the subject key of an unexpired
    /// certificate of the CA (a plain key, another CA's certificate, an
    /// expired one).
    #[error("key {0} refused at its probe: it is not the key of an unexpired TPA certificate")]
    UnknownKey(String),
    /// A password or keyboard-interactive attempt.
    #[error("{0} authentication is not accepted: only TPA certificates are")]
    Method(&'static str),
    /// The feed does not list the certificate's request as active.
    #[error("request {0} is not active at the CA (not approved, or its window is not open)")]
    RequestNotActive(String),
    /// The bastion does not know yet what has been revoked.
    #[error(
        "revocation state unknown (no saved state and the CA's revocation feed has not answered yet)"
    )]
    RevocationStateUnknown,
}

/// Checks `cert` for an attempt as `login` from `peer` at `now`.
pub fn check_certificate(
    cert: &Certificate,
    login: &str,
    now: DateTime<Utc>,
    trust: &Trust,
    peer: Option<IpAddr>,
) -> Result<Grant, Rejection> {
    if trust.revocations_pending {
        return Err(Rejection::RevocationStateUnknown);
    }
    // The jump login stands for "whichever principal": every other check
    // still runs, and no certificate without principals passes.
    let principals = cert.valid_principals();
    let jump = login == JUMP_LOGIN && !principals.is_empty();
    let checked_login = match principals.first() {
        Some(first) if jump => first.as_str(),
        _ => login,
    };
    let verified = verify_user_cert(
        cert,
        &trust.cas,
        checked_login,
        now,
        &trust.revocations,
        peer,
    )?;
    let value = cert
        .extensions()
        .get(REQUEST_EXTENSION)
        .ok_or(Rejection::NoRequestExtension)?;
    let grant = RequestGrant::parse(value)?;
    // The window end is checked here too: while the CA is unreachable the
    // saved windows are not pruned, and an ended window grants nothing.
    let now_unix = u64::try_from(now.timestamp()).unwrap_or(0);
    let window_open = trust
        .windows
        .get(&verified.key_id)
        .is_some_and(|&end| end > now_unix);
    if trust.require_active && !window_open {
        return Err(Rejection::RequestNotActive(grant.request.to_string()));
    }
    Ok(Grant {
        // Through the jump login, the logins the certificate allows on hosts
        // (which one is used there is inside the encrypted session).
        login: if jump {
            principal_list(principals)
        } else {
            login.to_owned()
        },
        serial: verified.serial.get(),
        key_id: verified.key_id,
        request: grant.request,
        hosts: grant.hosts,
        valid_before: verified.valid_before,
        ca_key: cert.signature_key().clone(),
        ca_fingerprint: cert
            .signature_key()
            .fingerprint(HashAlg::Sha256)
            .to_string(),
    })
}

/// The longest login a session record carries: the CA refuses a record
/// whose login is longer than 512 bytes.
const MAX_RECORDED_LOGIN: usize = 480;

/// The certificate's principals for a session record, cut to
/// [`MAX_RECORDED_LOGIN`] with a count of those left out: host-scoped
/// principals of a certificate covering many host groups would otherwise
/// make a record the CA refuses (and lose it).
fn principal_list<S: AsRef<str>>(principals: &[S]) -> String {
    let mut out = String::new();
    for (i, p) in principals.iter().enumerate() {
        let p = p.as_ref();
        let more = principals.len() - i;
        // Room for the principal and, if any follow it, the note.
        if out.len() + 1 + p.len() + 16 > MAX_RECORDED_LOGIN {
            out.push_str(&format!(",(+{more} more)"));
            break;
        }
        if !out.is_empty() {
            out.push(',');
        }
        out.push_str(p);
    }
    out
}

/// What the holder of a refused certificate can do about it, for the
/// message the client shows (never anything about other users).
pub fn advice(rejection: &Rejection) -> &'static str {
    match rejection {
        Rejection::Certificate(CertRejection::PrincipalMismatch { .. }) => {
            "connect to the bastion as \"tpa\" (the ssh_config from `tpa-ssh config` does), or as one of the certificate's principals"
        }
        Rejection::Certificate(
            CertRejection::Expired { .. }
            | CertRejection::RevokedSerial(_)
            | CertRejection::RevokedKeyId(_)
            | CertRejection::RevokedCa(_),
        )
        | Rejection::RequestNotActive(_) => {
            "see `tpa-ssh status`; for a new certificate, `tpa-ssh cert REQUEST` or a new `tpa-ssh request`"
        }
        Rejection::Certificate(CertRejection::NotYetValid { .. }) => {
            "check this machine's clock, or wait a minute and try again"
        }
        Rejection::Certificate(CertRejection::SourceAddressMismatch(_)) => {
            "this certificate may be used only from the addresses its request allows"
        }
        Rejection::RevocationStateUnknown => {
            "the bastion cannot reach the CA yet; try again in a minute"
        }
        Rejection::NoRequestExtension => {
            "break-glass certificates are for direct sshd use; for the bastion, use `tpa-ssh request`"
        }
        _ => "ask the bastion's operator; the refusal is in its log and the CA's audit trail",
    }
}

/// A short description of a certificate for logs: serial, key id, CA
/// fingerprint. Never the key material.
pub fn describe(cert: &Certificate) -> String {
    format!(
        "serial {} key id {:?} signed by {}",
        cert.serial(),
        cert.key_id(),
        cert.signature_key().fingerprint(HashAlg::Sha256)
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use russh::keys::ssh_key::certificate::{Builder, CertType};
    use russh::keys::ssh_key::{Algorithm, PrivateKey};

    const NOW: i64 = 1_800_000_000;
    const REQUEST: &str = "req_aaaaaaaaaaaaaaaaaaaaaaaaaa";

    fn now() -> DateTime<Utc> {
        DateTime::from_timestamp(NOW, 0).unwrap()
    }

    // Review of issues 12/13: the jump login records the certificate's
    // principals; with many host-scoped ones the list outgrew the CA's
    // 512-byte field and the record (and its batch) was refused.
    #[test]
    fn recorded_principals_fit_the_cas_field() {
        assert_eq!(principal_list(&["root"]), "root");
        assert_eq!(principal_list(&["root", "web:ops"]), "root,web:ops");
        let many: Vec<String> = (0..40)
            .map(|i| format!("group-{i:02}:{}", "x".repeat(20)))
            .collect();
        let list = principal_list(&many);
        assert!(list.len() <= 512, "{}", list.len());
        assert!(list.starts_with("group-00:"), "{list}");
        assert!(list.ends_with(" more)"), "{list}");
        let shown = list.matches("group-").count();
        assert!(list.contains(&format!("(+{} more)", 40 - shown)), "{list}");
    }

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

        fn trust(&self) -> Trust {
            Trust {
                cas: TrustedCas::new(vec![self.ca.public_key().key_data().clone()]),
                revocations: Revocations::default(),
                windows: HashMap::new(),
                revocations_pending: false,
                require_active: false,
                certified_keys: None,
            }
        }

        fn cert(&self, extension: Option<&str>) -> Certificate {
            let now = NOW as u64;
            let mut b = Builder::new(
                [1; 32],
                self.user.public_key().key_data().clone(),
                now - 60,
                now + 600,
            )
            .unwrap();
            b.serial(7).unwrap();
            b.cert_type(CertType::User).unwrap();
            b.key_id(format!("tpa:request={REQUEST}:user=alice"))
                .unwrap();
            b.valid_principal("deploy").unwrap();
            if let Some(value) = extension {
                b.extension(REQUEST_EXTENSION, value).unwrap();
            }
            b.sign(&self.ca).unwrap()
        }
    }

    #[test]
    fn request_certificate_grants_its_hosts() {
        let f = Fixture::new();
        let cert = f.cert(Some(&format!("request={REQUEST};hosts=db-1,web-1")));
        let grant = check_certificate(&cert, "deploy", now(), &f.trust(), None).unwrap();
        assert_eq!(grant.login, "deploy");
        assert_eq!(grant.serial, 7);
        assert_eq!(grant.request.as_str(), REQUEST);
        let hosts: Vec<&str> = grant.hosts.iter().map(HostName::as_str).collect();
        assert_eq!(hosts, ["db-1", "web-1"]);
        assert_eq!(grant.valid_before, NOW as u64 + 600);
    }

    #[test]
    fn every_certificate_goes_through_verify_user_cert() {
        let f = Fixture::new();
        let cert = f.cert(Some(&format!("request={REQUEST};hosts=web-1")));
        let check = |login: &str, at: i64, trust: &Trust| {
            check_certificate(
                &cert,
                login,
                DateTime::from_timestamp(at, 0).unwrap(),
                trust,
                None,
            )
        };
        assert!(matches!(
            check("root", NOW, &f.trust()),
            Err(Rejection::Certificate(
                CertRejection::PrincipalMismatch { .. }
            ))
        ));
        assert!(matches!(
            check("deploy", NOW + 600, &f.trust()),
            Err(Rejection::Certificate(CertRejection::Expired { .. }))
        ));
        assert!(matches!(
            check("deploy", NOW - 61, &f.trust()),
            Err(Rejection::Certificate(CertRejection::NotYetValid { .. }))
        ));
        assert!(matches!(
            check("deploy", NOW, &Trust::default()),
            Err(Rejection::Certificate(CertRejection::UntrustedCa(_)))
        ));
        let mut revoked = f.trust();
        revoked.revocations.serials.insert(7);
        assert!(matches!(
            check("deploy", NOW, &revoked),
            Err(Rejection::Certificate(CertRejection::RevokedSerial(7)))
        ));
        // With a feed, the request must be listed as active.
        let mut feed = f.trust();
        feed.require_active = true;
        assert_eq!(
            check("deploy", NOW, &feed),
            Err(Rejection::RequestNotActive(REQUEST.to_owned()))
        );
        feed.windows.insert(
            format!("tpa:request={REQUEST}:user=alice"),
            NOW as u64 + 600,
        );
        assert!(check("deploy", NOW, &feed).is_ok());
        // Security review (rev-bastion): a window that has ended (the feed
        // unreachable since, so nothing pruned it) does not count as active.
        feed.windows
            .insert(format!("tpa:request={REQUEST}:user=alice"), NOW as u64);
        assert_eq!(
            check("deploy", NOW, &feed),
            Err(Rejection::RequestNotActive(REQUEST.to_owned()))
        );
        let mut pending = f.trust();
        pending.revocations_pending = true;
        assert_eq!(
            check("deploy", NOW, &pending),
            Err(Rejection::RevocationStateUnknown)
        );
    }

    #[test]
    fn the_jump_login_stands_for_any_principal_and_skips_no_other_check() {
        // Issue 12: `ssh -J` failed for every local user name that was not a
        // principal of the certificate.
        let f = Fixture::new();
        let cert = f.cert(Some(&format!("request={REQUEST};hosts=web-1")));
        let grant = check_certificate(&cert, JUMP_LOGIN, now(), &f.trust(), None).unwrap();
        assert_eq!(grant.login, "deploy");
        let mut revoked = f.trust();
        revoked.revocations.serials.insert(7);
        assert!(matches!(
            check_certificate(&cert, JUMP_LOGIN, now(), &revoked, None),
            Err(Rejection::Certificate(CertRejection::RevokedSerial(7)))
        ));
        assert!(matches!(
            check_certificate(&cert, JUMP_LOGIN, now(), &Trust::default(), None),
            Err(Rejection::Certificate(CertRejection::UntrustedCa(_)))
        ));
        // Any other login must still be a principal, and says what to do.
        let refused = check_certificate(&cert, "ncalice", now(), &f.trust(), None).unwrap_err();
        assert!(
            refused
                .to_string()
                .contains("login \"ncalice\" is not a principal"),
            "{refused}"
        );
        assert!(advice(&refused).contains("\"tpa\""));
    }

    #[test]
    fn a_grant_is_revoked_by_key_id_serial_ca_or_distrust() {
        let f = Fixture::new();
        let cert = f.cert(Some(&format!("request={REQUEST};hosts=web-1")));
        let grant = check_certificate(&cert, "deploy", now(), &f.trust(), None).unwrap();
        assert!(!f.trust().revokes(&grant));
        let revoked = |edit: &dyn Fn(&mut Trust)| {
            let mut t = f.trust();
            edit(&mut t);
            t.revokes(&grant)
        };
        assert!(revoked(&|t| {
            t.revocations.key_ids.insert(grant.key_id.clone());
        }));
        assert!(revoked(&|t| {
            t.revocations.serials.insert(7);
        }));
        assert!(revoked(&|t| {
            t.revocations
                .ca_fingerprints
                .insert(grant.ca_fingerprint.clone());
        }));
        // The CA key was removed from /ca.pub (key rotation, compromise).
        assert!(revoked(&|t| t.cas = TrustedCas::default()));
    }

    #[test]
    fn certificate_without_request_extension_grants_nothing() {
        let f = Fixture::new();
        let check = |ext: Option<&str>| {
            check_certificate(&f.cert(ext), "deploy", now(), &f.trust(), None).unwrap_err()
        };
        assert_eq!(check(None), Rejection::NoRequestExtension);
        assert_eq!(
            check(Some(&format!("request={REQUEST};hosts="))),
            Rejection::BadRequestExtension(RequestGrantError::NoHosts)
        );
        assert_eq!(
            check(Some("hosts=web-1")),
            Rejection::BadRequestExtension(RequestGrantError::Malformed)
        );
    }

    #[test]
    fn description_has_no_key_material() {
        let f = Fixture::new();
        let cert = f.cert(None);
        let text = describe(&cert);
        let key = f.user.public_key().to_openssh().unwrap();
        let blob = key.split_whitespace().nth(1).unwrap();
        assert!(!text.contains(blob), "{text}");
        assert!(text.contains("serial 7"), "{text}");
    }
}
