//! Real processes for end-to-end tests: the `tpa-ca` binary, an unprivileged-style
//! `sshd` on 127.0.0.1, the `ssh` client. Every process is killed by PID when its
//! guard drops; every wait is bounded.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

pub use tpa_testkit::{Guard, free_port, hash_password, wait_for_port};

mod api;
mod bastion;
mod demo;
mod oidc;
mod os_user;
mod replicas;
mod webdriver;

pub use api::{PW, ca_with_roles, json, login, login_alice, post, text, two_stage_ca};
pub use bastion::{
    BASTION_TOKEN, BASTION_TOKEN_SHA256, Setup, setup, setup_with, ssh, start_bastion,
};
pub use demo::{Demo, api_login, password, pending_request};
pub use oidc::start_provider;
pub use os_user::LocalUser;
pub use replicas::{Balancer, HttpReply, move_to_postgres, try_http};
pub use webdriver::{Browser, INSTALL_HINT, alice_requests_hotfix, demo_ca, http};

/// Panics with an install hint when a required program is missing.
pub fn require(program: &str, hint: &str) -> PathBuf {
    let candidates = [
        PathBuf::from(program),
        Path::new("/usr/sbin").join(program),
        Path::new("/usr/bin").join(program),
    ];
    for c in candidates.iter().filter(|c| c.is_absolute()) {
        if c.exists() {
            return c.clone();
        }
    }
    if let Ok(path) = std::env::var("PATH") {
        for dir in std::env::split_paths(&path) {
            let c = dir.join(program);
            if c.exists() {
                return c;
            }
        }
    }
    panic!("{program} not found: {hint}");
}

/// The workspace's `tpa-ca` binary, built by `cargo build --workspace` (scripts/test does this).
pub fn tpa_ca_bin() -> PathBuf {
    workspace_bin("tpa-ca", "TPA_CA_BIN")
}

/// The workspace's `tpa-bastion` binary (`TPA_BASTION_BIN` overrides the path).
pub fn tpa_bastion_bin() -> PathBuf {
    workspace_bin("tpa-bastion", "TPA_BASTION_BIN")
}

/// A binary of this workspace's target directory, or the path in `env_override`.
fn workspace_bin(name: &str, env_override: &str) -> PathBuf {
    if let Ok(p) = std::env::var(env_override) {
        return PathBuf::from(p);
    }
    // target/<profile>/deps/e2e-<hash> → target/<profile>/<name>
    let exe = std::env::current_exe().expect("current_exe");
    let bin = exe
        .parent()
        .and_then(Path::parent)
        .map(|d| d.join(name))
        .expect("target dir");
    assert!(
        bin.exists(),
        "{} does not exist: build it first with `cargo build --workspace` (./scripts/test does this)",
        bin.display()
    );
    bin
}

/// The workspace's `tpa-ssh` binary, next to `tpa-ca`.
pub fn tpa_ssh_bin() -> PathBuf {
    let bin = tpa_ca_bin().with_file_name("tpa-ssh");
    assert!(
        bin.exists(),
        "{} does not exist: build it first with `cargo build --workspace`",
        bin.display()
    );
    bin
}

/// The login name the tests log in as (the user running them).
pub fn current_login() -> String {
    let out = Command::new("id").arg("-un").output().expect("run id -un");
    String::from_utf8(out.stdout)
        .expect("utf-8 login")
        .trim()
        .to_owned()
}

/// Runs `tpa-ca` with `args` and returns its output.
pub fn tpa_ca(args: &[&str]) -> Output {
    Command::new(tpa_ca_bin())
        .args(args)
        .env("TPA_LOG", "warn")
        .output()
        .expect("run tpa-ca")
}

/// An HTTP GET; returns (status, body).
pub fn http_get(addr: SocketAddr, path: &str) -> (u16, Vec<u8>) {
    http_send(addr, "GET", path, &[], "")
}

/// A CA data directory made by `tpa-ca init`.
pub struct CaDir {
    pub dir: PathBuf,
    pub config: PathBuf,
}

impl CaDir {
    pub fn init(parent: &Path, name: &str) -> Self {
        let dir = parent.join(name);
        let out = tpa_ca(&[
            "init",
            "--data-dir",
            dir.to_str().unwrap(),
            "--listen",
            "127.0.0.1:0",
        ]);
        assert!(
            out.status.success(),
            "tpa-ca init failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let config = dir.join("tpa.toml");
        Self { dir, config }
    }

    /// `tpa-ca issue`; returns the output (stdout holds the certificate line).
    pub fn issue(&self, pubkey: &Path, extra: &[&str]) -> Output {
        let mut args = vec![
            "issue",
            "--config",
            self.config.to_str().unwrap(),
            "--pubkey",
            pubkey.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        tpa_ca(&args)
    }

    /// Issues and writes the certificate next to the key as `<key>-cert.pub`.
    pub fn issue_ok(&self, key: &UserKey, extra: &[&str]) -> PathBuf {
        let out = self.issue(&key.public, extra);
        assert!(
            out.status.success(),
            "tpa-ca issue failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        std::fs::write(&key.cert, &out.stdout).unwrap();
        key.cert.clone()
    }

    /// Starts `tpa-ca serve` on a free port and waits for it.
    pub fn serve(&self) -> RunningCa {
        self.serve_with(&[])
    }

    /// Starts `tpa-ca serve` with extra arguments (logs go to `serve.log`).
    pub fn serve_with(&self, extra: &[&str]) -> RunningCa {
        let port = free_port();
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        self.serve_at(addr, extra)
    }

    /// Starts `tpa-ca serve` on `addr` (known in advance, e.g. for an OpenID
    /// provider's redirect URI) and waits for it.
    pub fn serve_at(&self, addr: SocketAddr, extra: &[&str]) -> RunningCa {
        self.serve_logged(addr, extra, "serve.log")
    }

    /// Like [`CaDir::serve_at`], logging to `<dir>/<log>` (replicas of one
    /// configuration each keep their own log).
    pub fn serve_logged(&self, addr: SocketAddr, extra: &[&str], log: &str) -> RunningCa {
        let log = std::fs::File::create(self.dir.join(log)).unwrap();
        let child = Command::new(tpa_ca_bin())
            .args([
                "serve",
                "--config",
                self.config.to_str().unwrap(),
                "--listen",
                &addr.to_string(),
            ])
            .args(extra)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn tpa-ca serve");
        let guard = Guard { child };
        wait_for_port(addr, Duration::from_secs(20), "tpa-ca serve");
        RunningCa { addr, guard }
    }
}

pub struct RunningCa {
    pub addr: SocketAddr,
    guard: Guard,
}

impl RunningCa {
    /// Sends SIGTERM and waits (bounded) for the process to exit.
    pub fn terminate(self) -> std::process::ExitStatus {
        terminate(self.guard)
    }

    /// Kills the process with SIGKILL (a crash: no shutdown code runs) and
    /// reaps it.
    pub fn kill_hard(mut self) {
        self.guard.child.kill().expect("SIGKILL the CA");
        self.guard.child.wait().expect("reap the CA");
    }
}

/// Sends SIGTERM to a guarded process and waits up to 15 s for it to exit.
pub fn terminate(mut guard: Guard) -> std::process::ExitStatus {
    let pid = guard.child.id().to_string();
    let sent = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("run kill");
    assert!(sent.success(), "kill -TERM {pid} failed");
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if let Some(status) = guard.child.try_wait().expect("try_wait") {
            return status;
        }
        assert!(
            Instant::now() < deadline,
            "process {pid} did not exit within 15 s of SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A user key pair made with ssh-keygen.
pub struct UserKey {
    pub private: PathBuf,
    pub public: PathBuf,
    pub cert: PathBuf,
}

impl UserKey {
    pub fn generate(dir: &Path, name: &str) -> Self {
        let keygen = require(
            "ssh-keygen",
            "install openssh-client (apt-get install openssh-client)",
        );
        let private = dir.join(name);
        let out = Command::new(keygen)
            .args(["-q", "-t", "ed25519", "-N", "", "-C", "e2e", "-f"])
            .arg(&private)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "ssh-keygen failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Self {
            public: private.with_extension("pub"),
            cert: dir.join(format!("{name}-cert.pub")),
            private,
        }
    }
}

/// A real sshd on 127.0.0.1 trusting the given CA keys, and nothing else.
pub struct Sshd {
    pub port: u16,
    pub dir: PathBuf,
    known_hosts: PathBuf,
    _guard: Guard,
}

impl Sshd {
    pub fn start(dir: &Path, trusted_ca_keys: &[u8]) -> Self {
        Self::start_with_principals(dir, trusted_ca_keys, None)
    }

    /// Like [`Sshd::start`], with `AuthorizedPrincipalsFile <principals_dir>/%u`.
    pub fn start_with_principals(
        dir: &Path,
        trusted_ca_keys: &[u8],
        principals_dir: Option<&Path>,
    ) -> Self {
        Self::start_with_options(dir, trusted_ca_keys, principals_dir, None)
    }

    /// Like [`Sshd::start`], with optional `AuthorizedPrincipalsFile <dir>/%u`
    /// and `RevokedKeys <file>`.
    pub fn start_with_options(
        dir: &Path,
        trusted_ca_keys: &[u8],
        principals_dir: Option<&Path>,
        revoked_keys: Option<&Path>,
    ) -> Self {
        let sshd = require(
            "sshd",
            "install openssh-server (as root: apt-get update && apt-get install -y openssh-server), or run ./scripts/test as root",
        );
        let keygen = require("ssh-keygen", "install openssh-client");
        std::fs::create_dir_all(dir).unwrap();
        let host_key = dir.join("host_ed25519");
        let out = Command::new(keygen)
            .args(["-q", "-t", "ed25519", "-N", "", "-f"])
            .arg(&host_key)
            .output()
            .unwrap();
        assert!(out.status.success());
        let ca_file = dir.join("trusted_user_ca.pub");
        std::fs::write(&ca_file, trusted_ca_keys).unwrap();
        if is_root() {
            // sshd insists on its privilege separation directory when started as root.
            std::fs::create_dir_all("/run/sshd").expect("create /run/sshd");
        }
        let port = free_port();
        let config = dir.join("sshd_config");
        std::fs::write(
            &config,
            format!(
                "Port {port}\nListenAddress 127.0.0.1\nHostKey {hk}\nPidFile {dir}/sshd.pid\n\
                 TrustedUserCAKeys {ca}\nAuthorizedKeysFile none\nAuthorizedPrincipalsFile {principals}\n{revoked}\
                 PubkeyAuthentication yes\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n\
                 UsePAM no\nStrictModes no\nPermitRootLogin prohibit-password\nLogLevel VERBOSE\n\
                 MaxStartups 50\n",
                hk = host_key.display(),
                dir = dir.display(),
                ca = ca_file.display(),
                principals = principals_dir.map_or("none".to_owned(), |d| format!("{}/%u", d.display())),
                revoked = revoked_keys.map_or(String::new(), |f| format!("RevokedKeys {}\n", f.display())),
            ),
        )
        .unwrap();
        let log = std::fs::File::create(dir.join("sshd.log")).unwrap();
        let child = Command::new(sshd)
            .arg("-D")
            .arg("-e")
            .arg("-f")
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn sshd");
        let guard = Guard { child };
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        wait_for_port(addr, Duration::from_secs(10), "sshd");
        let host_pub = std::fs::read_to_string(host_key.with_extension("pub")).unwrap();
        let known_hosts = dir.join("known_hosts");
        std::fs::write(&known_hosts, format!("[127.0.0.1]:{port} {host_pub}")).unwrap();
        Self {
            port,
            dir: dir.to_owned(),
            known_hosts,
            _guard: guard,
        }
    }

    /// Runs `ssh login@127.0.0.1 command` with exactly this key and certificate.
    pub fn ssh(&self, key: &UserKey, login: &str, command: &str) -> Output {
        let ssh = require(
            "ssh",
            "install openssh-client (apt-get install openssh-client)",
        );
        Command::new(ssh)
            .args(["-F", "/dev/null", "-p", &self.port.to_string(), "-i"])
            .arg(&key.private)
            .arg("-o")
            .arg(format!("CertificateFile={}", key.cert.display()))
            .arg("-o")
            .arg(format!("UserKnownHostsFile={}", self.known_hosts.display()))
            .args([
                "-o",
                "StrictHostKeyChecking=yes",
                "-o",
                "IdentitiesOnly=yes",
                "-o",
                "IdentityAgent=none",
                "-o",
                "BatchMode=yes",
                "-o",
                "PasswordAuthentication=no",
                "-o",
                "ConnectTimeout=10",
                "-o",
                "LogLevel=ERROR",
                "-l",
                login,
                "127.0.0.1",
                command,
            ])
            .stdin(Stdio::null())
            .output()
            .expect("run ssh")
    }

    /// sshd's log so far (for assertions and for failure messages).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("sshd.log")).unwrap_or_default()
    }
}

pub fn is_root() -> bool {
    current_uid() == 0
}

fn current_uid() -> u32 {
    let out = Command::new("id").arg("-u").output().expect("run id -u");
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .expect("numeric uid")
}

/// Lines of a reader, for scanning logs.
pub fn lines(text: &[u8]) -> Vec<String> {
    BufReader::new(text).lines().map_while(Result::ok).collect()
}

/// How long a call to the CA may take (a slow CI machine under load).
const HTTP_TIMEOUT: Duration = Duration::from_secs(40);

/// One HTTP request (tpa-testkit's reqwest client); returns (status, body).
pub fn http_send(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, Vec<u8>) {
    let response = tpa_testkit::http_send_blocking(addr, method, path, headers, body, HTTP_TIMEOUT);
    (response.status, response.bytes)
}
