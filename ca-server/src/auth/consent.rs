//! The consent step of `tpa-ssh login` (loopback): once the browser's user
//! is known (an SSO callback, or a web session that already exists), the
//! verified identity is held here, bound to that web session, until the
//! person approves or denies the login on the CA's page. Only an approval
//! makes a one-time code for the CLI's loopback listener; a denial sends
//! the listener `error=access_denied`. So a link carrying someone else's
//! PKCE challenge and loopback port (on a shared machine) no longer logs
//! them in as you without you seeing what you authorise.
//!
//! A consent is single use, expires after [`CONSENT_TTL`], and only the
//! web session it was made for (same session id, same identity) can decide
//! it; its id is stored as SHA-256 only. Decisions are audited as
//! `auth.cli.approve` / `auth.cli.deny`, refused decisions as
//! `auth.cli.consent` (`denied`).

use chrono::{DateTime, TimeDelta, Utc};
use serde_json::json;
use subtle::ConstantTimeEq as _;
use tpa_core::{GroupName, User};

use crate::auth::oidc_login::{self, CliTarget};
use crate::auth::sessions::{actor, hash_token};
use crate::store::Transact;
use crate::store::audited::{Abort, Denied, write_audited};
use crate::store::cli_consents::{self, CliConsent};
use crate::store::sql::Sql;
use crate::store::{self, StoreError};
use tpa_core::audit::{NewEvent, Outcome, format_time};

/// How long a person has to approve or deny (the CLI waits 5 minutes).
pub const CONSENT_TTL: TimeDelta = TimeDelta::minutes(5);
/// Consents waiting beyond this are refused (each costs a row).
pub const MAX_WAITING: i64 = 10_000;

/// What the consent page shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Consent {
    /// The loopback port the code would be sent to.
    pub port: u16,
    /// The loopback redirect URI.
    pub redirect_uri: String,
    /// The address that opened `/cli/login`.
    pub client_source: String,
    /// When the login was started (RFC 3339 UTC).
    pub created_at: String,
    /// When the consent expires (RFC 3339 UTC).
    pub expires_at: String,
    /// The confirmation phrase of the CLI's challenge
    /// ([`tpa_core::login_phrase`]), which its terminal shows too.
    pub phrase: String,
}

/// A decided consent: where the browser goes next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decided {
    /// What was decided on.
    pub consent: Consent,
    /// Approved (a code was made) or denied.
    pub approved: bool,
    /// The loopback URL with `?code=…` or `?error=access_denied`.
    pub continue_to: String,
}

/// Why a consent cannot be shown or decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConsentRefusal {
    /// No such consent (malformed, mistyped, or purged).
    Unknown,
    /// It belongs to another web session or another user.
    OtherSession,
    /// It was not decided within [`CONSENT_TTL`].
    Expired,
    /// It was already approved or denied.
    AlreadyDecided,
}

impl ConsentRefusal {
    /// The message for the person.
    pub fn message(self) -> &'static str {
        match self {
            ConsentRefusal::Unknown | ConsentRefusal::OtherSession => {
                "This tpa-ssh login was not started in this browser session. Run `tpa-ssh login` again and open the link it prints."
            }
            ConsentRefusal::Expired => "This tpa-ssh login has expired. Run `tpa-ssh login` again.",
            ConsentRefusal::AlreadyDecided => {
                "This tpa-ssh login was already approved or denied. Run `tpa-ssh login` again if you still need to log in."
            }
        }
    }

    fn audit_reason(self) -> &'static str {
        match self {
            ConsentRefusal::Unknown => "unknown cli login consent",
            ConsentRefusal::OtherSession => "cli login consent bound to another browser session",
            ConsentRefusal::Expired => "cli login consent expired",
            ConsentRefusal::AlreadyDecided => "cli login consent already decided",
        }
    }
}

/// Holds `user`'s verified identity for the CLI login `target`, bound to the
/// web session `session_id`; returns the consent id for the page's URL, or
/// `None` when too many consents are waiting.
pub fn hold(
    conn: &mut impl Transact,
    user: &User,
    session_id: &str,
    target: &CliTarget,
    client_source: &str,
    now: DateTime<Utc>,
) -> Result<Option<String>, StoreError> {
    let id = super::sessions::random_b64::<32>();
    let groups: Vec<&str> = user.groups.iter().map(GroupName::as_str).collect();
    let row = CliConsent {
        id_hash: hash_token(&id),
        session_id: session_id.to_owned(),
        issuer: user.identity.issuer().to_owned(),
        subject: user.identity.subject().to_owned(),
        username: user.username.as_str().to_owned(),
        groups: serde_json::to_string(&groups).map_err(|e| StoreError::Corrupt(e.to_string()))?,
        redirect_uri: target.redirect_uri.clone(),
        code_challenge: target.code_challenge.clone(),
        client_source: client_source.to_owned(),
        created_at: format_time(now),
        expires_at: format_time(now + CONSENT_TTL),
        decision: None,
    };
    conn.write(|tx| {
        if cli_consents::count_waiting(tx, now)? >= MAX_WAITING {
            return Ok(None);
        }
        cli_consents::insert(tx, &row, now)?;
        Ok(Some(id))
    })
}

/// The consent `id` as `session_id` (of `user`) may see it at `now`.
pub fn lookup(
    conn: &impl Sql,
    id: &str,
    session_id: &str,
    user: &User,
    now: DateTime<Utc>,
) -> Result<Consent, Denied<ConsentRefusal>> {
    let Some(row) = find(conn, id)? else {
        return Err(Denied::Refused(ConsentRefusal::Unknown));
    };
    check(&row, session_id, user, now).map_err(Denied::Refused)?;
    Ok(consent(&row))
}

/// Approves or denies the consent `id` as `session_id` (of `user`): once,
/// before it expires, in one transaction with its audit event and (on
/// approval) the one-time code for the CLI.
pub fn decide(
    conn: &mut impl Transact,
    id: &str,
    session_id: &str,
    user: &User,
    approve: bool,
    source: &str,
    now: DateTime<Utc>,
) -> Result<Decided, Denied<ConsentRefusal>> {
    let id = id.to_owned();
    write_audited(conn, |tx| {
        let row = find(tx, &id)?;
        let object = object(row.as_ref());
        // Checked, then decided: a consent another request decided first
        // is refused like one that was already decided when found.
        let decided = match row {
            None => Err(ConsentRefusal::Unknown),
            Some(row) => match check(&row, session_id, user, now) {
                Ok(()) if cli_consents::decide(tx, &row.id_hash, approve, now)? => Ok(row),
                Ok(()) => Err(ConsentRefusal::AlreadyDecided),
                Err(refusal) => Err(refusal),
            },
        };
        let row = match decided {
            Ok(row) => row,
            Err(refusal) => {
                let reason = refusal.audit_reason();
                event(
                    tx,
                    user,
                    source,
                    "auth.cli.consent",
                    &object,
                    Outcome::Denied,
                    reason,
                    now,
                )?;
                return Err(Abort::refuse(refusal));
            }
        };
        let continue_to = if approve {
            let (code, code_row) =
                oidc_login::new_cli_code(user, &row.redirect_uri, &row.code_challenge, now)?;
            crate::store::oidc_logins::insert_cli_code(tx, &code_row, now)?;
            event(
                tx,
                user,
                source,
                "auth.cli.approve",
                &object,
                Outcome::Success,
                "tpa-ssh login approved by the user",
                now,
            )?;
            format!("{}?code={code}", row.redirect_uri)
        } else {
            event(
                tx,
                user,
                source,
                "auth.cli.deny",
                &object,
                Outcome::Denied,
                "tpa-ssh login denied by the user",
                now,
            )?;
            format!("{}?error=access_denied", row.redirect_uri)
        };
        Ok(Decided {
            consent: consent(&row),
            approved: approve,
            continue_to,
        })
    })
}

fn find(conn: &impl Sql, id: &str) -> Result<Option<CliConsent>, StoreError> {
    if id.is_empty() || id.len() > 128 {
        return Ok(None);
    }
    cli_consents::get(conn, &hash_token(id))
}

/// Deny when in doubt: the same web session, the same identity, undecided,
/// unexpired.
fn check(
    row: &CliConsent,
    session_id: &str,
    user: &User,
    now: DateTime<Utc>,
) -> Result<(), ConsentRefusal> {
    let same_session = bool::from(row.session_id.as_bytes().ct_eq(session_id.as_bytes()));
    let same_user = row.issuer == user.identity.issuer() && row.subject == user.identity.subject();
    if !same_session || !same_user {
        return Err(ConsentRefusal::OtherSession);
    }
    if row.decision.is_some() {
        return Err(ConsentRefusal::AlreadyDecided);
    }
    if row.expires_at <= format_time(now) {
        return Err(ConsentRefusal::Expired);
    }
    Ok(())
}

fn consent(row: &CliConsent) -> Consent {
    let port = reqwest::Url::parse(&row.redirect_uri)
        .ok()
        .and_then(|u| u.port())
        .unwrap_or(0);
    Consent {
        port,
        redirect_uri: row.redirect_uri.clone(),
        client_source: row.client_source.clone(),
        created_at: row.created_at.clone(),
        expires_at: row.expires_at.clone(),
        phrase: tpa_core::login_phrase(&row.code_challenge),
    }
}

fn object(row: Option<&CliConsent>) -> String {
    match row {
        Some(row) => format!(
            "cli-login:{}",
            row.id_hash.get(..16).unwrap_or(&row.id_hash)
        ),
        None => "cli-login:?".to_owned(),
    }
}

#[allow(clippy::too_many_arguments, reason = "one audit row's fields")]
fn event(
    tx: &impl Sql,
    user: &User,
    source: &str,
    action: &str,
    object: &str,
    outcome: Outcome,
    reason: &str,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    store::audit::append(
        tx,
        &NewEvent {
            time: now,
            actor: actor(user),
            source: source.to_owned(),
            action: action.to_owned(),
            object: object.to_owned(),
            outcome,
            reason: reason.to_owned(),
            details: json!({ "client": "tpa-ssh loopback" }),
        },
    )?;
    Ok(())
}
