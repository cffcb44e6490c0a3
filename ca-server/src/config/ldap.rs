//! `[[ldap]]`: LDAP and Active Directory connectors users log in with by
//! password (where the directory is, how its certificate is pinned, the
//! service account, how users and their groups are found).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use tpa_core::{GroupName, HumanDuration};

use super::oidc::read_private_file;

/// Which directory server the connector talks to: it sets the defaults of
/// the filters and attributes, and how nested groups are resolved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LdapKind {
    /// OpenLDAP, FreeIPA/389-ds and other RFC 4512 directories.
    OpenLdap,
    /// Microsoft Active Directory.
    ActiveDirectory,
}

/// How a user's groups are found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupMembership {
    /// The user entry's `memberOf` attribute (OpenLDAP's memberof overlay,
    /// FreeIPA, AD without nesting).
    MemberOf,
    /// A search under `group_base` with `group_filter`.
    Search,
}

/// The transport: TLS from the first byte, StartTLS, or (tests on loopback
/// only) nothing at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LdapTransport {
    /// `ldaps://`.
    Ldaps,
    /// `ldap://` upgraded with StartTLS before anything else is sent; a
    /// server that refuses the upgrade is refused.
    StartTls,
    /// `ldap://` without TLS: only with `insecure_plaintext = true` and a loopback host.
    InsecurePlaintext,
}

/// One LDAP connector.
#[derive(Clone, PartialEq, Eq)]
pub struct LdapConfig {
    /// Short identifier used in the audit trail and `/healthz`.
    pub name: String,
    /// OpenLDAP or Active Directory.
    pub kind: LdapKind,
    /// The directory URL as configured (`ldaps://host:636`, `ldap://host`).
    pub url: String,
    /// How the connection is protected.
    pub transport: LdapTransport,
    /// The PEM file of the CA(s) the directory's certificate must chain to.
    pub ca_file: Option<PathBuf>,
    /// The service account's DN (searches); `None` with `user_dn_template`.
    pub bind_dn: Option<String>,
    /// The service account's password, read from `bind_password_file`.
    pub bind_password: Option<String>,
    /// Direct bind without a service account: `uid={username},ou=people,…`.
    pub user_dn_template: Option<String>,
    /// Where users are searched (and part of the identity's issuer).
    pub user_base: String,
    /// The user search filter; `{username}` is replaced, RFC 4515-escaped.
    pub user_filter: String,
    /// The attribute holding the login name.
    pub username_attribute: String,
    /// The attribute holding the name shown on pages.
    pub display_name_attribute: String,
    /// The attribute holding the e-mail address (`mail`).
    pub mail_attribute: String,
    /// The attribute holding the entry's stable id (`entryUUID`, `objectGUID`).
    pub id_attribute: String,
    /// `memberOf` or a group search.
    pub group_membership: GroupMembership,
    /// Where groups are searched (defaults to the user base).
    pub group_base: String,
    /// The group search filter; `{dn}` and `{username}` are replaced, escaped.
    pub group_filter: String,
    /// The attribute holding a group's name.
    pub group_name_attribute: String,
    /// How many levels of groups-in-groups are followed (0: direct only).
    pub nested_depth: u8,
    /// Group name or DN → TPA group. When not empty, only mapped groups count.
    pub group_map: BTreeMap<String, GroupName>,
    /// How long groups read from the directory are reused (zero: never).
    pub groups_cache: Duration,
    /// The limit of every network step (connect, StartTLS, bind, search).
    pub timeout: Duration,
    /// Service-account connections kept open for reuse.
    pub pool_size: usize,
}

impl std::fmt::Debug for LdapConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LdapConfig")
            .field("name", &self.name)
            .field("kind", &self.kind)
            .field("url", &self.url)
            .field("bind_dn", &self.bind_dn)
            .field(
                "bind_password",
                &self.bind_password.as_ref().map(|_| "<redacted>"),
            )
            .field("user_base", &self.user_base)
            .field("user_filter", &self.user_filter)
            .field("group_membership", &self.group_membership)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLdap {
    name: String,
    kind: Option<String>,
    url: String,
    #[serde(default)]
    insecure_plaintext: bool,
    ca_file: Option<PathBuf>,
    bind_dn: Option<String>,
    bind_password_file: Option<PathBuf>,
    user_dn_template: Option<String>,
    user_base: String,
    user_filter: Option<String>,
    username_attribute: Option<String>,
    display_name_attribute: Option<String>,
    mail_attribute: Option<String>,
    id_attribute: Option<String>,
    group_membership: Option<String>,
    group_base: Option<String>,
    group_filter: Option<String>,
    group_name_attribute: Option<String>,
    nested_depth: Option<u8>,
    #[serde(default)]
    group_map: BTreeMap<String, String>,
    #[serde(default)]
    trust_group_names: bool,
    groups_cache: Option<String>,
    timeout: Option<String>,
    pool_size: Option<usize>,
}

/// The default group search of OpenLDAP-style directories: `groupOfNames`,
/// `groupOfUniqueNames` and `posixGroup` (by `memberUid`).
pub const DEFAULT_GROUP_FILTER: &str = "(|(&(objectClass=groupOfNames)(member={dn}))(&(objectClass=groupOfUniqueNames)(uniqueMember={dn}))(&(objectClass=posixGroup)(memberUid={username})))";
/// Active Directory's transitive membership rule (`LDAP_MATCHING_RULE_IN_CHAIN`).
pub const AD_GROUP_FILTER: &str = "(&(objectClass=group)(member:1.2.840.113556.1.4.1941:={dn}))";

/// Checks every `[[ldap]]` entry; errors name the entry.
pub(super) fn connectors(
    raw: &[RawLdap],
    resolve: &impl Fn(&Path) -> PathBuf,
) -> Result<Vec<LdapConfig>, String> {
    let mut out: Vec<LdapConfig> = Vec::with_capacity(raw.len());
    for (index, entry) in raw.iter().enumerate() {
        let connector = connector(entry, index, resolve)?;
        if out.iter().any(|c| c.name == connector.name) {
            return Err(format!(
                "ldap: name {:?} appears twice; each connector needs its own name",
                connector.name
            ));
        }
        out.push(connector);
    }
    Ok(out)
}

fn connector(
    raw: &RawLdap,
    index: usize,
    resolve: &impl Fn(&Path) -> PathBuf,
) -> Result<LdapConfig, String> {
    let name = raw.name.as_str();
    check_name(name, index)?;
    let at = |key: &str| format!("ldap {name:?}: {key}");
    let text = |key: &str, value: Option<&str>, default: &str| text_value(&at(key), value, default);
    let kind = kind(raw.kind.as_deref()).map_err(|e| format!("{} {e}", at("kind")))?;
    let defaults = Defaults::of(kind);
    let transport = transport(&raw.url, raw.insecure_plaintext).map_err(|e| at(&e))?;
    let ca_file = raw.ca_file.as_deref().map(resolve);
    if transport != LdapTransport::InsecurePlaintext && ca_file.is_none() {
        return Err(format!(
            "{} is required: the PEM file of the CA that signed the directory's certificate",
            at("ca_file")
        ));
    }
    let (bind_dn, bind_password, user_dn_template) = binding(raw, name, resolve)?;
    let user_filter = text(
        "user_filter",
        raw.user_filter.as_deref(),
        defaults.user_filter,
    )?;
    if !user_filter.contains("{username}") {
        return Err(format!("{} must contain {{username}}", at("user_filter")));
    }
    let (group_membership, group_map) = membership(raw, name)?;
    let user_base = text("user_base", Some(&raw.user_base), "")?;
    Ok(LdapConfig {
        name: name.to_owned(),
        kind,
        url: raw.url.trim_end_matches('/').to_owned(),
        transport,
        ca_file,
        bind_dn,
        bind_password,
        user_dn_template,
        group_base: text("group_base", raw.group_base.as_deref(), &user_base)?,
        user_base,
        user_filter,
        username_attribute: text(
            "username_attribute",
            raw.username_attribute.as_deref(),
            defaults.username_attribute,
        )?,
        display_name_attribute: text(
            "display_name_attribute",
            raw.display_name_attribute.as_deref(),
            defaults.display_name_attribute,
        )?,
        mail_attribute: text("mail_attribute", raw.mail_attribute.as_deref(), "mail")?,
        id_attribute: text(
            "id_attribute",
            raw.id_attribute.as_deref(),
            defaults.id_attribute,
        )?,
        group_membership,
        group_filter: text(
            "group_filter",
            raw.group_filter.as_deref(),
            defaults.group_filter,
        )?,
        group_name_attribute: text(
            "group_name_attribute",
            raw.group_name_attribute.as_deref(),
            "cn",
        )?,
        nested_depth: raw.nested_depth.unwrap_or(3).min(10),
        group_map,
        groups_cache: duration_value(
            &at("groups_cache"),
            raw.groups_cache.as_deref(),
            "60s",
            true,
        )?,
        timeout: duration_value(&at("timeout"), raw.timeout.as_deref(), "5s", false)?,
        pool_size: raw.pool_size.unwrap_or(4).clamp(1, 64),
    })
}

/// A connector's name: a slug, as it appears in URLs and the audit log.
fn check_name(name: &str, index: usize) -> Result<(), String> {
    let slug_ok = !name.is_empty()
        && name.len() <= 32
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if slug_ok {
        Ok(())
    } else {
        Err(format!(
            "ldap[{index}].name {name:?}: 1 to 32 lowercase letters, digits and '-'"
        ))
    }
}

fn kind(value: Option<&str>) -> Result<LdapKind, String> {
    match value {
        None | Some("openldap") => Ok(LdapKind::OpenLdap),
        Some("active-directory") => Ok(LdapKind::ActiveDirectory),
        Some(other) => Err(format!(
            "{other:?} is not \"openldap\" or \"active-directory\""
        )),
    }
}

/// The filters and attributes a directory of each kind uses unless told otherwise.
struct Defaults {
    user_filter: &'static str,
    username_attribute: &'static str,
    display_name_attribute: &'static str,
    id_attribute: &'static str,
    group_filter: &'static str,
}

impl Defaults {
    fn of(kind: LdapKind) -> Self {
        match kind {
            LdapKind::OpenLdap => Defaults {
                user_filter: "(&(objectClass=person)(uid={username}))",
                username_attribute: "uid",
                display_name_attribute: "cn",
                id_attribute: "entryUUID",
                group_filter: DEFAULT_GROUP_FILTER,
            },
            LdapKind::ActiveDirectory => Defaults {
                user_filter: "(&(objectClass=user)(sAMAccountName={username}))",
                username_attribute: "sAMAccountName",
                display_name_attribute: "displayName",
                id_attribute: "objectGUID",
                group_filter: AD_GROUP_FILTER,
            },
        }
    }
}

/// `value` (or `default`) as a duration; `0` only where `zero_ok`.
fn duration_value(
    at: &str,
    value: Option<&str>,
    default: &str,
    zero_ok: bool,
) -> Result<Duration, String> {
    let value = value.unwrap_or(default);
    let parsed = if zero_ok && (value == "0" || value == "0s") {
        Duration::ZERO
    } else {
        HumanDuration::parse(value)
            .map_err(|e| format!("{at} {e}"))?
            .get()
    };
    if !zero_ok && parsed.is_zero() {
        return Err(format!("{at} must be at least 1s"));
    }
    Ok(parsed)
}

/// `value` (or `default`) as a setting: 1 to 1024 bytes, no control characters.
fn text_value(at: &str, value: Option<&str>, default: &str) -> Result<String, String> {
    let value = value.unwrap_or(default);
    if value.is_empty() || value.len() > 1024 || value.contains(char::is_control) {
        Err(format!(
            "{at} must be 1 to 1024 bytes without control characters"
        ))
    } else {
        Ok(value.to_owned())
    }
}

/// `bind_dn`, the service account's password, `user_dn_template`.
type Binding = (Option<String>, Option<String>, Option<String>);

/// How the connector binds: the service account (`bind_dn` and its password
/// file, for search then bind) and/or a `user_dn_template` (direct bind).
fn binding(
    raw: &RawLdap,
    name: &str,
    resolve: &impl Fn(&Path) -> PathBuf,
) -> Result<Binding, String> {
    let at = |key: &str| format!("ldap {name:?}: {key}");
    let text = |key: &str, value: Option<&str>, default: &str| text_value(&at(key), value, default);
    let (bind_dn, bind_password) = match (&raw.bind_dn, &raw.bind_password_file) {
        (Some(dn), Some(file)) => {
            let path = resolve(file);
            let password = read_private_file(&path)
                .map_err(|e| format!("{} {}: {e}", at("bind_password_file"), path.display()))?;
            if password.is_empty() {
                return Err(format!("{} is empty", at("bind_password_file")));
            }
            (Some(text("bind_dn", Some(dn), "")?), Some(password))
        }
        (None, None) => (None, None),
        _ => {
            return Err(format!(
                "{} and bind_password_file go together",
                at("bind_dn")
            ));
        }
    };
    let user_dn_template = match &raw.user_dn_template {
        Some(t) if !t.contains("{username}") => {
            return Err(format!(
                "{} must contain {{username}}",
                at("user_dn_template")
            ));
        }
        t => t.clone(),
    };
    if bind_dn.is_none() && user_dn_template.is_none() {
        return Err(format!(
            "{}: set bind_dn + bind_password_file (search then bind) or user_dn_template (direct bind)",
            at("bind_dn")
        ));
    }
    Ok((bind_dn, bind_password, user_dn_template))
}

/// How groups are found (`group_membership`) and mapped (`group_map`).
fn membership(
    raw: &RawLdap,
    name: &str,
) -> Result<(GroupMembership, BTreeMap<String, GroupName>), String> {
    let at = |key: &str| format!("ldap {name:?}: {key}");
    // AD too defaults to a search: its in-chain rule returns nested groups
    // in one answer, which `memberOf` does not.
    let group_membership = match raw.group_membership.as_deref() {
        None | Some("search") => GroupMembership::Search,
        Some("member_of") => GroupMembership::MemberOf,
        Some(other) => {
            return Err(format!(
                "{} {other:?} is not \"member_of\" or \"search\"",
                at("group_membership")
            ));
        }
    };
    if raw.group_map.is_empty() && !raw.trust_group_names {
        return Err(format!(
            "{} is empty: map the directory's group names (or DNs) to TPA groups, or set \
             trust_group_names = true to use the names that are valid TPA group names",
            at("group_map")
        ));
    }
    let mut group_map = BTreeMap::new();
    for (from, to) in &raw.group_map {
        let group =
            GroupName::parse(to).map_err(|e| format!("{} {from:?}: {e}", at("group_map")))?;
        group_map.insert(from.to_ascii_lowercase(), group);
    }
    Ok((group_membership, group_map))
}

/// The transport of `url`: `ldaps://` is TLS, `ldap://` is StartTLS unless
/// `insecure_plaintext` (allowed only for a loopback host).
fn transport(url: &str, insecure_plaintext: bool) -> Result<LdapTransport, String> {
    let parsed = reqwest::Url::parse(url).map_err(|e| format!("url {url:?} is not a URL ({e})"))?;
    if parsed.host_str().is_none_or(str::is_empty)
        || !parsed.username().is_empty()
        || parsed.query().is_some()
        || parsed.fragment().is_some()
        || !matches!(parsed.path(), "" | "/")
    {
        return Err(format!(
            "url {url:?} must be ldaps://host[:port] or ldap://host[:port], nothing more"
        ));
    }
    match (parsed.scheme(), insecure_plaintext) {
        ("ldaps", false) => Ok(LdapTransport::Ldaps),
        ("ldap", false) => Ok(LdapTransport::StartTls),
        ("ldap", true) => {
            let host = parsed.host_str().unwrap_or_default();
            let host = host.trim_start_matches('[').trim_end_matches(']');
            let loopback = host == "localhost"
                || host
                    .parse::<std::net::IpAddr>()
                    .is_ok_and(|ip| ip.is_loopback());
            if loopback {
                Ok(LdapTransport::InsecurePlaintext)
            } else {
                Err("insecure_plaintext is only allowed for a loopback host (tests)".to_owned())
            }
        }
        ("ldaps", true) => Err("insecure_plaintext = true needs an ldap:// url".to_owned()),
        (other, _) => Err(format!("url scheme {other:?} is not ldaps or ldap")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(body: &str) -> Result<LdapConfig, String> {
        let raw: RawLdap = toml::from_str(body).map_err(|e| e.to_string())?;
        connector(&raw, 0, &|p: &Path| p.to_path_buf())
    }

    const BASE: &str = "name = \"corp\"\nuser_base = \"ou=people,dc=example,dc=org\"\nuser_dn_template = \"uid={username},ou=people,dc=example,dc=org\"\ntrust_group_names = true\n";

    #[test]
    fn transports() {
        let with = |url: &str, extra: &str| parse(&format!("{BASE}url = \"{url}\"\n{extra}"));
        let c = with("ldaps://dc.example:636", "ca_file = \"ca.pem\"").unwrap();
        assert_eq!(c.transport, LdapTransport::Ldaps);
        let c = with("ldap://dc.example", "ca_file = \"ca.pem\"").unwrap();
        assert_eq!(
            c.transport,
            LdapTransport::StartTls,
            "ldap:// means StartTLS"
        );
        let e = with("ldap://dc.example", "").unwrap_err();
        assert!(e.contains("ca_file"), "{e}");
        let e = with("ldap://dc.example", "insecure_plaintext = true").unwrap_err();
        assert!(e.contains("loopback"), "{e}");
        let c = with("ldap://127.0.0.1:3890", "insecure_plaintext = true").unwrap();
        assert_eq!(c.transport, LdapTransport::InsecurePlaintext);
        assert!(with("http://dc.example", "ca_file = \"c\"").is_err());
        assert!(with("ldaps://dc.example/dc=x", "ca_file = \"c\"").is_err());
        assert!(with("ldaps://u:p@dc.example", "ca_file = \"c\"").is_err());
    }

    #[test]
    fn defaults_follow_the_kind() {
        let c = parse(&format!("{BASE}url = \"ldaps://x\"\nca_file = \"c\"\n")).unwrap();
        assert_eq!(c.user_filter, "(&(objectClass=person)(uid={username}))");
        assert_eq!(c.id_attribute, "entryUUID");
        assert_eq!(c.group_membership, GroupMembership::Search);
        assert_eq!(c.groups_cache, Duration::from_secs(60));
        let c = parse(&format!(
            "{BASE}url = \"ldaps://x\"\nca_file = \"c\"\nkind = \"active-directory\"\ngroups_cache = \"0s\"\n"
        ))
        .unwrap();
        assert_eq!(
            c.user_filter,
            "(&(objectClass=user)(sAMAccountName={username}))"
        );
        assert_eq!(c.id_attribute, "objectGUID");
        assert_eq!(c.group_membership, GroupMembership::Search);
        assert_eq!(c.group_filter, AD_GROUP_FILTER);
        assert_eq!(c.groups_cache, Duration::ZERO, "0 is allowed");
        let e = parse(&format!(
            "{BASE}url = \"ldaps://x\"\nca_file = \"c\"\ntimeout = \"0s\"\n"
        ))
        .unwrap_err();
        assert!(e.contains("timeout"), "{e}");
    }

    #[test]
    fn group_map_or_trust_is_required() {
        let body = "name = \"corp\"\nurl = \"ldaps://x\"\nca_file = \"c\"\nuser_base = \"dc=x\"\nuser_dn_template = \"uid={username},dc=x\"\n";
        let e = parse(body).unwrap_err();
        assert!(e.contains("group_map"), "{e}");
        let c = parse(&format!(
            "{body}group_map = {{ \"CN=SRE,OU=G\" = \"sre-leads\" }}\n"
        ))
        .unwrap();
        assert_eq!(
            c.group_map.get("cn=sre,ou=g").map(GroupName::as_str),
            Some("sre-leads"),
            "keys are compared without case"
        );
    }
}
