//! Host names and the patterns a role may reach.

use std::fmt;

use crate::identifiers::{IdentifierError, shown};

/// A host name as the bastion's inventory knows it: lowercase DNS labels.
/// Grammar: labels of `[a-z0-9-]` (not starting or ending with `-`, never an
/// IDNA `xn--` label), joined by dots, at most 253 bytes. Text a person typed
/// goes through [`HostName::canonical`] first.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct HostName(String);

fn label_ok(label: &str) -> bool {
    !label.is_empty()
        && label.len() <= 63
        && label
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !label.starts_with('-')
        && !label.ends_with('-')
        // IDNA (punycode) labels are refused: a look-alike Unicode name must
        // never match a pattern written in ASCII.
        && !label.starts_with("xn--")
}

impl HostName {
    /// Parses a host name.
    pub fn parse(value: &str) -> Result<Self, IdentifierError> {
        if value.is_empty() || value.len() > 253 || !value.split('.').all(label_ok) {
            return Err(IdentifierError::Malformed {
                kind: "host name",
                shown: shown(value),
                expected: "lowercase DNS labels (a-z, 0-9, '-') separated by dots",
            });
        }
        Ok(Self(value.to_owned()))
    }

    /// Parses a host name as a person typed it, in canonical form: ASCII
    /// letters lowercased and one trailing dot (the DNS root) dropped, so
    /// `WEB-1` and `web-1.` are `web-1`. Anything else that is not a host name
    /// (a NUL, a space, non-ASCII, an IDNA `xn--` label) is refused, never
    /// repaired. Requests and approvals match patterns against this form only.
    pub fn canonical(value: &str) -> Result<Self, IdentifierError> {
        let trimmed = value.strip_suffix('.').unwrap_or(value);
        Self::parse(&trimmed.to_ascii_lowercase()).map_err(|_| IdentifierError::Malformed {
            kind: "host name",
            shown: shown(value),
            expected: "lowercase DNS labels (a-z, 0-9, '-') separated by dots; IDNA (xn--) names are not accepted",
        })
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for HostName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A host name or a glob where `*` matches any run of name characters inside
/// ONE DNS label and never a dot: `web-*` matches `web-1` but not
/// `web-1.payments.internal`, and `*.prod.example.com` matches
/// `a.prod.example.com` but not `a.b.prod.example.com`. A lone `*` is
/// refused: a role names its hosts.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct HostPattern(String);

impl HostPattern {
    /// Parses a pattern.
    pub fn parse(value: &str) -> Result<Self, IdentifierError> {
        let bad = |expected| IdentifierError::Malformed {
            kind: "host pattern",
            shown: shown(value),
            expected,
        };
        if value.trim_matches(|c| c == '*' || c == '.').is_empty() {
            return Err(bad(
                "a host name or a glob with a fixed part, such as web-* (a lone * is not allowed)",
            ));
        }
        // With each `*` replaced by a letter, it must be a valid host name.
        if HostName::parse(&value.replace('*', "x")).is_err() || value.contains("**") {
            return Err(bad(
                "lowercase DNS labels (a-z, 0-9, '-'), dots, and * as a wildcard",
            ));
        }
        Ok(Self(value.to_owned()))
    }

    /// Whether the pattern covers `host`: as many labels as the pattern,
    /// each matched by the pattern's label (so `*` never crosses a dot).
    pub fn matches(&self, host: &HostName) -> bool {
        let mut pattern = self.0.split('.');
        let mut name = host.as_str().split('.');
        loop {
            match (pattern.next(), name.next()) {
                (None, None) => return true,
                (Some(p), Some(n)) if glob_match(p.as_bytes(), n.as_bytes()) => {}
                _ => return false,
            }
        }
    }

    /// The pattern text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for HostPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Where clients reach the bastion: `host` or `host:port`, where `host` is a
/// [`HostName`] (which also covers IPv4 literals) or a bracketed IPv6 literal
/// (`[2001:db8::1]:2222`). Nothing else gets through, so the value is safe to
/// write into an ssh_config file or a command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BastionAddress {
    host: String,
    port: Option<u16>,
}

impl BastionAddress {
    /// Parses `host`, `host:port` or `[v6]:port`.
    pub fn parse(value: &str) -> Result<Self, IdentifierError> {
        let bad = || IdentifierError::Malformed {
            kind: "bastion address",
            shown: shown(value),
            expected: "host or host:port (host: lowercase DNS name, IPv4 or [IPv6]; port 1-65535)",
        };
        let (host, port) = if let Some(rest) = value.strip_prefix('[') {
            let (v6, after) = rest.split_once(']').ok_or_else(bad)?;
            v6.parse::<std::net::Ipv6Addr>().map_err(|_| bad())?;
            let port = match after {
                "" => None,
                p => Some(p.strip_prefix(':').ok_or_else(bad)?),
            };
            (v6.to_owned(), port)
        } else {
            let (host, port) = match value.split_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (value, None),
            };
            HostName::parse(host).map_err(|_| bad())?;
            (host.to_owned(), port)
        };
        let port = match port {
            None => None,
            Some(p) => {
                if p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(bad());
                }
                Some(p.parse::<u16>().ok().filter(|&n| n != 0).ok_or_else(bad)?)
            }
        };
        Ok(Self { host, port })
    }

    /// The host (an IPv6 literal without its brackets).
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The port, when one was given.
    pub fn port(&self) -> Option<u16> {
        self.port
    }
}

impl fmt::Display for BastionAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.host.contains(':'), self.port) {
            (true, Some(p)) => write!(f, "[{}]:{p}", self.host),
            (true, None) => write!(f, "[{}]", self.host),
            (false, Some(p)) => write!(f, "{}:{p}", self.host),
            (false, None) => f.write_str(&self.host),
        }
    }
}

/// Iterative glob matching with `*` only (no backtracking blow-up).
fn glob_match(pattern: &[u8], text: &[u8]) -> bool {
    let (mut p, mut t) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        if p < pattern.len() && pattern[p] == b'*' {
            star = Some((p, t));
            p += 1;
        } else if p < pattern.len() && pattern[p] == text[t] {
            p += 1;
            t += 1;
        } else if let Some((sp, st)) = star {
            p = sp + 1;
            t = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    pattern[p..].iter().all(|&b| b == b'*')
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn host(s: &str) -> HostName {
        HostName::parse(s).unwrap()
    }

    #[test]
    fn host_names() {
        for ok in ["web-1", "db.prod.example.com", "a", "1"] {
            assert!(HostName::parse(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "Web-1",
            "-web",
            "web-",
            "a..b",
            "a b",
            "a,b",
            "*",
            "web_1",
            "héllo",
            "xn--bcher-kva.example",
            "web-1.",
        ] {
            assert!(HostName::parse(bad).is_err(), "{bad}");
        }
    }

    // issue 11: host names are canonicalized before matching, never repaired.
    #[test]
    fn canonical_host_names_lowercase_and_drop_one_trailing_dot() {
        let check = |input: &str, expected: Option<&str>| {
            let got = HostName::canonical(input).ok();
            assert_eq!(got.as_ref().map(HostName::as_str), expected, "{input:?}");
        };
        check("web-1", Some("web-1"));
        check("WEB-1", Some("web-1"));
        check("web-1.", Some("web-1"));
        check("Web-1.Prod.", Some("web-1.prod"));
        check("web-1..", None);
        check(".", None);
        check("web-1\u{0}", None);
        check("web-1\u{0}.evil", None);
        check("xn--wb-1-bsa", None);
        check("XN--WB-1-BSA", None);
        check("wéb-1", None);
        check("web-1 ", None);
    }

    // issue 11: `*` matches within one DNS label only.
    #[test]
    fn star_never_crosses_a_dot() {
        let p = HostPattern::parse("web-*").unwrap();
        assert!(p.matches(&host("web-1")));
        assert!(!p.matches(&host("web-1.evil")));
        assert!(!p.matches(&host("web-1.db-1.payments.internal")));
        let p = HostPattern::parse("*.payments.internal").unwrap();
        assert!(p.matches(&host("web-1.payments.internal")));
        assert!(!p.matches(&host("a.web-1.payments.internal")));
        assert!(!p.matches(&host("payments.internal")));
        let p = HostPattern::parse("db-*.prod").unwrap();
        assert!(p.matches(&host("db-7.prod")));
        assert!(!p.matches(&host("db-7.x.prod")));
        assert!(HostPattern::parse("xn--*").is_err());
    }

    #[test]
    fn patterns() {
        let p = HostPattern::parse("web-*").unwrap();
        assert!(p.matches(&host("web-1")));
        assert!(p.matches(&host("web-prod-22")));
        assert!(!p.matches(&host("db-1")));
        assert!(!p.matches(&host("xweb-1")));
        let p = HostPattern::parse("*.prod.example.com").unwrap();
        assert!(p.matches(&host("a.prod.example.com")));
        assert!(!p.matches(&host("a.staging.example.com")));
        assert!(HostPattern::parse("db-1").unwrap().matches(&host("db-1")));
        assert!(!HostPattern::parse("db-1").unwrap().matches(&host("db-10")));
        for bad in ["*", "**", "*.*", "", "web-**", "Web-*", "web *"] {
            assert!(HostPattern::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn bastion_addresses() {
        let check = |input: &str, expected: Option<(&str, Option<u16>)>| {
            let got = BastionAddress::parse(input).ok();
            assert_eq!(
                got.as_ref().map(|b| (b.host(), b.port())),
                expected,
                "{input:?}"
            );
            if let Some(b) = got {
                assert_eq!(b.to_string(), input, "round trip");
            }
        };
        check("bastion.example.com", Some(("bastion.example.com", None)));
        check(
            "bastion.example.com:2222",
            Some(("bastion.example.com", Some(2222))),
        );
        check("127.0.0.1:22", Some(("127.0.0.1", Some(22))));
        check("[::1]:2222", Some(("::1", Some(2222))));
        check("[::1]", Some(("::1", None)));
        for bad in [
            "",
            ":22",
            "b:",
            "b:0",
            "b:65536",
            "b:+22",
            "b:22 x",
            "b x",
            "b\nHost *",
            "Bastion",
            "[::1",
            "[x]:22",
            "[::1]22",
            "user@b",
            "b:22:33",
            "-oProxyCommand=x",
        ] {
            check(bad, None);
        }
    }

    proptest! {
        #[test]
        fn exact_pattern_matches_only_itself(a in "[a-z][a-z0-9-]{0,10}[a-z0-9]", b in "[a-z][a-z0-9-]{0,10}[a-z0-9]") {
            let p = HostPattern::parse(&a).unwrap();
            prop_assert_eq!(p.matches(&host(&b)), a == b);
        }

        #[test]
        fn prefix_glob_matches_prefixed_names(prefix in "[a-z]{1,5}-", rest in "[a-z0-9]{1,8}") {
            let p = HostPattern::parse(&format!("{prefix}*")).unwrap();
            let name = format!("{prefix}{rest}");
            prop_assert!(p.matches(&host(&name)));
        }

        #[test]
        fn parsers_never_panic(s in any::<String>()) {
            let _ = HostName::parse(&s);
            let _ = HostPattern::parse(&s);
            let _ = BastionAddress::parse(&s);
        }
    }
}
