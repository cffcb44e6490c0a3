//! An OpenID Connect login's claims → a TPA user: the username from the
//! configured claim (it must parse as a TPA username), the groups from the
//! groups claim (through the group map), the display name from `name` or the
//! configured `display_name_claim`, and the identity (issuer, `sub`). The
//! claims are the verified ID token's, completed from userinfo by
//! the OIDC connector; this module only reads them.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;
use tpa_core::{GroupName, Identity, User, Username};

use crate::config::OidcConfig;

/// Why an OpenID Connect login failed. The messages go to the audit trail
/// and the logs; they never hold a code, a token or a secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OidcError {
    /// Discovery failed (provider down, or its discovery document is unusable).
    #[error("the identity provider is unavailable: {0}")]
    Unavailable(String),
    /// The token endpoint refused the code or could not be reached.
    #[error("the code exchange failed: {0}")]
    Exchange(String),
    /// The ID token is missing or fails verification.
    #[error("the ID token is not valid: {0}")]
    IdToken(String),
    /// The userinfo answer is refused (another subject, a client error).
    #[error("the userinfo answer is not usable: {0}")]
    UserInfo(String),
    /// The username claim is in neither the ID token nor userinfo.
    #[error("the provider sent no `{claim}` claim in {searched}")]
    MissingClaim {
        /// The configured claim.
        claim: String,
        /// Where it was looked for.
        searched: Searched,
    },
    /// The username claim does not parse as a TPA username.
    #[error("claim {claim} gives no usable username ({detail})")]
    UnusableUsername {
        /// The configured claim.
        claim: String,
        /// Why.
        detail: String,
    },
}

/// A verified login.
#[derive(Debug, Clone)]
pub struct OidcLogin {
    /// The user: identity (issuer, sub), username, groups from the claim.
    pub user: User,
    /// `email`, for display and the audit details only.
    pub email: Option<String>,
    /// `email` when the provider said `email_verified: true`: what on-call
    /// providers match the person by (issue 17).
    pub verified_email: Option<tpa_core::VerifiedEmail>,
}

/// The claims of a login, by name.
pub type Claims = serde_json::Map<String, Value>;

/// Where the claims of a login were looked for (named in the error that
/// says a claim is missing, for the administrator).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Searched {
    /// The ID token had every claim the login needs; userinfo was not asked.
    IdToken,
    /// The ID token, then the userinfo endpoint.
    IdTokenAndUserinfo,
    /// The ID token only: the provider advertises no userinfo endpoint.
    IdTokenNoUserinfo,
}

impl std::fmt::Display for Searched {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Searched::IdToken => "the ID token",
            Searched::IdTokenAndUserinfo => "the ID token or userinfo",
            Searched::IdTokenNoUserinfo => {
                "the ID token (the provider advertises no userinfo endpoint)"
            }
        })
    }
}

/// Whether `claims` holds `name` with a value (JSON `null` counts as absent).
pub fn present(claims: &Claims, name: &str) -> bool {
    claims.get(name).is_some_and(|v| !v.is_null())
}

/// The user of a login's claims.
pub fn user_of(
    config: &OidcConfig,
    claims: &Claims,
    searched: Searched,
) -> Result<OidcLogin, OidcError> {
    let text = |name: &str| claims.get(name).and_then(Value::as_str);
    let identity = Identity::new(
        text("iss").unwrap_or_default(),
        text("sub").unwrap_or_default(),
    )
    .map_err(|e| OidcError::IdToken(e.to_string()))?;
    let claim = config.username_claim.as_str();
    let unusable = |detail: &str| OidcError::UnusableUsername {
        claim: claim.to_owned(),
        detail: detail.to_owned(),
    };
    if !present(claims, claim) {
        return Err(OidcError::MissingClaim {
            claim: claim.to_owned(),
            searched,
        });
    }
    let raw_username = text(claim).ok_or_else(|| unusable("not a string"))?;
    let username = Username::parse(raw_username).map_err(|e| unusable(&e.to_string()))?;
    let groups = groups_of(claims.get(&config.groups_claim), &config.group_map);
    let display_name = text(&config.display_name_claim)
        .and_then(display_name)
        .unwrap_or_else(|| username.as_str().to_owned());
    Ok(OidcLogin {
        user: User {
            identity,
            username,
            display_name,
            groups,
        },
        email: text("email").map(str::to_owned),
        verified_email: verified_claim(text("email"), claims.get("email_verified")),
    })
}

/// A display name as it may be shown: trimmed, 1 to 128 bytes, no control
/// characters (pages escape it; the limit keeps headers and lines short).
pub fn display_name(raw: &str) -> Option<String> {
    let name = raw.trim();
    let ok = !name.is_empty() && name.len() <= 128 && !name.contains(char::is_control);
    ok.then(|| name.to_owned())
}

/// The TPA groups of a groups claim: an array of strings (or one string).
/// With a `group_map`, only mapped values count; without one, values that
/// are valid TPA group names count as they are. Anything else is ignored.
pub fn groups_of(
    claim: Option<&Value>,
    group_map: &BTreeMap<String, GroupName>,
) -> BTreeSet<GroupName> {
    let values: Vec<&str> = match claim {
        Some(Value::Array(items)) => items.iter().filter_map(Value::as_str).collect(),
        Some(Value::String(one)) => vec![one.as_str()],
        _ => Vec::new(),
    };
    values
        .into_iter()
        .filter_map(|v| {
            if group_map.is_empty() {
                GroupName::parse(v).ok()
            } else {
                group_map.get(v).cloned()
            }
        })
        .collect()
}

/// The email of an OpenID Connect login's claims, only when the provider
/// said it is verified (`email_verified` is the JSON value `true`; a string
/// "true", a missing claim or anything else is not a verification).
pub fn verified_claim(
    email: Option<&str>,
    email_verified: Option<&Value>,
) -> Option<tpa_core::VerifiedEmail> {
    match email_verified {
        Some(Value::Bool(true)) => email.and_then(|e| tpa_core::VerifiedEmail::parse(e).ok()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn names(groups: &BTreeSet<GroupName>) -> Vec<&str> {
        groups.iter().map(GroupName::as_str).collect()
    }

    #[test]
    fn groups_from_claims() {
        let none = BTreeMap::new();
        let check = |claim: Value, expected: &[&str]| {
            assert_eq!(names(&groups_of(Some(&claim), &none)), expected, "{claim}");
        };
        check(
            json!(["engineers", "sre-leads"]),
            &["engineers", "sre-leads"],
        );
        check(json!("engineers"), &["engineers"]);
        check(json!(["Engineers", "a b", 3, null, "ok"]), &["ok"]);
        check(json!({"engineers": true}), &[]);
        assert!(groups_of(None, &none).is_empty());

        let map = BTreeMap::from([
            (
                "CN=SRE Leads,OU=Groups".to_owned(),
                GroupName::parse("sre-leads").unwrap(),
            ),
            (
                "0b6f-guid".to_owned(),
                GroupName::parse("engineers").unwrap(),
            ),
        ]);
        let claim = json!(["CN=SRE Leads,OU=Groups", "0b6f-guid", "auditors"]);
        assert_eq!(
            names(&groups_of(Some(&claim), &map)),
            ["engineers", "sre-leads"],
            "only mapped values count when a map is set"
        );
    }

    #[test]
    fn display_names() {
        let check = |raw: &str, expected: Option<&str>| {
            assert_eq!(display_name(raw).as_deref(), expected, "{raw:?}");
        };
        check("Alice Example", Some("Alice Example"));
        check("  Alice  ", Some("Alice"));
        check("", None);
        check("   ", None);
        check("a\nb", None);
        check("a\u{7}b", None);
        check(&"x".repeat(129), None);
        check(&"x".repeat(128), Some(&"x".repeat(128)));
    }
}
