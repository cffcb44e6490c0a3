//! Shared fixtures: a fresh data directory made by `init_data_dir`, a server on
//! 127.0.0.1 port 0, a minimal HTTP/1.1 client, real `ssh-keygen` keys and
//! plain-SQL views of the database.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use ca_server::commands::{InitOptions, init_data_dir};
use ca_server::config::Config;
use ca_server::server::Application;
use ca_server::signer::Signer;
use ca_server::store::{self, Create};
use ca_server::workflow::{AdminIssueInput, IssueError, Issued, admin_issue};
use chrono::{DateTime, Utc};
use ssh_key::{Algorithm, PrivateKey};
use tempfile::TempDir;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tpa_core::Username;

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
        Self::create(tempfile::tempdir().unwrap(), passphrase)
    }

    /// Like [`DataDir::new`], in a temporary directory under `parent` (a
    /// small file system, for instance).
    pub fn new_in(parent: &Path) -> Self {
        Self::create(tempfile::tempdir_in(parent).unwrap(), None)
    }

    fn create(tmp: TempDir, passphrase: Option<&str>) -> Self {
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
        let config = Config::load(&config_path).unwrap();
        Self {
            tmp,
            dir,
            config_path,
            config,
        }
    }

    /// Rewrites `tpa.toml` with `edit` and reloads it.
    pub fn edit_config(&mut self, edit: impl FnOnce(String) -> String) {
        let text = std::fs::read_to_string(&self.config_path).unwrap();
        std::fs::write(&self.config_path, edit(text)).unwrap();
        self.config = Config::load(&self.config_path).unwrap();
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
        let hash = ca_server::auth::identity::hash_password(password).unwrap();
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
    /// one password (`approver password`, hashed once per test binary), and
    /// reloads: the accounts a workflow test's approvers must exist as, since
    /// approvals are re-checked against current accounts at issuance.
    pub fn add_accounts(&mut self, accounts: &[(&str, &[&str])]) {
        static HASH: std::sync::OnceLock<String> = std::sync::OnceLock::new();
        let hash = HASH
            .get_or_init(|| ca_server::auth::identity::hash_password("approver password").unwrap());
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

    /// The SQLite database file.
    pub fn db_path(&self) -> PathBuf {
        self.config.database_path.clone()
    }

    /// `ca_key.pub` as `init` wrote it.
    pub fn ca_public_key(&self) -> String {
        std::fs::read_to_string(self.dir.join("ca_key.pub")).unwrap()
    }

    /// The signer, loaded as `serve` loads it.
    pub fn signer(&self) -> Signer {
        Signer::load(&self.config.ca).unwrap()
    }

    /// A connection as the CA opens it (PRAGMAs, migrations).
    pub fn open_store(&self) -> rusqlite::Connection {
        store::open(&self.db_path(), Create::Never).unwrap()
    }

    /// A plain connection, as an attacker or an operator with sqlite3 would open it.
    pub fn open_plain(&self) -> rusqlite::Connection {
        rusqlite::Connection::open(self.db_path()).unwrap()
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

/// A server built by `Application::build` and running on a tokio task.
#[derive(Debug)]
pub struct TestApp {
    /// Where it listens.
    pub address: SocketAddr,
    /// Its data directory.
    pub data: DataDir,
    shutdown: Option<oneshot::Sender<()>>,
    server: Option<JoinHandle<anyhow::Result<()>>>,
}

/// A server over a fresh data directory.
pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

/// A server over a fresh data directory that `prepare` may change first.
pub async fn spawn_app_with(prepare: impl FnOnce(&mut DataDir)) -> TestApp {
    spawn_app_over(DataDir::new(), prepare).await
}

/// Like [`spawn_app_with`], with the data directory under `parent`.
pub async fn spawn_app_in(parent: &Path, prepare: impl FnOnce(&mut DataDir)) -> TestApp {
    spawn_app_over(DataDir::new_in(parent), prepare).await
}

async fn spawn_app_over(mut data: DataDir, prepare: impl FnOnce(&mut DataDir)) -> TestApp {
    prepare(&mut data);
    let app = Application::build(&data.config, Some("127.0.0.1:0".parse().unwrap()))
        .await
        .unwrap();
    let address = app.local_addr().unwrap();
    assert_ne!(address.port(), 0);
    let (tx, rx) = oneshot::channel::<()>();
    let server = tokio::spawn(app.run_until_stopped(async move {
        let _ = rx.await;
    }));
    TestApp {
        address,
        data,
        shutdown: Some(tx),
        server: Some(server),
    }
}

/// A server whose address is known before its configuration is loaded:
/// `prepare` gets the data directory and the bound address (to write
/// `server.public_url`, for instance).
pub async fn spawn_app_at(prepare: impl FnOnce(&mut DataDir, SocketAddr)) -> TestApp {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    spawn_app_bound(listener, prepare).await
}

/// Like [`spawn_app_at`] on a listener the caller bound (and whose address
/// it had to give another process first).
pub async fn spawn_app_bound(
    listener: tokio::net::TcpListener,
    prepare: impl FnOnce(&mut DataDir, SocketAddr),
) -> TestApp {
    let address = listener.local_addr().unwrap();
    let mut data = DataDir::new();
    prepare(&mut data, address);
    let app = Application::build_on(&data.config, listener).await.unwrap();
    let (tx, rx) = oneshot::channel::<()>();
    let server = tokio::spawn(app.run_until_stopped(async move {
        let _ = rx.await;
    }));
    TestApp {
        address,
        data,
        shutdown: Some(tx),
        server: Some(server),
    }
}

impl TestApp {
    /// `GET path`.
    pub async fn get(&self, path: &str) -> Response {
        http_request(self.address, "GET", path).await
    }

    /// Stops the server gracefully and checks that it ended without error.
    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(server) = self.server.take() {
            tokio::time::timeout(Duration::from_secs(10), server)
                .await
                .expect("server did not stop within 10 s")
                .unwrap()
                .unwrap();
        }
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

/// An HTTP response as read off the wire.
#[derive(Debug)]
pub struct Response {
    /// Status code.
    pub status: u16,
    /// Header names (lowercase) and values.
    pub headers: Vec<(String, String)>,
    /// The body, decoded as UTF-8 (invalid bytes, as in a binary KRL, replaced).
    pub body: String,
}

impl Response {
    /// The first header named `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The body as JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("body is not JSON ({e}): {:?}", self.body))
    }
}

/// One HTTP/1.1 request with `Connection: close`, read to the end.
pub async fn http_request(address: SocketAddr, method: &str, path: &str) -> Response {
    http_send(address, method, path, &[], "").await
}

/// One HTTP/1.1 request with extra headers and a body, `Connection: close`.
pub async fn http_send(
    address: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Response {
    http_send_from(None, address, method, path, headers, body).await
}

/// Like [`http_send`], from the local address `from` (another loopback
/// address such as 127.0.0.2, so the server sees a different client).
pub async fn http_send_from(
    from: Option<std::net::IpAddr>,
    address: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Response {
    let exchange = async {
        let mut stream = match from {
            None => TcpStream::connect(address).await.unwrap(),
            Some(ip) => {
                let socket = tokio::net::TcpSocket::new_v4().unwrap();
                socket.bind(SocketAddr::new(ip, 0)).unwrap();
                socket.connect(address).await.unwrap()
            }
        };
        let extra: String = headers
            .iter()
            .map(|(n, v)| format!("{n}: {v}\r\n"))
            .collect();
        let request = format!(
            "{method} {path} HTTP/1.1\r\nHost: {address}\r\n{extra}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw).await.unwrap();
        raw
    };
    let raw = tokio::time::timeout(Duration::from_secs(10), exchange)
        .await
        .expect("no HTTP response within 10 s");
    parse_response(&raw)
}

fn parse_response(raw: &[u8]) -> Response {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("no end of headers");
    let head = std::str::from_utf8(&raw[..split]).unwrap();
    let mut body = raw[split + 4..].to_vec();
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap();
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("bad status line {status_line:?}"));
    let headers: Vec<(String, String)> = lines
        .map(|l| {
            let (n, v) = l.split_once(':').unwrap();
            (n.trim().to_ascii_lowercase(), v.trim().to_owned())
        })
        .collect();
    let chunked = headers
        .iter()
        .any(|(n, v)| n == "transfer-encoding" && v.eq_ignore_ascii_case("chunked"));
    if chunked {
        body = dechunk(&body);
    }
    Response {
        status,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    }
}

fn dechunk(mut data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let line_end = data.windows(2).position(|w| w == b"\r\n").unwrap();
        let size_text = std::str::from_utf8(&data[..line_end]).unwrap();
        let size = usize::from_str_radix(size_text.split(';').next().unwrap().trim(), 16).unwrap();
        data = &data[line_end + 2..];
        if size == 0 {
            return out;
        }
        out.extend_from_slice(&data[..size]);
        data = &data[size + 2..];
    }
}

/// Runs `ssh-keygen -q -N '' -C test@tpa -f DIR/NAME ARGS…` and returns the public key line.
pub fn ssh_keygen(dir: &Path, name: &str, args: &[&str]) -> String {
    let path = dir.join(name);
    let output = Command::new("ssh-keygen")
        .args(["-q", "-N", "", "-C", "test@tpa", "-f"])
        .arg(&path)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("ssh-keygen must be installed (Debian package openssh-client)");
    assert!(
        output.status.success(),
        "ssh-keygen {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    std::fs::read_to_string(dir.join(format!("{name}.pub"))).unwrap()
}

/// A fresh Ed25519 public key line, generated in-process.
/// Issues one certificate through the real path (`issue_batch` with one
/// job), as the HTTP handler does.
pub fn issue_one(
    conn: &mut rusqlite::Connection,
    deps: (
        &Signer,
        &tpa_core::Policy,
        &ca_server::auth::identity::Identities,
    ),
    caller: &tpa_core::User,
    id: &tpa_core::RequestId,
    public_key: &str,
    source: &str,
    now: DateTime<Utc>,
) -> Result<Issued, ca_server::workflow::requests::WorkflowError> {
    let job = ca_server::workflow::requests::IssueJob {
        caller: caller.clone(),
        id: id.clone(),
        public_key: public_key.to_owned(),
        source: source.to_owned(),
    };
    ca_server::workflow::requests::issue_batch(conn, deps, &[job], now)
        .pop()
        .expect("one answer per job")
}

pub fn ed25519_public_key() -> String {
    PrivateKey::random(&mut rand::rng(), Algorithm::Ed25519)
        .unwrap()
        .public_key()
        .to_openssh()
        .unwrap()
}

/// Input that `admin_issue` accepts: one principal, 10 minutes, one extension.
pub fn valid_input(public_key: String) -> AdminIssueInput {
    AdminIssueInput {
        public_key,
        principals: vec!["deploy".to_owned()],
        ttl: "10m".to_owned(),
        reason: "INC-4411 disk full".to_owned(),
        extensions: vec!["permit-pty".to_owned()],
        force_command: None,
        source_address: None,
    }
}

/// Number of rows in `table`.
pub fn count(conn: &rusqlite::Connection, table: &str) -> i64 {
    conn.query_row(&format!("SELECT count(*) FROM {table}"), [], |r| r.get(0))
        .unwrap()
}

/// An audit row, read with plain SQL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditRow {
    pub seq: i64,
    pub actor: String,
    pub action: String,
    pub object: String,
    pub outcome: String,
    pub reason: String,
    pub details: String,
}

/// Every audit row in seq order.
pub fn audit_rows(conn: &rusqlite::Connection) -> Vec<AuditRow> {
    let mut stmt = conn
        .prepare(
            "SELECT seq, actor, action, object, outcome, reason, details FROM audit_events ORDER BY seq",
        )
        .unwrap();
    stmt.query_map([], |r| {
        Ok(AuditRow {
            seq: r.get(0)?,
            actor: r.get(1)?,
            action: r.get(2)?,
            object: r.get(3)?,
            outcome: r.get(4)?,
            reason: r.get(5)?,
            details: r.get(6)?,
        })
    })
    .unwrap()
    .collect::<Result<_, _>>()
    .unwrap()
}

/// The `tpa-ca` binary built for these tests.
pub fn tpa_ca() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_tpa-ca"));
    cmd.stdin(Stdio::null()).env("TPA_LOG", "warn");
    cmd
}

/// Runs `cmd` to completion, killing it (and failing) after `limit`.
pub fn run_with_timeout(cmd: &mut Command, limit: Duration) -> Output {
    use std::io::Read as _;
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Drain both pipes on threads so that a chatty child never blocks on a full pipe.
    let drain = |mut pipe: Box<dyn std::io::Read + Send>| {
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            pipe.read_to_end(&mut bytes).unwrap();
            bytes
        })
    };
    let stdout = drain(Box::new(child.stdout.take().unwrap()));
    let stderr = drain(Box::new(child.stderr.take().unwrap()));
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "{cmd:?} still running after {limit:?}; stderr: {}",
                String::from_utf8_lossy(&stderr.join().unwrap())
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Output {
        status,
        stdout: stdout.join().unwrap(),
        stderr: stderr.join().unwrap(),
    }
}

/// Runs `cmd` (which must end within 30 s) and returns (exit code, stdout, stderr).
pub fn run(cmd: &mut Command) -> (i32, String, String) {
    let output = run_with_timeout(cmd, Duration::from_secs(30));
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8(output.stdout).unwrap(),
        String::from_utf8(output.stderr).unwrap(),
    )
}

/// What the in-process issuance tests need: a data directory, its signer and a
/// store connection, acting as administrator `root`.
#[derive(Debug)]
pub struct Fixture {
    /// The data directory.
    pub data: DataDir,
    /// The CA key.
    pub signer: Signer,
    /// A connection opened as the CA opens it.
    pub conn: rusqlite::Connection,
    /// The administrator the audit trail names.
    pub admin: Username,
}

impl Fixture {
    /// A fresh data directory with its signer and connection.
    pub fn new() -> Self {
        Self::over(DataDir::new())
    }

    /// A fixture over an existing data directory.
    pub fn over(data: DataDir) -> Self {
        Self {
            signer: data.signer(),
            conn: data.open_store(),
            admin: Username::parse("root").unwrap(),
            data,
        }
    }

    /// `workflow::admin_issue` now.
    pub fn issue(&mut self, input: &AdminIssueInput) -> Result<Issued, IssueError> {
        self.issue_at(input, Utc::now())
    }

    /// `workflow::admin_issue` at `now`.
    pub fn issue_at(
        &mut self,
        input: &AdminIssueInput,
        now: DateTime<Utc>,
    ) -> Result<Issued, IssueError> {
        admin_issue(
            &mut self.conn,
            &self.signer,
            &self.data.config.admin_issue,
            &self.admin,
            input,
            now,
        )
    }

    /// Issues `n` certificates for fresh keys and returns them.
    pub fn issue_many(&mut self, n: usize) -> Vec<Issued> {
        (0..n)
            .map(|_| self.issue(&valid_input(ed25519_public_key())).unwrap())
            .collect()
    }
}
