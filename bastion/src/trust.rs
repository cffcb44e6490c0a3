//! The trusted user-CA keys: read from a file or fetched from the CA's
//! `GET /ca.pub`, at start and then every `trust_refresh`.
//!
//! The CA publishes its keys in `authorized_keys` format, one per line. The
//! fetch never follows redirects and is bounded in time and size; `http://` is
//! accepted only to a loopback address (checked with the configuration). A
//! bastion never starts without at least one trusted key, and a refresh that
//! fails or finds no key keeps the keys it has: only a successful answer
//! changes them. A key that disappears from the answer is no longer trusted,
//! and the live sessions of its certificates are cut.

use std::sync::Arc;
use std::time::Duration;

use russh::keys::ssh_key::PublicKey;
use tokio::sync::watch;
use tpa_core::TrustedCas;

use crate::auth::Trust;
use crate::config::TrustSource;

/// The largest `/ca.pub` body accepted.
const MAX_BODY: usize = 1 << 20;
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
    /// The URL is not an `http://` or `https://` URL.
    #[error("ca_url {0:?} is not an http:// or https:// URL")]
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

/// Reloads the trusted keys from `source` every `interval` until `shutdown`
/// completes, and publishes a changed set into `trust`.
pub async fn refresh(
    source: TrustSource,
    trust: watch::Sender<Arc<Trust>>,
    interval: Duration,
    shutdown: impl std::future::Future<Output = ()>,
) {
    let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut failing = false;
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => return,
            _ = ticker.tick() => {}
        }
        match load(&source).await {
            Ok(cas) => {
                if failing {
                    tracing::info!("trusted CA keys reachable again");
                    failing = false;
                }
                trust.send_if_modified(|current| {
                    if current.cas == cas {
                        return false;
                    }
                    tracing::warn!(
                        "trusted user CA keys changed; sessions of untrusted CAs are cut"
                    );
                    let mut next = Trust::clone(current);
                    next.cas = cas.clone();
                    *current = Arc::new(next);
                    true
                });
            }
            Err(e) => {
                if !failing {
                    tracing::warn!(error = %e, "cannot refresh the trusted CA keys; keeping the current ones");
                    failing = true;
                }
            }
        }
    }
}

async fn http_get(url: &str) -> Result<String, TrustError> {
    let fetch_err = |message: String| TrustError::Fetch {
        url: url.to_owned(),
        message,
    };
    let parsed = reqwest::Url::parse(url).map_err(|_| TrustError::BadUrl(url.to_owned()))?;
    if !matches!(parsed.scheme(), "http" | "https")
        || parsed.host_str().is_none()
        || !parsed.username().is_empty()
    {
        return Err(TrustError::BadUrl(url.to_owned()));
    }
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(FETCH_TIMEOUT)
        .build()
        .map_err(|e| fetch_err(e.to_string()))?;
    let mut response = client
        .get(parsed)
        .send()
        .await
        .map_err(|e| fetch_err(e.without_url().to_string()))?;
    let status = response.status();
    if status != reqwest::StatusCode::OK {
        return Err(fetch_err(format!("HTTP status {}", status.as_u16())));
    }
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| fetch_err(e.without_url().to_string()))?
    {
        body.extend_from_slice(&chunk);
        if body.len() > MAX_BODY {
            return Err(fetch_err(format!("answer larger than {MAX_BODY} bytes")));
        }
    }
    String::from_utf8(body).map_err(|_| fetch_err("answer is not UTF-8".into()))
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

    #[tokio::test]
    async fn urls_must_be_http_or_https_without_credentials() {
        for url in ["ftp://ca/ca.pub", "http://user@ca/ca.pub", "not a url"] {
            assert!(
                matches!(http_get(url).await, Err(TrustError::BadUrl(_))),
                "{url}"
            );
        }
    }

    #[tokio::test]
    async fn refresh_replaces_changed_keys_and_keeps_them_on_failure() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("ca.pub");
        let (first, first_line) = key_line();
        let (second, second_line) = key_line();
        std::fs::write(&file, &first_line).unwrap();
        let cas = load(&TrustSource::File(file.clone())).await.unwrap();
        let (tx, mut rx) = watch::channel(Arc::new(Trust {
            cas,
            ..Trust::default()
        }));
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(refresh(
            TrustSource::File(file.clone()),
            tx,
            Duration::from_millis(50),
            async {
                let _ = stopped.await;
            },
        ));
        std::fs::write(&file, &second_line).unwrap();
        tokio::time::timeout(Duration::from_secs(5), rx.changed())
            .await
            .unwrap()
            .unwrap();
        let now = rx.borrow_and_update().clone();
        assert!(now.cas.contains(second.key_data()));
        assert!(!now.cas.contains(first.key_data()));
        // An empty answer is a failure: the keys stay.
        std::fs::write(&file, "").unwrap();
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(rx.borrow().cas.contains(second.key_data()));
        let _ = stop.send(());
        task.await.unwrap();
    }
}
