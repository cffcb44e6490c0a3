//! The KRL the CA publishes (`GET /krl`, `tpa-ca krl --out FILE`): every
//! revoked certificate that has not expired, by serial under its CA key, by
//! key id for whole revoked requests, and every revoked CA key as a whole key.

use std::collections::{BTreeMap, BTreeSet};
use std::str::FromStr as _;

use crate::store::sql::Sql;
use ssh_key::public::KeyData;
use ssh_key::{Fingerprint, HashAlg};
use tpa_core::krl::{KrlCertSection, encode_krl};

use super::error::WorkflowError;
use crate::store::{self, StoreError};

/// A KRL and its version.
#[derive(Debug, Clone)]
pub struct Krl {
    /// Grows with every revocation, across restarts (`krl_state`).
    pub version: u64,
    /// The binary KRL.
    pub bytes: Vec<u8>,
}

/// Builds the KRL at `now_unix` for the CA keys `ca_keys` (the signing key and
/// the extra trusted ones).
///
/// A certificate is revoked by serial under its CA key; when its whole request
/// is revoked or cancelled, by key id too (the key id names the request). A
/// certificate whose CA key is no longer configured cannot be named by serial
/// (a serial section needs the CA key), so it is revoked by key id under any
/// CA. A revoked CA key goes in as a whole key, which revokes every
/// certificate it signed.
pub fn build(conn: &impl Sql, ca_keys: &[KeyData], now_unix: i64) -> Result<Krl, WorkflowError> {
    // The version first: a revocation committing between these reads (on
    // another replica, or the SQLite writer) then lands in a KRL labelled
    // with the older version, which fetchers replace at the next one. Read
    // the other way round, a KRL could carry a version without the
    // revocation that made it, and a fetcher skipping unchanged versions
    // would keep that gap (issue 15 review).
    let version = u64::try_from(store::revocations::krl_version(conn)?).unwrap_or(0);
    let rows = store::certificates::revoked_unexpired(conn, now_unix)?;
    let revoked_cas = store::revocations::revoked_ca_keys(conn)?;
    let keys: BTreeMap<String, KeyData> = ca_keys
        .iter()
        .map(|k| (k.fingerprint(HashAlg::Sha256).to_string(), k.clone()))
        .collect();
    let mut sections: BTreeMap<String, KrlCertSection> = BTreeMap::new();
    for row in rows {
        let ca_key = keys.get(&row.ca_key_fingerprint).cloned();
        let slot = if ca_key.is_some() {
            row.ca_key_fingerprint.clone()
        } else {
            String::new()
        };
        let section = sections.entry(slot).or_insert_with(|| KrlCertSection {
            ca_key,
            ..KrlCertSection::default()
        });
        let serial = row.serial.parse::<u64>().ok().filter(|s| *s != 0);
        match (&section.ca_key, serial) {
            (Some(_), Some(serial)) => {
                section.serials.insert(serial);
                if row.whole_request {
                    section.key_ids.insert(row.key_id);
                }
            }
            // No CA key or no usable serial: only the key id can name it.
            _ => {
                section.key_ids.insert(row.key_id);
            }
        }
    }
    let mut revoked_keys = BTreeSet::new();
    for fingerprint in revoked_cas {
        let parsed = Fingerprint::from_str(&fingerprint)
            .map_err(|e| StoreError::Corrupt(format!("revoked CA key {fingerprint}: {e}")))?;
        let digest: [u8; 32] = parsed
            .sha256()
            .ok_or_else(|| StoreError::Corrupt(format!("{fingerprint} is not a SHA-256 one")))?;
        revoked_keys.insert(digest);
    }
    let sections: Vec<KrlCertSection> = sections.into_values().collect();
    let generated = u64::try_from(now_unix).unwrap_or(0);
    let bytes = encode_krl(version, generated, "tpa", &sections, &revoked_keys)
        .map_err(|e| StoreError::Corrupt(format!("cannot encode the KRL: {e}")))?;
    Ok(Krl { version, bytes })
}
