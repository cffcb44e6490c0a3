//! `tpa-ssh` against a real CA and a real sshd, with a temporary HOME.

use std::io::Write as _;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::flow::{PW, login, post, two_stage_ca};
use crate::harness::{Guard, Sshd, UserKey, current_login, http_get, tpa_ssh_bin};

struct Home {
    dir: PathBuf,
    ca_url: String,
}

impl Home {
    fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(tpa_ssh_bin());
        c.args(args)
            .env("HOME", &self.dir)
            .env_remove("XDG_CONFIG_HOME")
            .env_remove("XDG_DATA_HOME")
            .env_remove("SSH_AUTH_SOCK")
            .env("TPA_CA_URL", &self.ca_url);
        c
    }

    fn run(&self, args: &[&str]) -> Output {
        self.command(args)
            .stdin(Stdio::null())
            .output()
            .expect("run tpa-ssh")
    }

    fn login(&self, user: &str) -> Output {
        let mut child = self
            .command(&["login", "--username", user, "--password-stdin"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(format!("{PW}\n").as_bytes())
            .unwrap();
        child.wait_with_output().unwrap()
    }
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn login_request_wait_certificate_then_plain_ssh() {
    let tmp = tempfile::tempdir().unwrap();
    let ca = two_stage_ca(tmp.path());
    let running = ca.serve();
    let addr = running.addr;
    let (_, ca_pub) = http_get(addr, "/ca.pub");
    let sshd = Sshd::start(&tmp.path().join("sshd"), &ca_pub);
    let home = Home {
        dir: tmp.path().join("home"),
        ca_url: format!("http://{addr}"),
    };
    std::fs::create_dir_all(&home.dir).unwrap();

    // Not logged in yet: a clear message, non-zero.
    let out = home.run(&["list"]);
    assert!(
        !out.status.success() && text(&out).contains("not logged in"),
        "{}",
        text(&out)
    );

    let out = home.login("alice");
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("Logged in") && text(&out).contains("engineers"));
    let session = home.dir.join(".config/tpa/session.json");
    assert_eq!(mode(&session), 0o600, "the token file is private");
    assert!(!text(&out).contains("tpa_"), "the token is never printed");

    // A role the user may not request: the allowed ones are listed.
    let out = home.run(&[
        "request",
        "--role",
        "root-everything",
        "--host",
        "web-1",
        "--reason",
        "x",
    ]);
    assert!(!out.status.success());
    assert!(
        text(&out).contains("hotfix-admin") && text(&out).contains("unknown_role"),
        "{}",
        text(&out)
    );

    // request --wait blocks until both approvals land, then fetches the certificate.
    let waiter = home
        .command(&[
            "request",
            "--role",
            "hotfix-admin",
            "--host",
            "web-1",
            "--for",
            "1h",
            "--reason",
            "INC-5 disk",
            "--wait",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut waiter = Guard { child: waiter };
    let (bob, carol) = (login(addr, "bob"), login(addr, "carol"));
    let id = wait_for_pending(addr, &bob);
    assert!(
        waiter.child.try_wait().unwrap().is_none(),
        "request --wait must wait for the decision"
    );
    post(addr, &bob, &format!("/api/v1/requests/{id}/approve"), "");
    post(addr, &carol, &format!("/api/v1/requests/{id}/approve"), "");
    let status = wait_exit(&mut waiter, Duration::from_secs(20));
    let mut output = String::new();
    for pipe in [
        waiter.child.stdout.take().map(read_all),
        waiter.child.stderr.take().map(read_all),
    ] {
        output.push_str(&pipe.unwrap_or_default());
    }
    assert!(status.success(), "{output}");
    assert!(output.contains("Certificate for"), "{output}");

    // The files are where tpa-ssh says, private, and plain ssh uses them.
    let data = home.dir.join(".local/share/tpa");
    assert_eq!(mode(&data.join("id_ed25519")), 0o600);
    let key = UserKey {
        private: data.join("id_ed25519"),
        public: data.join("id_ed25519.pub"),
        cert: data.join("id_ed25519-cert.pub"),
    };
    let out = sshd.ssh(&key, &current_login(), "echo cli-ok");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "cli-ok",
        "{}\n{}",
        text(&out),
        sshd.log()
    );

    // --json output parses; `cert` refreshes inside the window; whoami shows the grant.
    let list: serde_json::Value =
        serde_json::from_slice(&home.run(&["list", "--json"]).stdout).unwrap();
    assert_eq!(list["requests"][0]["state"], "approved");
    let status: serde_json::Value =
        serde_json::from_slice(&home.run(&["status", &id, "--json"]).stdout).unwrap();
    assert_eq!(status["approvals"].as_array().unwrap().len(), 2);
    let cert: serde_json::Value =
        serde_json::from_slice(&home.run(&["cert", "--json"]).stdout).unwrap();
    assert_eq!(
        cert["certificate"]["key_id"],
        format!("tpa:request={id}:user=alice")
    );
    let who = home.run(&["whoami"]);
    assert!(
        text(&who).contains(&format!("active grant: {id}")),
        "{}",
        text(&who)
    );

    // Logout revokes the token at the CA: the saved token no longer works.
    let token: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&session).unwrap()).unwrap();
    assert!(home.run(&["logout"]).status.success());
    assert!(!session.exists());
    let (status, _) = crate::harness::http_send(
        addr,
        "GET",
        "/api/v1/whoami",
        &[(
            "Authorization",
            &format!("Bearer {}", token["token"].as_str().unwrap()),
        )],
        "",
    );
    assert_eq!(status, 401);
}

#[test]
fn denied_request_exits_non_zero_with_the_comment_and_unreachable_ca_is_explained() {
    let tmp = tempfile::tempdir().unwrap();
    let ca = two_stage_ca(tmp.path());
    let running = ca.serve();
    let addr = running.addr;
    let home = Home {
        dir: tmp.path().join("home"),
        ca_url: format!("http://{addr}"),
    };
    std::fs::create_dir_all(&home.dir).unwrap();
    assert!(home.login("alice").status.success());
    let waiter = home
        .command(&[
            "request",
            "--role",
            "hotfix-admin",
            "--host",
            "web-2",
            "--reason",
            "x",
            "--wait",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut waiter = Guard { child: waiter };
    let bob = login(addr, "bob");
    let id = wait_for_pending(addr, &bob);
    post(
        addr,
        &bob,
        &format!("/api/v1/requests/{id}/deny"),
        r#"{"comment":"use read-only-debug"}"#,
    );
    let status = wait_exit(&mut waiter, Duration::from_secs(20));
    let err = waiter.child.stderr.take().map(read_all).unwrap_or_default();
    assert_eq!(status.code(), Some(3), "{err}");
    assert!(
        err.contains("denied") && err.contains("use read-only-debug"),
        "{err}"
    );

    // The CA goes away: the message says what to check.
    drop(running);
    let out = home.run(&["list"]);
    assert!(!out.status.success());
    assert!(text(&out).contains("cannot reach the CA"), "{}", text(&out));
    // A wrong password: no token saved.
    let home2 = Home {
        dir: tmp.path().join("home2"),
        ca_url: "http://127.0.0.1:1".into(),
    };
    std::fs::create_dir_all(&home2.dir).unwrap();
    assert!(!home2.login("alice").status.success());
    assert!(!home2.dir.join(".config/tpa/session.json").exists());
}

fn read_all(mut r: impl std::io::Read) -> String {
    let mut s = String::new();
    let _ = r.read_to_string(&mut s);
    s
}

fn wait_exit(guard: &mut Guard, limit: Duration) -> std::process::ExitStatus {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = guard.child.try_wait().unwrap() {
            return status;
        }
        assert!(
            Instant::now() < deadline,
            "tpa-ssh did not finish within {limit:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The id of the pending request in bob's inbox, once it appears.
fn wait_for_pending(addr: std::net::SocketAddr, bob: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (_, body) = crate::harness::http_send(
            addr,
            "GET",
            "/api/v1/requests?scope=inbox",
            &[("Authorization", &format!("Bearer {bob}"))],
            "",
        );
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        if let Some(id) = v["requests"][0]["id"].as_str() {
            return id.to_owned();
        }
        assert!(
            Instant::now() < deadline,
            "the request never reached the inbox"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}
