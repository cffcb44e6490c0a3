//! `tpa-ssh` against a real CA and a real sshd, with a temporary HOME.

use std::io::Write as _;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::harness::{
    CaDir, Guard, Sshd, UserKey, current_login, free_port, hash_password, http_get, http_send,
    require, tpa_bastion_bin, tpa_ssh_bin, wait_for_port,
};
use crate::harness::{PW, login, post, two_stage_ca};

struct Home {
    dir: PathBuf,
    ca_url: String,
}

impl Home {
    fn new(dir: PathBuf, addr: std::net::SocketAddr) -> Self {
        std::fs::create_dir_all(&dir).unwrap();
        Self {
            dir,
            ca_url: format!("http://{addr}"),
        }
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(tpa_ssh_bin());
        c.args(args)
            .env("HOME", &self.dir)
            .env("USER", current_login())
            .env_remove("XDG_CONFIG_HOME")
            .env_remove("XDG_DATA_HOME")
            .env_remove("SSH_AUTH_SOCK")
            .env("TPA_CA_URL", &self.ca_url);
        c
    }

    /// `tpa-ssh ARGS` on a pseudo-terminal (util-linux `script`), everything it
    /// shows written to `typescript` as it comes.
    fn in_terminal(&self, args: &[&str], typescript: &Path) -> Command {
        let mut line = quote(tpa_ssh_bin().to_str().unwrap());
        for a in args {
            line.push(' ');
            line.push_str(&quote(a));
        }
        self.shell_in_terminal(&line, typescript)
    }

    /// The shell command `line` on a pseudo-terminal, with tpa-ssh's
    /// environment; the screen goes to `typescript`.
    fn shell_in_terminal(&self, line: &str, typescript: &Path) -> Command {
        let mut c = self.command(&[]);
        let env: Vec<_> = c
            .get_envs()
            .map(|(k, v)| (k.to_owned(), v.map(ToOwned::to_owned)))
            .collect();
        c = Command::new(require("script", "install bsdutils"));
        for (k, v) in env {
            match v {
                Some(v) => c.env(k, v),
                None => c.env_remove(k),
            };
        }
        c.args(["-qfec", line]).arg(typescript);
        c
    }

    /// `tpa-ssh … --json`, parsed (the test fails when it is not JSON).
    fn json(&self, args: &[&str]) -> serde_json::Value {
        let out = self.run(args);
        assert!(out.status.success(), "{args:?}: {}", text(&out));
        serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("{args:?} printed no JSON ({e}): {}", text(&out)))
    }

    fn data(&self) -> PathBuf {
        self.dir.join(".local/share/tpa")
    }

    fn run(&self, args: &[&str]) -> Output {
        self.command(args)
            .stdin(Stdio::null())
            .output()
            .expect("run tpa-ssh")
    }

    fn login(&self, user: &str) -> Output {
        let mut child = self
            .command(&["login", "--username", user, "--password-stdin"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(format!("{PW}\n").as_bytes())
            .unwrap();
        child.wait_with_output().unwrap()
    }
}

/// `s` as one single-quoted shell word.
fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn login_request_wait_certificate_then_plain_ssh() {
    let tmp = tempfile::tempdir().unwrap();
    let ca = two_stage_ca(tmp.path());
    append(&ca.config, "\n[client]\nhost_patterns = [\"web-*\"]\n");
    let running = ca.serve();
    let addr = running.addr;
    let (_, ca_pub) = http_get(addr, "/ca.pub");
    let sshd = Sshd::start(&tmp.path().join("sshd"), &ca_pub);
    let home = Home {
        dir: tmp.path().join("home"),
        ca_url: format!("http://{addr}"),
    };
    std::fs::create_dir_all(&home.dir).unwrap();

    // Not logged in yet: a clear message, non-zero.
    let out = home.run(&["list"]);
    assert!(
        !out.status.success() && text(&out).contains("not logged in"),
        "{}",
        text(&out)
    );

    let out = home.login("alice");
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("Logged in") && text(&out).contains("engineers"));
    let session = home.dir.join(".config/tpa/session.json");
    assert_eq!(mode(&session), 0o600, "the token file is private");
    assert!(!text(&out).contains("tpa_"), "the token is never printed");

    // A role the user may not request: the allowed ones are listed.
    let out = home.run(&[
        "request",
        "--role",
        "root-everything",
        "--host",
        "web-1",
        "--reason",
        "x",
    ]);
    assert!(!out.status.success());
    assert!(
        text(&out).contains("hotfix-admin") && text(&out).contains("unknown_role"),
        "{}",
        text(&out)
    );

    // request --wait, on a terminal, blocks until both approvals land with a
    // live status line, then fetches the certificate.
    let typescript = tmp.path().join("typescript");
    let waiter = home
        .in_terminal(
            &[
                "request",
                "--role",
                "hotfix-admin",
                "--host",
                "web-1",
                "--for",
                "1h",
                "--reason",
                "INC-5 disk",
                "--wait",
            ],
            &typescript,
        )
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let mut waiter = Guard { child: waiter };
    let (bob, carol) = (login(addr, "bob"), login(addr, "carol"));
    let id = wait_for_pending(addr, &bob);
    assert!(
        waiter.child.try_wait().unwrap().is_none(),
        "request --wait must wait for the decision"
    );
    post(addr, &bob, &format!("/api/v1/requests/{id}/approve"), "");
    // The line shows the first approval and what is still needed.
    let screen = || std::fs::read_to_string(&typescript).unwrap_or_default();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !screen().contains("1 approval; needs 1 more from managers (stage 2)") {
        assert!(Instant::now() < deadline, "no live progress:\n{}", screen());
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        screen().contains(&format!("⠋ {id} waiting")),
        "{}",
        screen()
    );
    post(addr, &carol, &format!("/api/v1/requests/{id}/approve"), "");
    let status = wait_exit(&mut waiter, Duration::from_secs(20));
    let output = screen();
    assert!(status.success(), "{output}");
    assert!(
        output.contains(&format!(
            "Request {id} approved by bob, carol: hotfix-admin on web-1"
        )) && output.contains("Certificate for"),
        "{output}"
    );

    // The files are where tpa-ssh says, private, and plain ssh uses them.
    let data = home.dir.join(".local/share/tpa");
    assert_eq!(mode(&data.join("id_ed25519")), 0o600);
    let key = UserKey {
        private: data.join("id_ed25519"),
        public: data.join("id_ed25519.pub"),
        cert: data.join("id_ed25519-cert.pub"),
    };
    let out = sshd.ssh(&key, &current_login(), "echo cli-ok");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "cli-ok",
        "{}\n{}",
        text(&out),
        sshd.log()
    );

    // `tpa-ssh config`: the user's own ~/.ssh/config (which says where web-1 is)
    // gets one Include line at the top, and then plain `ssh web-1` works. ssh
    // reads ~/.ssh/config from the passwd home, not $HOME, so the test names it
    // with -F.
    let ssh_dir = home.dir.join(".ssh");
    std::fs::create_dir_all(&ssh_dir).unwrap();
    let user_config = ssh_dir.join("config");
    let users_own = format!(
        "Host web-1\n  HostName 127.0.0.1\n  Port {port}\n\nHost *\n  UserKnownHostsFile {known}\n  \
         StrictHostKeyChecking yes\n  BatchMode yes\n  IdentityAgent none\n  ConnectTimeout 10\n  LogLevel ERROR\n",
        port = sshd.port,
        known = sshd.dir.join("known_hosts").display(),
    );
    std::fs::write(&user_config, &users_own).unwrap();
    std::fs::set_permissions(&user_config, std::fs::Permissions::from_mode(0o640)).unwrap();
    // issue 18: without a terminal and without --yes, it shows what it would
    // write and writes nothing.
    let out = home.run(&["config"]);
    assert!(!out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("hosts routed through TPA: web-*")
            && text(&out).contains("tpa-ssh config --yes"),
        "{}",
        text(&out)
    );
    assert!(!ssh_dir.join("tpa_config").exists());
    assert_eq!(std::fs::read_to_string(&user_config).unwrap(), users_own);
    let out = home.run(&["config", "--yes"]);
    assert!(out.status.success(), "{}", text(&out));
    let snippet = ssh_dir.join("tpa_config");
    let snippet_text = std::fs::read_to_string(&snippet).unwrap();
    assert!(
        snippet_text.contains("Host web-*\n")
            && snippet_text.contains("IdentitiesOnly yes")
            && snippet_text.contains(&format!("CertificateFile \"{}\"", key.cert.display()))
            && !snippet_text.contains("ProxyJump"),
        "{snippet_text}"
    );
    let config_text = std::fs::read_to_string(&user_config).unwrap();
    assert!(
        config_text.starts_with(&format!(
            "# Added by `tpa-ssh config`.\nInclude \"{}\"\n",
            snippet.display()
        )) && config_text.ends_with(&users_own),
        "{config_text}"
    );
    assert_eq!(mode(&user_config), 0o640, "permissions are kept");
    let backups = |dir: &Path| {
        std::fs::read_dir(dir)
            .unwrap()
            .filter_map(Result::ok)
            .filter(|e| e.file_name().to_string_lossy().contains("tpa-backup"))
            .map(|e| e.path())
            .collect::<Vec<_>>()
    };
    let first_backups = backups(&ssh_dir);
    assert_eq!(first_backups.len(), 1, "one backup before the first change");
    assert_eq!(
        std::fs::read_to_string(&first_backups[0]).unwrap(),
        users_own
    );
    let out = plain_ssh(&user_config, "web-1", "echo via-ssh-config");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "via-ssh-config",
        "{}\n{}",
        text(&out),
        sshd.log()
    );
    // Again: nothing changes, byte for byte, and no new backup.
    let out = home.run(&["config"]);
    assert!(
        out.status.success() && text(&out).contains("nothing changed"),
        "{}",
        text(&out)
    );
    assert_eq!(std::fs::read_to_string(&user_config).unwrap(), config_text);
    assert_eq!(std::fs::read_to_string(&snippet).unwrap(), snippet_text);
    assert_eq!(backups(&ssh_dir), first_backups);
    let again = home.json(&["config", "--json"]);
    assert_eq!(
        (
            again["snippet_written"].as_bool(),
            again["include_added"].as_bool()
        ),
        (Some(false), Some(false))
    );
    assert_eq!(again["host_patterns"], serde_json::json!(["web-*"]));

    // --json output parses; `cert` reuses the certificate while it has time
    // left and --renew gets a fresh one; whoami shows the grant.
    let list = home.json(&["list", "--json"]);
    assert_eq!(list["requests"][0]["state"], "approved");
    let status = home.json(&["status", &id, "--json"]);
    assert_eq!(status["approvals"].as_array().unwrap().len(), 2);
    let who = home.json(&["whoami", "--json"]);
    assert_eq!(who["active_grants"][0]["id"], id.as_str());
    let first_serial = cert_serial(&key.cert);
    let cert = home.json(&["cert", "--json"]);
    assert_eq!(
        cert["certificate"]["key_id"],
        format!("tpa:request={id}:user=alice")
    );
    assert_eq!(cert["certificate"]["reused"], true, "{cert}");
    assert_eq!(cert["certificate"]["serial"], first_serial.as_str());
    let cert = home.json(&["cert", "--renew", "--json"]);
    assert_eq!(cert["certificate"]["reused"], false, "{cert}");
    assert_ne!(cert_serial(&key.cert), first_serial, "a new certificate");
    let who = home.run(&["whoami"]);
    assert!(
        text(&who).contains(&format!("active grant: {id}")),
        "{}",
        text(&who)
    );

    // `tpa-ssh ssh` without a bastion: the active grant covers web-1, the saved
    // certificate is reused, and ssh connects directly.
    let serial = cert_serial(&key.cert);
    let out = home.run(&[
        "ssh",
        "web-1",
        "--",
        "-F",
        user_config.to_str().unwrap(),
        "echo direct-ok",
    ]);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "direct-ok",
        "{}",
        text(&out)
    );
    assert_eq!(cert_serial(&key.cert), serial, "no new certificate");

    // Logout revokes the token at the CA: the saved token no longer works.
    let token: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&session).unwrap()).unwrap();
    assert!(home.run(&["logout"]).status.success());
    assert!(!session.exists());
    let (status, _) = crate::harness::http_send(
        addr,
        "GET",
        "/api/v1/whoami",
        &[(
            "Authorization",
            &format!("Bearer {}", token["token"].as_str().unwrap()),
        )],
        "",
    );
    assert_eq!(status, 401);
}

#[test]
fn denied_request_exits_non_zero_with_the_comment_and_unreachable_ca_is_explained() {
    let tmp = tempfile::tempdir().unwrap();
    let ca = two_stage_ca(tmp.path());
    let running = ca.serve();
    let addr = running.addr;
    let home = Home {
        dir: tmp.path().join("home"),
        ca_url: format!("http://{addr}"),
    };
    std::fs::create_dir_all(&home.dir).unwrap();
    assert!(home.login("alice").status.success());
    let waiter = home
        .command(&[
            "request",
            "--role",
            "hotfix-admin",
            "--host",
            "web-2",
            "--reason",
            "x",
            "--wait",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut waiter = Guard { child: waiter };
    let bob = login(addr, "bob");
    let id = wait_for_pending(addr, &bob);
    post(
        addr,
        &bob,
        &format!("/api/v1/requests/{id}/deny"),
        r#"{"comment":"use read-only-debug"}"#,
    );
    let status = wait_exit(&mut waiter, Duration::from_secs(20));
    let err = waiter.child.stderr.take().map(read_all).unwrap_or_default();
    assert_eq!(status.code(), Some(3), "{err}");
    assert!(
        err.contains("denied") && err.contains("use read-only-debug"),
        "{err}"
    );

    // The CA goes away: the message says what to check.
    drop(running);
    let out = home.run(&["list"]);
    assert!(!out.status.success());
    assert!(text(&out).contains("cannot reach the CA"), "{}", text(&out));
    // A wrong password: no token saved.
    let home2 = Home {
        dir: tmp.path().join("home2"),
        ca_url: "http://127.0.0.1:1".into(),
    };
    std::fs::create_dir_all(&home2.dir).unwrap();
    assert!(!home2.login("alice").status.success());
    assert!(!home2.dir.join(".config/tpa/session.json").exists());
}

/// Review (tpa-ssh hardening): a second `tpa-ssh login` overwrote the saved
/// token, and the first one stayed valid at the CA until it expired.
#[test]
fn login_again_revokes_the_previous_token() {
    let tmp = tempfile::tempdir().unwrap();
    let ca = two_stage_ca(tmp.path());
    let running = ca.serve();
    let addr = running.addr;
    let home = Home::new(tmp.path().join("home"), addr);
    let session = home.dir.join(".config/tpa/session.json");
    let saved = || -> serde_json::Value {
        serde_json::from_slice(&std::fs::read(&session).unwrap()).unwrap()
    };
    let token = || saved()["token"].as_str().unwrap().to_owned();
    let call = |method: &str, path: &str, token: &str| {
        let auth = format!("Bearer {token}");
        http_send(addr, method, path, &[("Authorization", &auth)], "").0
    };

    let out = home.login("alice");
    assert!(out.status.success(), "{}", text(&out));
    assert!(!text(&out).contains("previous login"), "{}", text(&out));
    let first = token();
    assert_eq!(call("GET", "/api/v1/whoami", &first), 200);

    let out = home.login("bob");
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains(&format!(
            "The previous login (alice at http://{addr}) is revoked."
        )),
        "{}",
        text(&out)
    );
    let second = token();
    assert_ne!(first, second);
    assert_eq!(call("GET", "/api/v1/whoami", &first), 401);
    assert_eq!(call("GET", "/api/v1/whoami", &second), 200);

    // A saved token the CA no longer accepts: the new login goes ahead quietly.
    assert_eq!(call("POST", "/api/v1/logout", &second), 204);
    let out = home.login("alice");
    assert!(out.status.success(), "{}", text(&out));
    assert!(!text(&out).contains("previous login"), "{}", text(&out));
    let third = token();
    assert_eq!(call("GET", "/api/v1/whoami", &third), 200);

    // The previous login's CA cannot be reached: said, and the new login is
    // still saved, with its own CA.
    let mut stale = saved();
    stale["ca_url"] = format!("http://127.0.0.1:{}", free_port()).into();
    std::fs::write(&session, serde_json::to_vec(&stale).unwrap()).unwrap();
    let out = home.login("alice");
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("could not be revoked") && text(&out).contains("cannot reach the CA"),
        "{}",
        text(&out)
    );
    assert_eq!(saved()["ca_url"], format!("http://{addr}"));
    assert_ne!(token(), third);
    assert_eq!(call("GET", "/api/v1/whoami", &token()), 200);
    // That token was not revoked: the CA was "unreachable" under another URL.
    assert_eq!(call("GET", "/api/v1/whoami", &third), 200);

    // A failed new login leaves the saved one alone (and does not revoke it).
    let before = token();
    let mut bad = home
        .command(&["login", "--username", "alice", "--password-stdin"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    bad.stdin.take().unwrap().write_all(b"wrong\n").unwrap();
    let out = bad.wait_with_output().unwrap();
    assert!(!out.status.success(), "{}", text(&out));
    assert_eq!(token(), before);
    assert_eq!(call("GET", "/api/v1/whoami", &before), 200);
}

/// Review (tpa-ssh hardening): Ctrl-C at the password prompt killed
/// `tpa-ssh` after `stty -echo`, and the shell was left without echo.
#[test]
fn ctrl_c_at_the_password_prompt_gives_the_terminal_back() {
    let tmp = tempfile::tempdir().unwrap();
    let ca = two_stage_ca(tmp.path());
    let running = ca.serve();
    let home = Home::new(tmp.path().join("home"), running.addr);
    let session = home.dir.join(".config/tpa/session.json");
    // The shell goes on after tpa-ssh and shows the terminal's settings.
    let line = format!(
        "{} login --username alice; echo \"exit=$? tty\"\"-settings:\"; stty -a",
        quote(tpa_ssh_bin().to_str().unwrap())
    );
    let run = |name: &str, typed: &[u8]| -> String {
        let typescript = tmp.path().join(name);
        let child = home
            .shell_in_terminal(&line, &typescript)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        let mut guard = Guard { child };
        let mut keyboard = guard.child.stdin.take().unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        while !std::fs::read_to_string(&typescript)
            .unwrap_or_default()
            .contains("Password: ")
        {
            assert!(Instant::now() < deadline, "no password prompt");
            std::thread::sleep(Duration::from_millis(50));
        }
        keyboard.write_all(typed).unwrap();
        keyboard.flush().unwrap();
        wait_exit(&mut guard, Duration::from_secs(20));
        drop(keyboard);
        let screen = std::fs::read_to_string(&typescript).unwrap();
        // The marker as the shell prints it (the typescript's header shows
        // the command line with the quotes).
        let settings = screen
            .split_once("tty-settings:")
            .map(|(_, after)| after)
            .unwrap_or_default();
        for mode in ["echo", "icanon", "isig"] {
            assert!(
                settings.split([' ', ';', '\r', '\n']).any(|w| w == mode),
                "{mode} not restored: {screen}"
            );
        }
        screen
    };

    // Ctrl-C halfway through the password.
    let screen = run(
        "cancelled",
        &PW.as_bytes()[..4]
            .iter()
            .chain(b"\x03")
            .copied()
            .collect::<Vec<_>>(),
    );
    assert!(screen.contains("login cancelled"), "{screen}");
    assert!(screen.contains("exit=1 tty-settings:"), "{screen}");
    assert!(
        !screen.contains(&PW[..4]),
        "the password was echoed: {screen}"
    );
    assert!(!session.exists());

    // A password typed with a slip, corrected with backspace: logged in.
    let typed = format!("{PW}x\x7f\r");
    let screen = run("typed", typed.as_bytes());
    assert!(screen.contains("Logged in to"), "{screen}");
    assert!(screen.contains("exit=0 tty-settings:"), "{screen}");
    assert!(!screen.contains(PW), "the password was echoed: {screen}");
    assert!(session.exists());
}

fn append(path: &Path, extra: &str) {
    let mut text = std::fs::read_to_string(path).unwrap();
    text.push_str(extra);
    std::fs::write(path, text).unwrap();
}

/// The serial of a certificate file, as `ssh-keygen -L` prints it.
fn cert_serial(cert: &Path) -> String {
    let out = Command::new(require("ssh-keygen", "install openssh-client"))
        .arg("-L")
        .arg("-f")
        .arg(cert)
        .output()
        .unwrap();
    let listing = String::from_utf8_lossy(&out.stdout).into_owned();
    listing
        .lines()
        .find_map(|l| l.trim().strip_prefix("Serial: "))
        .unwrap_or_else(|| panic!("no serial in {listing}"))
        .to_owned()
}

/// Plain `ssh -F CONFIG HOST COMMAND`, nothing else.
fn plain_ssh(config: &Path, host: &str, command: &str) -> Output {
    Command::new(require("ssh", "install openssh-client"))
        .arg("-F")
        .arg(config)
        .args([host, command])
        .stdin(Stdio::null())
        .output()
        .expect("run ssh")
}

fn read_all(mut r: impl std::io::Read) -> String {
    let mut s = String::new();
    let _ = r.read_to_string(&mut s);
    s
}

fn wait_exit(guard: &mut Guard, limit: Duration) -> std::process::ExitStatus {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = guard.child.try_wait().unwrap() {
            return status;
        }
        assert!(
            Instant::now() < deadline,
            "tpa-ssh did not finish within {limit:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The id of the pending request in bob's inbox, once it appears.
fn wait_for_pending(addr: std::net::SocketAddr, bob: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (_, body) = crate::harness::http_send(
            addr,
            "GET",
            "/api/v1/requests?scope=inbox",
            &[("Authorization", &format!("Bearer {bob}"))],
            "",
        );
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
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

/// An ssh-agent for one test, in debug mode so that its log shows each key's
/// lifetime; killed by PID on drop.
struct TestAgent {
    socket: PathBuf,
    log: PathBuf,
    _guard: Guard,
}

impl TestAgent {
    fn start(dir: &Path) -> Self {
        let agent = require("ssh-agent", "install openssh-client");
        let socket = dir.join("agent.sock");
        let log = dir.join("agent.log");
        let child = Command::new(agent)
            .arg("-d")
            .arg("-a")
            .arg(&socket)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let guard = Guard { child };
        let deadline = Instant::now() + Duration::from_secs(10);
        while !socket.exists() {
            assert!(Instant::now() < deadline, "ssh-agent did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        Self {
            socket,
            log,
            _guard: guard,
        }
    }

    fn ssh_add(&self, args: &[&str]) -> Output {
        Command::new(require("ssh-add", "install openssh-client"))
            .args(args)
            .env("SSH_AUTH_SOCK", &self.socket)
            .output()
            .unwrap()
    }

    /// The certificate lines the agent holds (`ssh-add -L`), without comments.
    fn certificates(&self) -> Vec<String> {
        String::from_utf8_lossy(&self.ssh_add(&["-L"]).stdout)
            .lines()
            .filter(|l| l.contains("-cert-v01@openssh.com "))
            .map(|l| l.split_whitespace().take(2).collect::<Vec<_>>().join(" "))
            .collect()
    }
}

/// An expired certificate for `public_key` that looks like TPA's (key id
/// `tpa:request=<request>:user=alice`), signed by a throwaway CA.
fn expired_tpa_cert(dir: &Path, public_key: &Path, request: &str) -> String {
    let keygen = require("ssh-keygen", "install openssh-client");
    std::fs::create_dir_all(dir).unwrap();
    let ca = dir.join("old_ca");
    let out = Command::new(&keygen)
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(&ca)
        .output()
        .unwrap();
    assert!(out.status.success());
    let subject = dir.join("subject.pub");
    std::fs::copy(public_key, &subject).unwrap();
    let out = Command::new(&keygen)
        .arg("-q")
        .arg("-s")
        .arg(&ca)
        .args([
            "-I",
            &format!("tpa:request={request}:user=alice"),
            "-n",
            &current_login(),
            "-V",
            "20200101:20200102",
        ])
        .arg(&subject)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    std::fs::read_to_string(dir.join("subject-cert.pub")).unwrap()
}

/// A CA with an auto-approved `web-debug` role for the current login on web-*,
/// a two-stage `hotfix-admin` role, a role alice may not request, engineers
/// alice and bob's approver groups, and extra TOML (e.g. `[client]`).
fn auto_ca(dir: &Path, extra: &str) -> CaDir {
    let ca = CaDir::init(dir, "ca");
    let me = current_login();
    let hash = hash_password(PW);
    append(
        &ca.config,
        &format!(
            r#"
[[roles]]
name = "web-debug"
logins = ["{me}"]
hosts = ["web-*"]
max_duration = "1h"
cert_ttl = "10m"
requestable_by = ["engineers"]
stages = [{{ group = "sre-leads" }}]
auto_approve = {{ group = "engineers", max_duration = "1h" }}

[[roles]]
name = "hotfix-admin"
logins = ["{me}"]
hosts = ["web-*"]
max_duration = "4h"
requestable_by = ["engineers"]
stages = [{{ group = "sre-leads" }}]

[[roles]]
name = "dba"
logins = ["{me}"]
hosts = ["db-*"]
max_duration = "1h"
requestable_by = ["dbas"]
stages = [{{ group = "sre-leads" }}]

[[accounts]]
username = "alice"
password_hash = "{hash}"
groups = ["engineers"]

[[accounts]]
username = "bob"
password_hash = "{hash}"
groups = ["sre-leads"]
{extra}"#
        ),
    );
    ca
}

#[test]
fn agent_gets_the_certificate_with_a_lifetime_and_loses_expired_ones() {
    let tmp = tempfile::tempdir().unwrap();
    let ca = auto_ca(tmp.path(), "");
    let running = ca.serve();
    let home = Home::new(tmp.path().join("home"), running.addr);
    assert!(home.login("alice").status.success());
    let out = home.run(&[
        "request",
        "--role",
        "web-debug",
        "--host",
        "web-1",
        "--reason",
        "INC-7",
        "--wait",
    ]);
    assert!(out.status.success(), "{}", text(&out));
    let id = home.json(&["status", "--json"])["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let key = home.data().join("id_ed25519");
    let cert_file = home.data().join("id_ed25519-cert.pub");

    // An expired TPA certificate sits in the agent (loaded without a lifetime).
    let agent = TestAgent::start(tmp.path());
    let old = tmp.path().join("old");
    let expired = expired_tpa_cert(&old, &home.data().join("id_ed25519.pub"), "req_old");
    let old_key = old.join("id_old");
    std::fs::copy(&key, &old_key).unwrap();
    std::fs::write(old.join("id_old-cert.pub"), &expired).unwrap();
    assert!(agent.ssh_add(&[old_key.to_str().unwrap()]).status.success());
    let expired_line = expired
        .split_whitespace()
        .take(2)
        .collect::<Vec<_>>()
        .join(" ");
    assert_eq!(agent.certificates(), [expired_line]);

    // The saved certificate is expired too: `cert` replaces it without a new
    // approval, takes the expired one out of the agent and loads the new one
    // with a lifetime.
    std::fs::write(
        &cert_file,
        expired_tpa_cert(
            &tmp.path().join("old2"),
            &home.data().join("id_ed25519.pub"),
            &id,
        ),
    )
    .unwrap();
    let out = home
        .command(&["cert"])
        .env("SSH_AUTH_SOCK", &agent.socket)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("(new)")
            && text(&out).contains("Removed 1 expired TPA certificate(s) from ssh-agent")
            && text(&out).contains("Loaded into ssh-agent for"),
        "{}",
        text(&out)
    );
    let fresh = std::fs::read_to_string(&cert_file).unwrap();
    let fresh_line = fresh
        .split_whitespace()
        .take(2)
        .collect::<Vec<_>>()
        .join(" ");
    assert_eq!(
        agent.certificates(),
        [fresh_line],
        "only the fresh certificate"
    );
    let listing = String::from_utf8_lossy(&agent.ssh_add(&["-l"]).stdout).into_owned();
    assert!(listing.contains("(ED25519-CERT)"), "{listing}");
    let log = std::fs::read_to_string(&agent.log).unwrap();
    let life: u64 = log
        .lines()
        .rfind(|l| l.contains("add ssh-ed25519-cert-v01@openssh.com"))
        .and_then(|l| l.split("(life: ").nth(1))
        .and_then(|l| l.split(')').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no lifetime in the agent log:\n{log}"));
    // The role's cert_ttl is 10 minutes: the lifetime is what is left of it.
    assert!((500..=600).contains(&life), "lifetime {life}\n{log}");

    // A corrupt certificate file: a clear error, then --renew replaces it.
    std::fs::write(
        &cert_file,
        "ssh-ed25519-cert-v01@openssh.com AAAAnot-base64\n",
    )
    .unwrap();
    let out = home.run(&["cert"]);
    assert!(!out.status.success());
    assert!(
        text(&out).contains("is corrupt") && text(&out).contains("tpa-ssh cert --renew"),
        "{}",
        text(&out)
    );
    let out = home.run(&["cert", "--renew"]);
    assert!(out.status.success(), "{}", text(&out));

    // A key file that others may read is refused, with the fix.
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = home.run(&["cert"]);
    assert!(!out.status.success());
    assert!(text(&out).contains("chmod 600"), "{}", text(&out));
}

#[test]
fn error_cases_say_what_to_do_and_exit_non_zero() {
    let tmp = tempfile::tempdir().unwrap();
    // Pending requests expire after 2 seconds here.
    let ca = auto_ca(tmp.path(), "\n[workflow]\npending_ttl = \"2s\"\n");
    let running = ca.serve();
    let home = Home::new(tmp.path().join("home"), running.addr);
    assert!(home.login("alice").status.success());

    // A role alice may not request: the ones she may are listed.
    let out = home.run(&[
        "request", "--role", "dba", "--host", "db-1", "--reason", "x",
    ]);
    assert!(!out.status.success());
    assert!(
        text(&out).contains("role_not_allowed") && text(&out).contains("web-debug"),
        "{}",
        text(&out)
    );

    // No grant covers the host, and no role given without a terminal.
    let out = home.run(&["ssh", "web-3", "--", "true"]);
    assert!(!out.status.success());
    assert!(
        text(&out).contains("no active grant covers web-3")
            && text(&out).contains("--role ROLE --reason"),
        "{}",
        text(&out)
    );
    // Not a host name (nothing reaches ssh's command line).
    let out = home.run(&["ssh", "web-1 -oProxyCommand=id"]);
    assert!(!out.status.success());
    assert!(text(&out).contains("is not a host name"), "{}", text(&out));

    // Nobody decides in time: the request expires, exit 4.
    let started = Instant::now();
    let out = home.run(&[
        "request",
        "--role",
        "hotfix-admin",
        "--host",
        "web-2",
        "--reason",
        "x",
        "--wait",
    ]);
    assert_eq!(out.status.code(), Some(4), "{}", text(&out));
    assert!(
        text(&out).contains("expired before anyone decided"),
        "{}",
        text(&out)
    );
    assert!(started.elapsed() < Duration::from_secs(40));

    // A token the CA no longer accepts: log in again.
    let session = home.dir.join(".config/tpa/session.json");
    let mut saved: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&session).unwrap()).unwrap();
    saved["token"] = "tpa_not-a-valid-token".into();
    std::fs::write(&session, saved.to_string()).unwrap();
    let out = home.run(&["whoami"]);
    assert!(!out.status.success());
    assert!(text(&out).contains("run `tpa-ssh login`"), "{}", text(&out));
}

// issue 11 and issue 18: a reason with terminal escapes, bidi or zero-width
// characters is refused through tpa-ssh with the API's stable code, nothing
// is stored, and nothing the CA answers reaches the terminal raw.
#[test]
fn a_reason_with_escapes_is_refused_through_tpa_ssh_and_nothing_raw_is_printed() {
    let tmp = tempfile::tempdir().unwrap();
    let ca = auto_ca(tmp.path(), "");
    let running = ca.serve();
    let home = Home::new(tmp.path().join("home"), running.addr);
    assert!(home.login("alice").status.success());

    for (name, bad) in [
        ("U+001B", "\u{1b}]0;owned\u{7}\u{1b}[2J"),
        ("U+202E", "\u{202E}"),
        ("U+200B", "\u{200B}"),
        ("U+000D", "\r"),
    ] {
        let reason = format!("INC-1 {bad}disk full");
        let out = home.run(&[
            "request",
            "--role",
            "web-debug",
            "--host",
            "web-1",
            "--reason",
            &reason,
        ]);
        let shown = text(&out);
        assert!(!out.status.success(), "{name}: {shown}");
        assert!(shown.contains("(bad_reason)"), "{name}: {shown}");
        assert!(
            shown.contains(name),
            "{name}: the message names it: {shown}"
        );
        assert!(
            !shown.contains(['\u{1b}', '\u{7}', '\u{202E}', '\u{200B}', '\r']),
            "{name}: printed raw: {shown:?}"
        );
    }
    let out = home.run(&["list", "--json"]);
    assert!(out.status.success(), "{}", text(&out));
    let list: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        list["requests"].as_array().unwrap().len(),
        0,
        "nothing stored"
    );
}

#[test]
fn ssh_requests_on_connect_then_plain_ssh_goes_through_the_bastion() {
    let tmp = tempfile::tempdir().unwrap();
    let me = current_login();
    let bastion_port = free_port();
    let ca = auto_ca(
        tmp.path(),
        &format!(
            "\n[client]\nbastion = \"127.0.0.1:{bastion_port}\"\nhost_patterns = [\"web-*\"]\n"
        ),
    );
    let running = ca.serve();
    let (_, ca_pub) = http_get(running.addr, "/ca.pub");
    let sshd = Sshd::start(&tmp.path().join("sshd"), &ca_pub);

    // The bastion knows web-1 and web-2 as the test sshd.
    let bastion_dir = tmp.path().join("bastion");
    std::fs::create_dir_all(&bastion_dir).unwrap();
    let bastion_config = bastion_dir.join("bastion.toml");
    std::fs::write(
        &bastion_config,
        format!(
            "listen = \"127.0.0.1:{bastion_port}\"\nhost_key_file = \"host_ed25519\"\nca_url = \"http://{}\"\ninsecure_without_ca_feed = true\n\n[hosts]\nweb-1 = \"127.0.0.1:{port}\"\nweb-2 = \"127.0.0.1:{port}\"\n",
            running.addr,
            port = sshd.port
        ),
    )
    .unwrap();
    let child = Command::new(tpa_bastion_bin())
        .arg("serve")
        .arg("--config")
        .arg(&bastion_config)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(bastion_dir.join("bastion.log")).unwrap())
        .spawn()
        .unwrap();
    let _bastion = Guard { child };
    wait_for_port(
        format!("127.0.0.1:{bastion_port}").parse().unwrap(),
        Duration::from_secs(20),
        "tpa-bastion",
    );
    let bastion_log =
        || std::fs::read_to_string(bastion_dir.join("bastion.log")).unwrap_or_default();
    let bastion_pub = std::fs::read_to_string(bastion_dir.join("host_ed25519.pub")).unwrap();
    let sshd_pub = std::fs::read_to_string(sshd.dir.join("host_ed25519.pub")).unwrap();

    // A HOME with a space: the key and certificate paths reach ssh's `-o`
    // values and the ProxyCommand's shell (review: `-o CertificateFile=`
    // broke on it).
    let home = Home::new(tmp.path().join("my home"), running.addr);
    let ssh_dir = home.dir.join(".ssh");
    std::fs::create_dir_all(&ssh_dir).unwrap();
    let known = ssh_dir.join("known_hosts");
    std::fs::write(
        &known,
        format!("[127.0.0.1]:{bastion_port} {bastion_pub}web-1 {sshd_pub}web-2 {sshd_pub}"),
    )
    .unwrap();
    let user_config = ssh_dir.join("config");
    std::fs::write(
        &user_config,
        format!(
            "Host *\n  UserKnownHostsFile \"{}\"\n  StrictHostKeyChecking yes\n  BatchMode yes\n  \
             IdentityAgent none\n  ConnectTimeout 10\n  LogLevel ERROR\n",
            known.display()
        ),
    )
    .unwrap();
    assert!(home.login("alice").status.success());

    // No grant yet: `tpa-ssh ssh` asks for one (auto-approved), gets the
    // certificate, and runs ssh through the bastion.
    let config_arg = user_config.to_str().unwrap();
    let out = home.run(&[
        "ssh",
        "web-1",
        "--role",
        "web-debug",
        "--reason",
        "INC-8 check",
        "--",
        "-F",
        config_arg,
        "echo via-tpa-ssh",
    ]);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "via-tpa-ssh",
        "{}\nbastion:\n{}\nsshd:\n{}",
        text(&out),
        bastion_log(),
        sshd.log()
    );
    let list = home.json(&["list", "--json"]);
    assert_eq!(list["requests"].as_array().unwrap().len(), 1);
    let id = list["requests"][0]["id"].as_str().unwrap().to_owned();
    assert!(
        bastion_log().contains("certificate accepted"),
        "{}",
        bastion_log()
    );

    // Again: the active grant and the saved certificate are reused (no new request).
    let serial = cert_serial(&home.data().join("id_ed25519-cert.pub"));
    let out = home.run(&[
        "ssh",
        &format!("{me}@web-1"),
        "--",
        "-F",
        config_arg,
        "true",
    ]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(
        home.json(&["list", "--json"])["requests"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    assert_eq!(
        cert_serial(&home.data().join("id_ed25519-cert.pub")),
        serial
    );

    // `tpa-ssh config` with the CA's bastion: plain ssh jumps through it.
    let out = home.run(&["config", "--yes"]);
    assert!(out.status.success(), "{}", text(&out));
    let snippet = std::fs::read_to_string(ssh_dir.join("tpa_config")).unwrap();
    assert!(
        snippet.contains(&format!(
            "Host tpa-bastion\n  HostName 127.0.0.1\n  Port {bastion_port}\n"
        )) && snippet.contains("Host web-*\n  ProxyJump tpa-bastion\n"),
        "{snippet}"
    );
    // OpenSSH's own ProxyJump passes `-F FILE` to the hop unquoted, so plain
    // ssh is given the file under a path without a space (a user without -F
    // does not meet this).
    let plain_config = tmp.path().join("plain_ssh_config");
    std::os::unix::fs::symlink(&user_config, &plain_config).unwrap();
    let out = plain_ssh(&plain_config, "web-1", "echo via-bastion");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "via-bastion",
        "{}\nbastion:\n{}",
        text(&out),
        bastion_log()
    );
    // web-2 is not in the grant: the bastion refuses it.
    let out = plain_ssh(&plain_config, "web-2", "echo nope");
    assert!(!out.status.success() && !String::from_utf8_lossy(&out.stdout).contains("nope"));
    assert!(
        bastion_log().contains("host web-2 is not approved by the certificate"),
        "{}",
        bastion_log()
    );

    // On a terminal, `tpa-ssh ssh web-2` asks for the role and the reason, then
    // connects with the new grant.
    let typescript = tmp.path().join("typescript");
    let mut child = home
        .in_terminal(
            &[
                "ssh",
                "web-2",
                "--",
                "-F",
                config_arg,
                "echo asked-on-a-terminal",
            ],
            &typescript,
        )
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"web-debug\nINC-9 asked\n")
        .unwrap();
    let mut guard = Guard { child };
    let status = wait_exit(&mut guard, Duration::from_secs(30));
    let screen = std::fs::read_to_string(&typescript).unwrap_or_default();
    assert!(status.success(), "{screen}\n{}", bastion_log());
    assert!(
        screen.contains("No active grant covers web-2")
            && screen.contains("Role: ")
            && screen.contains("Reason: ")
            && screen.contains("asked-on-a-terminal"),
        "{screen}"
    );
    let newest = &home.json(&["list", "--json"])["requests"][0];
    assert_eq!(
        (newest["hosts"][0].as_str(), newest["reason"].as_str()),
        (Some("web-2"), Some("INC-9 asked"))
    );
    assert_ne!(newest["id"].as_str(), Some(id.as_str()));
}

#[test]
fn settings_file_names_the_ca_and_a_key_of_your_own() {
    let tmp = tempfile::tempdir().unwrap();
    let ca = auto_ca(tmp.path(), "");
    let running = ca.serve();
    let home = Home::new(tmp.path().join("home"), running.addr);
    let ssh_dir = home.dir.join(".ssh");
    std::fs::create_dir_all(&ssh_dir).unwrap();
    let own = UserKey::generate(&ssh_dir, "id_mine");
    let settings = home.dir.join(".config/tpa/config.toml");
    std::fs::create_dir_all(settings.parent().unwrap()).unwrap();

    // An unknown key: the file and the keys it may hold are named.
    std::fs::write(&settings, "ca = \"x\"\n").unwrap();
    let out = home.run(&["whoami"]);
    assert!(!out.status.success());
    assert!(
        text(&out).contains("config.toml is invalid") && text(&out).contains("ca_url"),
        "{}",
        text(&out)
    );

    std::fs::write(
        &settings,
        format!(
            "ca_url = \"{}\"\nkey_file = \"~/.ssh/id_mine\"\n",
            home.ca_url
        ),
    )
    .unwrap();
    // `login` finds the CA in the file (no --ca, no $TPA_CA_URL).
    let mut login = home
        .command(&["login", "--username", "alice", "--password-stdin"])
        .env_remove("TPA_CA_URL")
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
    assert!(text(&out).contains(&home.ca_url), "{}", text(&out));

    // The certificate is for the configured key and sits next to it.
    let out = home.run(&[
        "request",
        "--role",
        "web-debug",
        "--host",
        "web-1",
        "--reason",
        "INC-10",
        "--wait",
    ]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(own.cert.exists(), "{}", text(&out));
    assert!(
        !home.data().join("id_ed25519").exists(),
        "no TPA key was made"
    );
    let keygen = |args: &[&str], file: &Path| {
        let out = Command::new(require("ssh-keygen", "install openssh-client"))
            .args(args)
            .arg(file)
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let own_fp = keygen(&["-l", "-f"], &own.public)
        .split_whitespace()
        .nth(1)
        .unwrap()
        .to_owned();
    let listing = keygen(&["-L", "-f"], &own.cert);
    assert!(
        listing.contains(&format!("ED25519-CERT {own_fp}")),
        "the certificate certifies ~/.ssh/id_mine: {listing}"
    );

    // The configured key must be private too.
    std::fs::set_permissions(&own.private, std::fs::Permissions::from_mode(0o640)).unwrap();
    let out = home.run(&["cert"]);
    assert!(!out.status.success());
    assert!(text(&out).contains("chmod 600"), "{}", text(&out));
}

#[test]
fn shell_completions_are_printed_and_bash_parses_them() {
    let home = Home {
        dir: std::env::temp_dir(),
        ca_url: "http://127.0.0.1:1".into(),
    };
    for shell in ["bash", "zsh", "fish"] {
        let out = home.run(&["completions", shell]);
        assert!(out.status.success(), "{shell}: {}", text(&out));
        let script = String::from_utf8_lossy(&out.stdout);
        assert!(
            script.contains("tpa-ssh") && script.contains("config") && script.contains("renew"),
            "{shell}: {script}"
        );
    }
    let script = home.run(&["completions", "bash"]).stdout;
    let mut bash = Command::new(require("bash", "install bash"))
        .arg("-n")
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    bash.stdin.take().unwrap().write_all(&script).unwrap();
    let out = bash.wait_with_output().unwrap();
    assert!(out.status.success(), "bash -n: {}", text(&out));
    assert!(!home.run(&["completions", "tcsh"]).status.success());
}

/// Issue 11, item 8: `tpa-ssh explain` asks the CA's policy as the logged-in
/// user: allowed with the scope and the approvers, or why not.
#[test]
fn explain_shows_the_scope_and_who_would_approve() {
    let tmp = tempfile::tempdir().unwrap();
    let ca = auto_ca(tmp.path(), "");
    let running = ca.serve();
    let home = Home::new(tmp.path().join("home"), running.addr);
    assert!(home.login("alice").status.success());
    let me = current_login();

    let out = home.run(&[
        "explain",
        "--role",
        "hotfix-admin",
        "--host",
        "WEB-1",
        "--for",
        "2h",
    ]);
    assert!(out.status.success(), "{}", text(&out));
    let shown = text(&out);
    assert!(
        shown.contains("alice asks for hotfix-admin on web-1 for 2h:"),
        "{shown}"
    );
    assert!(shown.contains("allowed, after approval"), "{shown}");
    assert!(
        shown.contains(&format!("principals:       {me}")),
        "{shown}"
    );
    assert!(
        shown.contains("stage 1: 1 approval(s) from sre-leads (could approve: bob)"),
        "{shown}"
    );

    let auto = home.json(&[
        "explain",
        "--role",
        "web-debug",
        "--host",
        "web-2",
        "--json",
    ]);
    assert_eq!(auto["allowed"], true);
    assert_eq!(auto["path"], "auto");

    let out = home.run(&["explain", "--role", "dba", "--host", "db-1"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("denied (role_not_allowed)"),
        "{}",
        text(&out)
    );
    let out = home.run(&["explain", "--role", "hotfix-admin", "--host", "web-1.evil"]);
    assert!(
        text(&out).contains("denied (host_not_in_role)"),
        "{}",
        text(&out)
    );
}
