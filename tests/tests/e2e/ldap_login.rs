//! Issue 16: `tpa-ssh login --username U --password-stdin` against a real
//! `tpa-ca serve` whose people come from a real slapd, for each test
//! person; the refusals the directory gives (wrong password, disabled
//! account, directory down) reach the engineer as clear messages.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use crate::harness::{CaDir, current_login, tpa_ssh_bin};

#[path = "../../../ca-server/tests/api/slapd.rs"]
mod slapd;

use slapd::{Slapd, password};

fn append(path: &Path, extra: &str) {
    let mut text = std::fs::read_to_string(path).unwrap();
    text.push_str(extra);
    std::fs::write(path, text).unwrap();
}

/// `tpa-ssh ARGS` with its own HOME, talking to the CA at `addr`.
fn tpa_ssh(home: &Path, addr: std::net::SocketAddr, args: &[&str]) -> Command {
    std::fs::create_dir_all(home).unwrap();
    let mut c = Command::new(tpa_ssh_bin());
    c.args(args)
        .env("HOME", home)
        .env("USER", current_login())
        .env_remove("XDG_CONFIG_HOME")
        .env_remove("XDG_DATA_HOME")
        .env_remove("SSH_AUTH_SOCK")
        .env("TPA_CA_URL", format!("http://{addr}"));
    c
}

fn login(home: &Path, addr: std::net::SocketAddr, user: &str, pw: &str) -> Output {
    let mut child = tpa_ssh(
        home,
        addr,
        &["login", "--username", user, "--password-stdin"],
    )
    .stdin(Stdio::piped())
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(format!("{pw}\n").as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn tpa_ssh_login_with_directory_passwords() {
    let tmp = tempfile::tempdir().unwrap();
    let mut server = Slapd::start();
    let ca = CaDir::init(tmp.path(), "ca");
    append(
        &ca.config,
        &slapd::connector_toml(&server, &ca.dir, "timeout = \"2s\""),
    );
    let running = ca.serve();
    let home = |user: &str| -> PathBuf { tmp.path().join(format!("home-{user}")) };
    let expected: [(&str, &[&str]); 5] = [
        ("alice", &["engineers"]),
        ("bob", &["sre-leads"]),
        ("carol", &["managers", "mgmt-staff"]),
        ("dave", &["auditors"]),
        ("eve", &[]),
    ];
    for (user, groups) in expected {
        let out = login(&home(user), running.addr, user, &password(user));
        assert!(out.status.success(), "{user}: {}", text(&out));
        let who = tpa_ssh(&home(user), running.addr, &["whoami", "--json"])
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert!(who.status.success(), "{user}: {}", text(&who));
        let who: serde_json::Value = serde_json::from_slice(&who.stdout).unwrap();
        let got: Vec<&str> = who["whoami"]["user"]["groups"]
            .as_array()
            .unwrap()
            .iter()
            .map(|g| g.as_str().unwrap())
            .collect();
        assert_eq!(got, groups, "{user}: {who}");
        assert_eq!(who["whoami"]["user"]["username"], user);
    }

    let wrong = login(&home("alice"), running.addr, "alice", "not her password");
    assert!(!wrong.status.success());
    assert!(
        text(&wrong).contains("unknown username or wrong password"),
        "{}",
        text(&wrong)
    );
    let frank = login(&home("frank"), running.addr, "frank", &password("frank"));
    assert!(!frank.status.success());
    assert!(text(&frank).contains("disabled"), "{}", text(&frank));

    // The directory stops: the next login fails closed and says why.
    server.stop();
    let down = login(&home("bob"), running.addr, "bob", &password("bob"));
    assert!(!down.status.success());
    assert!(
        text(&down).contains("directory"),
        "the message names the directory: {}",
        text(&down)
    );
    running.terminate();
}
