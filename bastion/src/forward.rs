//! `direct-tcpip` forwarding: which targets a certificate may reach, and the
//! byte pump between the SSH channel and the host's TCP connection.
//!
//! A target is allowed only when the requested host string is exactly a host
//! name in the certificate's `tpa-request@tpa` extension and in the inventory,
//! and the requested port is 22 (what `ssh -J bastion host` asks for). The
//! bastion then connects to the inventory's address for that name, never to
//! the string the client sent.

use russh::server::Msg;
use russh::{Channel, ChannelMsg};
use tokio::io::AsyncWriteExt as _;
use tokio::net::TcpStream;
use tpa_core::HostName;

use crate::auth::Grant;
use crate::config::{HostAddress, Inventory};
use crate::events::ForwardEnd;

/// The port a client names for a host's SSH service.
pub const SSH_PORT: u32 = 22;

/// Size of one read from the host.
const CHUNK: usize = 32 * 1024;

/// Why a `direct-tcpip` target is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ForwardRefusal {
    /// Not a host name at all.
    #[error("target {0:?} is not a host name")]
    NotAHostName(String),
    /// Not one of the certificate's approved hosts.
    #[error("host {0} is not approved by the certificate")]
    NotApproved(HostName),
    /// Approved, but the bastion does not know where it is.
    #[error("host {0} is not in the bastion's inventory")]
    NotInInventory(HostName),
    /// Not the SSH port.
    #[error("port {0} refused: only the SSH port (22) is forwarded")]
    Port(u32),
}

/// What the client can do about a refused target (issue 12).
pub fn advice(refusal: &ForwardRefusal) -> &'static str {
    match refusal {
        ForwardRefusal::NotAHostName(_) => {
            "name the host as the certificate does (for example `ssh -J tpa-bastion web-1`)"
        }
        ForwardRefusal::NotApproved(_) => {
            "request access to this host (`tpa-ssh request --host HOST`) and use the new certificate"
        }
        ForwardRefusal::NotInInventory(_) => {
            "ask the bastion's operator to add the host to its [hosts] inventory"
        }
        ForwardRefusal::Port(_) => "connect to port 22; the bastion maps it to the host's sshd",
    }
}

/// Decides where a `direct-tcpip` request for `host:port` goes, if anywhere.
pub fn authorize(
    grant: &Grant,
    inventory: &Inventory,
    host: &str,
    port: u32,
) -> Result<(HostName, HostAddress), ForwardRefusal> {
    let name = HostName::parse(host)
        .map_err(|_| ForwardRefusal::NotAHostName(host.escape_debug().to_string()))?;
    if !grant.hosts.contains(&name) {
        return Err(ForwardRefusal::NotApproved(name));
    }
    let address = inventory
        .get(&name)
        .ok_or_else(|| ForwardRefusal::NotInInventory(name.clone()))?
        .clone();
    if port != SSH_PORT {
        return Err(ForwardRefusal::Port(port));
    }
    Ok((name, address))
}

/// Bytes moved by one forward.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ByteCounts {
    /// From the client to the host.
    pub to_host: u64,
    /// From the host to the client.
    pub from_host: u64,
}

/// Copies bytes both ways until either side closes, then closes both.
///
/// A read buffer is allocated only when the host has bytes to read (and is
/// handed to russh without a copy), so an idle forward holds no buffer.
pub async fn pump(channel: Channel<Msg>, host: TcpStream) -> (ByteCounts, ForwardEnd) {
    let (mut from_client, to_client) = channel.split();
    let (from_host, mut to_host) = host.into_split();
    let mut counts = ByteCounts::default();
    let end = loop {
        tokio::select! {
            msg = from_client.wait() => match msg {
                Some(ChannelMsg::Data { data }) => {
                    if let Err(e) = to_host.write_all(&data).await {
                        break ForwardEnd::Error(format!("writing to host: {e}"));
                    }
                    counts.to_host += data.len() as u64;
                }
                Some(ChannelMsg::Eof | ChannelMsg::Close) | None => break ForwardEnd::ClientClosed,
                // Window adjustments and requests carry no payload for the host.
                Some(_) => {}
            },
            ready = from_host.readable() => {
                if let Err(e) = ready {
                    break ForwardEnd::Error(format!("reading from host: {e}"));
                }
                let mut chunk = Vec::with_capacity(CHUNK);
                match from_host.try_read_buf(&mut chunk) {
                    Ok(0) => break ForwardEnd::HostClosed,
                    Ok(n) => {
                        if to_client.data_bytes(chunk).await.is_err() {
                            break ForwardEnd::ClientClosed;
                        }
                        counts.from_host += n as u64;
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                    Err(e) => break ForwardEnd::Error(format!("reading from host: {e}")),
                }
            },
        }
    };
    let _ = to_host.shutdown().await;
    let _ = to_client.eof().await;
    let _ = to_client.close().await;
    (counts, end)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn grant(hosts: &[&str]) -> Grant {
        Grant {
            login: "deploy".into(),
            serial: 1,
            key_id: "k".into(),
            request: tpa_core::RequestId::parse("req_aaaaaaaaaaaaaaaaaaaaaaaaaa").unwrap(),
            hosts: hosts.iter().map(|h| HostName::parse(h).unwrap()).collect(),
            valid_before: u64::MAX,
            ca_key: russh::keys::ssh_key::PrivateKey::random(
                &mut rand::rng(),
                russh::keys::ssh_key::Algorithm::Ed25519,
            )
            .unwrap()
            .public_key()
            .key_data()
            .clone(),
            ca_fingerprint: "SHA256:x".into(),
        }
    }

    fn inventory(hosts: &[(&str, &str)]) -> Inventory {
        Inventory::new(
            hosts
                .iter()
                .map(|(n, a)| (HostName::parse(n).unwrap(), HostAddress::parse(a).unwrap()))
                .collect::<BTreeMap<_, _>>(),
        )
    }

    #[test]
    fn only_approved_inventory_hosts_on_the_ssh_port() {
        let g = grant(&["web-1", "web-2"]);
        let inv = inventory(&[("web-1", "10.0.0.5:2222"), ("db-1", "10.0.0.6:22")]);
        let (name, address) = authorize(&g, &inv, "web-1", 22).unwrap();
        assert_eq!(name.as_str(), "web-1");
        assert_eq!(address.to_string(), "10.0.0.5:2222");
        let refused = |host: &str, port: u32| authorize(&g, &inv, host, port).unwrap_err();
        assert!(matches!(
            refused("db-1", 22),
            ForwardRefusal::NotApproved(_)
        ));
        assert!(matches!(
            refused("web-2", 22),
            ForwardRefusal::NotInInventory(_)
        ));
        assert_eq!(refused("web-1", 2222), ForwardRefusal::Port(2222));
        assert!(matches!(
            refused("10.0.0.5", 22),
            ForwardRefusal::NotApproved(_)
        ));
        assert!(matches!(
            refused("WEB-1", 22),
            ForwardRefusal::NotAHostName(_)
        ));
        assert!(matches!(
            refused("web-1.", 22),
            ForwardRefusal::NotAHostName(_)
        ));
        assert!(matches!(refused("", 22), ForwardRefusal::NotAHostName(_)));
    }
}
