//! LDAP and Active Directory connectors (`[[ldap]]`): password login by
//! searching the user with the service account and binding as the entry
//! found on a separate connection, and the user's groups re-read live (with
//! a short cache) for every decision and issuance.
//!
//! The identity is (the directory URL + `user_base`, the entry's stable id:
//! `entryUUID`, AD `objectGUID`), never the DN or the username text.

mod conn;
mod entry;
pub mod filter;
mod groups;
mod login;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use ldap3::{Scope, SearchEntry, SearchOptions};
use tpa_core::{Identity, User, Username};

pub use entry::AccountState;
pub use groups::{DirectoryGroup, mapped};

use crate::config::LdapConfig;
use conn::{Conn, DirectoryRuntime, Pool, connect, within};
use entry::UserEntry;

/// Why a directory operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LdapError {
    /// The password is empty: refused before any bind (an empty password is
    /// an "unauthenticated bind" that many servers accept).
    #[error("empty password refused before any bind")]
    EmptyPassword,
    /// The password holds a NUL byte or is too long: refused before any bind.
    #[error("password refused before any bind (NUL byte or over the length limit)")]
    BadPassword,
    /// The username is empty, too long or holds control characters.
    #[error("username refused before any search (empty, too long or control characters)")]
    BadUsername,
    /// No entry matches the username.
    #[error("no directory entry matches the username")]
    NotFound,
    /// Several entries match the username: nobody is logged in.
    #[error("several directory entries match the username")]
    Ambiguous,
    /// The directory refused the password.
    #[error("the directory refused the password")]
    WrongPassword,
    /// The account is disabled or locked in the directory.
    #[error("the directory account is disabled or locked")]
    AccountDisabled,
    /// The account's password expired.
    #[error("the directory password has expired")]
    PasswordExpired,
    /// The entry cannot be a TPA user (no stable id, bad username, …).
    #[error("the directory entry cannot be used: {0}")]
    Unusable(String),
    /// The directory cannot be reached or answered wrongly (timeout, TLS,
    /// referral, refused StartTLS, service account refused).
    #[error("{0}")]
    Unavailable(String),
}

/// A login (or a live re-read) through a directory.
#[derive(Debug, Clone)]
pub struct LdapLogin {
    /// The user: identity (directory, stable id), username, mapped groups.
    pub user: User,
    /// The entry's `mail`: maintained by the directory's administrators,
    /// so TPA treats it as a verified address (like OIDC's `email` with
    /// `email_verified`).
    pub verified_email: Option<String>,
    /// The entry's DN (for `tpa-ca ldap test` and logs; never the identity).
    pub dn: String,
    /// The directory groups found, before mapping.
    pub directory_groups: Vec<DirectoryGroup>,
}

/// One configured directory.
pub struct LdapConnector {
    /// Its configuration.
    pub config: LdapConfig,
    inner: Arc<Inner>,
    runtime: DirectoryRuntime,
}

impl std::fmt::Debug for LdapConnector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LdapConnector")
            .field("name", &self.config.name)
            .field("issuer", &self.inner.issuer)
            .finish_non_exhaustive()
    }
}

struct Inner {
    config: LdapConfig,
    issuer: String,
    tls: Option<Arc<rustls::ClientConfig>>,
    pool: Pool,
    /// Live re-reads by subject, with when they were read.
    cache: Mutex<HashMap<String, (Instant, Option<LdapLogin>)>>,
}

impl LdapConnector {
    /// A connector; reads the pinned CA file. Does not contact the directory.
    pub fn new(config: LdapConfig) -> Result<Self, String> {
        let tls = conn::tls_config(&config)?;
        let issuer = format!("{}/{}", config.url, config.user_base);
        Identity::new(&issuer, "probe").map_err(|e| e.to_string())?;
        Ok(Self {
            runtime: DirectoryRuntime::new(&config.name)?,
            inner: Arc::new(Inner {
                pool: Pool::new(config.pool_size),
                config: config.clone(),
                issuer,
                tls,
                cache: Mutex::new(HashMap::new()),
            }),
            config,
        })
    }

    /// Tasks alive on this connector's runtime (idle pooled connections
    /// each keep one): tests check that timeouts leave none behind. Its
    /// threads are fixed (one worker, threads named `tpa-ldap-<name>`).
    pub fn alive_tasks(&self) -> usize {
        self.runtime.alive_tasks()
    }

    /// The identity issuer of this directory's users: URL + `/` + user base.
    pub fn issuer(&self) -> &str {
        &self.inner.issuer
    }

    /// Password login: checks the input before any network step, finds the
    /// one entry of `username` with the service account, binds as that
    /// entry on a new connection, then reads the groups.
    pub async fn login(&self, username: &str, password: &str) -> Result<LdapLogin, LdapError> {
        login::check_input(username, password)?;
        let inner = self.inner.clone();
        let (username, password) = (username.to_owned(), password.to_owned());
        self.runtime
            .run(async move { login::login(&inner, &username, Some(&password)).await })
            .await
    }

    /// The entry and groups of `username` without a password (`tpa-ca ldap test`).
    pub async fn lookup(&self, username: &str) -> Result<LdapLogin, LdapError> {
        login::check_username(username)?;
        let inner = self.inner.clone();
        let username = username.to_owned();
        self.runtime
            .run(async move { login::login(&inner, &username, None).await })
            .await
    }

    /// The user of `subject` as the directory says now (`None`: gone or
    /// disabled), reused for `groups_cache`. `Err` when the directory
    /// cannot be asked: decisions must then fail closed.
    pub async fn current(&self, subject: &str) -> Result<Option<LdapLogin>, LdapError> {
        if let Some(hit) = self.cached(subject) {
            return Ok(hit);
        }
        let inner = self.inner.clone();
        let subject = subject.to_owned();
        self.runtime
            .run(async move { login::reread(&inner, &subject).await })
            .await
    }

    /// [`LdapConnector::current`] for synchronous callers (blocks the thread).
    pub fn current_blocking(&self, subject: &str) -> Result<Option<LdapLogin>, LdapError> {
        if let Some(hit) = self.cached(subject) {
            return Ok(hit);
        }
        let inner = self.inner.clone();
        let subject = subject.to_owned();
        self.runtime
            .run_blocking(async move { login::reread(&inner, &subject).await })
    }

    fn cached(&self, subject: &str) -> Option<Option<LdapLogin>> {
        let ttl = self.config.groups_cache;
        let cache = self.inner.cache.lock().unwrap_or_else(|p| p.into_inner());
        cache
            .get(subject)
            .filter(|(at, _)| at.elapsed() < ttl)
            .map(|(_, v)| v.clone())
    }

    /// Whether the directory answers now: a service-account bind and a
    /// base read of `user_base` (for `/healthz`).
    pub async fn check(&self) -> Result<(), LdapError> {
        let inner = self.inner.clone();
        self.runtime
            .run(async move {
                let mut conn = inner.service().await?;
                let result = within(
                    inner.config.timeout,
                    "reading user_base",
                    conn.ldap.search(
                        &inner.config.user_base,
                        Scope::Base,
                        "(objectClass=*)",
                        vec!["1.1"],
                    ),
                )
                .await;
                let result = match result {
                    Ok(r) => r,
                    Err(e) => {
                        inner.pool.clear();
                        return Err(e);
                    }
                };
                check_result(&result.1, "reading user_base")?;
                inner.pool.put(conn);
                Ok(())
            })
            .await
    }
}

impl Inner {
    /// A service-account connection: a kept one, or a new one bound with
    /// `bind_dn` (anonymous when only `user_dn_template` is set).
    async fn service(&self) -> Result<Conn, LdapError> {
        if let Some(conn) = self.pool.take() {
            return Ok(conn);
        }
        let mut conn = connect(&self.config, self.tls.as_ref()).await?;
        if let (Some(dn), Some(password)) = (&self.config.bind_dn, &self.config.bind_password) {
            let result = within(
                self.config.timeout,
                "binding as the service account",
                conn.ldap.simple_bind(dn, password),
            )
            .await?;
            if result.rc != 0 {
                return Err(LdapError::Unavailable(format!(
                    "the directory refused the service account bind_dn (rc={}); check bind_dn and bind_password_file",
                    result.rc
                )));
            }
        }
        Ok(conn)
    }

    /// Searches `filter` under `user_base` for at most two user entries.
    async fn find_users(&self, conn: &mut Conn, filter: &str) -> Result<Vec<UserEntry>, LdapError> {
        let attrs = entry::attributes(&self.config);
        let result = within(
            self.config.timeout,
            "searching the user",
            conn.ldap
                .with_search_options(SearchOptions::new().sizelimit(2))
                .search(&self.config.user_base, Scope::Subtree, filter, attrs),
        )
        .await?;
        let entries: Vec<SearchEntry> = result
            .0
            .into_iter()
            .filter(|e| !groups::is_reference(e))
            .map(SearchEntry::construct)
            .collect();
        // sizeLimitExceeded: more than one entry matched.
        if result.1.rc == 4 {
            return Err(LdapError::Ambiguous);
        }
        check_result(&result.1, "searching the user")?;
        entries
            .iter()
            .map(|e| {
                entry::read(e, &self.config).ok_or_else(|| {
                    LdapError::Unusable(format!(
                        "entry {} has no usable {}",
                        e.dn, self.config.id_attribute
                    ))
                })
            })
            .collect()
    }

    fn remember(&self, subject: &str, value: Option<LdapLogin>) {
        if self.config.groups_cache.is_zero() {
            return;
        }
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        // Bounded: entries older than the cache time are useless.
        if cache.len() > 10_000 {
            let ttl = self.config.groups_cache;
            cache.retain(|_, (at, _)| at.elapsed() < ttl);
        }
        cache.insert(subject.to_owned(), (Instant::now(), value));
    }

    fn user_of(
        &self,
        entry: &UserEntry,
        groups: Vec<DirectoryGroup>,
    ) -> Result<LdapLogin, LdapError> {
        let raw = entry.username.as_deref().ok_or_else(|| {
            LdapError::Unusable(format!(
                "entry {} has no {}",
                entry.dn, self.config.username_attribute
            ))
        })?;
        let username = Username::parse(raw).map_err(|e| {
            LdapError::Unusable(format!(
                "{} of {} is not a TPA username: {e}",
                self.config.username_attribute, entry.dn
            ))
        })?;
        let identity = Identity::new(&self.issuer, &entry.id)
            .map_err(|e| LdapError::Unusable(e.to_string()))?;
        let display_name = entry
            .display_name
            .as_deref()
            .and_then(super::claims::display_name)
            .unwrap_or_else(|| username.as_str().to_owned());
        Ok(LdapLogin {
            user: User {
                identity,
                username,
                display_name,
                groups: mapped(&self.config, &groups),
            },
            verified_email: entry.mail.clone(),
            dn: entry.dn.clone(),
            directory_groups: groups,
        })
    }
}

/// Turns a non-success result into an error; a referral is named, never followed.
fn check_result(result: &ldap3::LdapResult, step: &str) -> Result<(), LdapError> {
    match result.rc {
        0 => Ok(()),
        10 => Err(LdapError::Unavailable(format!(
            "the directory answered {step} with a referral to {}; TPA does not follow \
             referrals: point url at the server that holds the base",
            result.refs.join(", ")
        ))),
        rc => Err(LdapError::Unavailable(format!(
            "the directory refused {step} (rc={rc}: {})",
            result.text
        ))),
    }
}
