//! What `tpa-ca config check` finds outside the configuration file: whether
//! the bastions it lists and announces fit together and answer, whether the
//! bastions' token files match a `[[bastions]]` entry, and whether each OpenID
//! provider's discovery document is reachable and names the configured
//! issuer. One line per finding.

use std::io::Read as _;
use std::net::{TcpStream, ToSocketAddrs as _};
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use sha2::Digest as _;

use crate::auth::identity::{OIDC_CALLBACK_PATH, oidc};
use crate::config::Config;

/// How long a bastion gets to answer with its SSH banner.
const BASTION_TIMEOUT: Duration = Duration::from_secs(3);

/// How bad a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Level {
    /// Works as configured.
    Ok,
    /// Works, but probably not as meant.
    Warning,
    /// Does not work: logins, jumps or session records fail.
    Error,
}

/// One line of the report.
#[derive(Debug)]
pub(super) struct Finding {
    pub level: Level,
    pub text: String,
}

impl std::fmt::Display for Finding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let tag = match self.level {
            Level::Ok => "ok",
            Level::Warning => "warning",
            Level::Error => "error",
        };
        write!(f, "  {tag}: {}", self.text)
    }
}

fn finding(level: Level, text: String) -> Finding {
    Finding { level, text }
}

/// `[[bastions]]` and `[client]`, and whether the announced bastion answers.
pub(super) fn bastions_and_client(config: &Config) -> Vec<Finding> {
    let mut out = Vec::new();
    for b in &config.bastions {
        out.push(finding(
            Level::Ok,
            format!("[[bastions]] {}: may read the revocation feed and deliver session records with its token", b.name),
        ));
    }
    let client = &config.client;
    match (&client.bastion, config.bastions.is_empty()) {
        (Some(b), true) => out.push(finding(
            Level::Warning,
            format!("client.bastion {b} is announced but no [[bastions]] entry lets a bastion read the revocation feed or deliver session records; add one with the SHA-256 of its token (docs/configuration.md, [[bastions]])"),
        )),
        (None, false) => out.push(finding(
            Level::Warning,
            "[[bastions]] are configured but [client] announces none: tpa-ssh config and tpa-ssh ssh will not go through a bastion (set client.bastion = \"host:port\")".to_owned(),
        )),
        _ => {}
    }
    if let Some(b) = &client.bastion {
        let target = format!("{}:{}", b.host(), b.port().unwrap_or(22));
        out.push(match ssh_banner(&target) {
            Ok(banner) => finding(Level::Ok, format!("client.bastion {b} answers ({banner})")),
            Err(e) => finding(
                Level::Error,
                format!("client.bastion {b} does not answer as an SSH server: {e}; users cannot jump through it (is tpa-bastion running and listening there?)"),
            ),
        });
    }
    if client.host_patterns.is_empty() {
        out.push(finding(
            Level::Warning,
            "client.host_patterns is empty: users must give `tpa-ssh config --host-pattern 'web-*'`".to_owned(),
        ));
    } else {
        let patterns: Vec<&str> = client.host_patterns.iter().map(|p| p.as_str()).collect();
        out.push(finding(
            Level::Ok,
            format!(
                "client.host_patterns: {} (tpa-ssh config routes these through TPA)",
                patterns.join(", ")
            ),
        ));
    }
    out
}

/// The first line an SSH server sends.
fn ssh_banner(target: &str) -> Result<String, String> {
    let addr = target
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve {target}: {e}"))?
        .next()
        .ok_or_else(|| format!("{target} resolves to no address"))?;
    let mut stream = TcpStream::connect_timeout(&addr, BASTION_TIMEOUT)
        .map_err(|e| format!("cannot connect to {addr}: {e}"))?;
    stream
        .set_read_timeout(Some(BASTION_TIMEOUT))
        .map_err(|e| e.to_string())?;
    let mut buf = [0u8; 256];
    let n = stream
        .read(&mut buf)
        .map_err(|e| format!("no banner from {addr}: {e}"))?;
    let line = String::from_utf8_lossy(&buf[..n]);
    let line = line.lines().next().unwrap_or_default().trim();
    if line.starts_with("SSH-2.0-") {
        Ok(line.chars().take(80).collect())
    } else {
        Err(format!("{addr} answered, but not with an SSH banner"))
    }
}

/// The two keys of a bastion's `bastion.toml` this check reads.
#[derive(Debug, Deserialize)]
struct BastionFile {
    ca_token_file: Option<PathBuf>,
}

/// For each bastion configuration: does its token file hold a token whose
/// SHA-256 is a `[[bastions]]` entry, and is it private?
pub(super) fn bastion_token_files(config: &Config, files: &[PathBuf]) -> Vec<Finding> {
    files
        .iter()
        .map(|f| bastion_token_file(config, f))
        .collect()
}

fn bastion_token_file(config: &Config, file: &Path) -> Finding {
    let error = |text: String| {
        finding(
            Level::Error,
            format!("bastion config {}: {text}", file.display()),
        )
    };
    let parsed: BastionFile = match std::fs::read_to_string(file)
        .map_err(|e| e.to_string())
        .and_then(|t| toml::from_str(&t).map_err(|e| e.to_string()))
    {
        Ok(p) => p,
        Err(e) => return error(format!("cannot read it: {e}")),
    };
    let Some(token_file) = parsed.ca_token_file else {
        return error("no ca_token_file: that bastion gets no revocation feed".to_owned());
    };
    let token_file = file.parent().unwrap_or(Path::new(".")).join(token_file);
    let meta = match std::fs::metadata(&token_file) {
        Ok(m) => m,
        Err(e) => {
            return error(format!(
                "cannot read its token file {}: {e}",
                token_file.display()
            ));
        }
    };
    let token = match std::fs::read_to_string(&token_file) {
        Ok(t) => t.trim().to_owned(),
        Err(e) => {
            return error(format!(
                "cannot read its token file {}: {e}",
                token_file.display()
            ));
        }
    };
    if token.is_empty() || token.chars().any(char::is_whitespace) {
        return error(format!(
            "its token file {} must hold one token without spaces",
            token_file.display()
        ));
    }
    let hash: [u8; 32] = sha2::Sha256::digest(token.as_bytes()).into();
    let Some(entry) = config.bastions.iter().find(|b| b.token_hash == hash) else {
        return error(format!(
            "the token in {} matches no [[bastions]] entry: add [[bastions]] with token_hash = \"{}\"",
            token_file.display(),
            hex::encode(hash)
        ));
    };
    if meta.mode() & 0o077 != 0 {
        return finding(
            Level::Warning,
            format!(
                "bastion config {}: the token in {} is [[bastions]] {}, but the file has mode {:o}: chmod 600 it",
                file.display(),
                token_file.display(),
                entry.name,
                meta.mode() & 0o777
            ),
        );
    }
    finding(
        Level::Ok,
        format!(
            "bastion config {}: its token ({}) is [[bastions]] {}",
            file.display(),
            token_file.display(),
            entry.name
        ),
    )
}

/// The discovery document's one field this check compares.
#[derive(Debug, Deserialize)]
struct Discovery {
    issuer: String,
}

/// Each `[[oidc]]` provider: discovery reachable, issuer exactly as
/// configured, signing keys fetched (what logins will need).
pub(super) async fn oidc_providers(config: &Config) -> Vec<Finding> {
    let mut out = Vec::new();
    let http = match oidc::http_client() {
        Ok(h) => h,
        Err(e) => return vec![finding(Level::Error, e)],
    };
    let origin = config
        .public_url
        .as_ref()
        .map(|u| u.origin())
        .unwrap_or_default();
    for c in &config.oidc {
        let url = format!(
            "{}/.well-known/openid-configuration",
            c.issuer.trim_end_matches('/')
        );
        let error = |text: String| finding(Level::Error, format!("oidc {}: {text}", c.name));
        let document = match http.get(&url).send().await {
            Err(e) => {
                out.push(error(format!(
                    "discovery at {url} is unreachable: {e}; nobody can log in with it"
                )));
                continue;
            }
            Ok(r) if !r.status().is_success() => {
                out.push(error(format!(
                    "discovery at {url} answered {}; is issuer right?",
                    r.status()
                )));
                continue;
            }
            Ok(r) => r.json::<Discovery>().await,
        };
        match document {
            Err(e) => out.push(error(format!("discovery at {url} is not an OpenID discovery document: {e}"))),
            Ok(d) if d.issuer != c.issuer => out.push(error(format!(
                "the provider's discovery document names issuer {:?}, the configuration {:?}: set issuer to exactly {:?}",
                d.issuer, c.issuer, d.issuer
            ))),
            Ok(_) => {
                let connector = oidc::OidcConnector::new(c.clone(), &format!("{origin}{OIDC_CALLBACK_PATH}"), http.clone());
                out.push(match connector {
                    Err(e) => error(e),
                    Ok(connector) => match connector.discover().await {
                        Ok(()) => finding(
                            Level::Ok,
                            format!("oidc {}: discovery at {url} is reachable, its issuer matches, its signing keys load", c.name),
                        ),
                        Err(e) => error(format!("discovery at {url}: {e}")),
                    },
                });
            }
        }
    }
    out
}
