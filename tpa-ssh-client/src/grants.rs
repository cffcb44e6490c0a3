//! Grants and their certificates: which active grant covers a host, and a
//! certificate for it that is reused while it has time left and silently
//! re-issued (no new approval) when it is close to expiry.

use anyhow::Context as _;
use tpa_core::api::{CertificateBody, RequestView};

use crate::api::Client;
use crate::local::files;
use crate::local::keys::{self, KeyFiles};

/// Seconds since the epoch.
pub fn now() -> u64 {
    chrono::Utc::now().timestamp().max(0) as u64
}

/// Whether a certificate valid from `valid_after` to `valid_before` should be
/// replaced at `now`: when it has expired, or when less than the smaller of
/// 5 minutes and a fifth of its lifetime is left.
fn needs_renewal(valid_after: u64, valid_before: u64, now: u64) -> bool {
    let lifetime = valid_before.saturating_sub(valid_after);
    let left = valid_before.saturating_sub(now);
    left == 0 || lifetime == 0 || left < (lifetime / 5).min(300)
}

/// The certificate in use for a grant.
#[derive(Debug, Clone, serde::Serialize)]
pub struct CertInUse {
    /// The certificate line.
    pub certificate: String,
    /// Its serial, in decimal.
    pub serial: String,
    /// Its key id.
    pub key_id: String,
    /// Its principals (the logins).
    pub principals: Vec<String>,
    /// Start of validity (seconds since the epoch).
    pub valid_after: u64,
    /// End of validity (seconds since the epoch).
    pub valid_before: u64,
    /// Whether the saved certificate was reused (no call to the CA).
    pub reused: bool,
}

impl CertInUse {
    fn from_cert(cert: &ssh_key::Certificate, reused: bool) -> anyhow::Result<Self> {
        Ok(Self {
            certificate: cert.to_openssh().context("cannot encode the certificate")?,
            serial: cert.serial().to_string(),
            key_id: cert.key_id().to_owned(),
            principals: cert.valid_principals().to_vec(),
            valid_after: cert.valid_after(),
            valid_before: cert.valid_before(),
            reused,
        })
    }
}

/// The saved certificate, when it is for `request`, for this key, and not close
/// to expiry.
fn reusable(
    keys: &KeyFiles,
    public_key: &str,
    request: &str,
    now: u64,
) -> anyhow::Result<Option<CertInUse>> {
    let Some(cert) = keys::read_certificate(&keys.cert)? else {
        return Ok(None);
    };
    let for_request = cert
        .key_id()
        .strip_prefix(&format!("tpa:request={request}:"))
        .is_some();
    // The key itself, not its text: a key of the user's own has a comment,
    // and comparing the text never reused its certificate.
    let same_key = ssh_key::PublicKey::from_openssh(public_key)
        .is_ok_and(|k| k.key_data() == cert.public_key());
    if !for_request || !same_key || needs_renewal(cert.valid_after(), cert.valid_before(), now) {
        return Ok(None);
    }
    CertInUse::from_cert(&cert, true).map(Some)
}

/// A certificate for the approved request `r`: the saved one while it has time
/// left (unless `renew`), otherwise a fresh one from the CA, saved next to the key.
pub async fn certificate(
    client: &Client,
    r: &RequestView,
    keys: &KeyFiles,
    public_key: &str,
    renew: bool,
) -> anyhow::Result<CertInUse> {
    if !renew && let Some(cert) = reusable(keys, public_key, &r.id, now())? {
        return Ok(cert);
    }
    let body = CertificateBody {
        public_key: public_key.to_owned(),
    };
    let issued = client.issue_certificate(&r.id, &body).await?;
    let trusted = client.user_ca_keys().await?;
    let cert = check_issued(&issued.certificate, public_key, &r.id, &trusted, now())?;
    let checked = CertInUse::from_cert(&cert, false)?;
    files::write_private(&keys.cert, format!("{}\n", checked.certificate).as_bytes())?;
    Ok(checked)
}

/// How far the CA's clock may be ahead of ours: the CA backdates `valid_after`
/// by 60 s, so a certificate that starts later than this is refused.
const CLOCK_SKEW: u64 = 60;

/// Checks the certificate the CA returned before it replaces the saved one: an
/// OpenSSH user certificate, for exactly `public_key`, for request `request`,
/// valid at `now`. The previous files stay as they were when it is not.
fn check_issued(
    line: &str,
    public_key: &str,
    request: &str,
    trusted: &[ssh_key::PublicKey],
    now: u64,
) -> anyhow::Result<ssh_key::Certificate> {
    let refuse = |why: String| {
        anyhow::anyhow!(
            "the CA returned a certificate that {why}; the previous certificate was kept. Check --ca / $TPA_CA_URL and tell the CA's operators"
        )
    };
    let cert = ssh_key::Certificate::from_openssh(line.trim())
        .map_err(|e| refuse(format!("is not an OpenSSH certificate ({e})")))?;
    if !trusted.iter().any(|k| k.key_data() == cert.signature_key()) {
        return Err(refuse(format!(
            "is not signed by a key of the CA's /ca.pub (signed by {})",
            cert.signature_key().fingerprint(ssh_key::HashAlg::Sha256)
        )));
    }
    if cert.verify_signature().is_err() {
        return Err(refuse("has a bad signature".to_owned()));
    }
    if cert.cert_type() != ssh_key::certificate::CertType::User {
        return Err(refuse("is not a user certificate".to_owned()));
    }
    // The key itself, not its text: a key of the user's own has a comment.
    let sent =
        ssh_key::PublicKey::from_openssh(public_key).context("cannot read the public key")?;
    if cert.public_key() != sent.key_data() {
        return Err(refuse("is for another key".to_owned()));
    }
    if cert
        .key_id()
        .strip_prefix(&format!("tpa:request={request}:"))
        .is_none()
    {
        return Err(refuse(format!(
            "is not for request {request} (key id {:?})",
            cert.key_id()
        )));
    }
    if cert.valid_after() > now.saturating_add(CLOCK_SKEW) || cert.valid_before() <= now {
        return Err(refuse(format!(
            "is not valid now (valid from {} to {}, now {now}; check this machine's clock)",
            cert.valid_after(),
            cert.valid_before()
        )));
    }
    Ok(cert)
}

/// Your most recent request, or your most recent active grant.
pub async fn latest(client: &Client, active_only: bool) -> anyhow::Result<RequestView> {
    client
        .my_requests()
        .await?
        .requests
        .into_iter()
        .find(|r| !active_only || r.active)
        .context(if active_only {
            "no active grant: ask with `tpa-ssh request --role ROLE --host HOST --wait`"
        } else {
            "you have no requests yet"
        })
}

/// The active grant that covers `host` and ends last, if any.
pub fn covering<'a>(requests: &'a [RequestView], host: &str) -> Option<&'a RequestView> {
    requests
        .iter()
        .filter(|r| r.active && r.hosts.iter().any(|h| h.eq_ignore_ascii_case(host)))
        .max_by(|a, b| a.window_end.cmp(&b.window_end))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renewal_when_close_to_expiry() {
        let check = |after: u64, before: u64, now: u64, expected: bool| {
            assert_eq!(
                needs_renewal(after, before, now),
                expected,
                "{after}..{before} at {now}"
            );
        };
        // A 5-minute certificate (plus the 60 s backdate): renewed in its last 72 s.
        check(0, 360, 60, false);
        check(0, 360, 288, false);
        check(0, 360, 289, true);
        check(0, 360, 360, true);
        check(0, 360, 1000, true);
        // A 2-hour certificate: renewed in its last 5 minutes.
        check(0, 7200, 6899, false);
        check(0, 7200, 6901, true);
        // A zero-length or inverted window is always renewed.
        check(100, 100, 50, true);
        check(200, 100, 50, true);
    }
    /// A certificate signed by `ca`, built as the CA builds it.
    fn signed(
        subject: &ssh_key::PrivateKey,
        cert_type: ssh_key::certificate::CertType,
        key_id: &str,
        valid_after: u64,
        valid_before: u64,
        ca: &ssh_key::PrivateKey,
    ) -> String {
        let mut b = ssh_key::certificate::Builder::new_with_random_nonce(
            &mut rand::rng(),
            subject.public_key(),
            valid_after,
            valid_before,
        )
        .unwrap();
        b.serial(7).unwrap();
        b.key_id(key_id).unwrap();
        b.cert_type(cert_type).unwrap();
        b.valid_principal("deploy").unwrap();
        b.sign(ca).unwrap().to_openssh().unwrap()
    }

    #[test]
    fn issued_certificates_are_checked_before_they_are_saved() {
        // Review: the CA's answer was saved without looking at it.
        use ssh_key::certificate::CertType;
        let key =
            ssh_key::PrivateKey::random(&mut rand::rng(), ssh_key::Algorithm::Ed25519).unwrap();
        let other =
            ssh_key::PrivateKey::random(&mut rand::rng(), ssh_key::Algorithm::Ed25519).unwrap();
        // With a comment, as a key of the user's own has.
        let mut commented = key.public_key().clone();
        commented.set_comment("alice@laptop");
        let public = commented.to_openssh().unwrap();
        let ca =
            ssh_key::PrivateKey::random(&mut rand::rng(), ssh_key::Algorithm::Ed25519).unwrap();
        let trusted = [ca.public_key().clone()];
        let now = 1_000_000;
        let id = "tpa:request=r1:user=u1";
        let check = |line: &str| check_issued(line, &public, "r1", &trusted, now);
        let good = signed(&key, CertType::User, id, now - 60, now + 3600, &ca);
        assert!(check(&good).is_ok());
        assert!(check(&format!("{good}\n")).is_ok());
        // Our clock 30 s behind the CA's.
        assert!(check(&signed(&key, CertType::User, id, now + 30, now + 3600, &ca)).is_ok());
        let refused = |line: String, why: &str| {
            let err = format!("{:#}", check(&line).unwrap_err());
            assert!(err.contains(why), "{err}");
            assert!(err.contains("previous certificate was kept"), "{err}");
        };
        let rogue =
            ssh_key::PrivateKey::random(&mut rand::rng(), ssh_key::Algorithm::Ed25519).unwrap();
        refused(
            signed(&key, CertType::User, id, now - 60, now + 3600, &rogue),
            "not signed by a key of the CA's /ca.pub",
        );
        refused("garbage".to_owned(), "not an OpenSSH certificate");
        refused(public.clone(), "not an OpenSSH certificate");
        refused(
            signed(&key, CertType::Host, id, now - 60, now + 3600, &ca),
            "not a user certificate",
        );
        refused(
            signed(&other, CertType::User, id, now - 60, now + 3600, &ca),
            "another key",
        );
        refused(
            signed(
                &key,
                CertType::User,
                "tpa:request=r2:user=u1",
                now - 60,
                now + 3600,
                &ca,
            ),
            "not for request r1",
        );
        refused(
            signed(&key, CertType::User, id, now - 3600, now, &ca),
            "not valid now",
        );
        refused(
            signed(&key, CertType::User, id, now + 61, now + 3600, &ca),
            "not valid now",
        );
    }
}
