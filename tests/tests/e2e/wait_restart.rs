//! Issue 13 (finding 7): `tpa-ssh request --wait` rides out a restart of the
//! real `tpa-ca`: it says the CA is unreachable and how to resume, retries,
//! and gets its certificate once the CA is back and the request approved.

use std::io::{Read as _, Write as _};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::harness::{Guard, current_login, http_send, tpa_ssh_bin};
use crate::harness::{PW, login, post, two_stage_ca};

/// `tpa-ssh ARGS` with a private HOME, against `ca_url`.
fn tpa_ssh(home: &Path, ca_url: &str, args: &[&str]) -> Command {
    let mut c = Command::new(tpa_ssh_bin());
    c.args(args)
        .env("HOME", home)
        .env("USER", current_login())
        .env_remove("XDG_CONFIG_HOME")
        .env_remove("XDG_DATA_HOME")
        .env_remove("SSH_AUTH_SOCK")
        .env("TPA_CA_URL", ca_url);
    c
}

/// The id of the first request in `approver`'s inbox (bounded wait).
fn pending_in_inbox(addr: std::net::SocketAddr, approver: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (_, body) = http_send(
            addr,
            "GET",
            "/api/v1/requests?scope=inbox",
            &[("Authorization", &format!("Bearer {approver}"))],
            "",
        );
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
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

#[test]
fn request_wait_rides_out_a_ca_restart() {
    let tmp = tempfile::tempdir().unwrap();
    let ca = two_stage_ca(tmp.path());
    let running = ca.serve();
    let addr = running.addr;
    let ca_url = format!("http://{addr}");
    let home = tmp.path().join("home");
    std::fs::create_dir_all(&home).unwrap();

    let mut login_cmd = tpa_ssh(
        &home,
        &ca_url,
        &["login", "--username", "alice", "--password-stdin"],
    )
    .stdin(Stdio::piped())
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    login_cmd
        .stdin
        .take()
        .unwrap()
        .write_all(format!("{PW}\n").as_bytes())
        .unwrap();
    let out = login_cmd.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // The waiter writes its lines (not a terminal) to a file we can read while it runs.
    let log_path = tmp.path().join("wait.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let child = tpa_ssh(
        &home,
        &ca_url,
        &[
            "request",
            "--role",
            "hotfix-admin",
            "--host",
            "web-1",
            "--for",
            "1h",
            "--reason",
            "INC-13 restart",
            "--wait",
            "--ca-retry",
            "90s",
        ],
    )
    .stdin(Stdio::null())
    .stdout(Stdio::null())
    .stderr(log)
    .spawn()
    .unwrap();
    let mut waiter = Guard { child };
    let output = || std::fs::read_to_string(&log_path).unwrap_or_default();
    let bob = login(addr, "bob");
    let id = pending_in_inbox(addr, &bob);

    // A graceful restart of the CA on the same address, with a pause.
    let status = running.terminate();
    assert!(status.success(), "tpa-ca exited with {status} on SIGTERM");
    let note = format!(
        "CA unreachable, retrying… (Ctrl-C leaves the request pending; resume with `tpa-ssh cert {id}`)"
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    while !output().contains(&note) {
        assert!(
            waiter.child.try_wait().unwrap().is_none(),
            "request --wait gave up while the CA restarted:\n{}",
            output()
        );
        assert!(Instant::now() < deadline, "no retry notice:\n{}", output());
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_secs(3));
    assert!(
        waiter.child.try_wait().unwrap().is_none(),
        "request --wait ended while the CA was down:\n{}",
        output()
    );
    let running = ca.serve_at(addr, &[]);

    // Approvals after the restart reach the waiting client.
    let (bob, carol) = (login(addr, "bob"), login(addr, "carol"));
    let (status, body) = post(addr, &bob, &format!("/api/v1/requests/{id}/approve"), "");
    assert_eq!(status, 200, "{body}");
    let (status, body) = post(addr, &carol, &format!("/api/v1/requests/{id}/approve"), "");
    assert_eq!(status, 200, "{body}");
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = waiter.child.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "still waiting:\n{}", output());
        std::thread::sleep(Duration::from_millis(100));
    };
    let mut rest = String::new();
    let _ = std::fs::File::open(&log_path).and_then(|mut f| f.read_to_string(&mut rest));
    assert!(status.success(), "{rest}");
    assert!(rest.contains("the CA answers again"), "{rest}");
    let cert = home.join(".local/share/tpa/id_ed25519-cert.pub");
    assert!(cert.exists(), "no certificate after the wait:\n{rest}");
    drop(running);
}

#[test]
fn request_wait_gives_up_after_ca_retry_and_says_how_to_resume() {
    let tmp = tempfile::tempdir().unwrap();
    let ca = two_stage_ca(tmp.path());
    let running = ca.serve();
    let addr = running.addr;
    let ca_url = format!("http://{addr}");
    let home = tmp.path().join("home");
    std::fs::create_dir_all(&home).unwrap();
    let mut login_cmd = tpa_ssh(
        &home,
        &ca_url,
        &["login", "--username", "alice", "--password-stdin"],
    )
    .stdin(Stdio::piped())
    .stdout(Stdio::null())
    .stderr(Stdio::null())
    .spawn()
    .unwrap();
    login_cmd
        .stdin
        .take()
        .unwrap()
        .write_all(format!("{PW}\n").as_bytes())
        .unwrap();
    assert!(login_cmd.wait().unwrap().success());
    let child = tpa_ssh(
        &home,
        &ca_url,
        &[
            "request",
            "--role",
            "hotfix-admin",
            "--host",
            "web-1",
            "--for",
            "1h",
            "--reason",
            "INC-13 gone",
            "--wait",
            "--ca-retry",
            "3s",
        ],
    )
    .stdin(Stdio::null())
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    let waiter = Guard { child };
    let id = pending_in_inbox(addr, &login(addr, "bob"));
    running.terminate();
    let started = Instant::now();
    let mut child = waiter;
    let status = loop {
        if let Some(status) = child.child.try_wait().unwrap() {
            break status;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "did not give up"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let mut stderr = String::new();
    child
        .child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    assert!(!status.success());
    assert!(
        stderr.contains(&format!("resume with `tpa-ssh cert {id}`"))
            && stderr.contains("stays pending"),
        "{stderr}"
    );
}
