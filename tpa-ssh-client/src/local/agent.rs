//! ssh-agent: certificates go in with a lifetime (`ssh-add -t`), and expired TPA
//! certificates come out (the agent protocol's list and remove messages, over
//! `$SSH_AUTH_SOCK`). Without an agent nothing happens: the files alone work.
//!
//! The two messages are ours on purpose, encoded with ssh-key's `encoding`:
//! ssh-agent-lib 0.6 and ssh-agent-client-rs 1.1 are built on ssh-key 0.6 (a
//! second ssh-key beside the 0.7 that russh pins), and russh's agent client
//! removes an identity by its plain key, which leaves the certificate in
//! OpenSSH's agent (it matches the key type, certificate or not).

use std::io::{Read as _, Write as _};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use ssh_key::encoding::{Decode as _, Encode as _, Reader as _};

const REQUEST_IDENTITIES: u8 = 11;
const IDENTITIES_ANSWER: u8 = 12;
const REMOVE_IDENTITY: u8 = 18;
const SUCCESS: u8 = 6;
/// Answers bigger than this are refused (an agent with thousands of keys is not ours).
const MAX_MESSAGE: usize = 1 << 20;

fn socket() -> Option<std::ffi::OsString> {
    std::env::var_os("SSH_AUTH_SOCK").filter(|s| !s.is_empty())
}

/// Removes expired TPA certificates from the agent, then loads the key at
/// `private` and its certificate with a lifetime equal to the certificate's
/// remaining validity. Returns what happened, for the user: the lifetime
/// given (or why nothing was loaded) and how many expired certificates went.
pub fn refresh(private: &Path, valid_before: u64, now: u64) -> (Result<u64, String>, usize) {
    let removed = remove_expired(now).unwrap_or(0);
    let lifetime = valid_before.saturating_sub(now);
    (load(private, lifetime).map(|()| lifetime), removed)
}

/// `ssh-add -t LIFETIME KEY` (which also loads `KEY-cert.pub`).
fn load(private: &Path, lifetime: u64) -> Result<(), String> {
    if socket().is_none() {
        return Err("no ssh-agent: SSH_AUTH_SOCK is not set".to_owned());
    }
    if lifetime == 0 {
        return Err("the certificate has no time left".to_owned());
    }
    let out = std::process::Command::new("ssh-add")
        .arg("-q")
        .arg("-t")
        .arg(lifetime.to_string())
        .arg(private)
        .output()
        .map_err(|e| format!("cannot run ssh-add: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).trim().to_owned())
    }
}

/// Removes every TPA certificate (key id `tpa:…`) whose `valid_before` has passed
/// from the agent; returns how many went. `Ok(0)` without an agent.
fn remove_expired(now: u64) -> Result<usize, String> {
    let Some(path) = socket() else {
        return Ok(0);
    };
    let mut agent = Agent::connect(Path::new(&path))?;
    let mut removed = 0;
    for blob in agent.identities()? {
        let Ok(cert) = ssh_key::Certificate::from_bytes(&blob) else {
            continue; // a plain key, not a certificate
        };
        if cert.key_id().starts_with("tpa:") && cert.valid_before() <= now {
            agent.remove(&blob)?;
            removed += 1;
        }
    }
    Ok(removed)
}

struct Agent(UnixStream);

impl Agent {
    fn connect(path: &Path) -> Result<Self, String> {
        let stream = UnixStream::connect(path)
            .map_err(|e| format!("cannot connect to ssh-agent at {}: {e}", path.display()))?;
        let limit = Some(Duration::from_secs(10));
        stream
            .set_read_timeout(limit)
            .and_then(|()| stream.set_write_timeout(limit))
            .map_err(|e| format!("ssh-agent socket: {e}"))?;
        Ok(Self(stream))
    }

    fn call(&mut self, message: &[u8]) -> Result<Vec<u8>, String> {
        let io = |e: std::io::Error| format!("ssh-agent: {e}");
        // A message goes out as an SSH string: its length, then its bytes.
        let mut framed = Vec::with_capacity(message.len() + 4);
        message
            .encode(&mut framed)
            .map_err(|e| format!("ssh-agent: {e}"))?;
        self.0.write_all(&framed).map_err(io)?;
        let mut len = [0u8; 4];
        self.0.read_exact(&mut len).map_err(io)?;
        let len = u32::from_be_bytes(len) as usize;
        if len == 0 || len > MAX_MESSAGE {
            return Err(format!("ssh-agent sent a message of {len} bytes"));
        }
        let mut answer = vec![0u8; len];
        self.0.read_exact(&mut answer).map_err(io)?;
        Ok(answer)
    }

    /// The key blobs the agent holds.
    fn identities(&mut self) -> Result<Vec<Vec<u8>>, String> {
        let answer = self.call(&[REQUEST_IDENTITIES])?;
        parse_identities(&answer).ok_or_else(|| "ssh-agent sent a malformed key list".to_owned())
    }

    fn remove(&mut self, blob: &[u8]) -> Result<(), String> {
        let mut message = vec![REMOVE_IDENTITY];
        blob.encode(&mut message)
            .map_err(|e| format!("ssh-agent: {e}"))?;
        match self.call(&message)?.first() {
            Some(&SUCCESS) => Ok(()),
            _ => Err("ssh-agent refused to remove an expired certificate".to_owned()),
        }
    }
}

/// `SSH_AGENT_IDENTITIES_ANSWER`: count, then (key blob, comment) pairs, and
/// nothing after them.
fn parse_identities(mut answer: &[u8]) -> Option<Vec<Vec<u8>>> {
    if u8::decode(&mut answer).ok()? != IDENTITIES_ANSWER {
        return None;
    }
    let count = u32::decode(&mut answer).ok()?;
    let mut blobs = Vec::new();
    for _ in 0..count {
        blobs.push(Vec::<u8>::decode(&mut answer).ok()?);
        answer.drain_prefixed().ok()?; // the comment
    }
    answer.is_finished().then_some(blobs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identities_answer_is_parsed_strictly() {
        let mut ok = vec![IDENTITIES_ANSWER, 0, 0, 0, 2];
        for field in [&b"blob-1"[..], b"comment", b"blob-2", b""] {
            field.encode(&mut ok).unwrap();
        }
        assert_eq!(
            parse_identities(&ok),
            Some(vec![b"blob-1".to_vec(), b"blob-2".to_vec()])
        );
        assert_eq!(parse_identities(&ok[..ok.len() - 1]), None, "truncated");
        let mut extra = ok.clone();
        extra.push(0);
        assert_eq!(parse_identities(&extra), None, "trailing bytes");
        assert_eq!(parse_identities(&[5]), None, "failure answer");
        assert_eq!(
            parse_identities(&[IDENTITIES_ANSWER, 0xff, 0xff, 0xff, 0xff]),
            None,
            "a huge count without the keys"
        );
        assert_eq!(parse_identities(&[]), None);
    }
}
