//! `tpa-ca init`: a new data directory with a CA key, an audit key (signs
//! audit checkpoints), a configuration file and an empty database.

use std::fs::DirBuilder;
use std::net::SocketAddr;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context as _, bail};
use chrono::Utc;
use serde_json::json;

use crate::config::{PostgresConfig, SQLITE_DATABASE, initial_config_text, toml_string};
use crate::signer::{generate_ca_key, read_init_passphrase};
use crate::store::{self, Conn, Create};
use tpa_core::audit::{NewEvent, Outcome};

/// What `init` creates.
#[derive(Debug)]
pub struct InitOptions {
    /// The data directory.
    pub data_dir: PathBuf,
    /// Passphrase for the CA key.
    pub passphrase_file: Option<PathBuf>,
    /// The server's listen address written into the configuration.
    pub listen: SocketAddr,
}

/// Where `init` puts the store.
#[derive(Debug, Clone, Default)]
pub enum InitDatabase {
    /// `tpa.db` in the data directory.
    #[default]
    Sqlite,
    /// An existing, empty PostgreSQL database (`--database-url`), migrated
    /// here; the configuration names it instead of a file.
    Postgres(PostgresConfig),
}

pub(super) fn run(options: &InitOptions, database: &InitDatabase) -> anyhow::Result<ExitCode> {
    let config_path = init_data_dir_with(options, database)?;
    let ca_pub = std::fs::read_to_string(options.data_dir.join("ca_key.pub")).unwrap_or_default();
    println!("Initialised TPA in {}", options.data_dir.display());
    println!("  CA public key: {}", ca_pub.trim());
    println!("  configuration: {}", config_path.display());
    println!();
    println!("Next:");
    println!("  tpa-ca serve --config {}", config_path.display());
    println!(
        "  on each host: curl -o /etc/ssh/tpa_ca.pub http://{}/ca.pub",
        options.listen
    );
    println!(
        "                echo 'TrustedUserCAKeys /etc/ssh/tpa_ca.pub' >> /etc/ssh/sshd_config"
    );
    Ok(ExitCode::SUCCESS)
}

/// Creates the data directory's contents; returns the configuration path.
/// Refuses to touch a directory that already holds a key, config or database.
pub fn init_data_dir(options: &InitOptions) -> anyhow::Result<PathBuf> {
    init_data_dir_with(options, &InitDatabase::Sqlite)
}

/// [`init_data_dir`] with the store of choice. A PostgreSQL database is
/// reached, migrated and checked to hold no audit trail before anything is
/// written to the data directory.
pub fn init_data_dir_with(
    options: &InitOptions,
    database: &InitDatabase,
) -> anyhow::Result<PathBuf> {
    let postgres = match database {
        InitDatabase::Sqlite => None,
        InitDatabase::Postgres(pg) => Some(open_empty_postgres(pg)?),
    };
    let dir = &options.data_dir;
    DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("cannot create data directory {}", dir.display()))?;
    let key_path = dir.join("ca_key");
    let audit_key_path = dir.join("audit_key");
    let config_path = dir.join("tpa.toml");
    let db_path = dir.join("tpa.db");
    for existing in [&key_path, &audit_key_path, &config_path, &db_path] {
        if existing.symlink_metadata().is_ok() {
            bail!(
                "{} already exists; `init` never overwrites a CA. Use a new --data-dir, or serve the existing one with `tpa-ca serve --config {}`",
                existing.display(),
                config_path.display()
            );
        }
    }
    let passphrase = options
        .passphrase_file
        .as_deref()
        .map(read_init_passphrase)
        .transpose()
        .context("cannot use --passphrase-file")?;
    let passphrase_path = options
        .passphrase_file
        .as_deref()
        .map(|p| std::path::absolute(p).with_context(|| format!("cannot resolve {}", p.display())))
        .transpose()?;
    let public =
        generate_ca_key(&key_path, passphrase.as_deref()).context("cannot create the CA key")?;
    let public_line = public
        .to_openssh()
        .context("cannot encode the CA public key")?;
    write_new(&dir.join("ca_key.pub"), &(public_line + "\n"))?;
    crate::audit::checkpoint::generate(&audit_key_path)
        .context("cannot create the audit key (it signs audit checkpoints)")?;
    write_new(
        &config_path,
        &initial_config_text(
            options.listen,
            passphrase_path.as_deref(),
            &database_section(database),
        ),
    )?;
    let mut conn = match postgres {
        Some(conn) => conn,
        None => create_sqlite(&db_path)?,
    };
    let fingerprint = public.fingerprint(ssh_key::HashAlg::Sha256).to_string();
    record_init(&mut conn, &fingerprint, passphrase.is_some())?;
    Ok(config_path)
}

/// The `[database]` section of the configuration written.
fn database_section(database: &InitDatabase) -> String {
    match database {
        InitDatabase::Sqlite => SQLITE_DATABASE.to_owned(),
        InitDatabase::Postgres(pg) => {
            let mut text = format!("url = {}", toml_string(&pg.url));
            if let Some(file) = &pg.password_file {
                text += &format!(
                    "\npassword_file = {}",
                    toml_string(&file.display().to_string())
                );
            }
            if let Some(file) = &pg.ca_file {
                text += &format!("\nca_file = {}", toml_string(&file.display().to_string()));
            }
            text
        }
    }
}

/// A new SQLite database at `db_path`, created private first: SQLite gives
/// its -wal and -shm files the same mode.
fn create_sqlite(db_path: &Path) -> anyhow::Result<Conn> {
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(db_path)
        .with_context(|| format!("cannot create {}", db_path.display()))?;
    Ok(Conn::Sqlite(
        store::open(db_path, Create::Never).context("cannot create the database")?,
    ))
}

/// The audit trail's first event: this CA key was created.
fn record_init(conn: &mut Conn, fingerprint: &str, encrypted: bool) -> anyhow::Result<()> {
    conn.write(|tx| {
        store::audit::append(
            tx,
            &NewEvent {
                time: Utc::now(),
                actor: "system".to_owned(),
                source: "cli".to_owned(),
                action: "ca.init".to_owned(),
                object: format!("ca_key:{fingerprint}"),
                outcome: Outcome::Success,
                reason: "tpa-ca init".to_owned(),
                details: json!({ "encrypted": encrypted }),
            },
        )
    })
    .context("cannot write the first audit event")?;
    Ok(())
}

/// Connects to the PostgreSQL database, migrates it, and refuses one that
/// already holds an audit trail (`init` never overwrites a CA).
fn open_empty_postgres(pg: &PostgresConfig) -> anyhow::Result<Conn> {
    // The rule `database.url` is held to in the configuration, checked
    // before anything is reached or written.
    crate::config::check_postgres_url(&pg.url, "--database-url", "--database-password-file")
        .map_err(anyhow::Error::msg)?;
    let options = pg.options().map_err(anyhow::Error::msg)?;
    let mut conn = store::pg::connect(&options).with_context(|| {
        format!(
            "cannot connect to the database at {}; check the URL, the password file and that the server is up",
            pg.url
        )
    })?;
    store::pg::migrate(&mut conn).context("cannot migrate the database")?;
    if let Some((seq, _)) = store::audit::head(&conn)? {
        bail!(
            "the database at {} already holds an audit trail ({seq} events); `init` never overwrites a CA. Use an empty database, or point a configuration at this one",
            pg.url
        );
    }
    Ok(Conn::Postgres(Box::new(conn)))
}

fn write_new(path: &Path, text: &str) -> anyhow::Result<()> {
    use std::io::Write as _;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    file.write_all(text.as_bytes())
        .with_context(|| format!("cannot write {}", path.display()))
}
