//! `GET /krl`: the OpenSSH KRL of every revoked certificate that has not expired
//! yet, for sshd's `RevokedKeys` (see docs/configuration.md, host setup).

use std::collections::BTreeMap;

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use chrono::Utc;
use ssh_key::HashAlg;
use tpa_core::krl::{KrlCertSection, encode_krl};

use super::error::ApiError;
use super::requests::read;
use crate::startup::AppState;
use crate::store;

/// Serves the KRL; its version is the audit trail's head (it grows with every revocation).
pub async fn get(State(state): State<AppState>) -> Result<impl IntoResponse, ApiError> {
    let now = Utc::now().timestamp();
    let (rows, head) = read(&state, move |conn| {
        Ok((
            store::certificates::revoked_unexpired(conn, now)?,
            store::audit::head(conn)?,
        ))
    })
    .await?;
    let keys: BTreeMap<String, ssh_key::public::KeyData> = state
        .signer
        .ca_key_data()
        .into_iter()
        .map(|k| (k.fingerprint(HashAlg::Sha256).to_string(), k))
        .collect();
    let mut sections: BTreeMap<String, KrlCertSection> = BTreeMap::new();
    for row in rows {
        let ca_key = keys.get(&row.ca_key_fingerprint).cloned();
        // A CA key no longer configured: revoke by key id under any CA.
        let slot = if ca_key.is_some() {
            row.ca_key_fingerprint.clone()
        } else {
            String::new()
        };
        let section = sections.entry(slot).or_insert_with(|| KrlCertSection {
            ca_key,
            ..KrlCertSection::default()
        });
        if section.ca_key.is_some()
            && let Ok(serial) = row.serial.parse::<u64>()
        {
            section.serials.insert(serial);
        }
        section.key_ids.insert(row.key_id);
    }
    let version = head.map_or(0, |(seq, _)| u64::try_from(seq).unwrap_or(0));
    let sections: Vec<KrlCertSection> = sections.into_values().collect();
    let krl = encode_krl(version, u64::try_from(now).unwrap_or(0), "tpa", &sections)
        .map_err(|e| ApiError::Internal(e.into()))?;
    Ok(([(header::CONTENT_TYPE, "application/octet-stream")], krl))
}
