//! `[[alerts]]` (rules over the audit stream) and `[[alert_destinations]]`
//! (PagerDuty, Opsgenie, Slack, a signed webhook): see `crate::alerts`.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{FixedOffset, Weekday};
use serde::Deserialize;
use tpa_core::RoleName;

/// PagerDuty's Events API v2 endpoint, when `url` is not set.
pub const PAGERDUTY_URL: &str = "https://events.pagerduty.com/v2/enqueue";
/// Opsgenie's Alert API endpoint, when `url` is not set.
pub const OPSGENIE_URL: &str = "https://api.opsgenie.com/v2/alerts";
/// The window when none is set.
const DEFAULT_WINDOW: Duration = Duration::from_secs(15 * 60);

/// What a rule looks for in the audit stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AlertKind {
    /// A break-glass self-approval, or a certificate from `tpa-ca issue`.
    BreakGlass,
    /// A certificate issued or a bastion session started outside the hours.
    OutsideHours(Hours),
    /// `threshold` denied events by one actor or from one address within the window.
    DeniedBurst {
        /// How many.
        threshold: u64,
        /// Counted per actor or per address.
        per: BurstKey,
    },
    /// The bastion refused a forwarding to a host the request does not cover.
    BastionHostRefused,
    /// A certificate, request, user or CA key revoked.
    Revocation,
    /// A certificate issued for one of these roles.
    SensitiveRole(BTreeSet<RoleName>),
}

impl AlertKind {
    /// The name in the configuration (`when`) and in payloads.
    pub fn as_str(&self) -> &'static str {
        match self {
            AlertKind::BreakGlass => "break_glass",
            AlertKind::OutsideHours(_) => "outside_hours",
            AlertKind::DeniedBurst { .. } => "denied_burst",
            AlertKind::BastionHostRefused => "bastion_host_refused",
            AlertKind::Revocation => "revocation",
            AlertKind::SensitiveRole(_) => "sensitive_role",
        }
    }
}

/// What a denied burst is counted by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BurstKey {
    /// The audit actor (`user:…`, `admin:…`).
    Actor,
    /// The client address (the bastion's client for bastion refusals).
    Source,
}

/// Working hours: minutes after midnight in `offset`, on `days`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hours {
    /// First minute inside (e.g. 08:00 → 480).
    pub start: u32,
    /// First minute outside (e.g. 18:00 → 1080); below `start` wraps midnight.
    pub end: u32,
    /// Working days.
    pub days: BTreeSet<u8>,
    /// The time zone's fixed offset from UTC.
    pub offset: FixedOffset,
}

/// How urgent an alert is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    /// Wake someone.
    Critical,
    /// Look soon.
    Error,
    /// Look today.
    Warning,
    /// For the record.
    Info,
}

impl Severity {
    /// The name (PagerDuty's severities).
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Critical => "critical",
            Severity::Error => "error",
            Severity::Warning => "warning",
            Severity::Info => "info",
        }
    }
}

/// One `[[alerts]]` rule.
#[derive(Debug, Clone)]
pub struct AlertRule {
    /// Unique name (dedup keys and payloads carry it).
    pub name: String,
    /// What it looks for.
    pub kind: AlertKind,
    /// Where it goes (names of `[[alert_destinations]]`).
    pub destinations: Vec<String>,
    /// How urgent.
    pub severity: Severity,
    /// At most one alert per subject per window (and the counting window of bursts).
    pub window: Duration,
}

/// How a destination is spoken to.
#[derive(Clone, PartialEq, Eq)]
pub enum DestinationKind {
    /// PagerDuty Events API v2 with this routing (integration) key.
    PagerDuty {
        /// The integration key.
        routing_key: String,
    },
    /// Opsgenie Alert API with this API key (`Authorization: GenieKey …`).
    Opsgenie {
        /// The API key.
        api_key: String,
    },
    /// A Slack incoming webhook (the URL is the secret).
    Slack,
    /// A generic JSON webhook, signed when a secret is set.
    Webhook {
        /// HMAC key of `X-TPA-Signature`.
        secret: Option<Vec<u8>>,
    },
}

impl std::fmt::Debug for DestinationKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the keys.
        f.write_str(self.as_str())
    }
}

impl DestinationKind {
    /// The name in the configuration.
    pub fn as_str(&self) -> &'static str {
        match self {
            DestinationKind::PagerDuty { .. } => "pagerduty",
            DestinationKind::Opsgenie { .. } => "opsgenie",
            DestinationKind::Slack => "slack",
            DestinationKind::Webhook { .. } => "webhook",
        }
    }
}

/// One `[[alert_destinations]]` entry.
#[derive(Clone)]
pub struct AlertDestination {
    /// Unique name; its outbox cursor is `alert:<name>`.
    pub name: String,
    /// Where to POST.
    pub url: reqwest::Url,
    /// How.
    pub kind: DestinationKind,
}

impl std::fmt::Debug for AlertDestination {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Keys and Slack's URL path are secrets: show the kind and host only.
        f.debug_struct("AlertDestination")
            .field("name", &self.name)
            .field("kind", &self.kind.as_str())
            .field("host", &self.url.host_str())
            .finish()
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDestination {
    name: String,
    kind: String,
    url: Option<String>,
    routing_key_file: Option<PathBuf>,
    api_key_file: Option<PathBuf>,
    secret_file: Option<PathBuf>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAlert {
    name: String,
    when: String,
    destinations: Vec<String>,
    severity: Option<String>,
    window: Option<String>,
    hours: Option<String>,
    days: Option<Vec<String>>,
    utc_offset: Option<String>,
    threshold: Option<u64>,
    per: Option<String>,
    #[serde(default)]
    roles: Vec<String>,
}

fn check_name(name: &str) -> Result<(), String> {
    if name.is_empty()
        || name.len() > 64
        || !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
    {
        return Err("name must be 1 to 64 letters, digits, '-', '_' or '.'".to_owned());
    }
    Ok(())
}

fn key_file(key: &str, p: &Path, base: &Path) -> Result<String, String> {
    let path = if p.is_absolute() {
        p.to_owned()
    } else {
        base.join(p)
    };
    super::oidc::read_private_file(&path).map_err(|e| format!("{key} {}: {e}", path.display()))
}

pub(super) fn destinations(
    raw: &[RawDestination],
    base: &Path,
) -> Result<Vec<AlertDestination>, String> {
    let mut names = BTreeSet::new();
    raw.iter()
        .map(|d| {
            let ctx = |e: String| format!("alert_destinations {:?}: {e}", d.name);
            check_name(&d.name).map_err(ctx)?;
            if !names.insert(d.name.clone()) {
                return Err(ctx("defined twice".to_owned()));
            }
            let unused = |key: &str, set: bool| {
                if set {
                    Err(ctx(format!("{key} does not apply to kind {:?}", d.kind)))
                } else {
                    Ok(())
                }
            };
            let (kind, default_url) = match d.kind.as_str() {
                "pagerduty" => {
                    unused("api_key_file", d.api_key_file.is_some())?;
                    unused("secret_file", d.secret_file.is_some())?;
                    let p = d.routing_key_file.as_deref().ok_or_else(|| {
                        ctx("pagerduty needs routing_key_file (the integration key)".to_owned())
                    })?;
                    let routing_key = key_file("routing_key_file", p, base).map_err(ctx)?;
                    (
                        DestinationKind::PagerDuty { routing_key },
                        Some(PAGERDUTY_URL),
                    )
                }
                "opsgenie" => {
                    unused("routing_key_file", d.routing_key_file.is_some())?;
                    unused("secret_file", d.secret_file.is_some())?;
                    let p = d.api_key_file.as_deref().ok_or_else(|| {
                        ctx("opsgenie needs api_key_file (an API integration key)".to_owned())
                    })?;
                    let api_key = key_file("api_key_file", p, base).map_err(ctx)?;
                    (DestinationKind::Opsgenie { api_key }, Some(OPSGENIE_URL))
                }
                "slack" => {
                    unused("routing_key_file", d.routing_key_file.is_some())?;
                    unused("api_key_file", d.api_key_file.is_some())?;
                    unused("secret_file", d.secret_file.is_some())?;
                    (DestinationKind::Slack, None)
                }
                "webhook" => {
                    unused("routing_key_file", d.routing_key_file.is_some())?;
                    unused("api_key_file", d.api_key_file.is_some())?;
                    let secret = d
                        .secret_file
                        .as_deref()
                        .map(|p| super::webhooks::signing_secret("secret_file", p, base))
                        .transpose()
                        .map_err(ctx)?;
                    (DestinationKind::Webhook { secret }, None)
                }
                other => {
                    return Err(ctx(format!(
                        "kind {other:?} is not pagerduty, opsgenie, slack or webhook"
                    )));
                }
            };
            let url = d
                .url
                .as_deref()
                .or(default_url)
                .ok_or_else(|| ctx(format!("kind {:?} needs url", d.kind)))?;
            let url = super::webhooks::delivery_url(url).map_err(ctx)?;
            Ok(AlertDestination {
                name: d.name.clone(),
                url,
                kind,
            })
        })
        .collect()
}

fn hhmm(text: &str) -> Option<u32> {
    let (h, m) = text.trim().split_once(':')?;
    let (h, m): (u32, u32) = (h.parse().ok()?, m.parse().ok()?);
    (h <= 24 && m < 60 && h * 60 + m <= 24 * 60).then_some(h * 60 + m)
}

fn hours(raw: &RawAlert) -> Result<Hours, String> {
    let text = raw
        .hours
        .as_deref()
        .ok_or("outside_hours needs hours, e.g. \"08:00-18:00\"")?;
    let (start, end) = text
        .split_once('-')
        .and_then(|(a, b)| Some((hhmm(a)?, hhmm(b)?)))
        .filter(|(a, b)| a != b)
        .ok_or_else(|| format!("hours {text:?} is not HH:MM-HH:MM (e.g. \"08:00-18:00\")"))?;
    let day_names = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];
    let days = match &raw.days {
        None => (0..5).collect(),
        Some(list) => list
            .iter()
            .map(|d| {
                day_names
                    .iter()
                    .position(|n| n == &d.to_ascii_lowercase())
                    .and_then(|i| u8::try_from(i).ok())
                    .ok_or_else(|| format!("days: {d:?} is not one of {}", day_names.join(", ")))
            })
            .collect::<Result<_, _>>()?,
    };
    let offset = match raw.utc_offset.as_deref() {
        None => FixedOffset::east_opt(0),
        Some(text) => {
            let sign = match text.chars().next() {
                Some('+') => 1,
                Some('-') => -1,
                _ => 0,
            };
            text.get(1..)
                .and_then(hhmm)
                .filter(|_| sign != 0)
                .and_then(|m| FixedOffset::east_opt(sign * i32::try_from(m).ok()? * 60))
        }
    }
    .ok_or("utc_offset must look like \"+01:00\" or \"-05:00\"")?;
    Ok(Hours {
        start,
        end,
        days,
        offset,
    })
}

/// Days as numbers from Monday = 0 (`chrono::Weekday::num_days_from_monday`).
pub fn day_number(day: Weekday) -> u8 {
    u8::try_from(day.num_days_from_monday()).unwrap_or(0)
}

pub(super) fn rules(
    raw: &[RawAlert],
    destinations: &[AlertDestination],
    known_roles: &BTreeSet<RoleName>,
) -> Result<Vec<AlertRule>, String> {
    let mut names = BTreeSet::new();
    raw.iter()
        .map(|a| {
            let ctx = |e: String| format!("alerts {:?}: {e}", a.name);
            check_name(&a.name).map_err(ctx)?;
            if !names.insert(a.name.clone()) {
                return Err(ctx("defined twice".to_owned()));
            }
            rule(a, destinations, known_roles).map_err(ctx)
        })
        .collect()
}

/// One `[[alerts]]` rule; errors do not name it yet.
fn rule(
    a: &RawAlert,
    destinations: &[AlertDestination],
    known_roles: &BTreeSet<RoleName>,
) -> Result<AlertRule, String> {
    check_keys_apply(a)?;
    let kind = kind(a, known_roles)?;
    if a.destinations.is_empty() {
        return Err("destinations must name at least one [[alert_destinations]]".to_owned());
    }
    for d in &a.destinations {
        if !destinations.iter().any(|x| &x.name == d) {
            return Err(format!("no alert destination named {d:?}"));
        }
    }
    let severity = match a.severity.as_deref().unwrap_or("critical") {
        "critical" => Severity::Critical,
        "error" => Severity::Error,
        "warning" => Severity::Warning,
        "info" => Severity::Info,
        other => {
            return Err(format!(
                "severity {other:?} is not critical, error, warning or info"
            ));
        }
    };
    let window = super::limits::duration("window", a.window.as_deref(), DEFAULT_WINDOW)?;
    Ok(AlertRule {
        name: a.name.clone(),
        kind,
        destinations: a.destinations.clone(),
        severity,
        window,
    })
}

/// Refuses the keys of another `when` (a `threshold` on a break-glass rule
/// would be silently ignored otherwise).
fn check_keys_apply(a: &RawAlert) -> Result<(), String> {
    let only = |key: &str, set: bool, kinds: &str| {
        if set {
            Err(format!("{key} applies only to when = {kinds}"))
        } else {
            Ok(())
        }
    };
    if a.when != "outside_hours" {
        only("hours", a.hours.is_some(), "\"outside_hours\"")?;
        only("days", a.days.is_some(), "\"outside_hours\"")?;
        only("utc_offset", a.utc_offset.is_some(), "\"outside_hours\"")?;
    }
    if a.when != "denied_burst" {
        only("threshold", a.threshold.is_some(), "\"denied_burst\"")?;
        only("per", a.per.is_some(), "\"denied_burst\"")?;
    }
    if a.when != "sensitive_role" {
        only("roles", !a.roles.is_empty(), "\"sensitive_role\"")?;
    }
    Ok(())
}

/// What the rule watches for (`when` and its keys).
fn kind(a: &RawAlert, known_roles: &BTreeSet<RoleName>) -> Result<AlertKind, String> {
    Ok(match a.when.as_str() {
        "break_glass" => AlertKind::BreakGlass,
        "outside_hours" => AlertKind::OutsideHours(hours(a)?),
        "denied_burst" => AlertKind::DeniedBurst {
            threshold: a
                .threshold
                .filter(|n| *n >= 1)
                .ok_or_else(|| "denied_burst needs threshold ≥ 1".to_owned())?,
            per: match a.per.as_deref().unwrap_or("actor") {
                "actor" => BurstKey::Actor,
                "source" => BurstKey::Source,
                other => return Err(format!("per {other:?} is not \"actor\" or \"source\"")),
            },
        },
        "bastion_host_refused" => AlertKind::BastionHostRefused,
        "revocation" => AlertKind::Revocation,
        "sensitive_role" => AlertKind::SensitiveRole(sensitive_roles(a, known_roles)?),
        other => {
            return Err(format!(
                "when {other:?} is not break_glass, outside_hours, denied_burst, \
                 bastion_host_refused, revocation or sensitive_role"
            ));
        }
    })
}

/// `roles` of a `sensitive_role` rule: at least one, each in `[[roles]]`.
fn sensitive_roles(
    a: &RawAlert,
    known_roles: &BTreeSet<RoleName>,
) -> Result<BTreeSet<RoleName>, String> {
    let mut roles = BTreeSet::new();
    for r in &a.roles {
        let role = RoleName::parse(r).map_err(|e| format!("roles: {e}"))?;
        if !known_roles.contains(&role) {
            return Err(format!("roles: no role named {r:?} in [[roles]]"));
        }
        roles.insert(role);
    }
    if roles.is_empty() {
        return Err("sensitive_role needs roles = [\"…\"]".to_owned());
    }
    Ok(roles)
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt as _;

    use crate::config::{Config, EXAMPLE_ROLES};

    /// Parses the example roles, a Slack and a PagerDuty destination, then `extra`.
    fn check(extra: &str) -> Result<Config, String> {
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("pd.key");
        std::fs::write(&key, "R0UTINGKEY").unwrap();
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
        let text = format!(
            "[ca]\nkey_file = \"ca_key\"\n[database]\npath = \"tpa.db\"\n{EXAMPLE_ROLES}\n\
             [[alert_destinations]]\nname = \"slack\"\nkind = \"slack\"\nurl = \"https://hooks.slack.com/services/T/B/X\"\n\
             [[alert_destinations]]\nname = \"pd\"\nkind = \"pagerduty\"\nrouting_key_file = \"pd.key\"\n{extra}\n"
        );
        Config::parse(&text, &dir.path().join("tpa.toml")).map_err(|e| e.to_string())
    }

    fn refused(extra: &str, needle: &str) {
        let e = check(extra).unwrap_err();
        assert!(e.contains(needle), "{e}");
    }

    #[test]
    fn every_rule_kind_parses_with_its_keys() {
        // issue 17
        let c = check(
            "[[alerts]]\nname = \"a\"\nwhen = \"break_glass\"\ndestinations = [\"pd\"]\n\
             [[alerts]]\nname = \"b\"\nwhen = \"outside_hours\"\nhours = \"22:00-06:00\"\nutc_offset = \"-05:00\"\ndestinations = [\"slack\"]\n\
             [[alerts]]\nname = \"c\"\nwhen = \"denied_burst\"\nthreshold = 10\nper = \"source\"\nwindow = \"5m\"\ndestinations = [\"slack\"]\n\
             [[alerts]]\nname = \"d\"\nwhen = \"bastion_host_refused\"\ndestinations = [\"slack\"]\n\
             [[alerts]]\nname = \"e\"\nwhen = \"revocation\"\nseverity = \"info\"\ndestinations = [\"slack\"]\n\
             [[alerts]]\nname = \"f\"\nwhen = \"sensitive_role\"\nroles = [\"hotfix-admin\"]\ndestinations = [\"pd\", \"slack\"]\n",
        )
        .unwrap();
        assert_eq!(c.alerts.len(), 6);
        assert_eq!(c.alert_destinations[1].url.as_str(), super::PAGERDUTY_URL);
    }

    #[test]
    fn bad_rules_are_refused_with_the_key_named() {
        // issue 17
        refused(
            "[[alerts]]\nname = \"a\"\nwhen = \"break_glass\"\ndestinations = [\"nope\"]",
            "no alert destination named \"nope\"",
        );
        refused(
            "[[alerts]]\nname = \"a\"\nwhen = \"odd\"\ndestinations = [\"pd\"]",
            "when \"odd\" is not",
        );
        refused(
            "[[alerts]]\nname = \"a\"\nwhen = \"outside_hours\"\nhours = \"8-18\"\ndestinations = [\"pd\"]",
            "is not HH:MM-HH:MM",
        );
        refused(
            "[[alerts]]\nname = \"a\"\nwhen = \"break_glass\"\nthreshold = 3\ndestinations = [\"pd\"]",
            "threshold applies only to when = \"denied_burst\"",
        );
        refused(
            "[[alerts]]\nname = \"a\"\nwhen = \"denied_burst\"\ndestinations = [\"pd\"]",
            "denied_burst needs threshold",
        );
        refused(
            "[[alerts]]\nname = \"a\"\nwhen = \"sensitive_role\"\nroles = [\"ghost\"]\ndestinations = [\"pd\"]",
            "no role named \"ghost\"",
        );
    }

    #[test]
    fn bad_destinations_are_refused() {
        // issue 17
        refused(
            "[[alert_destinations]]\nname = \"og\"\nkind = \"opsgenie\"",
            "opsgenie needs api_key_file",
        );
        refused(
            "[[alert_destinations]]\nname = \"w\"\nkind = \"webhook\"\nurl = \"http://alerts.example.com/\"",
            "url must be https://",
        );
        refused(
            "[[alert_destinations]]\nname = \"s\"\nkind = \"slack\"\nrouting_key_file = \"pd.key\"\nurl = \"https://x.example.com/\"",
            "routing_key_file does not apply",
        );
        refused(
            "[[alert_destinations]]\nname = \"slack\"\nkind = \"slack\"\nurl = \"https://x.example.com/\"",
            "defined twice",
        );
    }
}
