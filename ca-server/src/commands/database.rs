//! The configured store as one connection, for the admin commands that run
//! once and exit (`audit`, `issue`, `revoke`, `krl`, `report`, `policy`,
//! `config check`): a SQLite file opened (and migrated) as `serve` opens it,
//! or a PostgreSQL connection to a database at this build's schema (issue
//! 15). Commands write through [`Conn`] and the same store and workflow
//! functions as `serve`, so each runs unchanged on either engine.
//!
//! The PostgreSQL client is blocking (it runs a small runtime of its own):
//! these commands run outside any async runtime, so they may call it
//! directly.

use anyhow::Context as _;

use crate::config::{Config, DatabaseConfig};
use crate::store::{self, Conn, Create};

/// Opens the store `config` names. Blocking.
pub(super) fn open(config: &Config) -> anyhow::Result<Conn> {
    match &config.database {
        DatabaseConfig::Sqlite { path } => Ok(Conn::Sqlite(
            store::open(path, Create::Never).context("cannot open the database")?,
        )),
        DatabaseConfig::Postgres(pg) => {
            let options = pg.options().map_err(anyhow::Error::msg)?;
            let conn = store::pg::connect_current(&options).with_context(|| {
                format!(
                    "cannot open the database at {}; check the URL, the password file and that the server is up",
                    pg.url
                )
            })?;
            Ok(Conn::Postgres(Box::new(conn)))
        }
    }
}

/// Where the store is, for messages: the SQLite file or the PostgreSQL URL
/// (which never holds a password).
pub(super) fn describe(config: &Config) -> String {
    match &config.database {
        DatabaseConfig::Sqlite { path } => path.display().to_string(),
        DatabaseConfig::Postgres(pg) => pg.url.clone(),
    }
}
