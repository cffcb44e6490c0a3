//! The `tpa-ssh` binary against a stand-in CA on 127.0.0.1 that answers
//! with terminal escapes (issue 18, build item 5): nothing from the network
//! reaches the terminal raw, and the directories secrets go into are private.

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::thread::JoinHandle;
use std::time::Duration;

/// Answers the next request on `listener` with `status` and the JSON `body`;
/// returns the request line.
fn answer_once(listener: TcpListener, status: &'static str, body: String) -> JoinHandle<String> {
    std::thread::spawn(move || {
        let (stream, _) = listener.accept().unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        let mut reader = BufReader::new(stream);
        let mut request_line = String::new();
        reader.read_line(&mut request_line).unwrap();
        let mut length = 0usize;
        loop {
            let mut line = String::new();
            reader.read_line(&mut line).unwrap();
            if line.trim_end().is_empty() {
                break;
            }
            if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                length = v.trim().parse().unwrap();
            }
        }
        let mut request_body = vec![0u8; length];
        reader.read_exact(&mut request_body).unwrap();
        let mut stream = reader.into_inner();
        write!(
            stream,
            "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        )
        .unwrap();
        request_line
    })
}

/// Runs `tpa-ssh --ca URL login --username alice --password-stdin` with
/// `home` as `$HOME` (and no XDG overrides), the password on standard input.
fn login(home: &Path, url: &str) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_tpa-ssh"))
        .args([
            "--ca",
            url,
            "login",
            "--username",
            "alice",
            "--password-stdin",
        ])
        .env("HOME", home)
        .env_remove("XDG_CONFIG_HOME")
        .env_remove("XDG_DATA_HOME")
        .env_remove("TPA_CA_URL")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"a long enough password\n")
        .unwrap();
    child.wait_with_output().unwrap()
}

/// The escapes of the adversarial pass: set the window title, ring, clear the
/// screen, reverse the text.
const ESCAPES: &str = "\u{1b}]0;owned\u{7}\u{1b}[2J\u{202E}";

fn assert_clean(what: &str, text: &str) {
    for c in ['\u{1b}', '\u{7}', '\u{202E}', '\u{9b}'] {
        assert!(
            !text.contains(c),
            "{what} holds U+{:04X}: {text:?}",
            u32::from(c)
        );
    }
}

// issue 18: a CA error message containing ESC sequences reached the terminal as is.
#[test]
fn a_ca_error_message_with_terminal_escapes_is_printed_stripped() {
    let home = tempfile::tempdir().unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let message = format!("wrong {ESCAPES}password");
    let server = answer_once(
        listener,
        "401 Unauthorized",
        serde_json::json!({ "code": format!("invalid_credentials{ESCAPES}"), "message": message })
            .to_string(),
    );

    let out = login(home.path(), &url);

    assert_eq!(
        server.join().unwrap().trim_end(),
        "POST /api/v1/login HTTP/1.1"
    );
    assert!(!out.status.success());
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert_clean("stderr", &stderr);
    assert!(
        stderr.starts_with(
            "tpa-ssh: error: wrong \u{FFFD}]0;owned\u{FFFD}\u{FFFD}[2J\u{FFFD}password"
        ),
        "{stderr}"
    );
    assert!(stderr.contains("(invalid_credentials"), "{stderr}");
}

// issue 18: what the CA says about the user (names, groups) is printed
// stripped too, and the 0755 directory the token goes into is made private.
#[test]
fn a_login_answer_with_escapes_is_printed_stripped_into_a_private_directory() {
    let home = tempfile::tempdir().unwrap();
    let config = home.path().join(".config/tpa");
    std::fs::create_dir_all(&config).unwrap();
    std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o755)).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let answer = serde_json::json!({
        "token": "tpa_test-token",
        "expires_at": format!("2030-01-01T00:00:00Z{ESCAPES}"),
        "user": {
            "username": format!("alice{ESCAPES}"),
            "display_name": "Alice",
            "groups": [format!("engineers\n{ESCAPES}")],
            "identity": { "issuer": "tpa:local", "subject": "alice" },
        },
    });
    let server = answer_once(listener, "200 OK", answer.to_string());

    let out = login(home.path(), &url);

    server.join().unwrap();
    let stdout = String::from_utf8(out.stdout).unwrap();
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(out.status.success(), "{stdout}{stderr}");
    assert_clean("stdout", &stdout);
    assert_clean("stderr", &stderr);
    // The newline inside a group name must not start a line of its own.
    let logged_in = stdout
        .lines()
        .find(|l| l.starts_with("Logged in to"))
        .unwrap_or_else(|| panic!("no login line: {stdout:?}"));
    assert!(
        logged_in.contains("(groups: engineers\u{FFFD}"),
        "no forged line: {stdout:?}"
    );
    assert!(
        !stdout
            .lines()
            .any(|l| l.starts_with('\u{FFFD}') || l.starts_with("]0;")),
        "no forged line: {stdout:?}"
    );
    assert!(stdout.contains("as alice\u{FFFD}]0;owned"), "{stdout}");
    let mode = std::fs::metadata(&config).unwrap().permissions().mode() & 0o7777;
    assert_eq!(mode, 0o700, "the directory of the token was tightened");
    assert!(
        stderr.contains("had permissions 0755; made it private (0700)"),
        "the user is told: {stderr}"
    );
    let session = config.join("session.json");
    assert_eq!(
        std::fs::metadata(&session).unwrap().permissions().mode() & 0o777,
        0o600
    );
}
