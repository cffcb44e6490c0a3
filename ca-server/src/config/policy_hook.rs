//! `[policy_hook]`: the external HTTP policy hook asked at submission and at
//! issuance (see `crate::policy_hook`).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use tpa_core::{GroupName, RoleName};

/// The username of the policy hook's approvals (identity `tpa:policy-hook#policy-hook`).
pub const HOOK_USERNAME: &str = "policy-hook";
/// When no `timeout` is set.
pub const DEFAULT_HOOK_TIMEOUT: Duration = Duration::from_secs(3);
/// The longest `timeout` accepted: a request waits for the hook.
const MAX_HOOK_TIMEOUT: Duration = Duration::from_secs(20);

/// Where in the workflow the hook is asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum HookStage {
    /// Before a request is stored.
    Submit,
    /// Before a certificate is signed.
    Issue,
    /// When the open approval stage is the automated check (`approves_as`).
    Approve,
}

impl HookStage {
    /// The name in the configuration and on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            HookStage::Submit => "submit",
            HookStage::Issue => "issue",
            HookStage::Approve => "approve",
        }
    }
}

/// The validated `[policy_hook]`.
#[derive(Clone)]
pub struct PolicyHookConfig {
    /// Where to POST (https, or http to the loopback interface).
    pub url: reqwest::Url,
    /// HMAC-SHA256 key: signs the call and authenticates the answer.
    pub secret: Vec<u8>,
    /// How long the whole call may take; after it the CA refuses.
    pub timeout: Duration,
    /// The roles it applies to (all when empty).
    pub roles: BTreeSet<RoleName>,
    /// Where it is asked.
    pub stages: BTreeSet<HookStage>,
    /// The approval-stage group the hook approves as ("automated check"):
    /// a role allows it by having a stage of this group.
    pub approves_as: Option<GroupName>,
}

impl std::fmt::Debug for PolicyHookConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PolicyHookConfig")
            .field("host", &self.url.host_str())
            .field("timeout", &self.timeout)
            .field("roles", &self.roles)
            .field("stages", &self.stages)
            .field("approves_as", &self.approves_as)
            .finish_non_exhaustive()
    }
}

impl PolicyHookConfig {
    /// Whether the hook is asked about `role` at `stage`.
    pub fn applies(&self, role: &RoleName, stage: HookStage) -> bool {
        let asked = match stage {
            HookStage::Approve => self.approves_as.is_some(),
            HookStage::Submit | HookStage::Issue => self.stages.contains(&stage),
        };
        asked && (self.roles.is_empty() || self.roles.contains(role))
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawPolicyHook {
    url: String,
    secret_file: PathBuf,
    timeout: Option<String>,
    #[serde(default)]
    roles: Vec<String>,
    stages: Option<Vec<String>>,
    approves_as: Option<String>,
}

pub(super) fn policy_hook(
    raw: Option<&RawPolicyHook>,
    base: &Path,
    known_roles: &BTreeSet<RoleName>,
) -> Result<Option<PolicyHookConfig>, String> {
    let Some(raw) = raw else {
        return Ok(None);
    };
    let ctx = |e: String| format!("policy_hook: {e}");
    let url = super::webhooks::delivery_url(&raw.url).map_err(ctx)?;
    let secret =
        super::webhooks::signing_secret("secret_file", &raw.secret_file, base).map_err(ctx)?;
    let timeout = super::limits::duration(
        "policy_hook.timeout",
        raw.timeout.as_deref(),
        DEFAULT_HOOK_TIMEOUT,
    )?;
    if timeout > MAX_HOOK_TIMEOUT {
        return Err(ctx(format!(
            "timeout must be at most {}s (requests wait for the hook)",
            MAX_HOOK_TIMEOUT.as_secs()
        )));
    }
    let mut roles = BTreeSet::new();
    for r in &raw.roles {
        let role = RoleName::parse(r).map_err(|e| ctx(format!("roles: {e}")))?;
        if !known_roles.contains(&role) {
            return Err(ctx(format!("roles: no role named {r:?} in [[roles]]")));
        }
        roles.insert(role);
    }
    let stages = match &raw.stages {
        None => BTreeSet::from([HookStage::Submit, HookStage::Issue]),
        Some(list) => list
            .iter()
            .map(|s| match s.as_str() {
                "submit" => Ok(HookStage::Submit),
                "issue" => Ok(HookStage::Issue),
                other => Err(ctx(format!(
                    "stages: {other:?} is not \"submit\" or \"issue\""
                ))),
            })
            .collect::<Result<_, _>>()?,
    };
    if stages.is_empty() {
        return Err(ctx(
            "stages must name \"submit\", \"issue\" or both (remove [policy_hook] to turn it off)"
                .to_owned(),
        ));
    }
    let approves_as = raw
        .approves_as
        .as_deref()
        .map(|g| GroupName::parse(g).map_err(|e| ctx(format!("approves_as: {e}"))))
        .transpose()?;
    Ok(Some(PolicyHookConfig {
        url,
        secret,
        timeout,
        roles,
        stages,
        approves_as,
    }))
}

/// The automated check's group (`approves_as`) is the hook's alone: no
/// account is in it or named like the hook, and no OpenID provider can place
/// users in it.
pub(super) fn check_owned_group(
    hook: Option<&PolicyHookConfig>,
    accounts: &[super::AccountConfig],
    oidc: &[super::OidcConfig],
    ldap: &[super::LdapConfig],
) -> Result<(), String> {
    if let Some(group) = hook.and_then(|h| h.approves_as.as_ref()) {
        // The automated check's group must be the hook's alone, and its
        // name must not be a person's (separation of duties compares names).
        if let Some(a) = accounts
            .iter()
            .find(|a| a.groups.contains(group) || a.username.as_str() == HOOK_USERNAME)
        {
            return Err(format!(
                "policy_hook.approves_as: account {:?} is in group {group} or named {HOOK_USERNAME}; \
                 the automated check's group is the hook's alone",
                a.username.as_str()
            ));
        }
        // Provider groups count as named when group_map is empty: a
        // provider could then put anyone in the hook's group.
        if let Some(c) = oidc
            .iter()
            .find(|c| c.group_map.is_empty() || c.group_map.values().any(|g| g == group))
        {
            return Err(format!(
                "policy_hook.approves_as: [[oidc]] {:?} could place users in group {group} \
                 (set its group_map, and map nothing onto {group}); \
                 the automated check's group is the hook's alone",
                c.name
            ));
        }
        // Directories likewise: without a group_map their group names count.
        if let Some(c) = ldap
            .iter()
            .find(|c| c.group_map.is_empty() || c.group_map.values().any(|g| g == group))
        {
            return Err(format!(
                "policy_hook.approves_as: [[ldap]] {:?} could place users in group {group} \
                 (set its group_map, and map nothing onto {group}); \
                 the automated check's group is the hook's alone",
                c.name
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt as _;

    use crate::config::{Config, EXAMPLE_ROLES};

    /// Parses a config with the example roles and `[policy_hook]` holding `hook`.
    fn check(hook: &str) -> Result<Config, String> {
        let dir = tempfile::tempdir().unwrap();
        let secret = dir.path().join("hook.secret");
        std::fs::write(&secret, "0123456789abcdef0123").unwrap();
        std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).unwrap();
        let text = format!(
            "[ca]\nkey_file = \"ca_key\"\n[database]\npath = \"tpa.db\"\n{EXAMPLE_ROLES}\n\
             [policy_hook]\nsecret_file = \"hook.secret\"\n{hook}\n"
        );
        Config::parse(&text, &dir.path().join("tpa.toml")).map_err(|e| e.to_string())
    }

    #[test]
    fn defaults_are_both_stages_all_roles_three_seconds() {
        // issue 17
        let c = check("url = \"https://policy.example.com/tpa\"").unwrap();
        let hook = c.policy_hook.unwrap();
        assert_eq!(hook.timeout, super::DEFAULT_HOOK_TIMEOUT);
        assert_eq!(hook.stages.len(), 2);
        assert!(hook.roles.is_empty());
    }

    #[test]
    fn plain_http_to_another_host_is_refused() {
        // issue 17: the call carries identities; only TLS or loopback.
        let e = check("url = \"http://policy.example.com/tpa\"").unwrap_err();
        assert!(e.contains("url must be https://"), "{e}");
    }

    #[test]
    fn timeout_above_twenty_seconds_is_refused() {
        // issue 17
        let e = check("url = \"https://p.example.com/\"\ntimeout = \"30s\"").unwrap_err();
        assert!(e.contains("timeout must be at most 20s"), "{e}");
    }

    #[test]
    fn automated_check_group_must_be_the_hooks_alone() {
        // issue 17: a person in the group (or named like the hook) could
        // approve the automated check's stage as if they were the hook.
        let hash = crate::auth::identity::hash_password("a long enough password").unwrap();
        let url = "url = \"https://p.example.com/\"\napproves_as = \"automated-check\"";
        let c = check(url).unwrap();
        assert_eq!(
            c.policy_hook.unwrap().approves_as.unwrap().as_str(),
            "automated-check"
        );
        for account in [
            "username = \"eve\"\ngroups = [\"automated-check\"]",
            "username = \"policy-hook\"\ngroups = [\"engineers\"]",
        ] {
            let e = check(&format!(
                "{url}\n[[accounts]]\n{account}\npassword_hash = \"{hash}\"\n"
            ))
            .unwrap_err();
            assert!(
                e.contains("the automated check's group is the hook's alone"),
                "{e}"
            );
        }
    }

    #[test]
    fn automated_check_group_cannot_come_from_a_provider() {
        // issue 17: provider groups trusted by name, or mapped onto the
        // hook's group, would let a person approve as the hook.
        let oidc = |extra: &str| {
            format!(
                "url = \"https://p.example.com/\"\napproves_as = \"automated-check\"\n\
                 [server]\npublic_url = \"https://ca.example.com\"\n\
                 [[oidc]]\nname = \"idp\"\nissuer = \"https://idp.example.com\"\nclient_id = \"tpa\"\n\
                 client_secret_file = \"hook.secret\"\n{extra}"
            )
        };
        for extra in [
            "trust_group_names = true\n",
            "group_map = { \"bots\" = \"automated-check\" }\n",
        ] {
            let e = check(&oidc(extra)).unwrap_err();
            assert!(
                e.contains("could place users in group automated-check"),
                "{e}"
            );
        }
        assert!(check(&oidc("group_map = { \"sre\" = \"sre-leads\" }\n")).is_ok());
    }

    #[test]
    fn automated_check_group_cannot_come_from_a_directory() {
        // issues 16 and 17: the same rule for [[ldap]] connectors, whose
        // directory groups are trusted by name or mapped like a provider's.
        let ldap = |extra: &str| {
            format!(
                "url = \"https://p.example.com/\"\napproves_as = \"automated-check\"\n\
                 [[ldap]]\nname = \"corp\"\nurl = \"ldap://127.0.0.1:389\"\ninsecure_plaintext = true\n\
                 user_base = \"ou=people,dc=example,dc=org\"\n\
                 user_dn_template = \"uid={{username}},ou=people,dc=example,dc=org\"\n{extra}"
            )
        };
        for extra in [
            "trust_group_names = true\n",
            "group_map = { \"bots\" = \"automated-check\" }\n",
        ] {
            let e = check(&ldap(extra)).unwrap_err();
            assert!(
                e.contains("[[ldap]] \"corp\" could place users in group automated-check"),
                "{e}"
            );
        }
        let ok = check(&ldap("group_map = { \"sre\" = \"sre-leads\" }\n"));
        assert!(ok.is_ok(), "{ok:?}");
    }

    #[test]
    fn unknown_role_and_stage_are_refused() {
        // issue 17
        let e = check("url = \"https://p.example.com/\"\nroles = [\"nope\"]").unwrap_err();
        assert!(e.contains("no role named \"nope\""), "{e}");
        let e = check("url = \"https://p.example.com/\"\nstages = [\"approve\"]").unwrap_err();
        assert!(e.contains("is not \"submit\" or \"issue\""), "{e}");
    }
}
