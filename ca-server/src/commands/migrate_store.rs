//! `tpa-ca migrate-store --from sqlite:PATH --to postgres://…`: moves a
//! SQLite install's whole store into an empty, migrated PostgreSQL database.
//!
//! Refuses rather than guesses: the source must be at this build's schema
//! and its audit chain must verify; the target must be at this build's
//! schema and empty. Everything is copied in one PostgreSQL transaction
//! (all or nothing), from one SQLite read snapshot; before it commits, the
//! target's row counts are compared with the source's and its audit chain is
//! verified with `tpa-ca audit verify`'s verifier, and must end at the
//! source's head.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context as _, bail};

use super::audit_tools::verify_database;
use crate::config::{PostgresConfig, check_postgres_url};
use crate::store::{self, copy, pg};

/// What `migrate-store` was given.
#[derive(Debug)]
pub struct MigrateStoreArgs {
    /// `sqlite:PATH`.
    pub from: String,
    /// `postgres://user@host:port/db?…`, without a password.
    pub to: String,
    /// The file holding the target's password.
    pub to_password_file: Option<PathBuf>,
    /// PEM CA certificates for the target server's TLS certificate.
    pub to_ca_file: Option<PathBuf>,
}

/// What was copied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreCopy {
    /// Per table (foreign-key order): rows in the source, rows in the target.
    pub tables: Vec<(&'static str, i64, i64)>,
    /// Next value of each identity column (`table.column`).
    pub identities: Vec<(String, i64)>,
    /// Events in the chain verified on the target.
    pub events: i64,
    /// Its head hash.
    pub head: String,
}

pub(super) fn run(args: &MigrateStoreArgs) -> anyhow::Result<ExitCode> {
    let copied = migrate_store(args)?;
    println!("copied {} to {}", args.from, args.to);
    println!("{:<24} {:>10} {:>10}", "table", "source", "target");
    for (table, source, target) in &copied.tables {
        println!("{table:<24} {source:>10} {target:>10}");
    }
    for (column, next) in &copied.identities {
        println!("identity {column} continues at {next}");
    }
    println!(
        "audit chain verified on the target: {} events, head {}",
        copied.events, copied.head
    );
    Ok(ExitCode::SUCCESS)
}

/// Copies and verifies; see the module documentation.
pub fn migrate_store(args: &MigrateStoreArgs) -> anyhow::Result<StoreCopy> {
    let Some(path) = args.from.strip_prefix("sqlite:") else {
        bail!("--from must be sqlite:PATH, the SQLite database to copy");
    };
    check_postgres_url(&args.to, "--to", "--to-password-file").map_err(anyhow::Error::msg)?;
    let options = PostgresConfig {
        url: args.to.clone(),
        password_file: args.to_password_file.clone(),
        ca_file: args.to_ca_file.clone(),
    }
    .options()
    .map_err(|e| anyhow::anyhow!(e.replace("database.password_file", "--to-password-file")))?;

    let source = open_source(Path::new(path))?;
    let verified = match verify_database(&source).context("cannot read the source audit trail")? {
        Ok(report) => report,
        Err(b) => bail!(
            "the audit chain of {path} is broken at seq {}: {}; nothing was copied (`tpa-ca audit verify` reports the same)",
            b.seq,
            b.problem
        ),
    };

    let target = pg::connect(&options).with_context(|| {
        format!(
            "cannot connect to the database at {}; check the URL, the password file and that the server is up",
            args.to
        )
    })?;
    let version = pg::schema_version(&target).context("cannot read the target's schema version")?;
    if version != pg::PG_SCHEMA_VERSION {
        bail!(
            "the database at {} is at schema version {version}, this build's is {}; run `tpa-ca migrate --config FILE` with a [database] url naming it first",
            args.to,
            pg::PG_SCHEMA_VERSION
        );
    }
    let tx = target.begin()?;
    // No replica appends to the chain while it is being copied in.
    store::audit::lock_chain(&tx)?;
    let found = copy::non_empty_tables(&tx)?;
    if !found.is_empty() {
        let list: Vec<String> = found.iter().map(|(t, n)| format!("{t}: {n}")).collect();
        bail!(
            "the database at {} is not empty ({}); migrate-store copies into an empty, migrated database only, it never merges",
            args.to,
            list.join(", ")
        );
    }
    let mut tables = Vec::new();
    for &table in copy::TABLES {
        copy::copy_table(&source, &tx, table).with_context(|| format!("cannot copy {table}"))?;
        let (from, to) = (copy::count(&source, table)?, copy::count(&tx, table)?);
        if from != to {
            bail!("{table}: {from} rows in the source but {to} in the target; nothing was copied");
        }
        tables.push((table, from, to));
    }
    let identities = copy::reset_identities(&tx)?;
    let on_target = match verify_database(&tx).context("cannot read the copied audit trail")? {
        Ok(report) => report,
        Err(b) => bail!(
            "the copied audit chain does not verify at seq {}: {}; nothing was copied",
            b.seq,
            b.problem
        ),
    };
    if (on_target.events, &on_target.head) != (verified.events, &verified.head) {
        bail!(
            "the copied chain ends at {} events, head {}, but the source's at {}, head {}; nothing was copied",
            on_target.events,
            on_target.head,
            verified.events,
            verified.head
        );
    }
    tx.commit().context("cannot commit the copy")?;
    Ok(StoreCopy {
        tables,
        identities,
        events: on_target.events,
        head: on_target.head,
    })
}

/// Opens the SQLite source without migrating it (it must already be at this
/// build's schema) and starts the read snapshot everything is copied from.
fn open_source(path: &Path) -> anyhow::Result<rusqlite::Connection> {
    if !path.is_file() {
        bail!("{} is not a SQLite database file", path.display());
    }
    let conn = rusqlite::Connection::open_with_flags(
        path,
        rusqlite::OpenFlags::SQLITE_OPEN_READ_WRITE | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .with_context(|| format!("cannot open {}", path.display()))?;
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    let version: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .with_context(|| format!("cannot read the schema version of {}", path.display()))?;
    if version < store::SCHEMA_VERSION {
        bail!(
            "{} is at schema version {version}, this build's is {}; run `tpa-ca migrate` first",
            path.display(),
            store::SCHEMA_VERSION
        );
    }
    if version > store::SCHEMA_VERSION {
        bail!(
            "{} is at schema version {version}, newer than this build's {}; use the tpa-ca that wrote it",
            path.display(),
            store::SCHEMA_VERSION
        );
    }
    conn.execute_batch("BEGIN DEFERRED")
        .context("cannot start reading the source")?;
    Ok(conn)
}
