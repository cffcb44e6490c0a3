//! `[hosts]`: the inventory of hosts the bastion forwards to, by name.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use tpa_core::HostName;

/// One host the bastion can reach: where its sshd listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostAddress {
    /// A DNS name or IP address.
    pub host: String,
    /// The TCP port.
    pub port: u16,
}

impl std::fmt::Display for HostAddress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

impl HostAddress {
    /// Parses `host:port` or `[v6]:port`.
    pub fn parse(value: &str) -> Option<Self> {
        if let Ok(addr) = value.parse::<SocketAddr>() {
            return Some(Self {
                host: addr.ip().to_string(),
                port: addr.port(),
            });
        }
        let (host, port) = value.rsplit_once(':')?;
        let port: u16 = port.parse().ok()?;
        let name_ok = !host.is_empty()
            && host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.');
        (name_ok && port != 0).then(|| Self {
            host: host.to_owned(),
            port,
        })
    }
}

/// Host name → address, as the bastion's operator declares them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Inventory(BTreeMap<HostName, HostAddress>);

impl Inventory {
    /// An inventory with exactly these hosts.
    pub fn new(hosts: BTreeMap<HostName, HostAddress>) -> Self {
        Self(hosts)
    }

    /// Where `name` is, when it is in the inventory.
    pub fn get(&self, name: &HostName) -> Option<&HostAddress> {
        self.0.get(name)
    }

    /// How many hosts there are.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there is no host.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// `[hosts]`: name → `host:port`.
pub(super) fn inventory(raw: BTreeMap<String, String>) -> Result<Inventory, String> {
    let mut hosts = BTreeMap::new();
    for (name, address) in raw {
        let name = HostName::parse(&name).map_err(|e| format!("hosts: {e}"))?;
        let address = HostAddress::parse(&address).ok_or_else(|| {
            format!("hosts.{name}: {address:?} is not host:port (for example \"10.0.0.5:22\")")
        })?;
        hosts.insert(name, address);
    }
    Ok(Inventory::new(hosts))
}
