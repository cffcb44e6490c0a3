//! Issue 18, finding 4: the host patterns `tpa-ssh config` writes into the
//! user's ssh configuration, checked with the real `ssh -G`. A CA announcing
//! `github.com`, `*.com`, `*-*` or `1.*` gets nothing written (so `ssh -G
//! github.com` keeps the user's own settings); a bare public domain goes in
//! only under an `allowed_suffixes` entry the user is shown; nothing is
//! written without `--yes` (or a "y" on a terminal), and a later run that
//! changes the patterns says what changes. The Include line's precedence
//! over the user's own Host blocks is what docs/configuration.md says.

use std::io::{BufRead as _, BufReader, Write as _};
use std::os::unix::fs::{DirBuilderExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use crate::harness::{PW, two_stage_ca};
use crate::harness::{current_login, require, tpa_ssh_bin};

fn tpa_ssh(home: &Path, ca_url: &str, args: &[&str]) -> Output {
    Command::new(tpa_ssh_bin())
        .args(args)
        .env("HOME", home)
        .env("USER", current_login())
        .env_remove("XDG_CONFIG_HOME")
        .env_remove("XDG_DATA_HOME")
        .env_remove("SSH_AUTH_SOCK")
        .env("TPA_CA_URL", ca_url)
        .stdin(Stdio::null())
        .output()
        .expect("run tpa-ssh")
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// `ssh -G HOST` under the user's `~/.ssh/config`, as lowercase `key value` lines.
fn ssh_g(home: &Path, host: &str) -> Vec<String> {
    let out = Command::new(require("ssh", "install openssh-client"))
        .arg("-G")
        .arg("-F")
        .arg(home.join(".ssh/config"))
        .arg(host)
        .env("HOME", home)
        .output()
        .expect("run ssh -G");
    assert!(out.status.success(), "{}", text(&out));
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect()
}

fn values<'a>(lines: &'a [String], key: &str) -> Vec<&'a str> {
    lines
        .iter()
        .filter_map(|l| l.strip_prefix(key)?.strip_prefix(' '))
        .collect()
}

/// The user's own ssh config: their keys for github.com and web-1 (absolute
/// paths: ssh expands `~` from the password database, not `$HOME`).
fn users_own(home: &Path) -> String {
    let ssh = home.join(".ssh");
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&ssh)
        .unwrap();
    let own = format!(
        "Host github.com\n  User git\n  IdentityFile {gh}\n\nHost web-1\n  User me\n  HostName 10.0.0.5\n  ProxyJump myjump.example.net\n  IdentityFile {mine}\n",
        gh = ssh.join("github_key").display(),
        mine = ssh.join("mine").display(),
    );
    std::fs::write(ssh.join("config"), &own).unwrap();
    own
}

/// A stand-in for a misconfigured or compromised CA: answers every request
/// with `announcement` as the client configuration.
fn rogue_ca(announcement: serde_json::Value) -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let body = announcement.to_string();
    std::thread::spawn(move || {
        for stream in listener.incoming().take(50) {
            let Ok(mut stream) = stream else { return };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut line = String::new();
            while reader.read_line(&mut line).is_ok_and(|n| n > 0) && line != "\r\n" {
                line.clear();
            }
            let _ = write!(
                stream,
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    format!("http://{addr}")
}

/// A saved login for `ca_url`, as `tpa-ssh login` leaves it.
fn saved_login(home: &Path, ca_url: &str) {
    let dir = home.join(".config/tpa");
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&dir)
        .unwrap();
    let path = dir.join("session.json");
    let session = serde_json::json!({
        "ca_url": ca_url, "token": "tpa_not-a-real-token",
        "expires_at": "2099-01-01T00:00:00.000000Z", "username": "alice",
    });
    std::fs::write(&path, session.to_string()).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
}

#[test]
fn a_ca_announcing_broad_host_patterns_gets_nothing_written() {
    let tmp = tempfile::tempdir().unwrap();
    for bad in ["github.com", "*.com", "*-*", "1.*"] {
        let home = tmp
            .path()
            .join(format!("home-{}", bad.replace(['*', '.'], "_")));
        let own = users_own(&home);
        let ca = rogue_ca(serde_json::json!({
            "bastion": "evil.example.net", "host_patterns": ["web-*", bad], "allowed_suffixes": []
        }));
        saved_login(&home, &ca);
        let out = tpa_ssh(&home, &ca, &["config", "--yes"]);
        assert!(!out.status.success(), "{bad}: {}", text(&out));
        assert!(
            text(&out).contains(&format!("the CA announces the host pattern {bad}"))
                && text(&out).contains("nothing was written"),
            "{bad}: {}",
            text(&out)
        );
        assert!(!home.join(".ssh/tpa_config").exists(), "{bad}");
        assert_eq!(
            std::fs::read_to_string(home.join(".ssh/config")).unwrap(),
            own
        );
        // The user's own settings for github.com are untouched.
        let g = ssh_g(&home, "github.com");
        assert_eq!(values(&g, "user"), ["git"], "{bad}");
        assert!(values(&g, "proxyjump").is_empty(), "{bad}: {g:?}");
        assert_eq!(values(&g, "identitiesonly"), ["no"], "{bad}");
    }

    // Listed explicitly under allowed_suffixes, a bare domain is accepted,
    // and the user is shown that list before anything is written.
    let home = tmp.path().join("home-allowed");
    users_own(&home);
    let ca = rogue_ca(serde_json::json!({
        "bastion": null, "host_patterns": ["github.com"], "allowed_suffixes": ["github.com"]
    }));
    saved_login(&home, &ca);
    let out = tpa_ssh(&home, &ca, &["config"]);
    assert!(!out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("domains the CA allows:    github.com")
            && text(&out).contains("hosts routed through TPA: github.com"),
        "{}",
        text(&out)
    );
    assert!(!home.join(".ssh/tpa_config").exists());
    let out = tpa_ssh(&home, &ca, &["config", "--yes"]);
    assert!(out.status.success(), "{}", text(&out));
    let g = ssh_g(&home, "github.com");
    assert_eq!(values(&g, "identitiesonly"), ["yes"], "{g:?}");
}

#[test]
fn the_include_line_precedes_the_users_host_blocks_and_changes_are_confirmed() {
    let tmp = tempfile::tempdir().unwrap();
    let ca = two_stage_ca(tmp.path());
    let mut config = std::fs::read_to_string(&ca.config).unwrap();
    config.push_str(
        "\n[client]\nbastion = \"bastion.example.net:2222\"\nhost_patterns = [\"web-*\"]\n",
    );
    std::fs::write(&ca.config, config).unwrap();
    let running = ca.serve();
    let ca_url = format!("http://{}", running.addr);
    let home = tmp.path().join("home");
    users_own(&home);
    let mut login = Command::new(tpa_ssh_bin())
        .args(["login", "--username", "alice", "--password-stdin"])
        .env("HOME", &home)
        .env_remove("XDG_CONFIG_HOME")
        .env_remove("XDG_DATA_HOME")
        .env("TPA_CA_URL", &ca_url)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    login
        .stdin
        .take()
        .unwrap()
        .write_all(format!("{PW}\n").as_bytes())
        .unwrap();
    let out = login.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", text(&out));

    let out = tpa_ssh(&home, &ca_url, &["config", "--yes"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("hosts routed through TPA: web-*")
            && text(&out).contains("bastion.example.net:2222"),
        "{}",
        text(&out)
    );
    let tpa_key: PathBuf = home.join(".local/share/tpa/id_ed25519");

    // web-1 matches the snippet, included at the top: ssh takes the first
    // value it finds for single-valued keys, so the snippet's ProxyJump and
    // IdentitiesOnly win over the user's own Host web-1 block; IdentityFile
    // and CertificateFile add up, the snippet's first; what the snippet does
    // not set (User, HostName) still comes from the user's block.
    let w = ssh_g(&home, "web-1");
    assert_eq!(values(&w, "proxyjump"), ["tpa-bastion"], "{w:?}");
    assert_eq!(values(&w, "identitiesonly"), ["yes"], "{w:?}");
    let ids = values(&w, "identityfile");
    assert_eq!(
        ids.first().copied(),
        Some(tpa_key.to_str().unwrap()),
        "{w:?}"
    );
    assert!(ids.iter().any(|i| i.ends_with("/.ssh/mine")), "{w:?}");
    assert_eq!(values(&w, "user"), ["me"], "{w:?}");
    assert_eq!(values(&w, "hostname"), ["10.0.0.5"], "{w:?}");
    // github.com matches no pattern: exactly the user's own settings.
    let g = ssh_g(&home, "github.com");
    assert!(values(&g, "proxyjump").is_empty(), "{g:?}");
    assert_eq!(values(&g, "identitiesonly"), ["no"], "{g:?}");
    assert!(
        !values(&g, "identityfile")
            .iter()
            .any(|i| i.contains("/tpa/")),
        "{g:?}"
    );

    // A later run with other patterns says what changes and writes nothing
    // without --yes.
    let before = std::fs::read_to_string(home.join(".ssh/tpa_config")).unwrap();
    let out = tpa_ssh(&home, &ca_url, &["config", "--host-pattern", "db-*"]);
    assert!(!out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("+ hosts added:   db-*")
            && text(&out).contains("- hosts removed: web-*")
            && text(&out).contains("tpa-ssh config --yes"),
        "{}",
        text(&out)
    );
    assert_eq!(
        std::fs::read_to_string(home.join(".ssh/tpa_config")).unwrap(),
        before
    );
    // The same patterns again: nothing to confirm, nothing changes.
    let out = tpa_ssh(&home, &ca_url, &["config"]);
    assert!(
        out.status.success() && text(&out).contains("nothing changed"),
        "{}",
        text(&out)
    );
    drop(running);
}
