//! `[client]`: what the CA announces to `tpa-ssh` at `GET /api/v1/client-config`
//! (the bastion users jump through, and the host patterns TPA covers).

use serde::Deserialize;
use tpa_core::{BastionAddress, HostPattern};

/// The validated `[client]` section.
#[derive(Debug, Clone, Default)]
pub struct ClientAnnouncement {
    /// Where users reach the bastion.
    pub bastion: Option<BastionAddress>,
    /// The host patterns that `tpa-ssh config` writes into the ssh_config snippet.
    pub host_patterns: Vec<HostPattern>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawClient {
    bastion: Option<String>,
    #[serde(default)]
    host_patterns: Vec<String>,
}

/// Checks `[client]`; errors name the key.
pub(super) fn client(raw: &RawClient) -> Result<ClientAnnouncement, String> {
    let bastion = raw
        .bastion
        .as_deref()
        .map(BastionAddress::parse)
        .transpose()
        .map_err(|e| format!("client.bastion: {e}"))?;
    let mut host_patterns: Vec<HostPattern> = Vec::with_capacity(raw.host_patterns.len());
    for (index, p) in raw.host_patterns.iter().enumerate() {
        let p = HostPattern::parse(p).map_err(|e| format!("client.host_patterns[{index}]: {e}"))?;
        if !host_patterns.contains(&p) {
            host_patterns.push(p);
        }
    }
    Ok(ClientAnnouncement {
        bastion,
        host_patterns,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(toml_text: &str) -> Result<ClientAnnouncement, String> {
        let raw: RawClient = toml::from_str(toml_text).map_err(|e| e.to_string())?;
        client(&raw)
    }

    #[test]
    fn good_and_bad_client_sections() {
        let ok = check(
            "bastion = \"bastion.example.com:2222\"\nhost_patterns = [\"web-*\", \"*.prod.example.com\", \"web-*\"]",
        )
        .unwrap();
        assert_eq!(ok.bastion.unwrap().to_string(), "bastion.example.com:2222");
        assert_eq!(ok.host_patterns.len(), 2, "duplicates are dropped");
        assert!(check("").unwrap().bastion.is_none());
        let err = check("bastion = \"b\\nHost *\"").unwrap_err();
        assert!(err.contains("client.bastion"), "{err}");
        let err = check("host_patterns = [\"web-* ProxyCommand x\"]").unwrap_err();
        assert!(err.contains("client.host_patterns[0]"), "{err}");
        assert!(check("host_patterns = [\"*\"]").is_err());
        assert!(
            check("bastions = \"x\"").is_err(),
            "unknown keys are refused"
        );
    }
}
