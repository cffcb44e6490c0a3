//! Grants and their certificates: which active grant covers a host, and a
//! certificate for it that is reused while it has time left and silently
//! re-issued (no new approval) when it is close to expiry.

use anyhow::Context as _;
use reqwest::Method;
use tpa_core::api::{CertificateBody, CertificateResponse, RequestList, RequestView};

use crate::client::Client;
use crate::files::{self, KeyFiles};

const NONE: Option<&()> = None;

/// Seconds since the epoch.
pub fn now() -> u64 {
    chrono::Utc::now().timestamp().max(0) as u64
}

/// Whether a certificate valid from `valid_after` to `valid_before` should be
/// replaced at `now`: when it has expired, or when less than the smaller of
/// 5 minutes and a fifth of its lifetime is left.
pub fn needs_renewal(valid_after: u64, valid_before: u64, now: u64) -> bool {
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
    fn issued(c: CertificateResponse) -> Self {
        Self {
            certificate: c.certificate,
            serial: c.serial,
            key_id: c.key_id,
            principals: c.principals,
            valid_after: c.valid_after,
            valid_before: c.valid_before,
            reused: false,
        }
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
    let Some(cert) = files::read_certificate(&keys.cert)? else {
        return Ok(None);
    };
    let for_request = cert
        .key_id()
        .strip_prefix(&format!("tpa:request={request}:"))
        .is_some();
    let same_key = ssh_key::PublicKey::from(cert.public_key().clone())
        .to_openssh()
        .is_ok_and(|k| k == public_key);
    if !for_request || !same_key || needs_renewal(cert.valid_after(), cert.valid_before(), now) {
        return Ok(None);
    }
    let line = cert
        .to_openssh()
        .context("cannot encode the saved certificate")?;
    Ok(Some(CertInUse {
        certificate: line,
        serial: cert.serial().to_string(),
        key_id: cert.key_id().to_owned(),
        principals: cert.valid_principals().to_vec(),
        valid_after: cert.valid_after(),
        valid_before: cert.valid_before(),
        reused: true,
    }))
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
    let issued: CertificateResponse = client
        .call(
            Method::POST,
            &format!("/api/v1/requests/{}/certificate", r.id),
            Some(&body),
        )
        .await?;
    files::write_private(&keys.cert, format!("{}\n", issued.certificate).as_bytes())?;
    Ok(CertInUse::issued(issued))
}

/// Your requests, newest first.
pub async fn mine(client: &Client) -> anyhow::Result<Vec<RequestView>> {
    let list: RequestList = client
        .call(Method::GET, "/api/v1/requests?scope=mine", NONE)
        .await?;
    Ok(list.requests)
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
}
