//! `tpa-ssh ssh LOGIN@HOST` as a local user whose name is not the login
//! (issue 12), directly and through the bastion; `[LOGIN@]HOST` inputs that
//! must never reach ssh; `tpa-ssh request --break-glass --incident`.

use std::io::Write as _;
use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use crate::flow::PW;
use crate::harness::{
    CaDir, Guard, RunningCa, Sshd, free_port, hash_password, http_get, tpa_bastion_bin,
    tpa_ssh_bin, wait_for_port,
};
use crate::os_user::LocalUser;

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// A CA with an auto-approved `web-debug` role (logins `deploy` then `root`,
/// so `root` is never the default), an `incident` role with break-glass,
/// accounts alice (engineer) and bob, and `extra` TOML.
fn ca_with_roles(dir: &Path, extra: &str) -> CaDir {
    let ca = CaDir::init(dir, "ca");
    let hash = hash_password(PW);
    let mut config = std::fs::read_to_string(&ca.config).unwrap();
    config.push_str(&format!(
        r#"
[[roles]]
name = "web-debug"
logins = ["deploy", "root"]
hosts = ["web-*"]
max_duration = "1h"
requestable_by = ["engineers"]
stages = [{{ group = "sre-leads" }}]
auto_approve = {{ group = "engineers", max_duration = "1h" }}

[[roles]]
name = "incident"
logins = ["root"]
hosts = ["web-*"]
max_duration = "4h"
requestable_by = ["engineers"]
stages = [{{ group = "sre-leads" }}]
break_glass = {{ max_duration = "30m" }}

[[accounts]]
username = "alice"
password_hash = "{hash}"
groups = ["engineers"]

[[accounts]]
username = "bob"
password_hash = "{hash}"
groups = ["sre-leads"]
{extra}"#
    ));
    std::fs::write(&ca.config, config).unwrap();
    ca
}

/// `tpa-ssh login --username alice --password-stdin` by `command`.
fn login_alice(mut command: Command, ca: SocketAddr) -> Output {
    let mut child = command
        .args([
            "login",
            "--ca",
            &format!("http://{ca}"),
            "--username",
            "alice",
        ])
        .arg("--password-stdin")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run tpa-ssh login");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(format!("{PW}\n").as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

/// A CA, a root sshd as web-1 and, when `through_bastion`, a tpa-bastion in
/// front of it announced in `[client]`; a local test user logged in as alice
/// whose ssh knows the host keys.
struct World {
    _bastion: Option<Guard>,
    bastion_dir: PathBuf,
    sshd: Sshd,
    _ca: RunningCa,
    user: LocalUser,
    _tmp: tempfile::TempDir,
}

impl World {
    fn start(through_bastion: bool) -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let bastion_port = free_port();
        let client = if through_bastion {
            format!(
                "\n[client]\nbastion = \"127.0.0.1:{bastion_port}\"\nhost_patterns = [\"web-*\"]\n"
            )
        } else {
            String::new()
        };
        let ca = ca_with_roles(tmp.path(), &client);
        let running = ca.serve();
        let (_, ca_pub) = http_get(running.addr, "/ca.pub");
        let sshd = Sshd::start(&tmp.path().join("sshd"), &ca_pub);
        let sshd_pub = std::fs::read_to_string(sshd.dir.join("host_ed25519.pub")).unwrap();
        let bastion_dir = tmp.path().join("bastion");
        let mut known = format!("web-1 {sshd_pub}");
        let bastion = through_bastion.then(|| {
            std::fs::create_dir_all(&bastion_dir).unwrap();
            std::fs::write(
                bastion_dir.join("bastion.toml"),
                format!(
                    "listen = \"127.0.0.1:{bastion_port}\"\nhost_key_file = \"host_ed25519\"\nca_url = \"http://{}\"\ninsecure_without_ca_feed = true\n\n[hosts]\nweb-1 = \"127.0.0.1:{}\"\n",
                    running.addr, sshd.port
                ),
            )
            .unwrap();
            let child = Command::new(tpa_bastion_bin())
                .args(["serve", "--config"])
                .arg(bastion_dir.join("bastion.toml"))
                .env("TPA_LOG", "info")
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(bastion_dir.join("bastion.log")).unwrap())
                .spawn()
                .expect("spawn tpa-bastion");
            let guard = Guard { child };
            wait_for_port(
                format!("127.0.0.1:{bastion_port}").parse().unwrap(),
                Duration::from_secs(20),
                "tpa-bastion",
            );
            guard
        });
        if through_bastion {
            let bastion_pub =
                std::fs::read_to_string(bastion_dir.join("host_ed25519.pub")).unwrap();
            known.push_str(&format!("[127.0.0.1]:{bastion_port} {bastion_pub}"));
        }
        let user = LocalUser::create(&tmp.path().join("homes").tap_mkdir());
        let ssh_dir = user.home.join(".ssh");
        std::fs::create_dir_all(&ssh_dir).unwrap();
        std::fs::write(ssh_dir.join("known_hosts"), known).unwrap();
        // Without a bastion, web-1 is the sshd's port; with one, the bastion
        // maps the name (and only port 22 is asked for).
        let direct = if through_bastion {
            String::new()
        } else {
            format!(
                "Host web-1\n  HostName 127.0.0.1\n  Port {}\n  HostKeyAlias web-1\n",
                sshd.port
            )
        };
        std::fs::write(
            ssh_dir.join("config"),
            format!(
                "{direct}Host *\n  StrictHostKeyChecking yes\n  BatchMode yes\n  IdentityAgent none\n  ConnectTimeout 20\n  LogLevel ERROR\n"
            ),
        )
        .unwrap();
        user.chown_home();
        let out = login_alice(user.command(tpa_ssh_bin()), running.addr);
        assert!(out.status.success(), "{}", text(&out));
        Self {
            _bastion: bastion,
            bastion_dir,
            sshd,
            _ca: running,
            user,
            _tmp: tmp,
        }
    }

    fn tpa_ssh(&self, args: &[&str]) -> Output {
        self.user
            .command(tpa_ssh_bin())
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("run tpa-ssh")
    }

    fn logs(&self) -> String {
        let bastion =
            std::fs::read_to_string(self.bastion_dir.join("bastion.log")).unwrap_or_default();
        format!("bastion:\n{bastion}\nsshd:\n{}", self.sshd.log())
    }
}

trait MkDir {
    fn tap_mkdir(self) -> Self;
}

impl MkDir for PathBuf {
    fn tap_mkdir(self) -> Self {
        std::fs::create_dir_all(&self).unwrap();
        self
    }
}

// issue 12: `tpa-ssh ssh root@web-1` ran ssh as the local user
// ("ncalice@127.0.0.1: Permission denied"); hidden while the tests ran as root.
#[test]
fn login_at_host_reaches_a_direct_sshd_as_another_local_user() {
    let w = World::start(false);
    let out = w.tpa_ssh(&[
        "ssh",
        "root@web-1",
        "--role",
        "web-debug",
        "--reason",
        "INC-12 direct",
        "--",
        "id -un; echo local=$SSH_CLIENT",
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.starts_with("root\n"),
        "{}\n{}",
        text(&out),
        w.logs()
    );
    assert_ne!(w.user.name, "root");
}

// issue 12: through the bastion the ProxyCommand and the outer ssh both carry
// the login, for a local user whose name is neither `root` nor a principal.
#[test]
fn login_at_host_reaches_the_host_through_the_bastion_as_another_local_user() {
    let w = World::start(true);
    let out = w.tpa_ssh(&[
        "ssh",
        "root@web-1",
        "--role",
        "web-debug",
        "--reason",
        "INC-12 jump",
        "--",
        "id -un",
    ]);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "root",
        "{}\n{}",
        text(&out),
        w.logs()
    );
    assert!(
        w.logs().contains("certificate accepted"),
        "the session went through the bastion: {}",
        w.logs()
    );
    // Without LOGIN@ the certificate's first principal (`deploy`) is used,
    // never the local user name: sshd has no such account, so it fails there.
    let out = w.tpa_ssh(&["ssh", "web-1", "--", "true"]);
    assert!(!out.status.success(), "{}", text(&out));
    assert!(
        !w.logs().contains(&format!("\"{}\"", w.user.name)),
        "the local user name reached the bastion: {}",
        w.logs()
    );
}

/// A logged-in HOME with an active grant on web-1 and a fake `ssh` first on
/// PATH that records its arguments, so a bad target that got through would
/// show up as `ssh-ran`.
struct FakeSsh {
    home: PathBuf,
    path: String,
    ca: RunningCa,
    _tmp: tempfile::TempDir,
}

impl FakeSsh {
    fn start() -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let ca = ca_with_roles(tmp.path(), "");
        let running = ca.serve();
        let home = tmp.path().join("home");
        let fake = tmp.path().join("fake-bin");
        std::fs::create_dir_all(&home).unwrap();
        std::fs::create_dir_all(&fake).unwrap();
        let script = fake.join("ssh");
        std::fs::write(
            &script,
            "#!/bin/sh\nprintf '%s\\n' \"$@\" > \"$HOME/ssh-ran\"\n",
        )
        .unwrap();
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
        let path = format!(
            "{}:{}",
            fake.display(),
            std::env::var("PATH").unwrap_or_default()
        );
        let me = Self {
            home,
            path,
            ca: running,
            _tmp: tmp,
        };
        let out = login_alice(me.command(), me.ca.addr);
        assert!(out.status.success(), "{}", text(&out));
        // A grant covering web-1, so a target that passed the checks would run ssh.
        let out = me.run(&["ssh", "root@web-1", "--role", "web-debug", "--reason", "x"]);
        assert!(out.status.success(), "{}", text(&out));
        let args = std::fs::read_to_string(me.home.join("ssh-ran")).unwrap();
        assert!(args.ends_with("-l\nroot\nweb-1\n"), "{args}");
        std::fs::remove_file(me.home.join("ssh-ran")).unwrap();
        me
    }

    fn command(&self) -> Command {
        let mut c = Command::new(tpa_ssh_bin());
        c.env("HOME", &self.home)
            .env("PATH", &self.path)
            .env_remove("XDG_CONFIG_HOME")
            .env_remove("XDG_DATA_HOME")
            .env_remove("SSH_AUTH_SOCK")
            .env_remove("TPA_CA_URL");
        c
    }

    fn run(&self, args: &[&str]) -> Output {
        self.command()
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("run tpa-ssh")
    }

    /// `tpa-ssh ssh TARGET` fails, says `words`, and never runs ssh.
    fn refused(&self, target: &str, words: &str) {
        let out = self.run(&["ssh", target, "--", "true"]);
        assert!(!out.status.success(), "{target}: {}", text(&out));
        assert!(text(&out).contains(words), "{target}: {}", text(&out));
        assert!(
            !self.home.join("ssh-ran").exists(),
            "{target} reached ssh: {}",
            std::fs::read_to_string(self.home.join("ssh-ran")).unwrap_or_default()
        );
    }
}

// issue 12: an empty login.
#[test]
fn ssh_at_host_without_a_login_is_refused_before_ssh() {
    FakeSsh::start().refused("@web-1", "empty login before the @");
}

// issue 12: a login without a host.
#[test]
fn ssh_login_at_without_a_host_is_refused_before_ssh() {
    FakeSsh::start().refused("root@", "names no host after the @");
}

// issue 12: two @.
#[test]
fn ssh_login_with_two_ats_is_refused_before_ssh() {
    FakeSsh::start().refused("root@@web-1", "more than one @");
}

// issue 12: an ssh option dressed as a login must never reach ssh as an option.
#[test]
fn ssh_option_as_login_never_reaches_ssh() {
    let fake = FakeSsh::start();
    // clap refuses it as an unknown option of tpa-ssh…
    fake.refused("-oProxyCommand=x@web-1", "unexpected argument '-o'");
    // …after `--` it is an ssh argument, and the host is missing…
    let out = fake.run(&["ssh", "--role", "web-debug", "--", "-oProxyCommand=x@web-1"]);
    assert!(
        !out.status.success() && text(&out).contains("<HOST>"),
        "{}",
        text(&out)
    );
    assert!(!fake.home.join("ssh-ran").exists());
    // …and as the login of a target the principal grammar refuses it.
    fake.refused("x-oProxyCommand=x@web-1", "bad login");
}

// issue 12: a host with a space.
#[test]
fn ssh_host_with_a_space_is_refused_before_ssh() {
    let fake = FakeSsh::start();
    fake.refused("root@web 1", "is not a host name");
    fake.refused("web 1", "is not a host name");
}

// issue 12: break-glass was reachable only through the raw API.
#[test]
fn request_break_glass_with_an_incident_approves_itself_and_says_so() {
    let fake = FakeSsh::start();
    let help = fake.run(&["request", "--help"]);
    let help_text = String::from_utf8_lossy(&help.stdout);
    assert!(
        help_text.contains("--break-glass") && help_text.contains("--incident <ID>"),
        "{help_text}"
    );
    let out = fake.run(&[
        "request",
        "--role",
        "incident",
        "--host",
        "web-1",
        "--for",
        "15m",
        "--reason",
        "db down",
        "--break-glass",
    ]);
    assert!(
        !out.status.success() && text(&out).contains("--incident"),
        "--break-glass needs --incident: {}",
        text(&out)
    );
    let out = fake.run(&[
        "request",
        "--role",
        "incident",
        "--host",
        "web-1",
        "--for",
        "15m",
        "--reason",
        "db down",
        "--break-glass",
        "--incident",
        "INC-7",
        "--json",
    ]);
    assert!(out.status.success(), "{}", text(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        (
            v["state"].as_str(),
            v["approval_path"].as_str(),
            v["ticket"].as_str()
        ),
        (Some("approved"), Some("break_glass"), Some("INC-7")),
        "{v}"
    );
    // A role without a break_glass rule refuses it, in the CA's words.
    let out = fake.run(&[
        "request",
        "--role",
        "web-debug",
        "--host",
        "web-1",
        "--reason",
        "x",
        "--break-glass",
        "--incident",
        "INC-8",
    ]);
    assert!(!out.status.success(), "{}", text(&out));
}

// issue 12: `no password given` did not name --password-stdin.
#[test]
fn login_without_a_terminal_names_password_stdin() {
    let fake = FakeSsh::start();
    let out = fake.run(&[
        "login",
        "--ca",
        &format!("http://{}", fake.ca.addr),
        "--username",
        "alice",
    ]);
    assert!(!out.status.success());
    assert!(text(&out).contains("--password-stdin"), "{}", text(&out));
}
