//! `[database]`: which store the CA runs on — a SQLite file (`path`, the
//! embedded default) or a PostgreSQL database shared by several replicas
//! (`url`, with the password in `password_file` and an optional `ca_file`
//! for the server's TLS certificate).

use std::path::{Path, PathBuf};
use std::str::FromStr;

use serde::Deserialize;

use super::read_private_file;
use crate::store::pg::PgOptions;

/// `[database]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDatabase {
    pub(super) path: Option<PathBuf>,
    url: Option<String>,
    password_file: Option<PathBuf>,
    ca_file: Option<PathBuf>,
    pub(super) write_deadline: Option<String>,
}

/// The configured store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DatabaseConfig {
    /// A SQLite file (`database.path`).
    Sqlite {
        /// The database file.
        path: PathBuf,
    },
    /// A PostgreSQL database (`database.url`).
    Postgres(PostgresConfig),
}

/// `database.url` and what goes with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PostgresConfig {
    /// `postgres://user@host:port/dbname?sslmode=require` (no password).
    pub url: String,
    /// The file holding the password (`database.password_file`).
    pub password_file: Option<PathBuf>,
    /// PEM CA certificates for the server's TLS certificate (`database.ca_file`).
    pub ca_file: Option<PathBuf>,
}

impl PostgresConfig {
    /// The connection options, with the password read from its file
    /// (mode 0600, owned by the CA's user).
    pub fn options(&self) -> Result<PgOptions, String> {
        let password = self
            .password_file
            .as_deref()
            .map(|p| {
                read_private_file(p)
                    .map_err(|e| format!("database.password_file {}: {e}", p.display()))
            })
            .transpose()?;
        Ok(PgOptions {
            url: self.url.clone(),
            password,
            ca_file: self.ca_file.clone(),
        })
    }
}

impl DatabaseConfig {
    /// The SQLite file, or an empty path for PostgreSQL: commands that run
    /// on SQLite only refuse an empty path with a message that names
    /// `database.url` (see `store::open`).
    pub fn sqlite_path(&self) -> PathBuf {
        match self {
            DatabaseConfig::Sqlite { path } => path.clone(),
            DatabaseConfig::Postgres(_) => PathBuf::new(),
        }
    }
}

/// Checks a PostgreSQL URL given as `what`: it parses, is `postgres://`,
/// and holds no password (that goes in the file named by `password_option`,
/// so it is never in a configuration or on a command line in clear).
pub fn check_url(url: &str, what: &str, password_option: &str) -> Result<(), String> {
    if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
        return Err(format!("{what} must start with postgres:// (PostgreSQL)"));
    }
    let parsed =
        postgres::Config::from_str(url).map_err(|e| format!("{what} cannot be parsed: {e}"))?;
    if parsed.get_password().is_some() {
        return Err(format!(
            "{what} must not hold a password; put it in a file named by {password_option} (mode 0600)"
        ));
    }
    Ok(())
}

/// Checks `[database]`: exactly one of `path` and `url`; a URL that parses,
/// is `postgres://` and holds no password; the TLS and password files only
/// with a URL. Relative paths are resolved by `resolve`.
pub(super) fn database(
    raw: &RawDatabase,
    resolve: impl Fn(&Path) -> PathBuf,
) -> Result<DatabaseConfig, String> {
    match (&raw.path, &raw.url) {
        (Some(path), None) => {
            if raw.password_file.is_some() || raw.ca_file.is_some() {
                return Err(
                    "database.password_file and database.ca_file go with database.url (PostgreSQL), not database.path".into(),
                );
            }
            Ok(DatabaseConfig::Sqlite {
                path: resolve(path),
            })
        }
        (None, Some(url)) => {
            check_url(url, "database.url", "database.password_file")?;
            Ok(DatabaseConfig::Postgres(PostgresConfig {
                url: url.clone(),
                password_file: raw.password_file.as_deref().map(&resolve),
                ca_file: raw.ca_file.as_deref().map(&resolve),
            }))
        }
        (Some(_), Some(_)) => Err(
            "database.path (SQLite) and database.url (PostgreSQL) are both set; keep one".into(),
        ),
        (None, None) => Err("[database] needs path (a SQLite file) or url (postgres://…)".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(toml_text: &str) -> Result<DatabaseConfig, String> {
        let raw: RawDatabase = toml::from_str(toml_text).map_err(|e| e.to_string())?;
        database(&raw, |p| Path::new("/etc/tpa").join(p))
    }

    #[test]
    fn path_is_sqlite_and_url_is_postgres() {
        assert_eq!(
            check("path = \"tpa.db\"").unwrap(),
            DatabaseConfig::Sqlite {
                path: "/etc/tpa/tpa.db".into()
            }
        );
        assert_eq!(
            check("url = \"postgres://tpa@db:5432/tpa?sslmode=require\"\npassword_file = \"pw\"")
                .unwrap(),
            DatabaseConfig::Postgres(PostgresConfig {
                url: "postgres://tpa@db:5432/tpa?sslmode=require".into(),
                password_file: Some("/etc/tpa/pw".into()),
                ca_file: None,
            })
        );
    }

    // issue 15: every bad [database] gets its own clear refusal.
    #[test]
    fn a_password_in_the_url_is_refused() {
        let e = check("url = \"postgres://tpa:secret@db/tpa\"").unwrap_err();
        assert!(e.contains("password_file"), "{e}");
    }

    #[test]
    fn path_and_url_together_are_refused() {
        let e = check("path = \"x\"\nurl = \"postgres://db/tpa\"").unwrap_err();
        assert!(e.contains("keep one"), "{e}");
    }

    #[test]
    fn neither_path_nor_url_is_refused() {
        let e = check("write_deadline = \"2s\"").unwrap_err();
        assert!(e.contains("path") && e.contains("url"), "{e}");
    }

    #[test]
    fn a_url_of_another_database_is_refused() {
        let e = check("url = \"mysql://db/tpa\"").unwrap_err();
        assert!(e.contains("postgres://"), "{e}");
    }

    #[test]
    fn password_file_without_url_is_refused() {
        let e = check("path = \"x\"\npassword_file = \"pw\"").unwrap_err();
        assert!(e.contains("database.url"), "{e}");
    }
}
