//! `tpa-ca migrate`: brings the configured database's schema up to this
//! build, on SQLite or PostgreSQL, and says what it did. Safe to run from
//! several hosts at once (PostgreSQL migrations hold an advisory lock).

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context as _;

use crate::config::{Config, DatabaseConfig};
use crate::store::{self, Create};

pub(super) fn run(config: &Path) -> anyhow::Result<ExitCode> {
    let config = Config::load(config)?;
    match &config.database {
        DatabaseConfig::Sqlite { path } => {
            let before = sqlite_version(path)?;
            drop(store::open(path, Create::Never).context("cannot open the database")?);
            report(&path.display().to_string(), before, store::SCHEMA_VERSION);
        }
        DatabaseConfig::Postgres(pg) => {
            let options = pg.options().map_err(anyhow::Error::msg)?;
            let mut conn = store::pg::connect(&options)
                .with_context(|| format!("cannot connect to the database at {}", pg.url))?;
            let before =
                store::pg::schema_version(&conn).context("cannot read the schema version")?;
            store::pg::migrate(&mut conn).context("cannot migrate the database")?;
            report(&pg.url, before, store::pg::PG_SCHEMA_VERSION);
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn sqlite_version(path: &Path) -> anyhow::Result<i64> {
    store::sqlite_only(path)?;
    let conn =
        rusqlite::Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .with_context(|| {
                format!(
                    "cannot open {}; run `tpa-ca init` or fix database.path",
                    path.display()
                )
            })?;
    conn.query_row("PRAGMA user_version", [], |r| r.get(0))
        .context("cannot read the schema version")
}

fn report(database: &str, before: i64, after: i64) {
    if before == after {
        println!("{database}: schema version {after}, up to date");
    } else {
        println!("{database}: migrated from schema version {before} to {after}");
    }
}
