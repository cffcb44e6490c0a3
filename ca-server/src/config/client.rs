//! `[client]`: what the CA announces to `tpa-ssh` at `GET /api/v1/client-config`
//! (the bastion users jump through, and the host patterns TPA covers).

use serde::Deserialize;
use tpa_core::{BastionAddress, DomainSuffix, HostPattern};

/// The validated `[client]` section.
#[derive(Debug, Clone, Default)]
pub struct ClientAnnouncement {
    /// Where users reach the bastion.
    pub bastion: Option<BastionAddress>,
    /// The host patterns that `tpa-ssh config` writes into the ssh_config
    /// snippet, each within [`HostPattern::check_bounds`] of `allowed_suffixes`.
    pub host_patterns: Vec<HostPattern>,
    /// The domains host patterns may lie under (shown to users by `tpa-ssh config`).
    pub allowed_suffixes: Vec<DomainSuffix>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawClient {
    bastion: Option<String>,
    #[serde(default)]
    host_patterns: Vec<String>,
    #[serde(default)]
    allowed_suffixes: Vec<String>,
}

/// Checks `[client]`; errors name the key.
pub(super) fn client(raw: &RawClient) -> Result<ClientAnnouncement, String> {
    let bastion = raw
        .bastion
        .as_deref()
        .map(BastionAddress::parse)
        .transpose()
        .map_err(|e| format!("client.bastion: {e}"))?;
    let mut allowed_suffixes: Vec<DomainSuffix> = Vec::new();
    for (index, s) in raw.allowed_suffixes.iter().enumerate() {
        let s =
            DomainSuffix::parse(s).map_err(|e| format!("client.allowed_suffixes[{index}]: {e}"))?;
        if !allowed_suffixes.contains(&s) {
            allowed_suffixes.push(s);
        }
    }
    let mut host_patterns: Vec<HostPattern> = Vec::with_capacity(raw.host_patterns.len());
    for (index, p) in raw.host_patterns.iter().enumerate() {
        let p = HostPattern::parse(p).map_err(|e| format!("client.host_patterns[{index}]: {e}"))?;
        // issue 18: the same bound `tpa-ssh config` applies, so a pattern
        // that would take over unrelated SSH never gets announced.
        p.check_bounds(&allowed_suffixes)
            .map_err(|e| format!("client.host_patterns[{index}]: {e}"))?;
        if !host_patterns.contains(&p) {
            host_patterns.push(p);
        }
    }
    Ok(ClientAnnouncement {
        bastion,
        host_patterns,
        allowed_suffixes,
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
            "bastion = \"bastion.example.com:2222\"\nhost_patterns = [\"web-*\", \"*.prod.example.com\", \"web-*\"]\nallowed_suffixes = [\"prod.example.com\"]",
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
        assert_eq!(ok.allowed_suffixes.len(), 1);
        assert!(
            check("bastions = \"x\"").is_err(),
            "unknown keys are refused"
        );
    }

    /// Issue 18, finding 4: the patterns the finding's CA announced are
    /// refused by `tpa-ca config check` (and at startup), a bare public
    /// domain is accepted only under an explicit `allowed_suffixes`, and a
    /// top-level domain can never be allowed.
    #[test]
    fn announced_patterns_are_bounded() {
        for bad in ["github.com", "*.com", "*-*", "1.*"] {
            let err = check(&format!("host_patterns = [\"web-*\", \"{bad}\"]")).unwrap_err();
            assert!(err.contains("client.host_patterns[1]"), "{bad}: {err}");
            assert!(err.contains(bad), "{bad}: {err}");
        }
        let ok =
            check("host_patterns = [\"github.com\"]\nallowed_suffixes = [\"github.com\"]").unwrap();
        assert_eq!(ok.host_patterns.len(), 1);
        let err = check("host_patterns = [\"*.com\"]\nallowed_suffixes = [\"com\"]").unwrap_err();
        assert!(err.contains("client.allowed_suffixes[0]"), "{err}");
        let err =
            check("host_patterns = [\"*.example.com\"]\nallowed_suffixes = [\"prod.example.com\"]")
                .unwrap_err();
        assert!(
            err.contains("not under an allowed suffix (prod.example.com)"),
            "{err}"
        );
    }
}
