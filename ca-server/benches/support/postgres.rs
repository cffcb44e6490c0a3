//! A private PostgreSQL server for the benchmarks: `initdb` and `postgres`
//! from the Debian package in a temporary directory, on a free 127.0.0.1
//! port, as `nobody` when we are root (PostgreSQL refuses root), with
//! password authentication so the store's `password_file` path is the one
//! measured.
//!
//! Unlike the test harness (`tests/support/postgres_server.rs`, which turns
//! `fsync` off for speed), this server keeps PostgreSQL's durable defaults:
//! `fsync = on`, `synchronous_commit = on`, `full_page_writes = on`. A
//! certificate leaves the CA only after its rows are on disk, and the
//! benchmark measures that promise, not a weaker one. The only settings
//! changed are the listener, `max_connections` and the two given to
//! [`PgServer::start`] by the caller. Stopped by its PID (fast shutdown)
//! when dropped.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail, ensure};

const USER: &str = "tpa";
const PASSWORD: &str = "tpa-bench-password";

/// One running server; stopped and removed when dropped.
#[derive(Debug)]
pub(crate) struct PgServer {
    port: u16,
    dir: tempfile::TempDir,
    postgres: Child,
    /// Ours, mode 0600, for `database.password_file`.
    password_file: PathBuf,
    next_db: u32,
}

/// The directory of the newest installed PostgreSQL's programs.
fn bin_dir() -> anyhow::Result<PathBuf> {
    let mut dirs: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .context("PostgreSQL is not installed (apt-get install postgresql)")?
        .flatten()
        .filter_map(|e| {
            let version = e.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = e.path().join("bin");
            bin.join("postgres").exists().then_some((version, bin))
        })
        .collect();
    dirs.sort();
    dirs.pop()
        .map(|(_, bin)| bin)
        .context("no /usr/lib/postgresql/*/bin/postgres (apt-get install postgresql)")
}

fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

/// `program` run as `nobody` when we are root, as ourselves otherwise.
fn unprivileged(program: &Path) -> Command {
    if is_root() {
        let mut cmd = Command::new("setpriv");
        cmd.args(["--reuid=nobody", "--regid=nogroup", "--clear-groups", "--"])
            .arg(program);
        cmd
    } else {
        Command::new(program)
    }
}

fn write_private(path: &Path, text: &str) -> anyhow::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    file.write_all(text.as_bytes())?;
    Ok(())
}

impl PgServer {
    /// Initialises and starts a server with `settings` (`name=value`, passed
    /// as `-c`) and waits until it accepts connections.
    pub(crate) fn start(settings: &[&str]) -> anyhow::Result<Self> {
        let bin = bin_dir()?;
        let dir = tempfile::Builder::new().prefix("tpa-bench-pg-").tempdir()?;
        let server_password = dir.path().join("server-password");
        std::fs::write(&server_password, format!("{PASSWORD}\n"))?;
        if is_root() {
            let status = Command::new("chown")
                .args(["-R", "nobody:nogroup"])
                .arg(dir.path())
                .status()
                .context("run chown")?;
            ensure!(status.success(), "chown {} failed", dir.path().display());
        }
        let data = dir.path().join("data");
        let out = unprivileged(&bin.join("initdb"))
            .arg("-D")
            .arg(&data)
            .args(["-U", USER, "-E", "UTF8", "--no-instructions"])
            .args(["--auth-local=trust", "--auth-host=scram-sha-256"])
            .arg(format!("--pwfile={}", server_password.display()))
            .output()
            .context("run initdb")?;
        ensure!(
            out.status.success(),
            "initdb failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let password_file = dir.path().join("client-password");
        write_private(&password_file, &format!("{PASSWORD}\n"))?;
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let log = std::fs::File::create(dir.path().join("server.log"))?;
        let mut cmd = unprivileged(&bin.join("postgres"));
        cmd.arg("-D")
            .arg(&data)
            .args(["-p", &port.to_string()])
            .arg("-k")
            .arg(dir.path())
            .args(["-c", "listen_addresses=127.0.0.1"])
            .args(["-c", "max_connections=200"]);
        for setting in settings {
            cmd.args(["-c", setting]);
        }
        // setpriv execs postgres: the child's PID is the postmaster's.
        let postgres = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .context("start postgres")?;
        let mut server = Self {
            port,
            dir,
            postgres,
            password_file,
            next_db: 0,
        };
        server.wait_ready()?;
        Ok(server)
    }

    fn wait_ready(&mut self) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(60);
        while self.connect("postgres").is_err() {
            if let Some(status) = self.postgres.try_wait()? {
                bail!("postgres exited ({status}): {}", self.log());
            }
            if Instant::now() > deadline {
                bail!(
                    "postgres did not accept connections within 60 s: {}",
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(())
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }

    fn connect(&self, dbname: &str) -> Result<postgres::Client, postgres::Error> {
        postgres::Config::new()
            .host("127.0.0.1")
            .port(self.port)
            .user(USER)
            .password(PASSWORD)
            .dbname(dbname)
            .connect_timeout(Duration::from_secs(5))
            .connect(postgres::NoTls)
    }

    /// A setting as the server runs it (`SHOW name`).
    pub(crate) fn show(&self, name: &str) -> anyhow::Result<String> {
        let mut client = self.connect("postgres")?;
        Ok(client.query_one(&format!("SHOW {name}"), &[])?.get(0))
    }

    /// With `shared_preload_libraries=pg_stat_statements` among the
    /// settings: the `limit` statements run most often since the last call
    /// (calls, mean ms, query), for profiling; empty otherwise.
    pub(crate) fn top_statements(&self, limit: i64) -> anyhow::Result<Vec<String>> {
        let mut client = self.connect("postgres")?;
        let preloaded: String = client
            .query_one("SHOW shared_preload_libraries", &[])?
            .get(0);
        if !preloaded.contains("pg_stat_statements") {
            return Ok(Vec::new());
        }
        client.batch_execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")?;
        let rows = client.query(
            "SELECT calls, mean_exec_time, left(regexp_replace(query, '\\s+', ' ', 'g'), 110)
             FROM pg_stat_statements ORDER BY calls DESC LIMIT $1",
            &[&limit],
        )?;
        client.batch_execute("SELECT pg_stat_statements_reset()")?;
        Ok(rows
            .iter()
            .map(|r| {
                let (calls, mean, query): (i64, f64, String) = (r.get(0), r.get(1), r.get(2));
                format!("{calls:>9} {mean:>8.3} ms  {query}")
            })
            .collect())
    }

    /// A fresh, empty database: its URL (without password) and the
    /// password file.
    pub(crate) fn database(&mut self) -> anyhow::Result<(String, PathBuf)> {
        let name = format!("tpa_bench_{}", self.next_db);
        self.next_db += 1;
        self.connect("postgres")?
            .batch_execute(&format!("CREATE DATABASE {name}"))?;
        Ok((
            format!(
                "postgres://{USER}@127.0.0.1:{}/{name}?sslmode=disable",
                self.port
            ),
            self.password_file.clone(),
        ))
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        // SIGINT is PostgreSQL's fast shutdown; by PID, never by name.
        if let Some(pid) = rustix::process::Pid::from_raw(self.postgres.id() as i32) {
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::INT);
        }
        let _ = self.postgres.wait();
    }
}
