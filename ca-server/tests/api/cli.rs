//! The `tpa-ca` binary: `serve` fails closed with a message naming the problem
//! (and never creates a key), `init` never overwrites a CA, `config check`
//! names bad keys, `issue` refuses bad input without printing a certificate.

use std::io::BufRead as _;
use std::os::unix::fs::PermissionsExt as _;
use std::process::Stdio;
use std::time::Duration;

use crate::helpers::{
    DataDir, chmod, ed25519_public_key, http_request, run, tpa_ca, write_private,
};

/// Runs `tpa-ca serve` on `data` and expects it to refuse to start. Returns stderr.
fn serve_refuses(data: &DataDir) -> String {
    let before = data.listing();
    let (code, stdout, stderr) = run(tpa_ca()
        .args(["serve", "--listen", "127.0.0.1:0", "--config"])
        .arg(&data.config_path));
    assert_ne!(code, 0, "serve started; stdout: {stdout}\nstderr: {stderr}");
    assert!(
        stderr.contains("tpa-ca: error: cannot load the CA key"),
        "{stderr}"
    );
    assert_eq!(data.listing(), before, "serve created or removed files");
    stderr
}

#[test]
fn serve_refuses_a_missing_key_and_does_not_create_one() {
    let data = DataDir::new();
    std::fs::remove_file(data.key_path()).unwrap();

    let stderr = serve_refuses(&data);

    assert!(stderr.contains("does not exist"), "{stderr}");
    assert!(
        stderr.contains("tpa-ca init"),
        "a hint for what to do: {stderr}"
    );
    assert!(!data.key_path().exists());
}

#[test]
fn serve_refuses_a_world_readable_key() {
    let data = DataDir::new();
    chmod(&data.key_path(), 0o644);

    let stderr = serve_refuses(&data);

    assert!(stderr.contains("has permissions 0644"), "{stderr}");
    assert!(stderr.contains("chmod 600"), "{stderr}");
    let mode = std::fs::metadata(data.key_path())
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o644, "serve must not change the key's mode");
}

#[test]
fn serve_refuses_an_encrypted_key_without_the_right_passphrase() {
    let mut data = DataDir::with_passphrase(Some("correct horse battery"));
    let passphrase_file = data.tmp.path().join("ca_key.passphrase");

    write_private(&passphrase_file, b"wrong horse\n");
    let stderr = serve_refuses(&data);
    assert!(stderr.contains("wrong passphrase"), "{stderr}");

    std::fs::remove_file(&passphrase_file).unwrap();
    let stderr = serve_refuses(&data);
    assert!(stderr.contains("passphrase file"), "{stderr}");

    data.edit_config(|text| {
        text.lines()
            .filter(|l| !l.starts_with("passphrase_file"))
            .map(|l| format!("{l}\n"))
            .collect()
    });
    let stderr = serve_refuses(&data);
    assert!(
        stderr.contains("is encrypted; set ca.passphrase_file"),
        "{stderr}"
    );
}

#[tokio::test]
async fn serve_starts_with_the_right_passphrase_and_stops_on_sigterm() {
    let data = DataDir::with_passphrase(Some("correct horse battery"));
    let mut child = tpa_ca()
        .args([
            "--log-format",
            "json",
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--config",
        ])
        .arg(&data.config_path)
        .env("TPA_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    let stderr = child.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        for line in std::io::BufReader::new(stderr).lines() {
            let _ = tx.send(line.unwrap());
        }
    });
    // The address is announced in the JSON log line "tpa-ca listening".
    let address: std::net::SocketAddr = loop {
        let line = match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(line) => line,
            Err(e) => {
                let _ = child.kill();
                panic!("no listening log line: {e}");
            }
        };
        let log: serde_json::Value = serde_json::from_str(&line)
            .unwrap_or_else(|e| panic!("log line is not JSON ({e}): {line}"));
        if log["fields"]["message"] == "tpa-ca listening" {
            break log["fields"]["addr"].as_str().unwrap().parse().unwrap();
        }
    };

    let health = http_request(address, "GET", "/healthz").await;
    assert_eq!(health.status, 200, "{}", health.body);
    let pid = rustix::process::Pid::from_raw(i32::try_from(child.id()).unwrap()).unwrap();
    rustix::process::kill_process(pid, rustix::process::Signal::TERM).unwrap();

    let mut status = None;
    for _ in 0..500 {
        status = child.try_wait().unwrap();
        if status.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let Some(status) = status else {
        let _ = child.kill();
        panic!("serve did not stop within 10 s of SIGTERM");
    };
    assert!(status.success(), "{status:?}");
    reader.join().unwrap();
    let rest: Vec<String> = rx.try_iter().collect();
    assert!(
        rest.iter().any(|l| l.contains("SIGTERM received")),
        "{rest:?}"
    );
}

#[test]
fn init_refuses_a_directory_that_already_has_a_ca() {
    let data = DataDir::new();
    let key = std::fs::read(data.key_path()).unwrap();
    let before = data.listing();

    let (code, _, stderr) = run(tpa_ca().args(["init", "--data-dir"]).arg(&data.dir));

    assert_ne!(code, 0);
    assert!(stderr.contains("already exists"), "{stderr}");
    assert!(stderr.contains("never overwrites a CA"), "{stderr}");
    assert_eq!(std::fs::read(data.key_path()).unwrap(), key);
    assert_eq!(data.listing(), before);

    // A stray database alone is enough to refuse.
    let other = data.tmp.path().join("other");
    std::fs::create_dir(&other).unwrap();
    std::fs::write(other.join("tpa.db"), b"").unwrap();
    let (code, _, stderr) = run(tpa_ca().args(["init", "--data-dir"]).arg(&other));
    assert_ne!(code, 0);
    assert!(stderr.contains("tpa.db already exists"), "{stderr}");
    assert!(!other.join("ca_key").exists());
}

#[test]
fn init_creates_a_private_ca_that_config_check_accepts() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("ca");

    let (code, stdout, stderr) = run(tpa_ca()
        .args(["init", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(&dir));

    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("tpa-ca serve --config"), "{stdout}");
    let mode = |p: &str| std::fs::metadata(dir.join(p)).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(""), 0o700);
    assert_eq!(mode("ca_key"), 0o600);
    assert_eq!(mode("tpa.db"), 0o600);
    let (code, stdout, stderr) = run(tpa_ca()
        .args(["config", "check", "--config"])
        .arg(dir.join("tpa.toml")));
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stdout.contains("0 certificates, 1 audit events"),
        "{stdout}"
    );
}

#[test]
fn config_check_reports_the_key_fingerprint() {
    let data = DataDir::new();

    let (code, stdout, stderr) = run(tpa_ca()
        .args(["config", "check", "--config"])
        .arg(&data.config_path));

    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("is valid"), "{stdout}");
    assert!(stdout.contains(&data.signer().fingerprint()), "{stdout}");
}

#[test]
fn config_check_names_an_unknown_key() {
    let mut data = DataDir::new();
    let check = |data: &DataDir| {
        run(tpa_ca()
            .args(["config", "check", "--config"])
            .arg(&data.config_path))
    };

    // Written as text: `edit_config` would refuse to reload an invalid file.
    let text = std::fs::read_to_string(&data.config_path).unwrap();
    std::fs::write(
        &data.config_path,
        text.replace("[server]\n", "[server]\ncolour = \"blue\"\n"),
    )
    .unwrap();
    let (code, stdout, stderr) = check(&data);
    assert_ne!(code, 0, "{stdout}");
    assert!(stderr.contains("unknown field `colour`"), "{stderr}");
    assert!(stderr.contains("(line 5)"), "{stderr}");

    std::fs::write(&data.config_path, text.replace("max_ttl = ", "max_tll = ")).unwrap();
    let (code, _, stderr) = check(&data);
    assert_ne!(code, 0);
    assert!(stderr.contains("max_tll"), "{stderr}");

    std::fs::write(&data.config_path, &text).unwrap();
    data.edit_config(|t| t);
    chmod(&data.key_path(), 0o640);
    let (code, _, stderr) = check(&data);
    assert_ne!(code, 0);
    assert!(
        stderr.contains("CA key") && stderr.contains("chmod 600"),
        "{stderr}"
    );
}

#[test]
fn issue_refuses_bad_input_without_printing_a_certificate() {
    let data = DataDir::new();
    let pubkey = data.tmp.path().join("user.pub");
    std::fs::write(&pubkey, ed25519_public_key()).unwrap();
    let issue = |principal: &str, ttl: &str| {
        run(tpa_ca()
            .args([
                "issue",
                "--admin",
                "root",
                "--reason",
                "INC-1 test",
                "--config",
            ])
            .arg(&data.config_path)
            .args(["--principal", principal, "--ttl", ttl, "--pubkey"])
            .arg(&pubkey))
    };

    let (code, stdout, stderr) = issue("prod-*", "5m");
    assert_ne!(code, 0);
    assert_eq!(stdout, "");
    assert!(stderr.contains("a wildcard (*)"), "{stderr}");

    // clap must pass "-5m" through as a value so that the rule can name it.
    let (code, stdout, stderr) = issue("deploy", "-5m");
    assert_ne!(code, 0);
    assert_eq!(stdout, "");
    assert!(
        stderr.contains("--ttl: duration \"-5m\" is not valid"),
        "{stderr}"
    );

    let (code, stdout, stderr) = issue("deploy", "5m");
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stdout.starts_with("ssh-ed25519-cert-v01@openssh.com "),
        "{stdout}"
    );
    assert_eq!(stdout.lines().count(), 1);
}

/// Runs `tpa-ca hash-password` with `input` on standard input.
fn hash_password(input: &str) -> (i32, String, String) {
    use std::io::Write as _;
    let mut child = tpa_ca()
        .arg("hash-password")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8(output.stdout).unwrap(),
        String::from_utf8(output.stderr).unwrap(),
    )
}

#[test]
fn hash_password_prints_an_argon2id_hash_that_logs_in() {
    let (code, stdout, stderr) = hash_password("correct horse battery\n");

    assert_eq!(code, 0, "{stderr}");
    let hash = stdout.trim();
    assert!(
        hash.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
        "{stdout}"
    );
    assert_eq!(stdout.lines().count(), 1);
    assert!(!stdout.contains("correct horse"));
    // The printed hash works as `password_hash` of an account.
    let mut data = DataDir::new();
    data.edit_config(|text| {
        format!("{text}\n[[accounts]]\nusername = \"alice\"\npassword_hash = \"{hash}\"\n")
    });
    let identities = ca_server::auth::identity::Identities::from_config(&data.config).unwrap();
    assert!(
        identities
            .verify_password("alice", "correct horse battery")
            .is_ok()
    );
    assert!(
        identities
            .verify_password("alice", "correct horse")
            .is_err()
    );
}

#[test]
fn hash_password_refuses_an_empty_password() {
    for input in ["", "\n", "\r\n"] {
        let (code, stdout, stderr) = hash_password(input);
        assert_eq!(code, 1, "{input:?}: {stdout}");
        assert!(stdout.is_empty());
        assert!(stderr.contains("no password on standard input"), "{stderr}");
    }
}
