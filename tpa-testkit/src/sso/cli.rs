//! The CLI's side of the loopback login: PKCE, and `tpa-ssh login` as a
//! child process.

use crate::app::TestApp;

/// The CLI's PKCE pair: (verifier, S256 challenge).
pub fn cli_pkce() -> (String, String) {
    use base64ct::{Base64UrlUnpadded, Encoding as _};
    use sha2::{Digest as _, Sha256};
    let verifier = "v".repeat(20) + &"x".repeat(30);
    let challenge = Base64UrlUnpadded::encode_string(&Sha256::digest(verifier.as_bytes()));
    (verifier, challenge)
}

/// `tpa-ssh login --ca URL` (loopback) as a child process with its own
/// `HOME`: the child, the login URL it printed (a path on the CA), the home,
/// and the rest of its stderr once it exits.
pub async fn spawn_tpa_ssh_login(
    app: &TestApp,
) -> (
    tokio::process::Child,
    String,
    tempfile::TempDir,
    tokio::task::JoinHandle<String>,
) {
    use tokio::io::AsyncBufReadExt as _;
    let exe = std::env::current_exe().unwrap();
    let bin = exe
        .parent()
        .and_then(std::path::Path::parent)
        .unwrap()
        .join("tpa-ssh");
    assert!(
        bin.exists(),
        "{} is missing: run `cargo build --workspace` first (scripts/test does)",
        bin.display()
    );
    let home = tempfile::tempdir().unwrap();
    let mut child = tokio::process::Command::new(&bin)
        .args(["login", "--ca", &format!("http://{}", app.address)])
        .env("HOME", home.path())
        .env_remove("XDG_CONFIG_HOME")
        .env_remove("DISPLAY")
        .env_remove("WAYLAND_DISPLAY")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut stderr = tokio::io::BufReader::new(child.stderr.take().unwrap()).lines();
    let url = tokio::time::timeout(std::time::Duration::from_secs(20), async {
        while let Some(line) = stderr.next_line().await.unwrap() {
            if let Some(url) = line.trim().strip_prefix(&format!("http://{}", app.address)) {
                return url.to_owned();
            }
        }
        panic!("tpa-ssh printed no login URL");
    })
    .await
    .unwrap();
    assert!(
        url.starts_with("/cli/login?redirect_uri=http%3A%2F%2F127.0.0.1%3A"),
        "{url}"
    );
    // Keep reading stderr so the child never blocks on a full pipe; the
    // rest of it (the error of a denied login) comes back through the task.
    let rest = tokio::spawn(async move {
        let mut text = String::new();
        while let Ok(Some(line)) = stderr.next_line().await {
            text.push_str(&line);
            text.push('\n');
        }
        text
    });
    (child, url, home, rest)
}
