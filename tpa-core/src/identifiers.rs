//! Identifiers that reach certificates, logs and SQL: parsed once, valid forever after.
//!
//! Each type has a strict allow-list grammar. Anything outside it (commas, wildcards,
//! whitespace, control characters, non-ASCII look-alikes, empty strings, over-long
//! strings) is refused with an error that says which rule was broken.

use std::fmt;

use rand::{CryptoRng, RngExt};

/// Why a string is not a valid identifier.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdentifierError {
    /// The string is empty.
    #[error("{kind} must not be empty")]
    Empty {
        /// The kind of identifier, e.g. "principal".
        kind: &'static str,
    },
    /// The string is longer than the grammar allows.
    #[error("{kind} is {len} bytes long; at most {max} are allowed")]
    TooLong {
        /// The kind of identifier.
        kind: &'static str,
        /// Its length in bytes.
        len: usize,
        /// The maximum length in bytes.
        max: usize,
    },
    /// The first character is not allowed in that position.
    #[error("{kind} {shown} must start with {expected}")]
    BadStart {
        /// The kind of identifier.
        kind: &'static str,
        /// The offending value, escaped for display.
        shown: String,
        /// What the first character may be.
        expected: &'static str,
    },
    /// A character outside the allow-list.
    #[error("{kind} {shown} contains {found}; only {allowed} are allowed")]
    BadCharacter {
        /// The kind of identifier.
        kind: &'static str,
        /// The offending value, escaped for display.
        shown: String,
        /// The first character outside the allow-list, described.
        found: String,
        /// The allowed characters.
        allowed: &'static str,
    },
    /// The string does not have the required shape (prefix, length).
    #[error("{kind} {shown} is malformed: {expected}")]
    Malformed {
        /// The kind of identifier.
        kind: &'static str,
        /// The offending value, escaped for display.
        shown: String,
        /// The expected shape.
        expected: &'static str,
    },
}

/// Escapes a value for an error message so that control characters and
/// look-alikes are visible and the message stays one short line.
pub(crate) fn shown(value: &str) -> String {
    let mut out: String = value
        .chars()
        .take(40)
        .flat_map(char::escape_debug)
        .collect();
    if value.chars().count() > 40 {
        out.push('…');
    }
    format!("\"{out}\"")
}

fn describe(c: char) -> String {
    match c {
        ',' => "a comma".to_owned(),
        '*' | '?' => format!("a wildcard ({c})"),
        c if c.is_whitespace() => format!("whitespace ({})", c.escape_unicode()),
        c if c.is_control() => format!("a control character ({})", c.escape_unicode()),
        c if !c.is_ascii() => format!("a non-ASCII character ({})", c.escape_unicode()),
        c => format!("'{c}'"),
    }
}

/// Shared grammar: `first` class, then `rest` class, 1..=max bytes.
struct Grammar {
    kind: &'static str,
    max: usize,
    first: fn(u8) -> bool,
    first_text: &'static str,
    rest: fn(u8) -> bool,
    rest_text: &'static str,
}

impl Grammar {
    fn check(&self, value: &str) -> Result<(), IdentifierError> {
        let kind = self.kind;
        if value.is_empty() {
            return Err(IdentifierError::Empty { kind });
        }
        // Characters first, so that a long string of junk is reported for the junk.
        // Every grammar's first-character class is a subset of its other class.
        if let Some(c) = value
            .chars()
            .find(|&c| !c.is_ascii() || !(self.rest)(c as u8))
        {
            return Err(IdentifierError::BadCharacter {
                kind,
                shown: shown(value),
                found: describe(c),
                allowed: self.rest_text,
            });
        }
        if value.len() > self.max {
            return Err(IdentifierError::TooLong {
                kind,
                len: value.len(),
                max: self.max,
            });
        }
        let first = value.as_bytes()[0];
        if !(self.first)(first) {
            return Err(IdentifierError::BadStart {
                kind,
                shown: shown(value),
                expected: self.first_text,
            });
        }
        Ok(())
    }
}

fn lower_or_underscore(b: u8) -> bool {
    b.is_ascii_lowercase() || b == b'_'
}

fn login_char(b: u8) -> bool {
    b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'_' | b'.' | b'-')
}

const PRINCIPAL: Grammar = Grammar {
    kind: "principal",
    max: 32,
    first: lower_or_underscore,
    first_text: "a lowercase letter or '_'",
    rest: login_char,
    rest_text: "lowercase ASCII letters, digits, '_', '.' and '-'",
};

const USERNAME: Grammar = Grammar {
    kind: "username",
    max: 64,
    first: lower_or_underscore,
    first_text: "a lowercase letter or '_'",
    rest: login_char,
    rest_text: "lowercase ASCII letters, digits, '_', '.' and '-'",
};

const ROLE_NAME: Grammar = Grammar {
    kind: "role name",
    max: 63,
    first: |b| b.is_ascii_lowercase(),
    first_text: "a lowercase letter",
    rest: |b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-',
    rest_text: "lowercase ASCII letters, digits and '-'",
};

macro_rules! identifier {
    ($(#[$doc:meta])* $name:ident, $grammar:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name(String);

        impl $name {
            /// Parses a value, refusing anything outside the grammar.
            pub fn parse(value: &str) -> Result<Self, IdentifierError> {
                $grammar.check(value)?;
                Ok(Self(value.to_owned()))
            }

            /// The identifier as a string slice.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl TryFrom<&str> for $name {
            type Error = IdentifierError;
            fn try_from(value: &str) -> Result<Self, Self::Error> {
                Self::parse(value)
            }
        }

        impl std::str::FromStr for $name {
            type Err = IdentifierError;
            fn from_str(value: &str) -> Result<Self, Self::Err> {
                Self::parse(value)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }
    };
}

identifier!(
    /// A certificate principal: a Unix login on the target hosts.
    ///
    /// Grammar: `^[a-z_][a-z0-9_.-]{0,31}$`. Never a comma (OpenSSH splits
    /// principal lists on commas), wildcard, whitespace, control or non-ASCII
    /// character.
    Principal,
    PRINCIPAL
);

identifier!(
    /// A TPA user name (local account or the canonical short name of an SSO
    /// identity). Grammar: `^[a-z_][a-z0-9_.-]{0,63}$`.
    Username,
    USERNAME
);

identifier!(
    /// The name of a role in the configuration. Grammar: `^[a-z][a-z0-9-]{0,62}$`.
    RoleName,
    ROLE_NAME
);

impl Principal {
    /// A host-scoped principal `<group>:<login>`. Both parts are already valid
    /// (a group name has no comma, colon, wildcard or whitespace), so the result
    /// is safe for certificates and `AuthorizedPrincipalsFile`. Only the CA
    /// builds these; `parse` accepts logins only.
    pub fn scoped(group: &GroupName, login: &Principal) -> Principal {
        Principal(format!("{group}:{login}"))
    }

    /// Parses a principal a grant may hold: a login, or a host-scoped
    /// `<group>:<login>` whose two parts each parse (stored grant snapshots).
    pub fn parse_granted(value: &str) -> Result<Principal, IdentifierError> {
        match value.split_once(':') {
            Some((group, login)) => {
                let group = GroupName::parse(group)?;
                Ok(Principal::scoped(&group, &Principal::parse(login)?))
            }
            None => Principal::parse(value),
        }
    }
}

/// The identifier of an access request: `req_` followed by 26 characters of
/// lowercase RFC 4648 base32 (128 random bits).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RequestId(String);

const REQUEST_ID_PREFIX: &str = "req_";
const REQUEST_ID_BODY: usize = 26;
const BASE32: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";

impl RequestId {
    /// Draws a new random request id.
    pub fn generate<R: CryptoRng + ?Sized>(rng: &mut R) -> Self {
        let mut bits: u128 = rng.random();
        let mut id = String::with_capacity(REQUEST_ID_PREFIX.len() + REQUEST_ID_BODY);
        id.push_str(REQUEST_ID_PREFIX);
        for _ in 0..REQUEST_ID_BODY {
            id.push(char::from(BASE32[(bits & 31) as usize]));
            bits >>= 5;
        }
        Self(id)
    }

    /// Parses a request id, refusing anything but the exact shape.
    pub fn parse(value: &str) -> Result<Self, IdentifierError> {
        let malformed = || IdentifierError::Malformed {
            kind: "request id",
            shown: shown(value),
            expected: "\"req_\" followed by 26 characters a-z and 2-7",
        };
        let body = value
            .strip_prefix(REQUEST_ID_PREFIX)
            .ok_or_else(malformed)?;
        if body.len() != REQUEST_ID_BODY || !body.bytes().all(|b| BASE32.contains(&b)) {
            return Err(malformed());
        }
        // 26 base32 characters carry 130 bits; the top two must be zero.
        let last = body.as_bytes()[REQUEST_ID_BODY - 1];
        if BASE32
            .iter()
            .position(|&b| b == last)
            .is_some_and(|v| v > 7)
        {
            return Err(malformed());
        }
        Ok(Self(value.to_owned()))
    }

    /// The request id as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::str::FromStr for RequestId {
    type Err = IdentifierError;
    fn from_str(value: &str) -> Result<Self, Self::Err> {
        Self::parse(value)
    }
}

/// A group name as used by `requestable_by` and approval stages.
/// Grammar: `^[a-z0-9][a-z0-9._-]{0,63}$`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct GroupName(String);

impl GroupName {
    /// Parses a group name.
    pub fn parse(value: &str) -> Result<Self, IdentifierError> {
        let bad = |expected| IdentifierError::Malformed {
            kind: "group name",
            shown: shown(value),
            expected,
        };
        if value.is_empty() || value.len() > 64 {
            return Err(bad("1 to 64 characters"));
        }
        let ok =
            |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'_' | b'-');
        if !value.bytes().all(ok) {
            return Err(bad("lowercase ASCII letters, digits, '.', '_' and '-'"));
        }
        if !value.as_bytes()[0].is_ascii_alphanumeric() {
            return Err(bad("a letter or digit first"));
        }
        Ok(Self(value.to_owned()))
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for GroupName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn check_principal(input: &str, ok: bool) {
        assert_eq!(Principal::parse(input).is_ok(), ok, "principal {input:?}");
    }

    // issue 11: stored grant snapshots hold host-scoped principals.
    #[test]
    fn granted_principals_are_logins_or_group_scoped_logins() {
        assert_eq!(
            Principal::parse_granted("web:root").unwrap().as_str(),
            "web:root"
        );
        assert_eq!(Principal::parse_granted("root").unwrap().as_str(), "root");
        for bad in [
            "web:",
            ":root",
            "web:ro:ot",
            "Web:root",
            "web:root,x",
            "web :root",
        ] {
            assert!(Principal::parse_granted(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn principal_table() {
        check_principal("root", true);
        check_principal("deploy", true);
        check_principal("_svc", true);
        check_principal("web.admin-2", true);
        check_principal(&"a".repeat(32), true);
        check_principal(&"a".repeat(33), false);
        check_principal("", false);
        check_principal("a,b", false);
        check_principal("root ", false);
        check_principal(" root", false);
        check_principal("ro\not", false);
        check_principal("ro\0ot", false);
        check_principal("*", false);
        check_principal("prod-*", false);
        check_principal("r?ot", false);
        check_principal("!root", false);
        check_principal("Root", false);
        check_principal("1root", false);
        check_principal("-root", false);
        check_principal(".root", false);
        check_principal("rооt", false); // Cyrillic о
        check_principal("root\u{200b}", false); // zero-width space
        check_principal("a:b", false);
        check_principal("a/b", false);
    }

    #[test]
    fn principal_errors_say_what_is_wrong() {
        let err = Principal::parse("a,b").unwrap_err().to_string();
        assert!(err.contains("a comma"), "{err}");
        let err = Principal::parse("prod-*").unwrap_err().to_string();
        assert!(err.contains("wildcard"), "{err}");
        let err = Principal::parse("root ").unwrap_err().to_string();
        assert!(err.contains("whitespace"), "{err}");
        let err = Principal::parse("ro\not").unwrap_err().to_string();
        assert!(err.contains("\\n"), "{err}");
        let err = Principal::parse(&"a".repeat(33)).unwrap_err().to_string();
        assert!(err.contains("33 bytes"), "{err}");
        let err = Principal::parse("rооt").unwrap_err().to_string();
        assert!(err.contains("non-ASCII"), "{err}");
        let err = Principal::parse("!root").unwrap_err().to_string();
        assert!(err.contains("'!'"), "{err}");
        let err = Principal::parse("1root").unwrap_err().to_string();
        assert!(err.contains("must start with"), "{err}");
    }

    #[test]
    fn role_and_user_table() {
        assert!(RoleName::parse("hotfix-admin").is_ok());
        assert!(RoleName::parse("read-only-debug").is_ok());
        assert!(RoleName::parse("Hotfix").is_err());
        assert!(RoleName::parse("hot_fix").is_err());
        assert!(RoleName::parse("-x").is_err());
        assert!(Username::parse("alice").is_ok());
        assert!(Username::parse("alice@example.com").is_err());
        assert!(Username::parse(&"a".repeat(65)).is_err());
    }

    #[test]
    fn request_id_shape() {
        let mut rng = rand::rng();
        let id = RequestId::generate(&mut rng);
        assert_eq!(RequestId::parse(id.as_str()).unwrap(), id);
        assert_eq!(id.as_str().len(), 30);
        assert!(RequestId::parse("req_").is_err());
        assert!(RequestId::parse("req_AAAAAAAAAAAAAAAAAAAAAAAAAA").is_err());
        assert!(RequestId::parse("rq_aaaaaaaaaaaaaaaaaaaaaaaaaa").is_err());
        assert!(RequestId::parse("req_aaaaaaaaaaaaaaaaaaaaaaaaaaa").is_err());
        assert!(RequestId::parse("req_aaaaaaaaaaaaaaaaaaaaaaaaaa").is_ok());
        // Top bits beyond 128 must be zero.
        assert!(RequestId::parse("req_aaaaaaaaaaaaaaaaaaaaaaaaaz").is_err());
    }

    proptest! {
        #[test]
        fn principal_parse_accepts_exactly_the_grammar(s in "\\PC{0,40}") {
            let expected = !s.is_empty()
                && s.len() <= 32
                && s.bytes().next().is_some_and(|b| b.is_ascii_lowercase() || b == b'_')
                && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"_.-".contains(&b));
            prop_assert_eq!(Principal::parse(&s).is_ok(), expected);
        }

        #[test]
        fn principal_valid_strings_round_trip(s in "[a-z_][a-z0-9_.-]{0,31}") {
            let p = Principal::parse(&s).unwrap();
            prop_assert_eq!(p.as_str(), s.as_str());
        }

        #[test]
        fn principal_never_holds_separators(s in any::<String>()) {
            if let Ok(p) = Principal::parse(&s) {
                prop_assert!(!p.as_str().contains([',', '*', '?', ' ', '\n', '\0']));
            }
        }

        #[test]
        fn username_parse_accepts_exactly_the_grammar(s in "\\PC{0,70}") {
            let expected = !s.is_empty()
                && s.len() <= 64
                && s.bytes().next().is_some_and(|b| b.is_ascii_lowercase() || b == b'_')
                && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"_.-".contains(&b));
            prop_assert_eq!(Username::parse(&s).is_ok(), expected);
        }

        #[test]
        fn role_name_parse_accepts_exactly_the_grammar(s in "[a-zA-Z0-9_ -]{0,70}") {
            let expected = !s.is_empty()
                && s.len() <= 63
                && s.bytes().next().is_some_and(|b| b.is_ascii_lowercase())
                && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
            prop_assert_eq!(RoleName::parse(&s).is_ok(), expected);
        }

        #[test]
        fn request_id_parse_never_panics(s in any::<String>()) {
            let _ = RequestId::parse(&s);
        }

        #[test]
        fn request_ids_round_trip(seed in any::<u64>()) {
            use rand::SeedableRng;
            let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
            let id = RequestId::generate(&mut rng);
            prop_assert_eq!(RequestId::parse(id.as_str()).unwrap(), id);
        }
    }
}
