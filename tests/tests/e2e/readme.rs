//! README.md's story, run as written (issue 12): the commands are read from
//! the README's `sh` blocks under "## Run", so the test breaks when the README
//! drifts. The engineer's commands run as a throwaway local user whose name is
//! not `root`; the demo and the operator's commands run as the test (root);
//! bob and carol approve on the web page in headless Chromium.

use std::io::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::harness::LocalUser;
use crate::harness::{Browser, INSTALL_HINT};
use crate::harness::{Demo, password};
use crate::harness::{Guard, free_port, require, terminate, tpa_ca_bin};

/// The README's `sh` blocks between "## Run" and "## Test", line by line.
fn readme_commands() -> Vec<Vec<String>> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../README.md");
    let text = std::fs::read_to_string(&path).unwrap();
    let start = text.find("\n## Run").expect("README has ## Run");
    let end = text.find("\n## Test").expect("README has ## Test");
    let mut blocks = Vec::new();
    let mut current: Option<Vec<String>> = None;
    for line in text[start..end].lines() {
        match (&mut current, line.trim()) {
            (None, "```sh") => current = Some(Vec::new()),
            (Some(_), "```") => blocks.push(current.take().unwrap()),
            (Some(block), l) if !l.is_empty() => block.push(l.to_owned()),
            _ => {}
        }
    }
    blocks
}

/// `tpa-ca` as the README spells it, from the directory the demo runs in.
const README_TPA_CA: &str = "./target/release/tpa-ca ";

/// A README operator line with the workspace's `tpa-ca`, the demo's address
/// and the request id.
fn operator_line(line: &str, addr: SocketAddr, request: &str) -> String {
    let rest = line.strip_prefix(README_TPA_CA).unwrap_or_else(|| {
        panic!("README operator line does not start with {README_TPA_CA}: {line}")
    });
    format!("{} {rest}", tpa_ca_bin().display())
        .replace("127.0.0.1:8700", &addr.to_string())
        .replace("REQ_ID", request)
}

/// `line` in a shell as `user`, in `cwd`, on a pseudo-terminal (util-linux
/// `script`), everything on the screen written to `typescript`.
fn in_terminal(user: &LocalUser, cwd: &Path, line: &str, typescript: &Path) -> Child {
    user.command("script")
        .args(["-qfec", line])
        .arg(typescript)
        .current_dir(cwd)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("run script")
}

/// Waits (bounded) until the screen in `typescript` shows `needle`.
fn wait_screen(
    typescript: &Path,
    needle: &str,
    within: Duration,
    also: &dyn Fn() -> String,
) -> String {
    let deadline = Instant::now() + within;
    loop {
        let screen = std::fs::read_to_string(typescript).unwrap_or_default();
        if screen.contains(needle) {
            return screen;
        }
        assert!(
            Instant::now() < deadline,
            "no {needle:?} on the screen within {within:?}:\n{screen}\n{}",
            also()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

// issue 12: the README's headline story did not work literally (no web-1,
// `ssh root@web-1` logged in as the local user). From the demo to a shell on
// web-1 and back out: revoked, cut, audited.
#[test]
fn readme_story_runs_as_written_from_demo_to_a_shell_on_web_1_and_back_out() {
    let blocks = readme_commands();
    assert_eq!(
        blocks.len(),
        3,
        "README's run, engineer and operator blocks: {blocks:?}"
    );
    let tmp = tempfile::tempdir().unwrap();
    let user = LocalUser::create(tmp.path());
    assert_ne!(user.name, "root");

    // Run: `cargo build --release --locked` made the binaries; the test has
    // them already (cargo test builds the workspace), so it runs the
    // workspace's tpa-ca, on a free port instead of 8700.
    let run = &blocks[0];
    assert_eq!(run[0], "cargo build --release --locked", "{run:?}");
    assert_eq!(run[1], format!("{README_TPA_CA}demo"), "{run:?}");
    let port = free_port();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let mut demo = Demo::start(tmp.path(), &["demo", "--listen", &addr.to_string()], &[]);
    demo.wait_for("and the bastion (127.0.0.1:", Duration::from_secs(90));
    demo.wait_for("are up.", Duration::from_secs(60));
    let printed = demo.printed();
    let dir = tmp.path().to_owned();
    let logs = || {
        let read = |p: &str| std::fs::read_to_string(dir.join(p)).unwrap_or_default();
        format!(
            "bastion.log:\n{}\nsshd.log:\n{}",
            read("tpa-demo/bastion/bastion.log"),
            read("tpa-demo/web-1/sshd.log")
        )
    };

    // The engineer's block, in order, as the local user in the demo's directory.
    let engineer = &blocks[1];
    let mut request = None;
    let mut session: Option<(Guard, PathBuf)> = None;
    for (n, line) in engineer.iter().enumerate() {
        if line.starts_with("cargo install --locked --path tpa-ssh-client") {
            // The workspace's tpa-ssh is first on the user's PATH.
            continue;
        }
        let line = line.replace("127.0.0.1:8700", &addr.to_string());
        let command = line.split('#').next().unwrap().trim().to_owned();
        assert!(
            printed.contains(&command),
            "the demo prints the README's engineer commands: {command:?} not in\n{printed}"
        );
        let typescript = user.home.join(format!("screen-{n}"));
        if command.starts_with("tpa-ssh login") {
            let mut child = in_terminal(&user, tmp.path(), &line, &typescript);
            wait_screen(&typescript, "Password: ", Duration::from_secs(30), &|| {
                demo.printed()
            });
            let pw = password(tmp.path(), "alice");
            child
                .stdin
                .as_mut()
                .unwrap()
                .write_all(format!("{pw}\n").as_bytes())
                .unwrap();
            let status = child.wait().unwrap();
            let screen = std::fs::read_to_string(&typescript).unwrap_or_default();
            assert!(status.success(), "{line}:\n{screen}");
        } else if command.starts_with("tpa-ssh config") {
            // It shows the hosts and the bastion it will write and asks first.
            let mut child = in_terminal(&user, tmp.path(), &line, &typescript);
            let screen = wait_screen(&typescript, "[y/N]", Duration::from_secs(30), &|| {
                demo.printed()
            });
            assert!(screen.contains("web-*"), "the patterns are shown: {screen}");
            child.stdin.as_mut().unwrap().write_all(b"y\n").unwrap();
            let status = child.wait().unwrap();
            let screen = std::fs::read_to_string(&typescript).unwrap_or_default();
            assert!(status.success(), "{line}:\n{screen}");
        } else if command.starts_with("tpa-ssh ssh root@web-1") {
            let child = in_terminal(&user, tmp.path(), &line, &typescript);
            let mut guard = Guard { child };
            // bob, then carol, approve on the web page, in headless Chromium.
            let screen = wait_screen(
                &typescript,
                " for web-1: pending",
                Duration::from_secs(60),
                &logs,
            );
            let id = screen
                .split("Request ")
                .nth(1)
                .and_then(|rest| rest.split_whitespace().next())
                .unwrap_or_else(|| panic!("no request id on the screen:\n{screen}"))
                .to_owned();
            let browser = Browser::start(
                &require("chromium", INSTALL_HINT),
                &require("chromedriver", INSTALL_HINT),
                &format!("http://{addr}"),
            );
            for (who, stage) in [("bob", 1), ("carol", 2)] {
                browser.goto("/login");
                browser.type_into("#username", who);
                browser.type_into("#password", &password(tmp.path(), who));
                browser.click("section.login button[type=submit]");
                browser.wait_for("form[action='/logout'] button");
                browser.goto(&format!("/requests/{id}"));
                browser.click("#approve");
                browser.wait_for_text("#approvals", &format!("{who} (stage {stage}"));
                browser.click("form[action='/logout'] button");
                browser.wait_for("#username");
            }
            drop(browser);
            // The shell on web-1: a command whose answer only the remote shell computes.
            let stdin = guard.child.stdin.as_mut().unwrap();
            stdin
                .write_all(b"echo I am $(id -un) on tpa-e2e-$((6*7))\n")
                .unwrap();
            stdin.flush().unwrap();
            let screen = wait_screen(
                &typescript,
                "I am root on tpa-e2e-42",
                Duration::from_secs(60),
                &logs,
            );
            assert!(screen.contains(&format!("Request {id}")), "{screen}");
            request = Some(id);
            session = Some((guard, typescript));
        } else {
            let out = user
                .command("sh")
                .args(["-c", &line])
                .current_dir(tmp.path())
                .stdin(Stdio::null())
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{line}: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
    let request = request.expect("the README's engineer block runs `tpa-ssh ssh root@web-1`");
    let (mut guard, typescript) = session.unwrap();

    // The operator revokes; the bastion cuts the live session.
    let operator = &blocks[2];
    assert!(
        operator[0].starts_with(&format!("{README_TPA_CA}revoke request REQ_ID")),
        "{operator:?}"
    );
    for line in operator {
        let rest = line.strip_prefix(README_TPA_CA).unwrap();
        assert!(
            printed.contains(rest),
            "the demo prints the README's operator commands: {rest:?} not in\n{printed}"
        );
    }
    let revoke = operator_line(&operator[0], addr, &request);
    let out = Command::new("sh")
        .args(["-c", &revoke])
        .current_dir(tmp.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{revoke}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let revoked_at = Instant::now();
    let deadline = revoked_at + Duration::from_secs(20);
    while guard.child.try_wait().unwrap().is_none() {
        assert!(
            Instant::now() < deadline,
            "the session on web-1 was not cut within 20 s of the revocation:\n{}\n{}",
            std::fs::read_to_string(&typescript).unwrap_or_default(),
            logs()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        logs().contains("AccessRevoked") || logs().contains("access_revoked"),
        "the bastion cut it for the revocation: {}",
        logs()
    );

    // The audit trail verifies, and holds the session and the revocation.
    assert!(
        operator[1].starts_with(&format!("{README_TPA_CA}audit verify")),
        "{operator:?}"
    );
    let verify = operator_line(&operator[1], addr, &request);
    let out = Command::new("sh")
        .args(["-c", &verify])
        .current_dir(tmp.path())
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && said.contains("audit trail OK"),
        "{verify}: {said}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Stopping the demo stops web-1's sshd and the bastion.
    let sshd_pid = std::fs::read_to_string(tmp.path().join("tpa-demo/web-1/sshd.pid")).unwrap();
    assert!(terminate(demo.guard).success());
    let deadline = Instant::now() + Duration::from_secs(20);
    while Path::new(&format!("/proc/{}", sshd_pid.trim())).exists() {
        assert!(Instant::now() < deadline, "web-1's sshd outlived the demo");
        std::thread::sleep(Duration::from_millis(100));
    }
}
