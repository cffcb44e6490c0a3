//! Who someone is: an identity is (issuer, subject), never an email address.
//!
//! Separation of duties compares [`Identity`] values. Display names and email
//! addresses are for people to read and never decide anything.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

pub use crate::identifiers::GroupName;
use crate::identifiers::{Username, shown};

/// The issuer of built-in local accounts.
pub const LOCAL_ISSUER: &str = "tpa:local";

/// Why an identity is not acceptable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdentityError {
    /// Issuer or subject empty, longer than 255 bytes, or holding control characters.
    #[error("identity {field} {shown} is not valid: 1 to 255 bytes without control characters")]
    Invalid {
        /// `issuer` or `subject`.
        field: &'static str,
        /// The value, escaped.
        shown: String,
    },
}

/// A user's identity: the identity provider (issuer) and its stable id for the user (subject).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Identity {
    issuer: String,
    subject: String,
}

fn check(field: &'static str, value: &str) -> Result<(), IdentityError> {
    if value.is_empty() || value.len() > 255 || value.chars().any(char::is_control) {
        return Err(IdentityError::Invalid {
            field,
            shown: shown(value),
        });
    }
    Ok(())
}

impl Identity {
    /// An identity from an identity provider.
    pub fn new(issuer: &str, subject: &str) -> Result<Self, IdentityError> {
        check("issuer", issuer)?;
        check("subject", subject)?;
        Ok(Self {
            issuer: issuer.to_owned(),
            subject: subject.to_owned(),
        })
    }

    /// The identity of a built-in local account.
    pub fn local(username: &Username) -> Self {
        Self {
            issuer: LOCAL_ISSUER.to_owned(),
            subject: username.as_str().to_owned(),
        }
    }

    /// The issuer.
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// The subject.
    pub fn subject(&self) -> &str {
        &self.subject
    }
}

impl fmt::Display for Identity {
    /// `issuer#subject`, the form used as the audit actor.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}#{}", self.issuer, self.subject)
    }
}

/// An authenticated user as the rules see them: identity, login name, groups.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    /// Who they are.
    pub identity: Identity,
    /// Their short name (key ids, display).
    pub username: Username,
    /// For people to read only.
    pub display_name: String,
    /// Their groups, as of their login (re-read when a decision is submitted).
    pub groups: BTreeSet<GroupName>,
}

impl User {
    /// Whether the user is in `group`.
    pub fn in_group(&self, group: &GroupName) -> bool {
        self.groups.contains(group)
    }
}

/// Who is one person: every identity with one username, under any issuer,
/// is one person, and `[[identity_links]]` join usernames that differ across
/// connectors. Separation of duties and `tpa-ca revoke user` both use this
/// one rule.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct People {
    /// Linked username → the first username of its link (the person's key).
    links: BTreeMap<Username, Username>,
}

/// Why identity links cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LinkError {
    /// A username appears in two links (they would be one person anyway: merge them).
    #[error("username {0} appears in more than one [[identity_links]] entry; merge them")]
    Twice(Username),
    /// A link needs at least two usernames.
    #[error("an [[identity_links]] entry needs at least two usernames")]
    TooShort,
}

impl People {
    /// Builds the rule from link groups (each a list of usernames of one person).
    pub fn new(links: Vec<Vec<Username>>) -> Result<Self, LinkError> {
        let mut map = BTreeMap::new();
        for group in links {
            let Some(first) = group.first().cloned() else {
                return Err(LinkError::TooShort);
            };
            if group.len() < 2 {
                return Err(LinkError::TooShort);
            }
            for name in group {
                if map.insert(name.clone(), first.clone()).is_some() {
                    return Err(LinkError::Twice(name));
                }
            }
        }
        Ok(Self { links: map })
    }

    /// The person `username` belongs to (a stable key; usernames compare exactly,
    /// and every username is lowercase by its grammar).
    pub fn person<'a>(&'a self, username: &'a Username) -> &'a Username {
        self.links.get(username).unwrap_or(username)
    }

    /// Whether two usernames are one person.
    pub fn same_person(&self, a: &Username, b: &Username) -> bool {
        self.person(a) == self.person(b)
    }

    /// Every username of the person `username` belongs to (itself included).
    pub fn usernames_of(&self, username: &Username) -> BTreeSet<Username> {
        let person = self.person(username);
        let mut out: BTreeSet<Username> = self
            .links
            .iter()
            .filter(|(_, p)| *p == person)
            .map(|(u, _)| u.clone())
            .collect();
        out.insert(username.clone());
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn identities_compare_by_issuer_and_subject() {
        let a = Identity::new("https://idp.example", "123").unwrap();
        let b = Identity::new("https://other.example", "123").unwrap();
        assert_ne!(a, b, "same subject at another issuer is someone else");
        assert_eq!(a, Identity::new("https://idp.example", "123").unwrap());
        let local = Identity::local(&Username::parse("alice").unwrap());
        assert_eq!(local.to_string(), "tpa:local#alice");
    }

    #[test]
    fn bad_identities_are_refused() {
        assert!(Identity::new("", "x").is_err());
        assert!(Identity::new("i", "").is_err());
        assert!(Identity::new("i", "a\nb").is_err());
        assert!(Identity::new(&"i".repeat(256), "x").is_err());
    }

    #[test]
    fn group_names() {
        for ok in ["sre", "sre-leads", "eng.managers", "team_1", "1st"] {
            assert!(GroupName::parse(ok).is_ok(), "{ok}");
        }
        for bad in ["", "SRE", "-x", "a b", "a,b", "ä", &"a".repeat(65)] {
            assert!(GroupName::parse(bad).is_err(), "{bad}");
        }
    }

    proptest! {
        #[test]
        fn group_name_parse_accepts_exactly_the_grammar(s in "\\PC{0,70}") {
            let expected = !s.is_empty() && s.len() <= 64
                && s.bytes().next().is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
                && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b));
            prop_assert_eq!(GroupName::parse(&s).is_ok(), expected);
        }
    }

    #[test]
    fn one_username_is_one_person_and_links_join_usernames() {
        let u = |s: &str| Username::parse(s).unwrap();
        let people = People::default();
        assert!(people.same_person(&u("alice"), &u("alice")));
        assert!(!people.same_person(&u("alice"), &u("alice2")));
        let people = People::new(vec![vec![u("alice"), u("asmith")]]).unwrap();
        assert!(people.same_person(&u("asmith"), &u("alice")));
        assert!(!people.same_person(&u("asmith"), &u("bob")));
        assert_eq!(
            people.usernames_of(&u("asmith")),
            BTreeSet::from([u("alice"), u("asmith")])
        );
        assert_eq!(people.usernames_of(&u("bob")), BTreeSet::from([u("bob")]));
        assert_eq!(
            People::new(vec![vec![u("a"), u("b")], vec![u("b"), u("c")]]),
            Err(LinkError::Twice(u("b")))
        );
        assert_eq!(People::new(vec![vec![u("a")]]), Err(LinkError::TooShort));
    }
}
