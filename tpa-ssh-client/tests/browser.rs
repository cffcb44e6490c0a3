//! `tpa-ssh login` (SSO through the browser) opens the CA's consent page
//! with the person's browser in a graphical session, and only prints the URL
//! elsewhere. `$BROWSER` names a script that records what it was given;
//! nothing here needs a CA (the login waits for the browser first).

use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Kills the login (which waits for the browser's redirect) by its PID.
struct Login(Child);

impl Drop for Login {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A `$BROWSER` script that writes its argument into `record`.
fn recording_browser(dir: &Path, record: &Path) -> std::path::PathBuf {
    let script = dir.join("browser");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\nprintf '%s\\n' \"$1\" > '{}'\n",
            record.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    script
}

/// `tpa-ssh --ca http://127.0.0.1:9 login` with `display` as `$DISPLAY`
/// (none when `None`), its standard error going to `stderr`.
fn login(home: &Path, browser: &Path, display: Option<&str>, stderr: &Path) -> Login {
    let mut command = Command::new(env!("CARGO_BIN_EXE_tpa-ssh"));
    command
        .args(["--ca", "http://127.0.0.1:9", "login"])
        .env("HOME", home)
        .env("BROWSER", browser)
        .env_remove("XDG_CONFIG_HOME")
        .env_remove("XDG_DATA_HOME")
        .env_remove("TPA_CA_URL")
        .env_remove("WAYLAND_DISPLAY")
        .env_remove("DISPLAY")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(stderr).unwrap());
    if let Some(display) = display {
        command.env("DISPLAY", display);
    }
    Login(command.spawn().unwrap())
}

/// Waits (bounded) until `path` holds a line; its text.
fn wait_for_line(path: &Path) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        if text.ends_with('\n') {
            return text;
        }
        assert!(Instant::now() < deadline, "nothing in {}", path.display());
        std::thread::sleep(Duration::from_millis(50));
    }
}

// issue 14: xdg-open by hand became the webbrowser crate; the consent page
// still opens in the browser, with the loopback redirect and the challenge.
#[test]
fn sso_login_opens_the_consent_page_in_the_browser_of_a_graphical_session() {
    let tmp = tempfile::tempdir().unwrap();
    let record = tmp.path().join("opened");
    let browser = recording_browser(tmp.path(), &record);
    let stderr = tmp.path().join("stderr");

    let _login = login(tmp.path(), &browser, Some(":0"), &stderr);

    let opened = wait_for_line(&record);
    assert!(
        opened.starts_with("http://127.0.0.1:9/cli/login?redirect_uri=http%3A%2F%2F127.0.0.1%3A"),
        "{opened}"
    );
    assert!(
        opened.contains("&code_challenge=")
            && opened.trim_end().ends_with("&code_challenge_method=S256"),
        "{opened}"
    );
    let said = std::fs::read_to_string(&stderr).unwrap();
    assert!(
        said.contains("Opened your browser to log in. If nothing happened, open:"),
        "{said}"
    );
    assert!(
        said.contains(opened.trim_end()),
        "the same URL is printed: {said}"
    );
}

#[test]
fn sso_login_without_a_display_prints_the_url_and_starts_no_browser() {
    let tmp = tempfile::tempdir().unwrap();
    let record = tmp.path().join("opened");
    let browser = recording_browser(tmp.path(), &record);
    let stderr = tmp.path().join("stderr");

    let _login = login(tmp.path(), &browser, None, &stderr);

    let said = wait_for_line(&stderr);
    let deadline = Instant::now() + Duration::from_secs(20);
    while !std::fs::read_to_string(&stderr)
        .unwrap()
        .contains("Confirmation phrase: ")
    {
        assert!(Instant::now() < deadline, "{said}");
        std::thread::sleep(Duration::from_millis(50));
    }
    let said = std::fs::read_to_string(&stderr).unwrap();
    assert!(
        said.starts_with(
            "Open this URL in a browser on this machine to log in:\n  http://127.0.0.1:9/cli/login?"
        ),
        "{said}"
    );
    assert!(!record.exists(), "no browser was started");
}
