//! `[[oidc]]`: OpenID Connect providers users log in with (issuer, client,
//! secret file, which claims give the username and the groups).

use std::collections::BTreeMap;
use std::io::Read as _;
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use tpa_core::GroupName;

/// One OpenID Connect connector.
#[derive(Clone, PartialEq, Eq)]
pub struct OidcConfig {
    /// Short identifier used in URLs (`/login/oidc/<name>`) and the audit trail.
    pub name: String,
    /// The button label on the login page (the name when not set).
    pub display_name: String,
    /// The issuer URL, exactly as the provider's discovery document states it.
    pub issuer: String,
    /// The client id registered at the provider.
    pub client_id: String,
    /// The client secret, read from `client_secret_file` (mode 0600).
    pub client_secret: String,
    /// The claim holding the user's groups.
    pub groups_claim: String,
    /// Claim value → TPA group. When not empty, only mapped values count.
    pub group_map: BTreeMap<String, GroupName>,
    /// The claim holding the login name (parsed as a TPA username).
    pub username_claim: String,
    /// The claim holding the name shown on pages and by `tpa-ssh whoami`.
    pub display_name_claim: String,
    /// Scopes requested besides `openid`.
    pub scopes: Vec<String>,
}

impl std::fmt::Debug for OidcConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OidcConfig")
            .field("name", &self.name)
            .field("issuer", &self.issuer)
            .field("client_id", &self.client_id)
            .field("client_secret", &"<redacted>")
            .field("groups_claim", &self.groups_claim)
            .field("group_map", &self.group_map)
            .field("username_claim", &self.username_claim)
            .field("display_name_claim", &self.display_name_claim)
            .field("scopes", &self.scopes)
            .finish()
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawOidc {
    name: String,
    display_name: Option<String>,
    issuer: String,
    client_id: String,
    client_secret_file: PathBuf,
    groups_claim: Option<String>,
    #[serde(default)]
    group_map: BTreeMap<String, String>,
    #[serde(default)]
    trust_group_names: bool,
    username_claim: Option<String>,
    display_name_claim: Option<String>,
    scopes: Option<Vec<String>>,
}

/// Scopes requested when `scopes` is not set (`openid` is always added).
pub const DEFAULT_SCOPES: &[&str] = &["profile", "email"];

/// Checks every `[[oidc]]` entry; errors name the entry.
pub(super) fn connectors(
    raw: &[RawOidc],
    resolve: &impl Fn(&Path) -> PathBuf,
) -> Result<Vec<OidcConfig>, String> {
    let mut out: Vec<OidcConfig> = Vec::with_capacity(raw.len());
    for (index, entry) in raw.iter().enumerate() {
        let connector = connector(entry, index, resolve)?;
        if out.iter().any(|c| c.name == connector.name) {
            return Err(format!(
                "oidc: name {:?} appears twice; each connector needs its own name",
                connector.name
            ));
        }
        out.push(connector);
    }
    Ok(out)
}

fn connector(
    raw: &RawOidc,
    index: usize,
    resolve: &impl Fn(&Path) -> PathBuf,
) -> Result<OidcConfig, String> {
    let name = raw.name.as_str();
    check_name(name, index)?;
    let at = |key: &str, e: String| format!("oidc {name:?}: {key} {e}");
    let display_name =
        display_name(name, raw.display_name.as_deref()).map_err(|e| at("display_name", e))?;
    check_issuer(&raw.issuer).map_err(|e| at("issuer", e))?;
    if raw.client_id.trim().is_empty() || raw.client_id.contains(char::is_control) {
        return Err(at("client_id", "must not be empty".to_owned()));
    }
    let secret_path = resolve(&raw.client_secret_file);
    let client_secret = read_private_file(&secret_path).map_err(|e| {
        at(
            "client_secret_file",
            format!("{}: {e}", secret_path.display()),
        )
    })?;
    let group_map = group_map(raw).map_err(|e| at("group_map", e))?;
    let scopes = scopes(raw.scopes.as_deref()).map_err(|e| at("scopes", e))?;
    let claim = |key: &str, value: Option<&str>, default: &str| {
        claim_name(value.unwrap_or(default)).map_err(|e| at(key, e))
    };
    Ok(OidcConfig {
        name: name.to_owned(),
        display_name,
        issuer: raw.issuer.clone(),
        client_id: raw.client_id.clone(),
        client_secret,
        groups_claim: claim("groups_claim", raw.groups_claim.as_deref(), "groups")?,
        group_map,
        username_claim: claim(
            "username_claim",
            raw.username_claim.as_deref(),
            "preferred_username",
        )?,
        display_name_claim: claim(
            "display_name_claim",
            raw.display_name_claim.as_deref(),
            "name",
        )?,
        scopes,
    })
}

/// A connector's name: a slug, since it appears in URLs.
fn check_name(name: &str, index: usize) -> Result<(), String> {
    let slug_ok = !name.is_empty()
        && name.len() <= 32
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-');
    if slug_ok {
        Ok(())
    } else {
        Err(format!(
            "oidc[{index}].name {name:?}: 1 to 32 lowercase letters, digits and '-' (it appears in URLs)"
        ))
    }
}

/// The name on the login page (the connector's name when not set).
fn display_name(name: &str, value: Option<&str>) -> Result<String, String> {
    match value {
        None => Ok(name.to_owned()),
        Some(d) if d.trim().is_empty() || d.len() > 64 || d.contains(char::is_control) => {
            Err("must be 1 to 64 bytes without control characters".to_owned())
        }
        Some(d) => Ok(d.to_owned()),
    }
}

fn claim_name(value: &str) -> Result<String, String> {
    if value.is_empty() || value.len() > 128 || value.contains(char::is_control) {
        Err("must be a claim name".to_owned())
    } else {
        Ok(value.to_owned())
    }
}

/// The provider's group values → TPA groups. Without a map, every group
/// value the provider sends becomes a TPA group: safe only where users
/// cannot create groups of their own (not GitLab, say), so that must be
/// asked for.
fn group_map(raw: &RawOidc) -> Result<BTreeMap<String, GroupName>, String> {
    if raw.group_map.is_empty() && !raw.trust_group_names {
        return Err(
            "is empty: map the provider's group values to TPA groups, or set trust_group_names = true \
             if only administrators can create groups at this provider"
                .to_owned(),
        );
    }
    let mut group_map = BTreeMap::new();
    for (from, to) in &raw.group_map {
        let group = GroupName::parse(to).map_err(|e| format!("{from:?}: {e}"))?;
        group_map.insert(from.clone(), group);
    }
    Ok(group_map)
}

/// The scopes asked for besides `openid` (always sent).
fn scopes(scopes: Option<&[String]>) -> Result<Vec<String>, String> {
    let Some(scopes) = scopes else {
        return Ok(DEFAULT_SCOPES.iter().map(|s| (*s).to_owned()).collect());
    };
    let scope_ok = |s: &String| {
        !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_graphic() && b != b'"' && b != b'\\')
    };
    if let Some(bad) = scopes.iter().find(|s| !scope_ok(s)) {
        return Err(format!("{bad:?} is not a scope"));
    }
    Ok(scopes.iter().filter(|s| *s != "openid").cloned().collect())
}

/// An issuer is an `https://` URL, or `http://` to a loopback address (tests,
/// a provider on the same machine). No query or fragment.
fn check_issuer(issuer: &str) -> Result<(), String> {
    let url = reqwest::Url::parse(issuer).map_err(|e| format!("{issuer:?} is not a URL ({e})"))?;
    if url.query().is_some() || url.fragment().is_some() || !url.username().is_empty() {
        return Err(format!(
            "{issuer:?} must not have credentials, a query or a fragment"
        ));
    }
    let host = url.host_str().unwrap_or_default();
    let loopback = host == "localhost"
        || host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    match url.scheme() {
        "https" if !host.is_empty() => Ok(()),
        "http" if loopback => Ok(()),
        _ => Err(format!(
            "{issuer:?} must be an https:// URL (http:// only for 127.0.0.1, [::1] or localhost)"
        )),
    }
}

/// Reads a secret file: a regular file (not a symbolic link) of the CA's user
/// that nobody else may read or write (mode 0600 or stricter), at most 4 KiB,
/// trimmed, not empty.
pub fn read_private_file(path: &Path) -> Result<String, String> {
    use std::os::unix::fs::OpenOptionsExt as _;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
        .open(path)
        .map_err(|e| format!("cannot open it ({e}); it must be a regular file, not a link"))?;
    let meta = file
        .metadata()
        .map_err(|e| format!("cannot stat it ({e})"))?;
    if !meta.is_file() {
        return Err("is not a regular file".to_owned());
    }
    let us = rustix::process::geteuid().as_raw();
    if meta.uid() != us {
        return Err(format!(
            "is owned by uid {}, not by the CA's user (uid {us}); chown it",
            meta.uid()
        ));
    }
    let mode = meta.mode() & 0o7777;
    if mode & 0o077 != 0 {
        return Err(format!(
            "has mode {mode:04o}; others may read it: chmod 600 it"
        ));
    }
    let mut text = String::new();
    file.take(4096)
        .read_to_string(&mut text)
        .map_err(|e| format!("cannot read it ({e})"))?;
    let text = text.trim();
    if text.is_empty() {
        return Err("is empty".to_owned());
    }
    Ok(text.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issuers() {
        let check = |issuer: &str, ok: bool| {
            assert_eq!(check_issuer(issuer).is_ok(), ok, "{issuer}");
        };
        check("https://idp.example.com", true);
        check("https://login.microsoftonline.com/tid/v2.0", true);
        check("http://127.0.0.1:9000", true);
        check("http://[::1]:9000/realms/x", true);
        check("http://localhost:9000", true);
        check("http://idp.example.com", false);
        check("https://idp.example.com?x=1", false);
        check("https://user@idp.example.com", false);
        check("ftp://idp.example.com", false);
        check("idp.example.com", false);
    }

    /// Security review M2: without a map, provider group names are trusted only on request.
    #[test]
    fn group_names_are_trusted_only_when_asked() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let secret = dir.path().join("secret");
        std::fs::write(&secret, "s3cret\n").unwrap();
        std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).unwrap();
        let config = |extra: &str| {
            format!(
                "[ca]\nkey_file = \"k\"\n[database]\npath = \"d\"\n[server]\npublic_url = \"https://ca.example.com\"\n\
                 [[oidc]]\nname = \"idp\"\nissuer = \"https://idp.example.com\"\nclient_id = \"tpa\"\n\
                 client_secret_file = \"{}\"\n{extra}",
                secret.display()
            )
        };
        let path = dir.path().join("tpa.toml");
        let load = |text: String| {
            crate::config::Config::parse(&text, &path)
                .map(|_| ())
                .map_err(|e| e.to_string())
        };
        let e = load(config("")).unwrap_err();
        assert!(e.contains("trust_group_names"), "{e}");
        assert!(load(config("trust_group_names = true\n")).is_ok());
        assert!(load(config("group_map = { \"gitlab/sre\" = \"sre-leads\" }\n")).is_ok());
        // Issue 12: the display name comes from `name` unless another claim is named.
        let claim_of = |extra: &str| {
            crate::config::Config::parse(&config(extra), &path)
                .unwrap()
                .oidc[0]
                .display_name_claim
                .clone()
        };
        assert_eq!(claim_of("trust_group_names = true\n"), "name");
        assert_eq!(
            claim_of("trust_group_names = true\ndisplay_name_claim = \"given_name\"\n"),
            "given_name"
        );
        let e = load(config(
            "trust_group_names = true\ndisplay_name_claim = \"\"\n",
        ))
        .unwrap_err();
        assert!(e.contains("display_name_claim"), "{e}");
    }

    #[test]
    fn secret_files_must_be_private() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secret");
        std::fs::write(&path, "s3cret\n").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(read_private_file(&path).unwrap_err().contains("chmod 600"));
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(read_private_file(&path).unwrap(), "s3cret");
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&path, &link).unwrap();
        assert!(read_private_file(&link).is_err());
        assert!(read_private_file(&dir.path().join("missing")).is_err());
    }
}
