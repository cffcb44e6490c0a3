//! Which host patterns TPA may write into a user's ssh configuration (issue
//! 18): a pattern there routes every matching `ssh` through the bastion with
//! the TPA key, so a CA that announces `github.com`, `*.com`, `*-*` or `1.*`
//! would silently take over unrelated SSH. The CA's `[client]` check and
//! `tpa-ssh config` apply this one rule.
//!
//! A pattern is bounded when its wildcards are all in its first label and
//! either it is a single label whose fixed part has at least two letters or
//! digits (`web-*`, `db1`), or the rest of it (everything after a wildcard
//! first label; the whole name when there is no wildcard) is one of the
//! `allowed_suffixes` or lies under one (`*.prod.example.com`,
//! `web-1.prod.example.com` under `prod.example.com`). A suffix has at least
//! two labels and no wildcard, so no top-level domain can be allowed.

use std::fmt;

use crate::host::{HostName, HostPattern};
use crate::identifiers::{IdentifierError, shown};

/// A domain under which announced host patterns may lie
/// (`[client] allowed_suffixes`): a host name of two labels or more.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DomainSuffix(String);

impl DomainSuffix {
    /// Parses a suffix such as `prod.example.com`.
    pub fn parse(value: &str) -> Result<Self, IdentifierError> {
        let name = HostName::parse(value)?;
        if !name.as_str().contains('.') {
            return Err(IdentifierError::Malformed {
                kind: "allowed suffix",
                shown: shown(value),
                expected: "a domain of two labels or more, such as prod.example.com (never a top-level domain)",
            });
        }
        Ok(Self(name.as_str().to_owned()))
    }

    /// The suffix.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether `name` is this suffix or lies under it.
    fn covers(&self, name: &str) -> bool {
        name == self.0
            || name
                .strip_suffix(self.0.as_str())
                .is_some_and(|head| head.ends_with('.'))
    }
}

impl fmt::Display for DomainSuffix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Why a host pattern is broader than TPA writes into ssh configurations.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PatternTooBroad {
    /// A `*` outside the first label (`1.*`, `web.*.example.com`).
    #[error(
        "host pattern {0} has a wildcard outside its first label; only the first label may hold one (web-*, *.prod.example.com)"
    )]
    WildcardBeyondFirstLabel(String),
    /// A single-label wildcard whose fixed part has fewer than two letters
    /// or digits (`*-*`, `w*`): it would match almost any short host name.
    #[error(
        "host pattern {0} matches almost any host name; keep at least two fixed letters or digits (web-*)"
    )]
    WeakWildcard(String),
    /// A name with dots that is not under an allowed suffix (`*.com`,
    /// `github.com`).
    #[error(
        "host pattern {pattern} is not under an allowed suffix ({allowed}); the CA's [client] allowed_suffixes must list its domain"
    )]
    OutsideAllowedSuffixes {
        /// The pattern.
        pattern: String,
        /// The allowed suffixes, comma-separated, or "none".
        allowed: String,
    },
}

impl HostPattern {
    /// Whether TPA may write this pattern into a user's ssh configuration,
    /// given the CA's `allowed_suffixes`. See the module documentation.
    pub fn check_bounds(&self, allowed: &[DomainSuffix]) -> Result<(), PatternTooBroad> {
        let text = self.as_str();
        let (first, rest) = match text.split_once('.') {
            Some((first, rest)) => (first, Some(rest)),
            None => (text, None),
        };
        if rest.is_some_and(|r| r.contains('*')) {
            return Err(PatternTooBroad::WildcardBeyondFirstLabel(text.to_owned()));
        }
        let Some(rest) = rest else {
            let fixed = first.bytes().filter(u8::is_ascii_alphanumeric).count();
            if first.contains('*') && fixed < 2 {
                return Err(PatternTooBroad::WeakWildcard(text.to_owned()));
            }
            return Ok(());
        };
        let domain = if first.contains('*') { rest } else { text };
        if allowed.iter().any(|s| s.covers(domain)) {
            return Ok(());
        }
        let allowed = if allowed.is_empty() {
            "none".to_owned()
        } else {
            allowed
                .iter()
                .map(DomainSuffix::as_str)
                .collect::<Vec<_>>()
                .join(", ")
        };
        Err(PatternTooBroad::OutsideAllowedSuffixes {
            pattern: text.to_owned(),
            allowed,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Issue 18, finding 4: the patterns of the finding and their neighbours.
    #[test]
    fn bounds_of_host_patterns() {
        let suffixes = |list: &[&str]| -> Vec<DomainSuffix> {
            list.iter()
                .map(|s| DomainSuffix::parse(s).unwrap())
                .collect()
        };
        let prod = suffixes(&["prod.example.com"]);
        let check = |pattern: &str, allowed: &[DomainSuffix], ok: bool| {
            let p = HostPattern::parse(pattern).unwrap();
            assert_eq!(
                p.check_bounds(allowed).is_ok(),
                ok,
                "{pattern} with {allowed:?}"
            );
        };
        // Refused whatever the suffixes: wildcards beyond the first label, weak wildcards.
        for bad in ["1.*", "web.*.example.com", "*-*", "w*", "*1", "*-1-*"] {
            check(bad, &prod, false);
        }
        // Refused without a suffix that covers them.
        for bad in [
            "github.com",
            "*.com",
            "*.example.com",
            "example.com",
            "x.prod.example.org",
        ] {
            check(bad, &prod, false);
            check(bad, &[], false);
        }
        // Accepted: single labels with a fixed part, names under the suffix.
        for good in ["web-*", "db1", "web-1", "*db*", "ab*"] {
            check(good, &[], true);
        }
        for good in [
            "*.prod.example.com",
            "web-*.prod.example.com",
            "db.prod.example.com",
            "prod.example.com",
            "a.b.prod.example.com",
        ] {
            check(good, &prod, true);
            check(good, &[], false);
        }
        // A bare public domain only when listed explicitly.
        check("github.com", &suffixes(&["github.com"]), true);
        check("notgithub.com", &suffixes(&["github.com"]), false);
    }

    #[test]
    fn suffixes_need_two_labels() {
        for bad in ["com", "*.example.com", "", "Example.com", "a..b"] {
            assert!(DomainSuffix::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(
            DomainSuffix::parse("prod.example.com").unwrap().as_str(),
            "prod.example.com"
        );
    }

    #[test]
    fn refusals_name_the_pattern_and_the_suffixes() {
        let e = HostPattern::parse("github.com")
            .unwrap()
            .check_bounds(&[])
            .unwrap_err();
        assert!(
            e.to_string().contains("github.com") && e.to_string().contains("none"),
            "{e}"
        );
    }
}
