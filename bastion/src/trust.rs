//! The trusted user-CA keys: read from a file or fetched from the CA's `GET /ca.pub`.
//!
//! The CA publishes its keys in `authorized_keys` format, one per line. The
//! fetch is a minimal HTTP/1.1 GET over a plain TCP stream: the CA URL is meant
//! to be `http://` on loopback or a private network; `https://` is refused here
//! rather than silently downgraded (use `trusted_user_ca_keys` with a copied file
//! instead). A bastion never starts without at least one trusted key.

use std::time::Duration;

use russh::keys::ssh_key::PublicKey;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tpa_core::TrustedCas;

use crate::config::TrustSource;

/// The largest `/ca.pub` body accepted.
const MAX_BODY: u64 = 1 << 20;
/// The bound on the whole fetch.
const FETCH_TIMEOUT: Duration = Duration::from_secs(10);

/// Why no trusted keys could be loaded.
#[derive(Debug, thiserror::Error)]
pub enum TrustError {
    /// The file cannot be read.
    #[error("cannot read trusted CA keys from {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The URL is not `http://host:port[/prefix]`.
    #[error(
        "ca_url {0:?} is not an http:// URL (https is not supported by the built-in fetch; use trusted_user_ca_keys)"
    )]
    BadUrl(String),
    /// The CA did not answer as expected.
    #[error("cannot fetch {url}: {message}")]
    Fetch {
        /// The URL.
        url: String,
        /// What went wrong.
        message: String,
    },
    /// A line is not a public key.
    #[error("trusted CA keys from {source_name}, line {line}: not an OpenSSH public key")]
    Parse {
        /// The file or URL.
        source_name: String,
        /// 1-based line number.
        line: usize,
    },
    /// Nothing to trust.
    #[error("no trusted CA key in {0}; refusing to start a bastion that trusts nobody")]
    Empty(String),
}

/// Loads the trusted CA keys from `source`.
pub async fn load(source: &TrustSource) -> Result<TrustedCas, TrustError> {
    match source {
        TrustSource::File(path) => {
            let text =
                tokio::fs::read_to_string(path)
                    .await
                    .map_err(|source| TrustError::Read {
                        path: path.display().to_string(),
                        source,
                    })?;
            parse_keys(&text, &path.display().to_string())
        }
        TrustSource::CaUrl(base) => {
            let url = format!("{}/ca.pub", base.trim_end_matches('/'));
            let body = tokio::time::timeout(FETCH_TIMEOUT, http_get(&url))
                .await
                .map_err(|_| TrustError::Fetch {
                    url: url.clone(),
                    message: "timed out".to_owned(),
                })??;
            parse_keys(&body, &url)
        }
    }
}

/// Parses `authorized_keys`-format text; blank lines and `#` comments are skipped.
pub fn parse_keys(text: &str, source_name: &str) -> Result<TrustedCas, TrustError> {
    let mut keys = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let key = PublicKey::from_openssh(line).map_err(|_| TrustError::Parse {
            source_name: source_name.to_owned(),
            line: i + 1,
        })?;
        keys.push(key.key_data().clone());
    }
    if keys.is_empty() {
        return Err(TrustError::Empty(source_name.to_owned()));
    }
    Ok(TrustedCas::new(keys))
}

/// Splits `http://host:port/path` into (`host:port`, `/path`).
fn split_url(url: &str) -> Option<(&str, &str)> {
    let rest = url.strip_prefix("http://")?;
    let (authority, path) = match rest.find('/') {
        Some(i) => rest.split_at(i),
        None => (rest, "/"),
    };
    (!authority.is_empty() && !authority.contains('@')).then_some((authority, path))
}

async fn http_get(url: &str) -> Result<String, TrustError> {
    let fetch_err = |message: String| TrustError::Fetch {
        url: url.to_owned(),
        message,
    };
    let (authority, path) = split_url(url).ok_or_else(|| TrustError::BadUrl(url.to_owned()))?;
    let connect_to = if authority.contains(':') {
        authority.to_owned()
    } else {
        format!("{authority}:80")
    };
    let mut stream = tokio::net::TcpStream::connect(&connect_to)
        .await
        .map_err(|e| fetch_err(e.to_string()))?;
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\nAccept: text/plain\r\n\r\n"
    );
    stream
        .write_all(request.as_bytes())
        .await
        .map_err(|e| fetch_err(e.to_string()))?;
    let mut response = Vec::new();
    stream
        .take(MAX_BODY + 16 * 1024)
        .read_to_end(&mut response)
        .await
        .map_err(|e| fetch_err(e.to_string()))?;
    let text = String::from_utf8(response).map_err(|_| fetch_err("answer is not UTF-8".into()))?;
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| fetch_err("malformed HTTP answer".into()))?;
    let status = head.split_whitespace().nth(1).unwrap_or("");
    if status != "200" {
        return Err(fetch_err(format!("HTTP status {status}")));
    }
    let chunked = head.lines().any(|l| {
        let l = l.to_ascii_lowercase();
        l.starts_with("transfer-encoding:") && l.contains("chunked")
    });
    if chunked {
        return Err(fetch_err("chunked answers are not supported".into()));
    }
    Ok(body.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    use russh::keys::ssh_key::{Algorithm, PrivateKey};

    fn key_line() -> (PublicKey, String) {
        let key = PrivateKey::random(&mut rand::rng(), Algorithm::Ed25519).unwrap();
        let public = key.public_key().clone();
        let line = public.to_openssh().unwrap();
        (public, line)
    }

    #[test]
    fn keys_file_is_parsed_with_comments_and_blank_lines() {
        let (key, line) = key_line();
        let cas = parse_keys(&format!("# TPA\n\n{line} tpa-ca\n"), "test").unwrap();
        assert!(cas.contains(key.key_data()));
    }

    #[test]
    fn empty_or_bad_keys_are_refused() {
        let (_, line) = key_line();
        assert!(matches!(
            parse_keys("# nothing\n", "t"),
            Err(TrustError::Empty(_))
        ));
        assert!(matches!(
            parse_keys(&format!("{line}\nssh-ed25519 garbage\n"), "t"),
            Err(TrustError::Parse { line: 2, .. })
        ));
    }

    #[test]
    fn only_plain_http_urls() {
        assert_eq!(
            split_url("http://127.0.0.1:8700/ca.pub"),
            Some(("127.0.0.1:8700", "/ca.pub"))
        );
        assert_eq!(split_url("http://ca"), Some(("ca", "/")));
        assert_eq!(split_url("https://ca/ca.pub"), None);
        assert_eq!(split_url("http://user@ca/ca.pub"), None);
        assert_eq!(split_url("http:///ca.pub"), None);
    }
}
