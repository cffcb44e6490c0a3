//! A real PostgreSQL server for tests: `initdb` and `postgres` from the
//! Debian package (`/usr/lib/postgresql/<version>/bin`) in a temporary
//! directory, on a free 127.0.0.1 port, as an unprivileged user (PostgreSQL
//! refuses to run as root; when the tests run as root the server runs as
//! `nobody` through `setpriv`). Password authentication over TCP, so the
//! store's `password_file` path is exercised too.
//!
//! The server runs under a small shell watchdog whose standard input is a
//! pipe from the test process: when the test process ends (however it
//! ends), the pipe closes, and the watchdog stops the server by its PID and
//! removes the directory. [`PgServer::shared`] is one server per test
//! process; each test takes a fresh database from it with
//! [`PgServer::database`]. Self-contained (std, tempfile and the `postgres`
//! client) so it can move to a shared test crate.

#![allow(dead_code, reason = "each test binary uses part of the harness")]

use std::io::Write;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

/// The superuser the harness creates, and its password.
pub const USER: &str = "tpa";
const PASSWORD: &str = "tpa-test-password";

/// One running PostgreSQL server.
#[derive(Debug)]
pub struct PgServer {
    port: u16,
    dir: PathBuf,
    bin: PathBuf,
    /// The watchdog shell and the pipe that keeps it waiting.
    watchdog: Mutex<Option<(Child, ChildStdin)>>,
    password_file: PathBuf,
}

/// A database on a [`PgServer`], fresh for one test.
#[derive(Debug, Clone)]
pub struct PgDatabase {
    /// `postgres://tpa@127.0.0.1:PORT/NAME?sslmode=disable`, without password.
    pub url: String,
    /// A file holding the password (for `database.password_file`).
    pub password_file: PathBuf,
    /// The password itself.
    pub password: String,
    /// The database name.
    pub name: String,
}

static SHARED: OnceLock<PgServer> = OnceLock::new();
static NEXT_DB: AtomicU32 = AtomicU32::new(0);

/// The directory of the newest installed PostgreSQL's programs.
fn bin_dir() -> PathBuf {
    let mut dirs: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let version = e.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = e.path().join("bin");
            bin.join("postgres").exists().then_some((version, bin))
        })
        .collect();
    dirs.sort();
    match dirs.pop() {
        Some((_, bin)) => bin,
        None => panic!(
            "PostgreSQL is not installed (no /usr/lib/postgresql/*/bin/postgres); \
             run scripts/test, or: apt-get install postgresql"
        ),
    }
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .map(|l| l.split_whitespace().nth(2) == Some("0"))
        })
        .unwrap_or(false)
}

/// The command line that runs `program` as the unprivileged user when we
/// are root (PostgreSQL refuses root), or as ourselves otherwise.
fn server_argv(program: &Path) -> Vec<std::ffi::OsString> {
    let mut argv: Vec<std::ffi::OsString> = Vec::new();
    if is_root() {
        for a in [
            "setpriv",
            "--reuid=nobody",
            "--regid=nogroup",
            "--clear-groups",
            "--",
        ] {
            argv.push(a.into());
        }
    }
    argv.push(program.into());
    argv
}

fn command(argv: Vec<std::ffi::OsString>) -> Command {
    let mut argv = argv.into_iter();
    let mut cmd = Command::new(argv.next().expect("a program"));
    cmd.args(argv);
    cmd
}

fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    listener.local_addr().expect("local address").port()
}

impl PgServer {
    /// The server shared by every test of this process (started on first use).
    pub fn shared() -> &'static PgServer {
        SHARED.get_or_init(PgServer::start)
    }

    /// Starts a server of its own (for tests that stop and restart it).
    pub fn start() -> PgServer {
        let bin = bin_dir();
        let dir = tempfile::Builder::new()
            .prefix("tpa-pg-")
            .tempdir()
            .expect("temp dir")
            .keep();
        let data = dir.join("data");
        let password_file = dir.join("password");
        std::fs::write(&password_file, format!("{PASSWORD}\n")).expect("password file");
        if is_root() {
            let status = Command::new("chown")
                .args(["-R", "nobody:nogroup"])
                .arg(&dir)
                .status()
                .expect("run chown");
            assert!(status.success(), "chown {} failed", dir.display());
        }
        let out = command(server_argv(&bin.join("initdb")))
            .arg("-D")
            .arg(&data)
            .args(["-U", USER, "-E", "UTF8", "--no-sync", "--no-instructions"])
            .args(["--auth-local=trust", "--auth-host=scram-sha-256"])
            .arg(format!("--pwfile={}", password_file.display()))
            .output()
            .expect("run initdb");
        assert!(
            out.status.success(),
            "initdb failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        // The clients' copy: ours, mode 0600, as `database.password_file`
        // must be (the server's copy belongs to the server's user).
        let client_password = dir.join("client-password");
        {
            use std::os::unix::fs::OpenOptionsExt as _;
            let mut file = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&client_password)
                .expect("client password file");
            writeln!(file, "{PASSWORD}").expect("write the client password file");
        }
        drop(password_file);
        let server = PgServer {
            port: free_port(),
            dir,
            bin,
            watchdog: Mutex::new(None),
            password_file: client_password,
        };
        server.run();
        server
    }

    /// Starts the postgres process under its watchdog and waits until it
    /// accepts connections.
    fn run(&self) {
        // The watchdog starts the server in the background and waits on our
        // pipe. A line ("stop") stops the server by its PID and keeps the
        // data for a restart; the pipe's end (the test process is gone)
        // stops it and removes the directory.
        let script = r#"
            "$@" &
            pg=$!
            if read -r _line; then eof=; else eof=1; fi
            kill -INT "$pg" 2>/dev/null
            wait "$pg"
            if [ -n "$eof" ]; then rm -rf "$TPA_PG_DIR"; fi
        "#;
        let mut cmd = Command::new("sh");
        cmd.args(["-c", script, "tpa-pg-watchdog"])
            .args(server_argv(&self.bin.join("postgres")))
            .arg("-D")
            .arg(self.dir.join("data"))
            .args(["-p", &self.port.to_string()])
            .arg("-k")
            .arg(&self.dir)
            .args(["-c", "listen_addresses=127.0.0.1"])
            .args(["-c", "fsync=off", "-c", "full_page_writes=off"])
            .args(["-c", "max_connections=300"])
            .env("TPA_PG_DIR", &self.dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::from(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(self.dir.join("server.log"))
                    .expect("server log"),
            ));
        let mut child = cmd.spawn().expect("start the postgres watchdog");
        let stdin = child.stdin.take().expect("watchdog stdin");
        *self.watchdog.lock().unwrap() = Some((child, stdin));
        self.wait_ready();
    }

    fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if self.connect("postgres").is_ok() {
                return;
            }
            if Instant::now() > deadline {
                let log = std::fs::read_to_string(self.dir.join("server.log")).unwrap_or_default();
                panic!("postgres did not accept connections within 60 s:\n{log}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Stops the server (fast shutdown, by PID) and waits for it to exit;
    /// the data directory stays for [`PgServer::restart`].
    pub fn stop(&self) {
        if let Some((mut child, mut stdin)) = self.watchdog.lock().unwrap().take() {
            let _ = stdin.write_all(b"stop\n");
            drop(stdin);
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same port and data.
    pub fn restart(&self) {
        self.stop();
        self.run();
    }

    /// The server's port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// A superuser client connected to `dbname`.
    pub fn connect(&self, dbname: &str) -> Result<postgres::Client, postgres::Error> {
        postgres::Config::new()
            .host("127.0.0.1")
            .port(self.port)
            .user(USER)
            .password(PASSWORD)
            .dbname(dbname)
            .connect_timeout(Duration::from_secs(5))
            .connect(postgres::NoTls)
    }

    /// A fresh, empty database for one test.
    pub fn database(&self) -> PgDatabase {
        let name = format!(
            "tpa_test_{}_{}",
            std::process::id(),
            NEXT_DB.fetch_add(1, Ordering::Relaxed)
        );
        let mut admin = self.connect("postgres").expect("connect as superuser");
        admin
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .expect("create database");
        PgDatabase {
            url: format!(
                "postgres://{USER}@127.0.0.1:{}/{name}?sslmode=disable",
                self.port
            ),
            password_file: self.password_file.clone(),
            password: PASSWORD.to_owned(),
            name,
        }
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
