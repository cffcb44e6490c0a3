//! Certificate extensions and critical options: what a role may grant.
//!
//! Extensions are default-deny: a certificate carries only those a role grants
//! by name. Critical options come from policy only: `force-command` and
//! `source-address`, each parsed strictly.

use std::collections::BTreeSet;
use std::fmt;
use std::net::IpAddr;

use crate::identifiers::shown;

/// An OpenSSH user-certificate extension TPA can grant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Extension {
    /// `permit-X11-forwarding`.
    PermitX11Forwarding,
    /// `permit-agent-forwarding`.
    PermitAgentForwarding,
    /// `permit-port-forwarding`.
    PermitPortForwarding,
    /// `permit-pty`.
    PermitPty,
    /// `permit-user-rc`.
    PermitUserRc,
}

impl Extension {
    /// All extensions, in OpenSSH's name order.
    pub const ALL: [Extension; 5] = [
        Extension::PermitX11Forwarding,
        Extension::PermitAgentForwarding,
        Extension::PermitPortForwarding,
        Extension::PermitPty,
        Extension::PermitUserRc,
    ];

    /// The name as it appears in the certificate.
    pub fn name(self) -> &'static str {
        match self {
            Extension::PermitX11Forwarding => "permit-X11-forwarding",
            Extension::PermitAgentForwarding => "permit-agent-forwarding",
            Extension::PermitPortForwarding => "permit-port-forwarding",
            Extension::PermitPty => "permit-pty",
            Extension::PermitUserRc => "permit-user-rc",
        }
    }

    /// Parses an extension name exactly as OpenSSH spells it.
    pub fn parse(name: &str) -> Result<Self, OptionError> {
        Self::ALL
            .into_iter()
            .find(|e| e.name() == name)
            .ok_or_else(|| OptionError::UnknownExtension {
                shown: shown(name),
                known: Self::ALL.map(Extension::name).join(", "),
            })
    }
}

impl fmt::Display for Extension {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Why an extension or critical option was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OptionError {
    /// Not one of the five OpenSSH extensions.
    #[error("unknown certificate extension {shown}; known extensions: {known}")]
    UnknownExtension {
        /// The offending name, escaped.
        shown: String,
        /// The accepted names.
        known: String,
    },
    /// The forced command is empty, too long or holds control characters.
    #[error(
        "force-command {0} is not valid: it must be 1 to 1024 bytes without control characters"
    )]
    BadForceCommand(String),
    /// An entry of source-address is not an address or CIDR block.
    #[error("source-address entry {0} is not an IP address or CIDR block such as 10.0.0.0/8")]
    BadSourceAddress(String),
    /// Too many or no source-address entries.
    #[error("source-address must list 1 to 64 addresses or CIDR blocks")]
    SourceAddressCount,
}

/// A set of granted extensions. Empty by default.
pub type Extensions = BTreeSet<Extension>;

/// A command the certificate forces (`force-command`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForceCommand(String);

impl ForceCommand {
    /// Parses a command: 1 to 1024 bytes, no control characters.
    pub fn parse(command: &str) -> Result<Self, OptionError> {
        if command.trim().is_empty()
            || command.len() > 1024
            || command.chars().any(char::is_control)
        {
            return Err(OptionError::BadForceCommand(shown(command)));
        }
        Ok(Self(command.to_owned()))
    }

    /// The command line.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// One address or CIDR block of `source-address`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Cidr {
    network: IpAddr,
    prefix: u8,
}

impl Cidr {
    fn parse(text: &str) -> Option<Self> {
        let (addr, prefix) = match text.split_once('/') {
            Some((a, p)) => {
                if p.is_empty() || p.len() > 3 || !p.bytes().all(|b| b.is_ascii_digit()) {
                    return None;
                }
                (a, Some(p.parse::<u8>().ok()?))
            }
            None => (text, None),
        };
        let network: IpAddr = addr.parse().ok()?;
        let max = if network.is_ipv4() { 32 } else { 128 };
        let prefix = prefix.unwrap_or(max);
        (prefix <= max).then_some(Self { network, prefix })
    }

    fn contains(&self, ip: IpAddr) -> bool {
        let ip = match (self.network, ip) {
            (IpAddr::V4(_), IpAddr::V6(v6)) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            _ => ip,
        };
        match (self.network, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

/// The `source-address` critical option: addresses the certificate may be used from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceAddresses(Vec<Cidr>);

impl SourceAddresses {
    /// Parses a comma-separated list of addresses and CIDR blocks, as OpenSSH writes it.
    pub fn parse(list: &str) -> Result<Self, OptionError> {
        let entries: Vec<&str> = list.split(',').collect();
        if list.is_empty() || entries.len() > 64 {
            return Err(OptionError::SourceAddressCount);
        }
        entries
            .into_iter()
            .map(|e| Cidr::parse(e).ok_or_else(|| OptionError::BadSourceAddress(shown(e))))
            .collect::<Result<Vec<_>, _>>()
            .map(Self)
    }

    /// Whether a client address is allowed.
    pub fn contains(&self, ip: IpAddr) -> bool {
        self.0.iter().any(|c| c.contains(ip))
    }
}

impl fmt::Display for SourceAddresses {
    /// The canonical form written into certificates: `a/n,b/m`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, c) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{c}")?;
        }
        Ok(())
    }
}

/// Critical options a certificate carries; both come from policy, never from the requester.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CriticalOptions {
    /// `force-command`.
    pub force_command: Option<ForceCommand>,
    /// `source-address`.
    pub source_address: Option<SourceAddresses>,
}

/// The critical option names TPA writes and understands; anything else is refused.
pub const KNOWN_CRITICAL_OPTIONS: [&str; 2] = ["force-command", "source-address"];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extension_names_round_trip() {
        for e in Extension::ALL {
            assert_eq!(Extension::parse(e.name()), Ok(e));
        }
        assert!(Extension::parse("permit-X11").is_err());
        assert!(Extension::parse("PERMIT-PTY").is_err());
        let e = Extension::parse("all").unwrap_err().to_string();
        assert!(e.contains("permit-pty"), "{e}");
    }

    #[test]
    fn force_command_table() {
        assert!(ForceCommand::parse("journalctl -u app --since -1h").is_ok());
        assert!(ForceCommand::parse("").is_err());
        assert!(ForceCommand::parse("  ").is_err());
        assert!(ForceCommand::parse("ls\nrm -rf /").is_err());
        assert!(ForceCommand::parse("ls\0").is_err());
        assert!(ForceCommand::parse(&"x".repeat(1025)).is_err());
    }

    #[test]
    fn source_address_table() {
        let s = SourceAddresses::parse("10.0.0.0/8,192.168.1.7,2001:db8::/32").unwrap();
        assert_eq!(s.to_string(), "10.0.0.0/8,192.168.1.7/32,2001:db8::/32");
        assert!(s.contains("10.1.2.3".parse().unwrap()));
        assert!(s.contains("192.168.1.7".parse().unwrap()));
        assert!(!s.contains("192.168.1.8".parse().unwrap()));
        assert!(s.contains("2001:db8::1".parse().unwrap()));
        assert!(s.contains("::ffff:10.9.9.9".parse().unwrap()));
        assert!(!s.contains("11.0.0.1".parse().unwrap()));
        let all = SourceAddresses::parse("0.0.0.0/0").unwrap();
        assert!(all.contains("8.8.8.8".parse().unwrap()));
        for bad in [
            "",
            "10.0.0.0/33",
            "10.0.0.0/",
            "x",
            "10.0.0.0/8,",
            "10.0.0.1 ",
            "*",
            "::/129",
            "10.0.0.0/+8",
        ] {
            assert!(SourceAddresses::parse(bad).is_err(), "{bad:?}");
        }
    }

    proptest::proptest! {
        #[test]
        fn source_address_parse_never_panics(text in proptest::prelude::any::<String>()) {
            let _ = SourceAddresses::parse(&text);
        }

        #[test]
        fn source_address_canonical_form_round_trips(
            a in 0u8.., b in 0u8.., prefix in 0u8..=32,
        ) {
            let parsed = SourceAddresses::parse(&format!("{a}.{b}.0.0/{prefix}")).unwrap();
            let again = SourceAddresses::parse(&parsed.to_string()).unwrap();
            proptest::prop_assert_eq!(parsed, again);
        }

        #[test]
        fn force_command_never_holds_control_characters(text in proptest::prelude::any::<String>()) {
            if let Ok(cmd) = ForceCommand::parse(&text) {
                proptest::prop_assert!(!cmd.as_str().chars().any(char::is_control));
            }
        }
    }
}
