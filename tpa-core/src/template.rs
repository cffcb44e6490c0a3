//! The certificate template: from an approved scope to the exact certificate fields.
//!
//! This is the only place that decides what goes into a certificate. Every field
//! comes from the approved scope and the CA's rules, never from raw user text:
//! - serial: random, non-zero (uniqueness is the store's job);
//! - key id: `tpa:request=<id>:user=<name>` or `tpa:admin-issue:user=<name>`;
//! - `valid_after = now - 60 s` (clock skew backdate);
//! - `valid_before = min(window end, now + cert TTL)`;
//! - extensions: only those granted; critical options: only from policy.

use std::collections::BTreeSet;

use chrono::{DateTime, TimeDelta, Utc};
use ssh_key::certificate::{Builder, CertType};

use crate::cert_options::{CriticalOptions, Extensions};
use crate::duration::HumanDuration;
use crate::host::HostName;
use crate::identifiers::{Principal, RequestId, Username};
use crate::serial::CertSerial;
use crate::subject_key::SubjectKey;

/// The non-critical extension that tells the bastion which request a certificate
/// belongs to and which hosts it covers: `request=<id>;hosts=<a>,<b>`.
pub const REQUEST_EXTENSION: &str = "tpa-request@tpa";

/// The SSH login every valid TPA certificate may use at the bastion, whatever
/// its principals (issue 12): the bastion gives no shell, only forwards to
/// the hosts in [`REQUEST_EXTENSION`], and each host's sshd checks the
/// principal of the login used there. `tpa-ssh config` writes it as the
/// bastion's `User`, so `ssh -J` works for any local user name.
pub const JUMP_LOGIN: &str = "tpa";

/// How far `valid_after` is set back from the signing time, to absorb clock skew.
pub const BACKDATE: TimeDelta = TimeDelta::seconds(60);

/// Why a scope cannot become a certificate.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    /// No principal at all (a certificate without principals is valid for any login).
    #[error("a certificate needs at least one principal")]
    NoPrincipals,
    /// The approved window has already ended.
    #[error("the approved window ended at {0}; no certificate can be issued for it")]
    WindowEnded(DateTime<Utc>),
    /// The time does not fit the certificate encoding.
    #[error("time {0} cannot be encoded in a certificate")]
    TimeOutOfRange(DateTime<Utc>),
}

/// What a certificate is issued under: it names the request (or the admin path) and the user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CertOrigin {
    /// An approved access request of `user`.
    Request {
        /// The request.
        id: RequestId,
        /// The requester.
        user: Username,
    },
    /// The administrator break-glass path (`tpa-ca issue`), run by `admin`.
    AdminIssue {
        /// The administrator who ran the command.
        admin: Username,
    },
}

impl CertOrigin {
    /// The certificate key id, built from canonical fields only.
    pub fn key_id(&self) -> String {
        match self {
            CertOrigin::Request { id, user } => format!("tpa:request={id}:user={user}"),
            CertOrigin::AdminIssue { admin } => format!("tpa:admin-issue:user={admin}"),
        }
    }

    /// The request, when there is one.
    pub fn request_id(&self) -> Option<&RequestId> {
        match self {
            CertOrigin::Request { id, .. } => Some(id),
            CertOrigin::AdminIssue { .. } => None,
        }
    }
}

/// Everything an approval (or the admin path) decided, before signing.
#[derive(Debug, Clone)]
pub struct ApprovedScope {
    /// The key to certify (already checked).
    pub subject: SubjectKey,
    /// Request and user the certificate names.
    pub origin: CertOrigin,
    /// Logins; must not be empty.
    pub principals: BTreeSet<Principal>,
    /// Granted extensions (default none).
    pub extensions: Extensions,
    /// Critical options from policy.
    pub critical_options: CriticalOptions,
    /// When the approved access ends.
    pub window_end: DateTime<Utc>,
    /// The longest life of one certificate.
    pub cert_ttl: HumanDuration,
    /// The approved hosts (empty for the admin path, which names none).
    pub hosts: BTreeSet<HostName>,
}

/// The certificate fields, fully decided. Signing turns this into bytes.
#[derive(Debug, Clone)]
pub struct CertTemplate {
    /// The subject key.
    pub subject: SubjectKey,
    /// Random non-zero serial.
    pub serial: CertSerial,
    /// Canonical key id.
    pub key_id: String,
    /// The request, if any.
    pub origin: CertOrigin,
    /// Principals, sorted.
    pub principals: BTreeSet<Principal>,
    /// Unix seconds.
    pub valid_after: u64,
    /// Unix seconds.
    pub valid_before: u64,
    /// Granted extensions.
    pub extensions: Extensions,
    /// Critical options.
    pub critical_options: CriticalOptions,
    /// The approved hosts, carried in [`REQUEST_EXTENSION`] for requests.
    pub hosts: BTreeSet<HostName>,
}

fn unix(t: DateTime<Utc>) -> Result<u64, TemplateError> {
    u64::try_from(t.timestamp()).map_err(|_| TemplateError::TimeOutOfRange(t))
}

impl CertTemplate {
    /// Decides the certificate fields for `scope` at time `now`.
    pub fn new(
        scope: ApprovedScope,
        serial: CertSerial,
        now: DateTime<Utc>,
    ) -> Result<Self, TemplateError> {
        if scope.principals.is_empty() {
            return Err(TemplateError::NoPrincipals);
        }
        if scope.window_end <= now {
            return Err(TemplateError::WindowEnded(scope.window_end));
        }
        let ttl = TimeDelta::from_std(scope.cert_ttl.get())
            .map_err(|_| TemplateError::TimeOutOfRange(now))?;
        let ttl_end = now
            .checked_add_signed(ttl)
            .ok_or(TemplateError::TimeOutOfRange(now))?;
        let valid_before = unix(scope.window_end.min(ttl_end))?;
        let valid_after = unix(
            now.checked_sub_signed(BACKDATE)
                .ok_or(TemplateError::TimeOutOfRange(now))?,
        )?;
        Ok(Self {
            key_id: scope.origin.key_id(),
            subject: scope.subject,
            serial,
            origin: scope.origin,
            principals: scope.principals,
            valid_after,
            valid_before,
            extensions: scope.extensions,
            critical_options: scope.critical_options,
            hosts: scope.hosts,
        })
    }

    /// The value of [`REQUEST_EXTENSION`], for certificates issued for a request.
    pub fn request_extension(&self) -> Option<String> {
        let id = self.origin.request_id()?;
        let hosts: Vec<&str> = self.hosts.iter().map(HostName::as_str).collect();
        Some(format!("request={id};hosts={}", hosts.join(",")))
    }

    /// A certificate builder holding exactly these fields, ready for the CA to sign.
    pub fn to_builder(&self, nonce: [u8; 32]) -> Result<Builder, ssh_key::Error> {
        let mut b = Builder::new(
            nonce,
            self.subject.key_data().clone(),
            self.valid_after,
            self.valid_before,
        )?;
        b.serial(self.serial.get())?;
        b.cert_type(CertType::User)?;
        b.key_id(self.key_id.clone())?;
        for p in &self.principals {
            b.valid_principal(p.as_str())?;
        }
        if let Some(cmd) = &self.critical_options.force_command {
            b.critical_option("force-command", cmd.as_str())?;
        }
        if let Some(src) = &self.critical_options.source_address {
            b.critical_option("source-address", src.to_string())?;
        }
        for e in &self.extensions {
            b.extension(e.name(), "")?;
        }
        if let Some(value) = self.request_extension() {
            b.extension(REQUEST_EXTENSION, value)?;
        }
        Ok(b)
    }
}

/// The parsed value of [`REQUEST_EXTENSION`]: the request a certificate was
/// issued for and the hosts it was approved for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestGrant {
    /// The approved request.
    pub request: RequestId,
    /// The approved hosts; never empty.
    pub hosts: BTreeSet<HostName>,
}

/// Why a [`REQUEST_EXTENSION`] value cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestGrantError {
    /// Not `request=<id>;hosts=<a>,<b>`.
    #[error("the {REQUEST_EXTENSION} extension is not request=<id>;hosts=<a>,<b>")]
    Malformed,
    /// The request id is not one TPA issues.
    #[error("the {REQUEST_EXTENSION} extension names a malformed request id")]
    BadRequestId,
    /// A host is not a valid host name.
    #[error("the {REQUEST_EXTENSION} extension names a malformed host")]
    BadHost,
    /// No host at all: there is nothing the certificate may reach.
    #[error("the {REQUEST_EXTENSION} extension names no host")]
    NoHosts,
}

impl RequestGrant {
    /// Parses the exact form [`CertTemplate::request_extension`] writes.
    pub fn parse(value: &str) -> Result<Self, RequestGrantError> {
        let (request, hosts) = value
            .strip_prefix("request=")
            .and_then(|rest| rest.split_once(";hosts="))
            .ok_or(RequestGrantError::Malformed)?;
        let request = RequestId::parse(request).map_err(|_| RequestGrantError::BadRequestId)?;
        if hosts.is_empty() {
            return Err(RequestGrantError::NoHosts);
        }
        let hosts = hosts
            .split(',')
            .map(|h| HostName::parse(h).map_err(|_| RequestGrantError::BadHost))
            .collect::<Result<BTreeSet<_>, _>>()?;
        Ok(Self { request, hosts })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cert_options::{Extension, ForceCommand, SourceAddresses};
    use ssh_key::{Algorithm, PrivateKey};

    fn now() -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000, 0).unwrap()
    }

    fn scope() -> ApprovedScope {
        let user = PrivateKey::random(&mut rand::rng(), Algorithm::Ed25519).unwrap();
        ApprovedScope {
            subject: SubjectKey::from_key_data(user.public_key().key_data().clone(), &[]).unwrap(),
            origin: CertOrigin::Request {
                id: RequestId::parse("req_aaaaaaaaaaaaaaaaaaaaaaaaaa").unwrap(),
                user: Username::parse("alice").unwrap(),
            },
            principals: [Principal::parse("deploy").unwrap()].into(),
            extensions: Extensions::new(),
            critical_options: CriticalOptions::default(),
            window_end: now() + TimeDelta::hours(2),
            cert_ttl: HumanDuration::parse("10m").unwrap(),
            hosts: [HostName::parse("web-1").unwrap()].into(),
        }
    }

    fn serial() -> CertSerial {
        CertSerial::new(42).unwrap()
    }

    #[test]
    fn validity_is_backdated_and_capped_by_ttl() {
        let t = CertTemplate::new(scope(), serial(), now()).unwrap();
        assert_eq!(t.valid_after, 1_800_000_000 - 60);
        assert_eq!(t.valid_before, 1_800_000_000 + 600);
    }

    #[test]
    fn validity_is_capped_by_window_end() {
        let mut s = scope();
        s.window_end = now() + TimeDelta::minutes(3);
        let t = CertTemplate::new(s, serial(), now()).unwrap();
        assert_eq!(t.valid_before, 1_800_000_000 + 180);
    }

    #[test]
    fn ended_window_is_refused() {
        let mut s = scope();
        s.window_end = now();
        assert!(matches!(
            CertTemplate::new(s, serial(), now()),
            Err(TemplateError::WindowEnded(_))
        ));
    }

    #[test]
    fn empty_principals_are_refused() {
        let mut s = scope();
        s.principals.clear();
        assert_eq!(
            CertTemplate::new(s, serial(), now()).unwrap_err(),
            TemplateError::NoPrincipals
        );
    }

    #[test]
    fn key_id_uses_canonical_fields() {
        let t = CertTemplate::new(scope(), serial(), now()).unwrap();
        assert_eq!(
            t.key_id,
            "tpa:request=req_aaaaaaaaaaaaaaaaaaaaaaaaaa:user=alice"
        );
        let admin = CertOrigin::AdminIssue {
            admin: Username::parse("root").unwrap(),
        };
        assert_eq!(admin.key_id(), "tpa:admin-issue:user=root");
    }

    #[test]
    fn signed_certificate_carries_exactly_the_template() {
        let ca = PrivateKey::random(&mut rand::rng(), Algorithm::Ed25519).unwrap();
        let mut s = scope();
        s.extensions.insert(Extension::PermitPty);
        s.critical_options.force_command = Some(ForceCommand::parse("uptime").unwrap());
        s.critical_options.source_address = Some(SourceAddresses::parse("10.0.0.0/8").unwrap());
        let t = CertTemplate::new(s, serial(), now()).unwrap();
        let cert = t.to_builder([7; 32]).unwrap().sign(&ca).unwrap();
        assert_eq!(cert.serial(), 42);
        assert_eq!(cert.cert_type(), CertType::User);
        assert_eq!(cert.valid_principals(), ["deploy".to_owned()]);
        assert_eq!(
            cert.extensions().keys().collect::<Vec<_>>(),
            ["permit-pty", REQUEST_EXTENSION]
        );
        assert_eq!(
            cert.extensions().get(REQUEST_EXTENSION).map(String::as_str),
            Some("request=req_aaaaaaaaaaaaaaaaaaaaaaaaaa;hosts=web-1")
        );
        assert_eq!(
            cert.critical_options()
                .get("force-command")
                .map(String::as_str),
            Some("uptime")
        );
        assert_eq!(
            cert.critical_options()
                .get("source-address")
                .map(String::as_str),
            Some("10.0.0.0/8")
        );
        assert_eq!(cert.key_id(), t.key_id);
    }

    #[test]
    fn default_scope_grants_no_extension() {
        let ca = PrivateKey::random(&mut rand::rng(), Algorithm::Ed25519).unwrap();
        let mut s = scope();
        s.origin = CertOrigin::AdminIssue {
            admin: Username::parse("root").unwrap(),
        };
        let t = CertTemplate::new(s, serial(), now()).unwrap();
        let cert = t.to_builder([7; 32]).unwrap().sign(&ca).unwrap();
        assert!(cert.extensions().is_empty());
        assert!(cert.critical_options().is_empty());
    }

    #[test]
    fn request_grant_round_trips_the_template() {
        let mut s = scope();
        s.hosts.insert(HostName::parse("db-1").unwrap());
        let t = CertTemplate::new(s, serial(), now()).unwrap();
        let grant = RequestGrant::parse(&t.request_extension().unwrap()).unwrap();
        assert_eq!(grant.request.as_str(), "req_aaaaaaaaaaaaaaaaaaaaaaaaaa");
        assert_eq!(grant.hosts, t.hosts);
    }

    #[test]
    fn request_grant_refuses_anything_else() {
        let check = |value: &str, expected: RequestGrantError| {
            assert_eq!(RequestGrant::parse(value), Err(expected), "{value:?}");
        };
        let id = "req_aaaaaaaaaaaaaaaaaaaaaaaaaa";
        check("", RequestGrantError::Malformed);
        check(
            &format!("hosts=web-1;request={id}"),
            RequestGrantError::Malformed,
        );
        check(&format!("request={id}"), RequestGrantError::Malformed);
        check("request=nope;hosts=web-1", RequestGrantError::BadRequestId);
        check(&format!("request={id};hosts="), RequestGrantError::NoHosts);
        check(
            &format!("request={id};hosts=web-1,"),
            RequestGrantError::BadHost,
        );
        check(
            &format!("request={id};hosts=web-*"),
            RequestGrantError::BadHost,
        );
        check(
            &format!("request={id};hosts=Web-1"),
            RequestGrantError::BadHost,
        );
    }

    proptest::proptest! {
        /// Promise 2: whatever the window and TTL, the certificate stays inside both.
        #[test]
        fn certificate_never_exceeds_its_approval(
            window_secs in 1i64..400 * 86_400,
            ttl_secs in 1u64..=366 * 86_400,
            granted in proptest::collection::btree_set(0usize..5, 0..=5),
        ) {
            let mut s = scope();
            s.window_end = now() + TimeDelta::seconds(window_secs);
            s.cert_ttl = HumanDuration::from_secs(ttl_secs).unwrap();
            s.extensions = granted.iter().map(|&i| Extension::ALL[i]).collect();
            let expected_extensions = s.extensions.clone();
            let t = CertTemplate::new(s, serial(), now()).unwrap();
            let now = now().timestamp() as u64;
            proptest::prop_assert_eq!(t.valid_after, now - 60);
            proptest::prop_assert!(t.valid_before <= now + window_secs as u64);
            proptest::prop_assert!(t.valid_before <= now + ttl_secs);
            proptest::prop_assert_eq!(t.valid_before, (now + window_secs as u64).min(now + ttl_secs));
            proptest::prop_assert_eq!(&t.extensions, &expected_extensions);
        }
    }
}
