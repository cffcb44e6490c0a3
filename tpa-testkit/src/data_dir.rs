//! The data-directory builder: `tpa-ca init` into a temporary directory
//! (config, CA key, database), then accounts and config edits, and plain
//! views of what it holds.

use std::path::{Path, PathBuf};

use ca_server::commands::{InitOptions, init_data_dir};
use ca_server::config::{Config, DatabaseConfig};
use ca_server::signer::Signer;
use ca_server::store::engine::Conn;
use ca_server::store::sql::Engine;
use ca_server::store::{self, Create};
use tempfile::TempDir;

use crate::conn::TestConn;
use crate::keys::hash_password;

/// A data directory created by `tpa-ca init` in a temporary directory.
#[derive(Debug)]
pub struct DataDir {
    /// Removed (with everything below it) on drop.
    pub tmp: TempDir,
    /// The data directory itself (`tmp/ca`).
    pub dir: PathBuf,
    /// `dir/tpa.toml`.
    pub config_path: PathBuf,
    /// The loaded configuration.
    pub config: Config,
}

impl DataDir {
    /// `init_data_dir` into a fresh temporary directory, listening on port 0.
    pub fn new() -> Self {
        Self::with_passphrase(None)
    }

    /// Like [`DataDir::new`], with the CA key encrypted under `passphrase`.
    pub fn with_passphrase(passphrase: Option<&str>) -> Self {
        Self::create(tempfile::tempdir().unwrap(), passphrase, requested())
    }

    /// Like [`DataDir::new`], in a temporary directory under `parent` (a
    /// small file system, for instance).
    pub fn new_in(parent: &Path) -> Self {
        Self::create(tempfile::tempdir_in(parent).unwrap(), None, requested())
    }

    /// A data directory on SQLite whatever `TPA_TEST_ENGINE` asks: for the
    /// tests of what only SQLite has (its file, its lock, its WAL), which
    /// say so where they call this.
    pub fn sqlite() -> Self {
        Self::create(tempfile::tempdir().unwrap(), None, Engine::Sqlite)
    }

    /// Like [`DataDir::sqlite`], under `parent` (a small file system).
    pub fn sqlite_in(parent: &Path) -> Self {
        Self::create(tempfile::tempdir_in(parent).unwrap(), None, Engine::Sqlite)
    }

    /// The one place a test's data directory and database are made: every
    /// constructor, and so every `TestApp` and `Fixture`, comes through here.
    /// The engine is chosen here: SQLite, or PostgreSQL with
    /// `TPA_TEST_ENGINE=postgres` (issue 15).
    fn create(tmp: TempDir, passphrase: Option<&str>, engine: Engine) -> Self {
        let passphrase_file = passphrase.map(|p| {
            let path = tmp.path().join("ca_key.passphrase");
            write_private(&path, p.as_bytes());
            path
        });
        let dir = tmp.path().join("ca");
        let config_path = init_data_dir(&InitOptions {
            data_dir: dir.clone(),
            passphrase_file,
            listen: "127.0.0.1:0".parse().unwrap(),
        })
        .unwrap();
        if engine == Engine::Postgres {
            let config = Config::load(&config_path).unwrap();
            let section = crate::engine::move_to_postgres(&config.database_path);
            let text = std::fs::read_to_string(&config_path).unwrap();
            std::fs::write(
                &config_path,
                text.replace(ca_server::config::SQLITE_DATABASE, &section),
            )
            .unwrap();
        }
        let config = Config::load(&config_path).unwrap();
        Self {
            tmp,
            dir,
            config_path,
            config,
        }
    }

    /// Moves the store onto a PostgreSQL database of its own (a fresh one
    /// on the harness server), unless `TPA_TEST_ENGINE=postgres` put it
    /// there already: for tests of what PostgreSQL does (issue 15). Blocking
    /// (run it with `block_in_place` inside an async test).
    pub fn move_to_postgres(&mut self) {
        if let DatabaseConfig::Sqlite { path } = &self.config.database {
            let section = crate::engine::move_to_postgres(path);
            self.edit_config(|text| text.replace(ca_server::config::SQLITE_DATABASE, &section));
        }
    }

    /// A plain client to the data directory's PostgreSQL database, as an
    /// operator with psql (or an attacker with the password) would hold it.
    /// Blocking: call it off any async runtime's threads.
    pub fn postgres_client(&self) -> postgres::Client {
        let DatabaseConfig::Postgres(pg) = &self.config.database else {
            panic!("the data directory is on SQLite");
        };
        let options = pg.options().unwrap();
        let mut config: postgres::Config = pg.url.parse().unwrap();
        if let Some(password) = &options.password {
            config.password(password);
        }
        config.connect(postgres::NoTls).unwrap()
    }

    /// Rewrites `tpa.toml` with `edit` and reloads it.
    pub fn edit_config(&mut self, edit: impl FnOnce(String) -> String) {
        let text = std::fs::read_to_string(&self.config_path).unwrap();
        std::fs::write(&self.config_path, edit(text)).unwrap();
        self.config = Config::load(&self.config_path).unwrap();
    }

    /// Appends the brief's two roles (`EXAMPLE_ROLES`) and reloads.
    pub fn add_example_roles(&mut self) {
        self.edit_config(|text| format!("{text}{}", ca_server::config::EXAMPLE_ROLES));
    }

    /// Appends an `[[accounts]]` entry (password hashed with argon2id) and reloads.
    pub fn add_account(&mut self, username: &str, password: &str, groups: &[&str]) {
        self.add_account_named(username, None, password, groups);
    }

    /// Like [`DataDir::add_account`], with a display name.
    pub fn add_account_named(
        &mut self,
        username: &str,
        display_name: Option<&str>,
        password: &str,
        groups: &[&str],
    ) {
        let hash = hash_password(password);
        let display = display_name
            .map(|d| format!("display_name = {}\n", serde_json::Value::from(d)))
            .unwrap_or_default();
        let groups = serde_json::Value::from(groups.to_vec());
        self.edit_config(|text| {
            format!(
                "{text}\n[[accounts]]\nusername = \"{username}\"\n{display}password_hash = \"{hash}\"\ngroups = {groups}\n"
            )
        });
    }

    /// Appends one `[[accounts]]` entry per `(username, groups)`, all with
    /// one password (`approver password`), and reloads: the accounts a
    /// workflow test's approvers must exist as, since approvals are
    /// re-checked against current accounts at issuance.
    pub fn add_accounts(&mut self, accounts: &[(&str, &[&str])]) {
        let hash = hash_password("approver password");
        self.edit_config(|mut text| {
            for (username, groups) in accounts {
                let groups = serde_json::Value::from(groups.to_vec());
                text.push_str(&format!(
                    "\n[[accounts]]\nusername = \"{username}\"\npassword_hash = \"{hash}\"\ngroups = {groups}\n"
                ));
            }
            text
        });
    }

    /// The identity connectors of the current configuration.
    pub fn identities(&self) -> ca_server::auth::identity::Identities {
        ca_server::auth::identity::Identities::from_config(&self.config).unwrap()
    }

    /// The CA private key file.
    pub fn key_path(&self) -> PathBuf {
        self.dir.join("ca_key")
    }

    /// The engine this data directory's store runs on.
    pub fn engine(&self) -> Engine {
        match self.config.database {
            DatabaseConfig::Sqlite { .. } => Engine::Sqlite,
            DatabaseConfig::Postgres(_) => Engine::Postgres,
        }
    }

    /// The SQLite database file; on PostgreSQL there is none (tests that
    /// need the file are SQLite-only and build their data directory with
    /// [`DataDir::sqlite`]).
    pub fn db_path(&self) -> PathBuf {
        match &self.config.database {
            DatabaseConfig::Sqlite { path } => path.clone(),
            DatabaseConfig::Postgres(_) => {
                panic!("this data directory's store is PostgreSQL: it has no SQLite file")
            }
        }
    }

    /// `ca_key.pub` as `init` wrote it.
    pub fn ca_public_key(&self) -> String {
        std::fs::read_to_string(self.dir.join("ca_key.pub")).unwrap()
    }

    /// The signer, loaded as `serve` loads it.
    pub fn signer(&self) -> Signer {
        Signer::load(&self.config.ca).unwrap()
    }

    /// A connection to the store as the CA opens it (SQLite: PRAGMAs and
    /// migrations), on whichever engine it runs; usable from sync and
    /// async tests (see [`TestConn`]).
    pub fn open_store(&self) -> TestConn {
        TestConn::new(off_runtime(|| match &self.config.database {
            DatabaseConfig::Sqlite { path } => {
                Conn::Sqlite(store::open(path, Create::Never).unwrap())
            }
            DatabaseConfig::Postgres(pg) => Conn::Postgres(Box::new(
                store::pg::connect(&pg.options().unwrap()).expect("connect to the test PostgreSQL"),
            )),
        }))
    }

    /// A plain connection, as an attacker or an operator with `sqlite3` or
    /// `psql` would open it: no PRAGMAs, no migrations.
    pub fn open_plain(&self) -> TestConn {
        match &self.config.database {
            DatabaseConfig::Sqlite { path } => {
                TestConn::new(Conn::Sqlite(rusqlite::Connection::open(path).unwrap()))
            }
            DatabaseConfig::Postgres(_) => self.open_store(),
        }
    }

    /// The store as `serve` opens it (a SQLite writer and one reader, or a
    /// small PostgreSQL pool), for the loops a test runs without a server.
    pub fn database(&self) -> store::Database {
        off_runtime(|| match &self.config.database {
            DatabaseConfig::Sqlite { path } => store::Database::open_sqlite(path, 1).unwrap(),
            DatabaseConfig::Postgres(pg) => {
                store::Database::open_postgres(pg.options().unwrap(), 2).unwrap()
            }
        })
    }

    /// Runs `f` with a fresh connection on a thread of its own: for what an
    /// async test does with a write transaction (the workflow's use cases),
    /// which the PostgreSQL client cannot run inside the test's runtime.
    pub fn blocking<T: Send>(&self, f: impl FnOnce(&mut TestConn) -> T + Send) -> T {
        std::thread::scope(|s| {
            s.spawn(|| f(&mut self.open_store()))
                .join()
                .expect("the store thread")
        })
    }

    /// The file names in the data directory, sorted.
    pub fn listing(&self) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(&self.dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }
}

/// The engine `TPA_TEST_ENGINE` asks for (SQLite unless `postgres`).
fn requested() -> Engine {
    if crate::engine::postgres_requested() {
        Engine::Postgres
    } else {
        Engine::Sqlite
    }
}

/// Runs `f` here, or on a thread of its own inside a tokio runtime (where
/// the synchronous PostgreSQL client must not block).
fn off_runtime<T: Send>(f: impl FnOnce() -> T + Send) -> T {
    if tokio::runtime::Handle::try_current().is_err() {
        return f();
    }
    std::thread::scope(|s| s.spawn(f).join().expect("the store thread"))
}

impl Default for DataDir {
    fn default() -> Self {
        Self::new()
    }
}

/// Writes a file with mode 0600 (what the CA demands of secrets).
pub fn write_private(path: &Path, bytes: &[u8]) {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::write(path, bytes).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
}

/// Sets a file's or directory's permission bits.
pub fn chmod(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}
