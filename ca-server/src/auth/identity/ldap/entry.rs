//! A user's directory entry as TPA reads it: the stable id (entryUUID, or
//! AD's binary objectGUID in its canonical text form), the login name, the
//! display name, the mail address, and whether the account may log in
//! (`userAccountControl`, `pwdAccountLockedTime`, AD's bind diagnostics).

use ldap3::SearchEntry;

use crate::config::LdapConfig;

/// `userAccountControl`: the account is disabled.
const UAC_ACCOUNTDISABLE: u64 = 0x2;
/// `userAccountControl` / `msDS-User-Account-Control-Computed`: the password expired.
const UAC_PASSWORD_EXPIRED: u64 = 0x80_0000;

/// The attributes every user search asks for.
pub(super) fn attributes(config: &LdapConfig) -> Vec<String> {
    vec![
        config.username_attribute.clone(),
        config.display_name_attribute.clone(),
        config.mail_attribute.clone(),
        config.id_attribute.clone(),
        "memberOf".to_owned(),
        "userAccountControl".to_owned(),
        "msDS-User-Account-Control-Computed".to_owned(),
        "pwdAccountLockedTime".to_owned(),
    ]
}

/// Whether an account may log in, as its entry says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccountState {
    /// Usable.
    Active,
    /// Disabled or locked in the directory.
    Disabled,
    /// Its password expired (it must be changed in the directory).
    PasswordExpired,
}

/// One user entry, read.
#[derive(Debug, Clone)]
pub(super) struct UserEntry {
    pub dn: String,
    /// The stable id, as text (the identity's subject).
    pub id: String,
    pub username: Option<String>,
    pub display_name: Option<String>,
    pub mail: Option<String>,
    pub member_of: Vec<String>,
    pub state: AccountState,
}

/// Whether `attribute` holds AD's binary GUID.
pub(super) fn is_guid(attribute: &str) -> bool {
    attribute.eq_ignore_ascii_case("objectGUID")
}

fn first<'a>(entry: &'a SearchEntry, name: &str) -> Option<&'a str> {
    entry
        .attrs
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .and_then(|(_, v)| v.first())
        .map(String::as_str)
}

fn all(entry: &SearchEntry, name: &str) -> Vec<String> {
    entry
        .attrs
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.clone())
        .unwrap_or_default()
}

fn first_bytes(entry: &SearchEntry, name: &str) -> Option<Vec<u8>> {
    let binary = entry
        .bin_attrs
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .and_then(|(_, v)| v.first().cloned());
    binary.or_else(|| first(entry, name).map(|s| s.as_bytes().to_vec()))
}

/// Reads `entry`; `None` when it has no usable stable id.
pub(super) fn read(entry: &SearchEntry, config: &LdapConfig) -> Option<UserEntry> {
    let id = if is_guid(&config.id_attribute) {
        guid_text(&first_bytes(entry, &config.id_attribute)?)?
    } else {
        let id = first(entry, &config.id_attribute)?.trim().to_owned();
        if id.is_empty() || id.len() > 200 || id.contains(char::is_control) {
            return None;
        }
        id
    };
    let flags = |name: &str| first(entry, name).and_then(|v| v.trim().parse::<u64>().ok());
    let uac = flags("userAccountControl").unwrap_or(0);
    let computed = flags("msDS-User-Account-Control-Computed").unwrap_or(0);
    let locked = first(entry, "pwdAccountLockedTime").is_some();
    let state = if uac & UAC_ACCOUNTDISABLE != 0 || locked {
        AccountState::Disabled
    } else if (uac | computed) & UAC_PASSWORD_EXPIRED != 0 {
        AccountState::PasswordExpired
    } else {
        AccountState::Active
    };
    Some(UserEntry {
        dn: entry.dn.clone(),
        id,
        username: first(entry, &config.username_attribute).map(str::to_owned),
        display_name: first(entry, &config.display_name_attribute).map(str::to_owned),
        mail: first(entry, &config.mail_attribute).map(str::to_owned),
        member_of: all(entry, "memberOf"),
        state,
    })
}

/// An AD GUID's canonical text: the first three fields are little-endian.
pub(super) fn guid_text(bytes: &[u8]) -> Option<String> {
    let b: &[u8; 16] = bytes.try_into().ok()?;
    Some(format!(
        "{:08x}-{:04x}-{:04x}-{:02x}{:02x}-{}",
        u32::from_le_bytes([b[0], b[1], b[2], b[3]]),
        u16::from_le_bytes([b[4], b[5]]),
        u16::from_le_bytes([b[6], b[7]]),
        b[8],
        b[9],
        hex::encode(&b[10..16])
    ))
}

/// The bytes of an AD GUID from its canonical text (the reverse of [`guid_text`]).
pub(super) fn guid_bytes(text: &str) -> Option<Vec<u8>> {
    let hexits: String = text.chars().filter(|c| *c != '-').collect();
    let raw = hex::decode(hexits).ok()?;
    let r: &[u8; 16] = raw.as_slice().try_into().ok()?;
    let mut out = vec![r[3], r[2], r[1], r[0], r[5], r[4], r[7], r[6]];
    out.extend_from_slice(&r[8..16]);
    Some(out)
}

/// What an AD bind refusal's diagnostic says about the account (`data 533`
/// disabled, `data 532`/`773` password expired or must change, `data 775`
/// locked, `data 701` account expired). AD sends these codes only when the
/// password itself was right; anything else is a wrong password.
pub(super) fn bind_refusal(diagnostic: &str) -> AccountState {
    let lower = diagnostic.to_ascii_lowercase();
    let has = |code: &str| lower.contains(&format!("data {code}"));
    if has("533") || has("775") || has("701") {
        AccountState::Disabled
    } else if has("532") || has("773") {
        AccountState::PasswordExpired
    } else {
        AccountState::Active
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guids_round_trip_in_canonical_form() {
        // The example of MS-DTYP 2.3.4.2: bytes as AD stores them.
        let bytes = [
            0x33, 0x22, 0x11, 0x00, 0x55, 0x44, 0x77, 0x66, 0x88, 0x99, 0xaa, 0xbb, 0xcc, 0xdd,
            0xee, 0xff,
        ];
        let text = guid_text(&bytes).unwrap();
        assert_eq!(text, "00112233-4455-6677-8899-aabbccddeeff");
        assert_eq!(guid_bytes(&text).unwrap(), bytes);
        assert_eq!(guid_text(&bytes[..15]), None);
        assert_eq!(guid_bytes("not-a-guid"), None);
    }

    // issue 16: AD refusals after a right password are told apart.
    #[test]
    fn ad_bind_diagnostics() {
        let check = |text: &str, expected: AccountState| {
            assert_eq!(bind_refusal(text), expected, "{text}");
        };
        let ad = |code: &str| {
            format!(
                "80090308: LdapErr: DSID-0C09044E, comment: AcceptSecurityContext error, data {code}, v4563"
            )
        };
        check(&ad("52e"), AccountState::Active);
        check(&ad("533"), AccountState::Disabled);
        check(&ad("775"), AccountState::Disabled);
        check(&ad("532"), AccountState::PasswordExpired);
        check(&ad("773"), AccountState::PasswordExpired);
        check("invalid credentials", AccountState::Active);
    }
}
