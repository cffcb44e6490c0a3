//! `tpa-ssh` inputs that must never reach ssh (issue 12): `[LOGIN@]HOST` with
//! an empty login, no host, two @, an ssh option, a space; and the first-hour
//! CLI: `request --break-glass --incident`, the `--password-stdin` hint.

use std::os::unix::fs::PermissionsExt as _;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

use crate::harness::{RunningCa, tpa_ssh_bin};
use crate::harness::{ca_with_roles, login_alice, text};

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
