//! The demo's target host `web-1` (OpenSSH's sshd on a free 127.0.0.1 port,
//! trusting the demo CA and its KRL) and a `tpa-bastion` in front of it: made
//! on the demo's first run when sshd is installed, started and stopped with it.

use std::io::Write as _;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _, PermissionsExt as _};
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use base64ct::{Base64UrlUnpadded, Encoding as _};
use rand::RngExt as _;
use serde::Deserialize;
use sha2::Digest as _;

use super::krl::write_atomically;
use crate::config::Config;
use crate::signer::Signer;
use crate::store::{self, Create};

/// Where the demo keeps its hosts' ports and login (`demo-hosts.toml`).
const HOSTS_FILE: &str = "demo-hosts.toml";
/// The ssh_config fragment engineers append to `~/.ssh/config`.
pub(super) const SSH_CONFIG_FILE: &str = "ssh_config";
/// The known_hosts lines of web-1 and the bastion.
const KNOWN_HOSTS_FILE: &str = "known_hosts";
/// How often the KRL file sshd reads is refreshed.
const KRL_REFRESH: Duration = Duration::from_secs(2);

/// The demo's hosts, fixed on the first run.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Hosts {
    /// web-1's sshd port on 127.0.0.1.
    pub web_1_port: u16,
    /// The bastion's port on 127.0.0.1.
    pub bastion_port: u16,
    /// The login web-1 accepts: `root` when the demo runs as root, otherwise
    /// the user running it (an sshd that is not root logs in only its own user).
    pub login: String,
}

/// The programs the hosts need.
#[derive(Debug, Clone)]
pub(super) struct Programs {
    sshd: PathBuf,
    keygen: PathBuf,
    bastion: PathBuf,
}

/// Finds sshd (`$TPA_DEMO_SSHD`, else PATH, /usr/sbin, /usr/local/sbin),
/// ssh-keygen and `tpa-bastion` (next to this `tpa-ca`); the error says what
/// to install or build.
pub(super) fn programs() -> Result<Programs, String> {
    let sshd = match std::env::var_os("TPA_DEMO_SSHD") {
        Some(p) => Some(PathBuf::from(p)).filter(|p| p.is_file()),
        None => find("sshd"),
    };
    let install = "install OpenSSH's server (Debian/Ubuntu: sudo apt-get install openssh-server; Fedora: sudo dnf install openssh-server)";
    let sshd = sshd.ok_or_else(|| format!("OpenSSH's sshd is not installed: {install}"))?;
    let keygen =
        find("ssh-keygen").ok_or_else(|| format!("ssh-keygen is not installed: {install}"))?;
    let bastion = std::env::current_exe()
        .ok()
        .map(|exe| exe.with_file_name("tpa-bastion"))
        .filter(|p| p.is_file())
        .ok_or_else(|| {
            "tpa-bastion is not next to this tpa-ca: build the whole workspace (cargo build --release --locked) and run target/release/tpa-ca demo".to_owned()
        })?;
    Ok(Programs {
        sshd,
        keygen,
        bastion,
    })
}

fn find(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/usr/local/sbin")])
        .map(|d| d.join(program))
        .find(|p| p.is_file() && p.is_absolute())
}

/// The login web-1 will accept, or why there is none.
pub(super) fn demo_login() -> anyhow::Result<String> {
    if rustix::process::geteuid().is_root() {
        return Ok("root".to_owned());
    }
    let me = std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .unwrap_or_default();
    tpa_core::Principal::parse(&me)
        .map(|p| p.as_str().to_owned())
        .with_context(|| format!("your user name {me:?} cannot be a certificate principal, so web-1 cannot log you in"))
}

/// The saved hosts, when this demo has them.
pub(super) fn load(dir: &Path) -> anyhow::Result<Option<Hosts>> {
    let path = dir.join(HOSTS_FILE);
    match std::fs::read_to_string(&path) {
        Ok(text) => toml::from_str(&text).map(Some).with_context(|| {
            format!(
                "{} is damaged; remove {} to start the demo afresh",
                path.display(),
                dir.display()
            )
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
}

/// Makes web-1's and the bastion's keys, the bastion's CA token and the
/// engineers' ssh_config fragment; returns the hosts and the TOML the CA's
/// configuration gets (`[[bastions]]` with the token's hash).
pub(super) fn create(
    dir: &Path,
    programs: &Programs,
    login: &str,
) -> anyhow::Result<(Hosts, String)> {
    let dir = std::path::absolute(dir).context("cannot resolve the demo directory")?;
    let hosts = Hosts {
        web_1_port: free_port()?,
        bastion_port: free_port()?,
        login: login.to_owned(),
    };
    for sub in ["web-1", "bastion"] {
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(dir.join(sub))
            .with_context(|| format!("cannot create {}", dir.join(sub).display()))?;
    }
    let web_1_key = keygen(programs, &dir.join("web-1/host_ed25519"))?;
    let bastion_key = keygen(programs, &dir.join("bastion/host_ed25519"))?;
    let token = Base64UrlUnpadded::encode_string(&rand::rng().random::<[u8; 32]>());
    write_private(&dir.join("bastion/ca_token"), &token)?;
    let known = format!(
        "web-1 {web_1_key}\n[127.0.0.1]:{} {web_1_key}\n[127.0.0.1]:{} {bastion_key}\n",
        hosts.web_1_port, hosts.bastion_port
    );
    write_public(&dir.join(KNOWN_HOSTS_FILE), &known)?;
    // The bastion maps web-1 to its port (its inventory), so the fragment adds
    // only what ssh cannot know: the host keys the demo made.
    let fragment = format!(
        "\n# Added from {dir}/{SSH_CONFIG_FILE} (tpa-ca demo): the host keys of the demo's\n\
         # web-1 (sshd at 127.0.0.1:{web}) and of its bastion (127.0.0.1:{bastion}, alias tpa-bastion).\n\
         Host web-1 tpa-bastion 127.0.0.1\n  UserKnownHostsFile ~/.ssh/known_hosts \"{dir}/{KNOWN_HOSTS_FILE}\"\n",
        dir = dir.display(),
        web = hosts.web_1_port,
        bastion = hosts.bastion_port,
    );
    write_public(&dir.join(SSH_CONFIG_FILE), &fragment)?;
    // The login is a principal (no quote or backslash), so this is valid TOML.
    let saved = format!(
        "# Written by tpa-ca demo on its first run.\nweb_1_port = {}\nbastion_port = {}\nlogin = \"{}\"\n",
        hosts.web_1_port, hosts.bastion_port, hosts.login
    );
    write_private(&dir.join(HOSTS_FILE), &saved)?;
    let hash = hex::encode(sha2::Sha256::digest(token.as_bytes()));
    let ca_toml = format!(
        "\n# The demo's bastion (tpa-demo/bastion), allowed to read the revocation feed\n# and to deliver session records.\n[[bastions]]\nname = \"demo-bastion\"\ntoken_hash = \"{hash}\"\n"
    );
    Ok((hosts, ca_toml))
}

fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .context("cannot find a free port on 127.0.0.1")?
        .port())
}

/// `ssh-keygen -t ed25519` into `path`; returns the public key line.
fn keygen(programs: &Programs, path: &Path) -> anyhow::Result<String> {
    let out = Command::new(&programs.keygen)
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "tpa-demo", "-f"])
        .arg(path)
        .output()
        .context("cannot run ssh-keygen")?;
    if !out.status.success() {
        bail!(
            "ssh-keygen failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let public = std::fs::read_to_string(path.with_extension("pub"))
        .with_context(|| format!("cannot read {}.pub", path.display()))?;
    Ok(public.trim().to_owned())
}

fn write_private(path: &Path, text: &str) -> anyhow::Result<()> {
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .and_then(|mut f| f.write_all(text.as_bytes()))
        .with_context(|| format!("cannot write {}", path.display()))
}

/// Readable by everyone: an engineer's account may differ from the demo's.
fn write_public(path: &Path, text: &str) -> anyhow::Result<()> {
    std::fs::write(path, text)
        .and_then(|()| std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o644)))
        .with_context(|| format!("cannot write {}", path.display()))
}

/// web-1's sshd, the bastion and the KRL refresher, stopped (by PID) on drop.
pub(super) struct Running {
    children: Vec<Child>,
    stop: Arc<AtomicBool>,
}

impl Drop for Running {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Writes the KRL and the hosts' configurations for the CA at `ca`, then
/// starts sshd and the bastion in their own process groups (so Ctrl-C reaches
/// only the demo, which stops them).
pub(super) fn start(
    dir: &Path,
    hosts: &Hosts,
    programs: &Programs,
    config: &Config,
    ca: SocketAddr,
) -> anyhow::Result<Running> {
    let dir = std::path::absolute(dir).context("cannot resolve the demo directory")?;
    let signer = Signer::load(&config.ca).context("CA key")?;
    let krl_path = dir.join("web-1/revoked.krl");
    let conn = store::open(&config.database_path, Create::Never).context("database")?;
    let ca_keys = signer.ca_key_data();
    let build = move |conn: &rusqlite::Connection| {
        crate::workflow::krl::build(conn, &ca_keys, chrono::Utc::now().timestamp())
            .map(|k| k.bytes)
            .map_err(|e| anyhow::anyhow!("cannot build the KRL: {e}"))
    };
    let mut last = build(&conn)?;
    write_atomically(&krl_path, &last)?;
    let stop = Arc::new(AtomicBool::new(false));
    let stopped = Arc::clone(&stop);
    std::thread::spawn(move || {
        while !stopped.load(Ordering::Relaxed) {
            std::thread::sleep(KRL_REFRESH);
            match build(&conn) {
                Ok(bytes) if bytes != last => match write_atomically(&krl_path, &bytes) {
                    Ok(()) => last = bytes,
                    Err(e) => {
                        tracing::warn!(error = %format!("{e:#}"), "demo: cannot refresh web-1's KRL")
                    }
                },
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(error = %format!("{e:#}"), "demo: cannot build web-1's KRL")
                }
            }
        }
    });
    let mut running = Running {
        children: Vec::new(),
        stop,
    };

    let web = dir.join("web-1");
    let sshd_config = format!(
        "# Written by tpa-ca demo on every start.\nPort {port}\nListenAddress 127.0.0.1\nHostKey {w}/host_ed25519\nPidFile {w}/sshd.pid\n\
         TrustedUserCAKeys {d}/ca_key.pub\nRevokedKeys {w}/revoked.krl\nAuthorizedKeysFile none\nAuthorizedPrincipalsFile none\n\
         PubkeyAuthentication yes\nPasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\nStrictModes no\n\
         PermitRootLogin prohibit-password\nLogLevel VERBOSE\n",
        port = hosts.web_1_port,
        w = web.display(),
        d = dir.display(),
    );
    std::fs::write(web.join("sshd_config"), sshd_config)
        .context("cannot write web-1's sshd_config")?;
    if rustix::process::geteuid().is_root() {
        // sshd insists on its privilege separation directory when started as root.
        std::fs::create_dir_all("/run/sshd").context("cannot create /run/sshd for sshd")?;
    }
    let log =
        std::fs::File::create(web.join("sshd.log")).context("cannot create web-1's sshd.log")?;
    let sshd = Command::new(&programs.sshd)
        .args(["-D", "-e", "-f"])
        .arg(web.join("sshd_config"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .process_group(0)
        .spawn()
        .with_context(|| format!("cannot start {}", programs.sshd.display()))?;
    running.children.push(sshd);

    let bastion_dir = dir.join("bastion");
    let bastion_config = format!(
        "# Written by tpa-ca demo on every start.\nlisten = \"127.0.0.1:{}\"\nhost_key_file = \"host_ed25519\"\nca_url = \"http://{ca}\"\nca_token_file = \"ca_token\"\n\n[hosts]\nweb-1 = \"127.0.0.1:{}\"\n",
        hosts.bastion_port, hosts.web_1_port
    );
    std::fs::write(bastion_dir.join("bastion.toml"), bastion_config)
        .context("cannot write the bastion's bastion.toml")?;
    let log = std::fs::File::create(bastion_dir.join("bastion.log"))
        .context("cannot create bastion.log")?;
    let bastion = Command::new(&programs.bastion)
        .args(["serve", "--config"])
        .arg(bastion_dir.join("bastion.toml"))
        .env("TPA_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .process_group(0)
        .spawn()
        .with_context(|| format!("cannot start {}", programs.bastion.display()))?;
    running.children.push(bastion);
    Ok(running)
}

/// Waits (bounded) until web-1 and the bastion accept connections; the error
/// names the log to read.
pub(super) fn wait_ready(dir: &Path, hosts: &Hosts) -> anyhow::Result<()> {
    for (what, port, log) in [
        ("web-1's sshd", hosts.web_1_port, "web-1/sshd.log"),
        ("the bastion", hosts.bastion_port, "bastion/bastion.log"),
    ] {
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let deadline = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
            if Instant::now() > deadline {
                bail!(
                    "{what} is not listening on {addr} after 30 s (is the port taken?); see {}",
                    dir.join(log).display()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    Ok(())
}
