//! Device-authorization logins for `tpa-ssh login --no-browser` (RFC 8628
//! style): the CLI starts a login and gets a secret device code plus a
//! short user code; a person logged in to the CA's web pages (through SSO or
//! a local account) enters the user code at `/device`, sees what is being
//! authorised (the CLI login, the code, the address it came from) and
//! approves or denies it; the CLI polls with its device code until it gets
//! an API token, a denial or an expiry.
//!
//! Both codes are stored as SHA-256 only. User codes are 8 letters from an
//! alphabet without vowels or look-alikes (20^8 ≈ 2.6·10^10 values), valid
//! [`DEVICE_TTL`], single use, and wrong guesses are rate-limited by the
//! caller. The device code is 32 random bytes. Every step is audited:
//! `auth.device.start`, `auth.device.approve`, `auth.device.deny`,
//! `auth.device.expire`, a person reaching the wrong-code limit as
//! `auth.device.code`, and the token itself as `auth.login`.

use chrono::{DateTime, TimeDelta, Utc};
use rand::RngExt as _;
use serde_json::json;
use tpa_core::{GroupName, HumanDuration, Identity, User, Username};

use crate::auth::sessions::{self, NewSession, actor, hash_token};
use crate::store::Transact;
use crate::store::audited::{Abort, Denied, write_audited};
use crate::store::device_logins::{self, DecidedBy, DeviceLogin, DeviceStatus};
use crate::store::sql::Sql;
use crate::store::{self, StoreError};
use tpa_core::audit::{NewEvent, Outcome, format_time};

/// How long a user code may wait for its confirmation.
pub const DEVICE_TTL: TimeDelta = TimeDelta::minutes(10);
/// The poll interval the CLI starts with, in seconds.
pub const POLL_INTERVAL_SECS: i64 = 5;
/// `slow_down` adds this many seconds to the interval, up to [`MAX_INTERVAL_SECS`].
pub const SLOW_DOWN_SECS: i64 = 5;
/// The longest interval `slow_down` asks for.
pub const MAX_INTERVAL_SECS: i64 = 60;
/// Device logins waiting beyond this are refused (each costs a row).
pub const MAX_PENDING: i64 = 10_000;
/// The letters of user codes: consonants without look-alikes (RFC 8628 §6.1).
const USER_CODE_ALPHABET: &[u8; 20] = b"BCDFGHJKLMNPQRSTVWXZ";
/// Letters in a user code.
const USER_CODE_LEN: usize = 8;

/// A started device login, as the CLI is told.
pub struct DeviceStart {
    /// The secret the CLI polls with.
    pub device_code: String,
    /// The code the person types, `XXXX-XXXX`.
    pub user_code: String,
    /// Seconds until both codes expire.
    pub expires_in: i64,
    /// Seconds between polls.
    pub interval: i64,
}

impl std::fmt::Debug for DeviceStart {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeviceStart")
            .field("device_code", &"<redacted>")
            .field("user_code", &self.user_code)
            .finish_non_exhaustive()
    }
}

/// What the confirmation page shows of a waiting login.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Waiting {
    /// The user code, `XXXX-XXXX`.
    pub user_code: String,
    /// The address `tpa-ssh` started the login from.
    pub client_source: String,
    /// When it was started (RFC 3339 UTC).
    pub created_at: String,
    /// When it expires (RFC 3339 UTC).
    pub expires_at: String,
}

/// Why a user code is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CodeRefusal {
    /// Not a code of this CA (mistyped, or malformed).
    Unknown,
    /// Its time is up.
    Expired,
    /// Already approved or denied.
    AlreadyDecided,
}

impl CodeRefusal {
    /// The message for the person.
    pub fn message(self) -> &'static str {
        match self {
            CodeRefusal::Unknown => {
                "That code is not valid. Check it against your terminal and type it again."
            }
            CodeRefusal::Expired => "That code has expired. Run `tpa-ssh login` again.",
            CodeRefusal::AlreadyDecided => {
                "That code was already used. Run `tpa-ssh login` again if you still need to log in."
            }
        }
    }
}

/// What a poll with a device code gets.
#[derive(Debug)]
pub enum Poll {
    /// Nobody has confirmed yet; poll again after the interval.
    Pending,
    /// Polled faster than the interval; the interval is now this many seconds.
    SlowDown(i64),
    /// The person denied it.
    Denied,
    /// Nobody confirmed it in time.
    Expired,
    /// Unknown, malformed or already used device code.
    Invalid,
    /// Confirmed: the API token.
    Done(NewSession),
}

/// A user code's canonical form: the 8 letters, uppercase, without the
/// dash or spaces; `None` when it cannot be one.
pub fn normalize_user_code(input: &str) -> Option<String> {
    if input.len() > 32 {
        return None;
    }
    let letters: String = input
        .chars()
        .filter(|c| !matches!(c, '-' | ' '))
        .map(|c| c.to_ascii_uppercase())
        .collect();
    let ok =
        letters.len() == USER_CODE_LEN && letters.bytes().all(|b| USER_CODE_ALPHABET.contains(&b));
    ok.then_some(letters)
}

/// `BCDFGHJK` → `BCDF-GHJK`.
fn display(code: &str) -> String {
    let (a, b) = code.split_at(code.len() / 2);
    format!("{a}-{b}")
}

fn new_user_code() -> String {
    let mut rng = rand::rng();
    (0..USER_CODE_LEN)
        .map(|_| {
            let i = rng.random_range(0..USER_CODE_ALPHABET.len());
            char::from(USER_CODE_ALPHABET.get(i).copied().unwrap_or(b'B'))
        })
        .collect()
}

/// The audit object of a login: a prefix of its device code's hash.
fn object(row_hash: &str) -> String {
    format!("device:{}", row_hash.get(..16).unwrap_or(row_hash))
}

fn waiting(row: &DeviceLogin, user_code: &str) -> Waiting {
    Waiting {
        user_code: display(user_code),
        client_source: row.client_source.clone(),
        created_at: row.created_at.clone(),
        expires_at: row.expires_at.clone(),
    }
}

#[allow(clippy::too_many_arguments, reason = "one audit event's fields")]
fn event(
    tx: &impl Sql,
    actor: String,
    source: &str,
    action: &str,
    row_hash: &str,
    outcome: Outcome,
    reason: &str,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    store::audit::append(
        tx,
        &NewEvent {
            time: now,
            actor,
            source: source.to_owned(),
            action: action.to_owned(),
            object: object(row_hash),
            outcome,
            reason: reason.to_owned(),
            details: json!({ "method": "device" }),
        },
    )?;
    Ok(())
}

/// Marks a pending login expired and audits it.
fn expire(tx: &impl Sql, row: &DeviceLogin, now: DateTime<Utc>) -> Result<(), StoreError> {
    device_logins::set_status(tx, &row.device_hash, DeviceStatus::Expired, None, now)?;
    event(
        tx,
        "anonymous".to_owned(),
        &row.client_source,
        "auth.device.expire",
        &row.device_hash,
        Outcome::Denied,
        "device login not confirmed in time",
        now,
    )
}

/// Records that `user` (at `source`) reached the wrong-code limit
/// (`auth.device.code`, denied): someone may be guessing user codes. The
/// caller records this once per limit window, so a flood writes one row.
pub fn record_code_limit(
    conn: &mut impl Transact,
    user: &User,
    source: &str,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    conn.write(|tx| {
        store::audit::append(
            tx,
            &NewEvent {
                time: now,
                actor: actor(user),
                source: source.to_owned(),
                action: "auth.device.code".to_owned(),
                object: "device:?".to_owned(),
                outcome: Outcome::Denied,
                reason: "too many wrong device codes; further attempts are not recorded until the limit resets".to_owned(),
                details: json!({ "method": "device" }),
            },
        )?;
        Ok(())
    })
}

/// Starts a device login for a CLI at `source`; `None` when too many are waiting.
pub fn start(
    conn: &mut impl Transact,
    source: &str,
    now: DateTime<Utc>,
) -> Result<Option<DeviceStart>, StoreError> {
    let device_code = super::sessions::random_b64::<32>();
    let device_hash = hash_token(&device_code);
    let expires_at = now + DEVICE_TTL;
    conn.write(|tx| {
        if device_logins::count_pending(tx, now)? >= MAX_PENDING {
            return Ok(None);
        }
        // A clash with a live user code is rare; draw again a few times.
        for _ in 0..5 {
            let user_code = new_user_code();
            let row = DeviceLogin {
                device_hash: device_hash.clone(),
                user_code_hash: hash_token(&user_code),
                client_source: source.to_owned(),
                created_at: format_time(now),
                expires_at: format_time(expires_at),
                interval_secs: POLL_INTERVAL_SECS,
                last_poll_at: None,
                status: DeviceStatus::Pending,
                issuer: None,
                subject: None,
                username: None,
                groups: None,
                display_name: None,
            };
            if device_logins::insert(tx, &row, now)? {
                event(
                    tx,
                    "anonymous".to_owned(),
                    source,
                    "auth.device.start",
                    &device_hash,
                    Outcome::Success,
                    "tpa-ssh login --no-browser started",
                    now,
                )?;
                return Ok(Some(DeviceStart {
                    device_code: device_code.clone(),
                    user_code: display(&user_code),
                    expires_in: DEVICE_TTL.num_seconds(),
                    interval: POLL_INTERVAL_SECS,
                }));
            }
        }
        Err(StoreError::Corrupt(
            "no free device user code after 5 draws".to_owned(),
        ))
    })
}

/// The waiting login of `user_code` (read only, for the confirmation page).
pub fn lookup(
    conn: &impl Sql,
    user_code: &str,
    now: DateTime<Utc>,
) -> Result<Waiting, Denied<CodeRefusal>> {
    let Some(code) = normalize_user_code(user_code) else {
        return Err(Denied::Refused(CodeRefusal::Unknown));
    };
    let Some(row) = device_logins::by_user_code(conn, &hash_token(&code))? else {
        return Err(Denied::Refused(CodeRefusal::Unknown));
    };
    check_waiting(&row, now).map_err(Denied::Refused)?;
    Ok(waiting(&row, &code))
}

fn check_waiting(row: &DeviceLogin, now: DateTime<Utc>) -> Result<(), CodeRefusal> {
    match row.status {
        DeviceStatus::Pending if row.expires_at > format_time(now) => Ok(()),
        DeviceStatus::Pending | DeviceStatus::Expired => Err(CodeRefusal::Expired),
        DeviceStatus::Approved | DeviceStatus::Denied | DeviceStatus::Done => {
            Err(CodeRefusal::AlreadyDecided)
        }
    }
}

/// `user` approves or denies the login of `user_code`, re-read in the
/// write transaction: it must still be pending and unexpired.
pub fn decide(
    conn: &mut impl Transact,
    user_code: &str,
    user: &User,
    approve: bool,
    source: &str,
    now: DateTime<Utc>,
) -> Result<Waiting, Denied<CodeRefusal>> {
    let Some(code) = normalize_user_code(user_code) else {
        return Err(Denied::Refused(CodeRefusal::Unknown));
    };
    let groups: Vec<&str> = user.groups.iter().map(GroupName::as_str).collect();
    let groups = serde_json::to_string(&groups).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    write_audited(conn, |tx| {
        let Some(row) = device_logins::by_user_code(tx, &hash_token(&code))? else {
            return Err(Abort::refuse(CodeRefusal::Unknown));
        };
        if let Err(refusal) = check_waiting(&row, now) {
            // An expiry that was due commits with the refusal.
            if row.status == DeviceStatus::Pending {
                expire(tx, &row, now)?;
            }
            return Err(Abort::refuse(refusal));
        }
        let (status, action, outcome, reason) = if approve {
            (
                DeviceStatus::Approved,
                "auth.device.approve",
                Outcome::Success,
                "device login approved by the user",
            )
        } else {
            (
                DeviceStatus::Denied,
                "auth.device.deny",
                Outcome::Denied,
                "device login denied by the user",
            )
        };
        let who = approve.then_some(DecidedBy {
            issuer: user.identity.issuer(),
            subject: user.identity.subject(),
            username: user.username.as_str(),
            display_name: user.display_name.as_str(),
            groups: groups.as_str(),
        });
        device_logins::set_status(tx, &row.device_hash, status, who, now)?;
        event(
            tx,
            actor(user),
            source,
            action,
            &row.device_hash,
            outcome,
            reason,
            now,
        )?;
        Ok(waiting(&row, &code))
    })
}

fn user_of(row: &DeviceLogin) -> Result<User, StoreError> {
    let corrupt = |what: String| StoreError::Corrupt(format!("device_logins: {what}"));
    let (Some(issuer), Some(subject), Some(username), Some(groups)) =
        (&row.issuer, &row.subject, &row.username, &row.groups)
    else {
        return Err(corrupt("approved without a user".to_owned()));
    };
    let identity = Identity::new(issuer, subject).map_err(|e| corrupt(e.to_string()))?;
    let username = Username::parse(username).map_err(|e| corrupt(e.to_string()))?;
    let names: Vec<String> = serde_json::from_str(groups).map_err(|e| corrupt(e.to_string()))?;
    let groups = names
        .iter()
        .map(|g| GroupName::parse(g))
        .collect::<Result<_, _>>()
        .map_err(|e| corrupt(e.to_string()))?;
    Ok(User {
        identity,
        display_name: crate::auth::sessions::shown_name(row.display_name.as_deref(), &username),
        username,
        groups,
    })
}

/// What a poll's transaction found: an approved login to turn into a token,
/// or the answer itself.
enum Polled {
    Approved(DeviceLogin),
    Answer(Poll),
}

/// One poll of the CLI with its device code.
pub fn poll(
    conn: &mut impl Transact,
    device_code: &str,
    ttl: HumanDuration,
    source: &str,
    now: DateTime<Utc>,
) -> Result<Poll, StoreError> {
    if device_code.is_empty() || device_code.len() > 128 {
        return Ok(Poll::Invalid);
    }
    let device_hash = hash_token(device_code);
    // Every answer commits what it wrote (an expiry, the poll time).
    let decided = conn.write(|tx| -> Result<Polled, StoreError> {
        let Some(row) = device_logins::by_device_code(tx, &device_hash)? else {
            return Ok(Polled::Answer(Poll::Invalid));
        };
        let expired = row.expires_at <= format_time(now);
        match row.status {
            DeviceStatus::Done => return Ok(Polled::Answer(Poll::Invalid)),
            DeviceStatus::Denied => return Ok(Polled::Answer(Poll::Denied)),
            DeviceStatus::Expired => return Ok(Polled::Answer(Poll::Expired)),
            DeviceStatus::Pending | DeviceStatus::Approved if expired => {
                expire(tx, &row, now)?;
                return Ok(Polled::Answer(Poll::Expired));
            }
            DeviceStatus::Approved => {
                device_logins::set_status(tx, &row.device_hash, DeviceStatus::Done, None, now)?;
                return Ok(Polled::Approved(row));
            }
            DeviceStatus::Pending => {}
        }
        let too_soon = row
            .last_poll_at
            .as_deref()
            .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
            .is_some_and(|last| {
                now - last.with_timezone(&Utc) < TimeDelta::seconds(row.interval_secs)
            });
        let interval = if too_soon {
            (row.interval_secs + SLOW_DOWN_SECS).min(MAX_INTERVAL_SECS)
        } else {
            row.interval_secs
        };
        device_logins::set_polled(tx, &row.device_hash, interval, now)?;
        Ok(Polled::Answer(if too_soon {
            Poll::SlowDown(interval)
        } else {
            Poll::Pending
        }))
    })?;
    let row = match decided {
        Polled::Approved(row) => row,
        Polled::Answer(answer) => return Ok(answer),
    };
    let user = user_of(&row)?;
    let session = sessions::create_device_token(conn, &user, ttl, source, now)?;
    Ok(Poll::Done(session))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_codes_normalise() {
        let check = |input: &str, expected: Option<&str>| {
            assert_eq!(normalize_user_code(input).as_deref(), expected, "{input}");
        };
        check("BCDF-GHJK", Some("BCDFGHJK"));
        check("bcdf-ghjk", Some("BCDFGHJK"));
        check(" BCDF GHJK ", Some("BCDFGHJK"));
        check("BCDFGHJK", Some("BCDFGHJK"));
        check("BCDF-GHJ", None);
        check("BCDF-GHJKL", None);
        check("ABCD-EFGH", None);
        check("BCDF-GHJ0", None);
        check("BCDF-GHJ\u{0130}", None);
        check(&"B".repeat(40), None);
        check("", None);
    }

    #[test]
    fn new_codes_use_the_alphabet_and_differ() {
        let a = new_user_code();
        let b = new_user_code();
        assert_eq!(
            normalize_user_code(&display(&a)).as_deref(),
            Some(a.as_str())
        );
        assert_ne!(a, b);
        assert_eq!(display("BCDFGHJK"), "BCDF-GHJK");
    }
}
