//! `tpa-ca demo`'s refusals (issue 12): twice in one directory, a busy port,
//! no sshd; and a demo run by a user other than root.

use std::io::Write as _;
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::harness::LocalUser;
use crate::harness::{Demo, api_login, password, pending_request};
use crate::harness::{free_port, http_get, terminate, tpa_ca_bin};
use crate::harness::{json, post};

// issue 12: a second demo on the same directory would share its database and
// fight over web-1's and the bastion's ports.
#[test]
fn demo_started_twice_in_the_same_directory_is_refused_with_what_to_do() {
    let tmp = tempfile::tempdir().unwrap();
    let first_addr = format!("127.0.0.1:{}", free_port());
    let mut first = Demo::start(tmp.path(), &["demo", "--listen", &first_addr], &[]);
    first.wait_for("TPA demo CA running", Duration::from_secs(90));
    let second_addr = format!("127.0.0.1:{}", free_port());
    let out = Command::new(tpa_ca_bin())
        .args(["demo", "--listen", &second_addr])
        .current_dir(tmp.path())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains("a demo is already running in tpa-demo") && err.contains("--dir"),
        "{err}"
    );
    // The first one is untouched.
    let (status, _) = http_get(first_addr.parse().unwrap(), "/healthz");
    assert_eq!(status, 200);
    assert!(terminate(first.guard).success());
}

// issue 12: port 8700 busy gave no clear message.
#[test]
fn demo_on_a_busy_port_names_the_port_and_the_flag() {
    let tmp = tempfile::tempdir().unwrap();
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = busy.local_addr().unwrap();
    let out = Command::new(tpa_ca_bin())
        .args(["demo", "--listen", &addr.to_string()])
        .current_dir(tmp.path())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains(&format!(
            "port {} on 127.0.0.1 is already in use",
            addr.port()
        )) && err.contains("--listen"),
        "{err}"
    );
    drop(busy);
}

// issue 12: without sshd the demo says how to install it and runs the CA alone.
#[test]
fn demo_without_sshd_says_how_to_install_it_and_runs_the_ca_alone() {
    let tmp = tempfile::tempdir().unwrap();
    let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let missing = tmp.path().join("no-sshd-here");
    let mut demo = Demo::start(
        tmp.path(),
        &["demo", "--listen", &addr.to_string()],
        &[("TPA_DEMO_SSHD", missing.to_str().unwrap())],
    );
    demo.wait_for("TPA demo CA running", Duration::from_secs(90));
    let printed = demo.printed();
    assert!(
        printed.contains("No web-1: OpenSSH's sshd is not installed")
            && printed.contains("apt-get install openssh-server")
            && printed.contains("The CA runs alone"),
        "{printed}"
    );
    let (status, client) = http_get(addr, "/api/v1/client-config");
    assert_eq!(status, 200);
    assert!(
        json(&client)["bastion"].is_null(),
        "no bastion is announced: {}",
        String::from_utf8_lossy(&client)
    );
    assert!(!tmp.path().join("tpa-demo/web-1").exists());
    assert!(terminate(demo.guard).success());
}

// issue 12: "no root needed beyond what the demo already has": run by another
// user, web-1's sshd can log in only that user, so the demo offers that login.
#[test]
fn demo_run_by_a_user_other_than_root_gives_a_shell_on_web_1_as_that_user() {
    let tmp = tempfile::tempdir().unwrap();
    let user = LocalUser::create(tmp.path());
    // With `UsePAM no`, sshd refuses a locked account ("!" from useradd).
    let out = Command::new("usermod")
        .args(["-p", "*", &user.name])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let mut demo = Demo::start_as(
        user.command(tpa_ca_bin()),
        &user.home,
        &["demo", "--listen", &addr.to_string()],
        &[],
    );
    demo.wait_for("are up.", Duration::from_secs(90));
    let printed = demo.printed();
    let ssh_line = format!("tpa-ssh ssh {}@web-1 --role hotfix-admin", user.name);
    assert!(printed.contains(&ssh_line), "{printed}");
    let run = |line: &str, stdin: &str| {
        let mut child = user
            .command("sh")
            .args(["-c", line])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(stdin.as_bytes())
            .unwrap();
        child
    };
    let alice = password(&user.home, "alice");
    for line in [
        format!("tpa-ssh login --ca http://{addr} --username alice --password-stdin"),
        "mkdir -p ~/.ssh && cat tpa-demo/ssh_config >> ~/.ssh/config".to_owned(),
        "tpa-ssh config --yes".to_owned(),
    ] {
        let out = run(&line, &format!("{alice}\n"))
            .wait_with_output()
            .unwrap();
        assert!(
            out.status.success(),
            "{line}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let child = run(
        &format!("{ssh_line} --reason 'INC-2 as myself' --ticket INC-2 -- id -un"),
        "",
    );
    let bob = api_login(addr, "bob", &password(&user.home, "bob"));
    let id = pending_request(addr, &bob, &|| demo.printed());
    let (status, v) = post(addr, &bob, &format!("/api/v1/requests/{id}/approve"), "");
    assert_eq!(status, 200, "{v}");
    let carol = api_login(addr, "carol", &password(&user.home, "carol"));
    let (status, v) = post(addr, &carol, &format!("/api/v1/requests/{id}/approve"), "");
    assert_eq!(status, 200, "{v}");
    let out = child.wait_with_output().unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        user.name,
        "{}\nsshd:\n{}",
        String::from_utf8_lossy(&out.stderr),
        std::fs::read_to_string(user.home.join("tpa-demo/web-1/sshd.log")).unwrap_or_default()
    );
    assert!(terminate(demo.guard).success());
}
