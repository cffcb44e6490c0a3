//! Every piece of outside text that goes into an LDAP filter (RFC 4515) or a
//! DN (RFC 4514) goes through here: templates are filled in one pass, so a
//! value that contains `{dn}` or `{username}` is never filled again.

/// `value` escaped for a filter assertion (RFC 4515 §3): `*`, `(`, `)`, `\`
/// and NUL become `\2a`, `\28`, `\29`, `\5c`, `\00`.
pub fn filter_value(value: &str) -> String {
    ldap3::ldap_escape(value).into_owned()
}

/// Raw bytes (an AD `objectGUID`) as a filter assertion: every byte `\hh`.
pub fn filter_bytes(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("\\{b:02x}")).collect()
}

/// `value` escaped as an attribute value inside a DN (RFC 4514 §2.4): `"`,
/// `+`, `,`, `;`, `<`, `=`, `>`, `\` and NUL anywhere, a leading space or `#`
/// and a trailing space.
pub fn dn_value(value: &str) -> String {
    ldap3::dn_escape(value).into_owned()
}

/// `template` with each `{name}` of `values` replaced by `escape(value)`, in
/// one pass. Unknown `{…}` text is kept as it is (filters may hold braces).
pub fn fill(template: &str, values: &[(&str, &str)], escape: fn(&str) -> String) -> String {
    let mut out = String::with_capacity(template.len() + 32);
    let mut rest = template;
    'scan: while !rest.is_empty() {
        if rest.starts_with('{') {
            for (name, value) in values {
                if let Some(after) = rest
                    .strip_prefix('{')
                    .and_then(|r| r.strip_prefix(name))
                    .and_then(|r| r.strip_prefix('}'))
                {
                    out.push_str(&escape(value));
                    rest = after;
                    continue 'scan;
                }
            }
        }
        let mut chars = rest.chars();
        if let Some(c) = chars.next() {
            out.push(c);
        }
        rest = chars.as_str();
    }
    out
}

/// The first RDN's value of `dn` when its attribute is `attribute` (case
/// insensitive): `CN=SRE Leads,OU=Groups,…` → `SRE Leads`. Escapes in the
/// value are decoded (`\,` and `\2c`).
pub fn first_rdn_value(dn: &str, attribute: &str) -> Option<String> {
    let (attr, rest) = dn.split_once('=')?;
    if !attr.trim().eq_ignore_ascii_case(attribute) {
        return None;
    }
    let mut out = Vec::new();
    let mut bytes = rest.bytes();
    while let Some(b) = bytes.next() {
        match b {
            b',' | b'+' => break,
            b'\\' => {
                let first = bytes.next()?;
                if first.is_ascii_hexdigit() {
                    let second = bytes.next()?;
                    let hex = [first, second];
                    let text = std::str::from_utf8(&hex).ok()?;
                    out.push(u8::from_str_radix(text, 16).ok()?);
                } else {
                    out.push(first);
                }
            }
            _ => out.push(b),
        }
    }
    let value = String::from_utf8(out).ok()?;
    let value = value.trim();
    (!value.is_empty()).then(|| value.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    // issue 16: the characters the issue lists, in a filter and in a DN.
    #[test]
    fn filter_values_escape_rfc_4515_specials() {
        let check = |raw: &str, expected: &str| assert_eq!(filter_value(raw), expected, "{raw:?}");
        check("alice", "alice");
        check("*", "\\2a");
        check("(", "\\28");
        check(")", "\\29");
        check("\\", "\\5c");
        check("\0", "\\00");
        check("alice)(uid=*", "alice\\29\\28uid=\\2a");
        check("alice\\", "alice\\5c");
        // `,` and `=` mean nothing in a filter value: kept.
        check("a,b=c", "a,b=c");
    }

    #[test]
    fn dn_values_escape_rfc_4514_specials() {
        let check = |raw: &str, expected: &str| assert_eq!(dn_value(raw), expected, "{raw:?}");
        check("alice", "alice");
        check("a,b=c", "a\\2cb\\3dc");
        check("\\", "\\5c");
        check("\0", "\\00");
        check("a+b", "a\\2bb");
        check("\"<>;", "\\22\\3c\\3e\\3b");
        check(" lead", "\\20lead");
        check("#lead", "\\23lead");
        check("trail ", "trail\\20");
        // `*`, `(` and `)` mean nothing in a DN: kept.
        check("*()", "*()");
    }

    #[test]
    fn templates_are_filled_once() {
        let user = "(&(objectClass=person)(uid={username}))";
        assert_eq!(
            fill(user, &[("username", "alice)(uid=*")], filter_value),
            "(&(objectClass=person)(uid=alice\\29\\28uid=\\2a))"
        );
        // A value holding another placeholder is not filled again.
        let group = "(|(member={dn})(memberUid={username}))";
        assert_eq!(
            fill(
                group,
                &[("dn", "uid={username},dc=x"), ("username", "bob")],
                filter_value
            ),
            "(|(member=uid={username},dc=x)(memberUid=bob))"
        );
        assert_eq!(
            fill(
                "uid={username},ou=people",
                &[("username", "a,b=c")],
                dn_value
            ),
            "uid=a\\2cb\\3dc,ou=people"
        );
        assert_eq!(fill("{x}é{", &[("username", "u")], filter_value), "{x}é{");
    }

    #[test]
    fn rdn_values() {
        let check = |dn: &str, expected: Option<&str>| {
            assert_eq!(first_rdn_value(dn, "cn").as_deref(), expected, "{dn}");
        };
        check(
            "cn=engineers,ou=groups,dc=example,dc=org",
            Some("engineers"),
        );
        check("CN=SRE Leads,OU=Groups,DC=corp", Some("SRE Leads"));
        check("cn=a\\,b,ou=g", Some("a,b"));
        check("cn=a\\2cb,ou=g", Some("a,b"));
        check("ou=groups,dc=x", None);
        check("cn=,dc=x", None);
        check("nonsense", None);
    }

    #[test]
    fn bytes_are_hex_escaped() {
        assert_eq!(filter_bytes(&[0x00, 0x2a, 0xff]), "\\00\\2a\\ff");
    }
}
