//! Which database engine a test's data directory uses: SQLite (the default)
//! or, with `TPA_TEST_ENGINE=postgres`, a fresh PostgreSQL database per
//! data directory on the harness server, so that the same suite runs on
//! both engines (issue 15).

use std::path::Path;

use ca_server::commands::{MigrateStoreArgs, migrate_store};
use ca_server::store::pg::{self, PgOptions};

use crate::postgres_server::{PgDatabase, PgServer};

/// Whether this test run asked for PostgreSQL.
pub fn postgres_requested() -> bool {
    std::env::var("TPA_TEST_ENGINE").is_ok_and(|e| e == "postgres")
}

/// Moves the fresh SQLite store at `sqlite` (as `init` made it) into a new
/// database on the shared PostgreSQL test server (see [`move_to_postgres_on`])
/// and returns the `[database]` body naming it.
pub fn move_to_postgres(sqlite: &Path) -> String {
    // The shared server starts (and is first reached with the blocking
    // client) off any async runtime: data directories are made inside async
    // tests, where that client cannot run.
    let server = std::thread::scope(|s| {
        s.spawn(PgServer::shared)
            .join()
            .expect("start the PostgreSQL test server")
    });
    move_to_postgres_on(server, sqlite).1
}

/// Moves the fresh SQLite store at `sqlite` into a new database on `server`
/// with `migrate-store` and deletes the SQLite file; returns the database
/// and the `[database]` body naming it. Runs on a thread of its own: the
/// PostgreSQL client must not block an async runtime's thread, and data
/// directories are made inside async tests.
pub fn move_to_postgres_on(server: &PgServer, sqlite: &Path) -> (PgDatabase, String) {
    std::thread::scope(|s| {
        s.spawn(|| {
            let db = server.database();
            let options = PgOptions {
                url: db.url.clone(),
                password: Some(db.password.clone()),
                ca_file: None,
            };
            pg::migrate(&mut pg::connect(&options).expect("connect to the test PostgreSQL"))
                .expect("migrate the test PostgreSQL database");
            migrate_store(&MigrateStoreArgs {
                from: format!("sqlite:{}", sqlite.display()),
                to: db.url.clone(),
                to_password_file: Some(db.password_file.clone()),
                to_ca_file: None,
            })
            .expect("copy the fresh store into PostgreSQL");
            std::fs::remove_file(sqlite).expect("remove the SQLite file");
            let section = format!(
                "url = {:?}\npassword_file = {:?}",
                db.url,
                db.password_file.display().to_string()
            );
            (db, section)
        })
        .join()
        .expect("the PostgreSQL set-up thread")
    })
}
