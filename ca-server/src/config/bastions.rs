//! `[[bastions]]`: the bastions allowed to read the revocation feed and to
//! deliver session records, each with the SHA-256 of its own token.

use serde::Deserialize;

/// One bastion the CA knows.
#[derive(Clone, PartialEq, Eq)]
pub struct BastionEntry {
    /// Its name, used as the audit actor (`bastion:<name>`).
    pub name: String,
    /// SHA-256 of its token; the token itself is never stored.
    pub token_hash: [u8; 32],
}

impl std::fmt::Debug for BastionEntry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BastionEntry")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawBastion {
    name: String,
    token_hash: String,
}

/// Checks every `[[bastions]]` entry; errors name the entry.
pub(super) fn bastions(raw: &[RawBastion]) -> Result<Vec<BastionEntry>, String> {
    let mut out: Vec<BastionEntry> = Vec::with_capacity(raw.len());
    for (index, b) in raw.iter().enumerate() {
        let name_ok = !b.name.is_empty()
            && b.name.len() <= 64
            && b.name
                .bytes()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-');
        if !name_ok {
            return Err(format!(
                "bastions[{index}].name {:?} must be 1-64 characters a-z, 0-9 or '-'",
                b.name.chars().take(70).collect::<String>()
            ));
        }
        let mut token_hash = [0u8; 32];
        hex::decode_to_slice(b.token_hash.trim(), &mut token_hash).map_err(|_| {
            format!(
                "bastions.{}.token_hash must be 64 hex digits: the SHA-256 of the bastion's token (`printf %s \"$TOKEN\" | sha256sum`)",
                b.name
            )
        })?;
        if out.iter().any(|o| o.name == b.name) {
            return Err(format!("bastions: name {:?} appears twice", b.name));
        }
        if out.iter().any(|o| o.token_hash == token_hash) {
            return Err(format!(
                "bastions.{}.token_hash is the same as another bastion's; give each bastion its own token",
                b.name
            ));
        }
        out.push(BastionEntry {
            name: b.name.clone(),
            token_hash,
        });
    }
    Ok(out)
}
