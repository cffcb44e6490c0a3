//! Issue 16: `tpa-ca ldap test --config F --username U [--bind]` against a
//! real slapd.

use std::io::Write as _;
use std::process::Stdio;

use crate::helpers::{DataDir, run, tpa_ca};
use crate::slapd::{self, PEOPLE, Slapd, password};

fn data_dir(server: &Slapd) -> DataDir {
    let mut data = DataDir::new();
    let block = slapd::connector_toml(server, server.dir.path(), "");
    data.edit_config(|t| format!("{t}{block}"));
    data
}

#[test]
fn ldap_test_prints_the_dn_groups_and_mapped_groups_without_a_password() {
    let server = Slapd::start();
    let data = data_dir(&server);
    let config = data.config_path.to_str().unwrap();
    let (code, out, err) =
        run(tpa_ca().args(["ldap", "test", "--config", config, "--username", "carol"]));
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains(&format!("dn:           uid=carol,{PEOPLE}")),
        "{out}"
    );
    assert!(out.contains("groups:       managers, mgmt-staff"), "{out}");
    assert!(out.contains("tpa groups:   managers, mgmt-staff"), "{out}");
    assert!(out.contains("mail:         carol@example.org"), "{out}");
    assert!(out.contains("not checked"), "{out}");
    assert!(
        out.contains(&format!("identity:     {}/{PEOPLE}#", server.ldaps_url())),
        "{out}"
    );

    let (code, out, _) =
        run(tpa_ca().args(["ldap", "test", "--config", config, "--username", "nobody"]));
    assert_eq!(code, 1);
    assert!(out.contains("no entry matches \"nobody\""), "{out}");
    let (code, out, _) =
        run(tpa_ca().args(["ldap", "test", "--config", config, "--username", "twin"]));
    assert_eq!(code, 1);
    assert!(out.contains("several directory entries"), "{out}");
}

fn bind(config: &str, user: &str, pw: &str) -> (i32, String) {
    let mut child = tpa_ca()
        .args([
            "ldap",
            "test",
            "--config",
            config,
            "--username",
            user,
            "--bind",
        ])
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
    let out = child.wait_with_output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[test]
fn ldap_test_with_bind_checks_the_password() {
    let server = Slapd::start();
    let data = data_dir(&server);
    let config = data.config_path.to_str().unwrap();
    let (code, out) = bind(config, "alice", &password("alice"));
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("accepted by the directory"), "{out}");
    let (code, out) = bind(config, "alice", "wrong");
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("the directory refused the password"), "{out}");
    let (code, out) = bind(config, "alice", "");
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("no password on standard input"), "{out}");
}

// issue 16: `config check` proves what loading the file cannot: the
// directory answers over TLS with the pinned CA.
#[test]
fn config_check_reaches_the_directory_or_says_why_not() {
    let mut server = Slapd::start();
    let data = data_dir(&server);
    let config = data.config_path.to_str().unwrap();
    let (code, out, err) = run(tpa_ca().args(["config", "check", "--config", config]));
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("ok: ldap corp: ldaps://127.0.0.1:"), "{out}");
    server.stop();
    let (code, out, _) = run(tpa_ca().args(["config", "check", "--config", config]));
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("error: ldap corp: cannot connect"), "{out}");
}
