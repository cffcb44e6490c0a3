//! `ssh -J` through `tpa-bastion` to a real sshd, with a certificate obtained
//! through the request API (issue 6): the command runs on an approved host, a
//! host the certificate does not name is refused at the bastion (and the
//! refusal is audited at the CA), the session record reaches the CA with the
//! byte counts the client reports, a session is cut at its certificate's
//! expiry and within 5 s of a revocation, and a record made while the CA is
//! down is delivered once after it comes back.

use crate::harness::{Setup, setup, setup_with, ssh, start_bastion};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::harness::{Guard, require, terminate, wait_for_port};
use crate::harness::{login, post};

/// Waits (bounded by `within`) for a started ssh to exit; returns its exit
/// status, stdout and stderr.
fn wait_exit(session: &mut Guard, within: Duration, setup: &Setup) -> (bool, String, String) {
    use std::io::Read as _;
    let started = Instant::now();
    let status = loop {
        if let Some(status) = session.child.try_wait().unwrap() {
            break status;
        }
        assert!(
            started.elapsed() < within,
            "ssh still running after {within:?}; bastion log:\n{}",
            setup.bastion_log()
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let (mut out, mut err) = (String::new(), String::new());
    session
        .child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    session
        .child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    (status.success(), out, err)
}

#[test]
fn ssh_jump_through_the_bastion_reaches_only_approved_hosts() {
    let tmp = tempfile::tempdir().unwrap();
    let setup = setup(tmp.path());
    let ssh_config = &setup.ssh_config;
    let sshd = &setup.sshd;
    let bastion_log = || setup.bastion_log();

    let out = ssh(ssh_config, "web-1", "echo tpa-bastion-ok");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "tpa-bastion-ok",
        "ssh -J failed: {}\nbastion log:\n{}\nsshd log:\n{}",
        String::from_utf8_lossy(&out.stderr),
        bastion_log(),
        sshd.log()
    );
    assert!(
        bastion_log().contains("certificate accepted"),
        "{}",
        bastion_log()
    );

    let out = ssh(ssh_config, "web-2", "echo tpa-bastion-web-2");
    assert!(
        !out.status.success()
            && !String::from_utf8_lossy(&out.stdout).contains("tpa-bastion-web-2"),
        "a certificate for web-1 reached web-2 through the bastion"
    );
    assert!(
        bastion_log().contains("host web-2 is not approved by the certificate"),
        "{}",
        bastion_log()
    );

    // The session record of the echo reaches the CA with its byte counts.
    let records = wait_for_records(&setup, 1);
    let details = &records[0]["details"];
    assert!(
        details["bytes_to_target"].as_u64().unwrap() > 0,
        "{details}"
    );
    assert!(
        details["bytes_from_target"].as_u64().unwrap() > 0,
        "{details}"
    );
    assert_eq!(details["target"], "web-1");
    assert_eq!(details["requester"], "alice");
    assert_eq!(details["end"], "client_closed", "{details}");

    // Exactly the bytes that crossed the TCP connection to the host.
    let out = ssh(ssh_config, "web-1", "head -c 100000 /dev/zero");
    assert_eq!(out.stdout.len(), 100_000);
    let records = wait_for_records(&setup, 2);
    let relayed = setup.relay.wait_for(2);
    for (record, (to_host, from_host)) in records.iter().zip(relayed) {
        let details = &record["details"];
        assert_eq!(
            (
                details["bytes_to_target"].as_u64().unwrap(),
                details["bytes_from_target"].as_u64().unwrap()
            ),
            (to_host, from_host),
            "{details}"
        );
    }
    assert!(
        records[1]["details"]["bytes_from_target"].as_u64().unwrap() > 100_000,
        "{}",
        records[1]
    );

    // The refused forward to web-2 is in the request's audit history
    // (reports go out every 10 s).
    let object = format!("request:{}", setup.request);
    let deadline = Instant::now() + Duration::from_secs(30);
    let refusal = loop {
        if let Some(e) = setup
            .audit_events("bastion.channel_refused", &object)
            .into_iter()
            .next()
        {
            break e;
        }
        assert!(
            Instant::now() < deadline,
            "refusal not audited at the CA; bastion log:\n{}",
            setup.bastion_log()
        );
        std::thread::sleep(Duration::from_millis(500));
    };
    assert_eq!(refusal["outcome"], "denied");
    assert_eq!(refusal["details"]["what"], "direct-tcpip web-2:22");
    assert!(
        refusal["reason"]
            .as_str()
            .unwrap()
            .contains("host web-2 is not approved"),
        "{refusal}"
    );

    let Setup {
        bastion, running, ..
    } = setup;
    let status = terminate(bastion.unwrap());
    assert!(
        status.success(),
        "tpa-bastion exited with {status} on SIGTERM"
    );
    drop(running);
}

/// Waits (bounded) until the CA holds `n` session records of the request.
fn wait_for_records(setup: &Setup, n: usize) -> Vec<serde_json::Value> {
    wait_for_records_within(setup, n, Duration::from_secs(15))
}

/// Like [`wait_for_records`], waiting up to `within`.
fn wait_for_records_within(setup: &Setup, n: usize, within: Duration) -> Vec<serde_json::Value> {
    let deadline = Instant::now() + within;
    loop {
        let records = setup.session_records();
        if records.len() >= n {
            return records;
        }
        assert!(
            Instant::now() < deadline,
            "no session record at the CA; bastion log:\n{}",
            setup.bastion_log()
        );
        std::thread::sleep(Duration::from_millis(300));
    }
}

#[test]
fn revoking_the_request_cuts_a_live_ssh_session_within_five_seconds() {
    let tmp = tempfile::tempdir().unwrap();
    let setup = setup(tmp.path());
    let mut session = setup.start_session("echo started; sleep 60; echo not-cut");
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        session.child.try_wait().unwrap().is_none(),
        "ssh ended early"
    );

    let bob = login(setup.ca_addr, "bob");
    let (status, revoked) = post(
        setup.ca_addr,
        &bob,
        &format!("/api/v1/requests/{}/revoke", setup.request),
        r#"{"comment":"INC-6 closed"}"#,
    );
    assert_eq!(status, 200, "{revoked}");
    let revoked_at = Instant::now();
    let (ok, stdout, stderr) = wait_exit(&mut session, Duration::from_secs(10), &setup);
    let took = revoked_at.elapsed();
    assert!(took < Duration::from_secs(5), "cut after {took:?}");
    assert!(!ok);
    assert!(
        stdout.contains("started") && !stdout.contains("not-cut"),
        "{stdout}"
    );
    // The user sees why, in one line.
    assert!(stderr.contains("access revoked"), "{stderr}");

    let records = wait_for_records(&setup, 1);
    let details = &records[0]["details"];
    assert_eq!(details["end"], "access_revoked", "{details}");
    assert!(
        details["bytes_to_target"].as_u64().unwrap() > 0,
        "{details}"
    );
    assert!(
        details["bytes_from_target"].as_u64().unwrap() > 0,
        "{details}"
    );
    drop(session);
}

#[test]
fn a_session_on_a_short_certificate_is_cut_at_its_expiry() {
    let tmp = tempfile::tempdir().unwrap();
    let issued = Instant::now();
    let setup = setup_with(tmp.path(), "cert_ttl = \"15s\"");
    let mut session = setup.start_session("echo started; sleep 60; echo not-cut");
    let (ok, stdout, stderr) = wait_exit(&mut session, Duration::from_secs(40), &setup);
    // valid_before is 15 s after issuance (whole seconds); the cut comes then.
    let took = issued.elapsed();
    assert!(
        took >= Duration::from_secs(13) && took < Duration::from_secs(25),
        "cut {took:?} after the setup started"
    );
    assert!(!ok);
    assert!(
        stdout.contains("started") && !stdout.contains("not-cut"),
        "{stdout}"
    );
    assert!(stderr.contains("certificate expired"), "{stderr}");
    let records = wait_for_records(&setup, 1);
    assert_eq!(records[0]["details"]["end"], "certificate_expired");
    drop(session);
}

#[test]
fn a_record_made_while_the_ca_is_down_is_delivered_once_when_it_returns() {
    let tmp = tempfile::tempdir().unwrap();
    let mut setup = setup(tmp.path());
    let mut session = setup.start_session("echo started; sleep 4; echo done");
    // The CA stops during the session.
    let status = setup.running.take().unwrap().terminate();
    assert!(status.success(), "tpa-ca exited with {status}");
    let (ok, stdout, _) = wait_exit(&mut session, Duration::from_secs(20), &setup);
    assert!(ok && stdout.contains("done"), "{stdout}");
    // The record waits in the spool; the CA has none.
    let spool = setup.bastion_dir.join("sessions.spool");
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::fs::read_to_string(&spool)
        .unwrap_or_default()
        .lines()
        .count()
        < 1
    {
        assert!(
            Instant::now() < deadline,
            "record not spooled; bastion log:\n{}",
            setup.bastion_log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_secs(2));
    assert!(setup.session_records().is_empty());
    assert!(
        setup.bastion_log().contains("not delivered"),
        "{}",
        setup.bastion_log()
    );

    // The CA comes back on the same address with the same database.
    let log = std::fs::File::create(setup.ca.dir.join("serve-again.log")).unwrap();
    let child = Command::new(crate::harness::tpa_ca_bin())
        .args([
            "serve",
            "--config",
            setup.ca.config.to_str().unwrap(),
            "--listen",
            &setup.ca_addr.to_string(),
        ])
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("spawn tpa-ca serve");
    let ca_again = Guard { child };
    wait_for_port(setup.ca_addr, Duration::from_secs(20), "tpa-ca serve");
    let records = wait_for_records_within(&setup, 1, Duration::from_secs(45));
    assert_eq!(records[0]["details"]["end"], "client_closed");
    // Delivered once: the spool empties and no duplicate follows.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !std::fs::read_to_string(&spool)
        .unwrap_or_default()
        .is_empty()
    {
        assert!(Instant::now() < deadline, "spool not emptied");
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(setup.session_records().len(), 1);
    drop(session);
    drop(ca_again);
}

#[test]
fn a_restarted_bastion_keeps_its_revocation_state_and_without_it_refuses_logins() {
    // Issue 6: fail closed on revocation state.
    let tmp = tempfile::tempdir().unwrap();
    let mut setup = setup(tmp.path());
    let out = ssh(&setup.ssh_config, "web-1", "echo first");
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "first");
    let state_file = setup.bastion_dir.join("revocations.json");
    // The next poll (every 1 s here) saves the request's window.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let saved = std::fs::read_to_string(&state_file).unwrap_or_default();
        if saved.contains(&setup.request) {
            break;
        }
        assert!(Instant::now() < deadline, "state not saved: {saved}");
        std::thread::sleep(Duration::from_millis(100));
    }

    // The bastion restarts while the CA is down: the saved state lets it serve.
    // (Its CA keys come from a file then: with only ca_url it would not start
    // without the CA's /ca.pub.)
    let config = setup.bastion_dir.join("bastion.toml");
    let keys = setup.sshd.dir.join("trusted_user_ca.pub");
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(
        &config,
        format!("trusted_user_ca_keys = \"{}\"\n{text}", keys.display()),
    )
    .unwrap();
    let status = setup.running.take().unwrap().terminate();
    assert!(status.success());
    assert!(terminate(setup.bastion.take().unwrap()).success());
    setup.bastion = Some(start_bastion(&setup.bastion_dir, setup.bastion_addr));
    let out = ssh(&setup.ssh_config, "web-1", "echo second");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "second",
        "{}\nbastion log:\n{}",
        String::from_utf8_lossy(&out.stderr),
        setup.bastion_log()
    );

    // Without the saved state, and the CA still down, every login is refused.
    assert!(terminate(setup.bastion.take().unwrap()).success());
    std::fs::remove_file(&state_file).unwrap();
    setup.bastion = Some(start_bastion(&setup.bastion_dir, setup.bastion_addr));
    let out = ssh(&setup.ssh_config, "web-1", "echo third");
    assert!(
        !out.status.success() && !String::from_utf8_lossy(&out.stdout).contains("third"),
        "a login passed without a known revocation state"
    );
    let log = setup.bastion_log();
    assert!(log.contains("no saved revocation state"), "{log}");
    assert!(log.contains("revocation state unknown"), "{log}");
}

/// Issue #7: revoking one certificate by serial (`tpa-ca revoke serial`, the
/// grant itself stays approved) reaches the bastion through the feed's
/// `revoked_serials`: the live session is cut within 5 s and a new one with the
/// same certificate is refused.
#[test]
fn revoking_the_serial_cuts_a_live_session_and_refuses_a_new_one() {
    let tmp = tempfile::tempdir().unwrap();
    let setup = setup(tmp.path());
    let cert = tmp.path().join("id_alice-cert.pub");
    let shown = Command::new(require("ssh-keygen", "install openssh-client"))
        .arg("-L")
        .arg("-f")
        .arg(&cert)
        .output()
        .unwrap();
    let serial = String::from_utf8_lossy(&shown.stdout)
        .lines()
        .find_map(|l| l.trim().strip_prefix("Serial: ").map(str::to_owned))
        .expect("ssh-keygen -L shows the serial");
    let child = Command::new(require("ssh", "install openssh-client"))
        .arg("-F")
        .arg(&setup.ssh_config)
        .args(["web-1", "echo started; sleep 60; echo not-cut"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn ssh");
    let mut session = Guard { child };
    let deadline = Instant::now() + Duration::from_secs(20);
    while !setup.bastion_log().contains("forward started") {
        assert!(
            session.child.try_wait().unwrap().is_none(),
            "ssh ended before the forward started; bastion log:\n{}",
            setup.bastion_log()
        );
        assert!(
            Instant::now() < deadline,
            "no forward; bastion log:\n{}",
            setup.bastion_log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    let out = crate::harness::tpa_ca(&[
        "revoke",
        "serial",
        &serial,
        "--reason",
        "INC-7 key copied",
        "--admin",
        "oncall",
        "--config",
        setup.ca.config.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let revoked_at = Instant::now();
    let exited = loop {
        if let Some(status) = session.child.try_wait().unwrap() {
            break status;
        }
        assert!(
            revoked_at.elapsed() < Duration::from_secs(10),
            "ssh still running 10 s after the revocation; bastion log:\n{}",
            setup.bastion_log()
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(revoked_at.elapsed() < Duration::from_secs(5));
    assert!(!exited.success());
    let again = ssh(&setup.ssh_config, "web-1", "echo again-ok");
    assert!(
        !again.status.success() && !String::from_utf8_lossy(&again.stdout).contains("again-ok"),
        "a revoked serial got through the bastion"
    );
    assert!(
        setup
            .bastion_log()
            .contains(&format!("serial {serial} is revoked")),
        "bastion log:\n{}",
        setup.bastion_log()
    );
    drop(session);
}
