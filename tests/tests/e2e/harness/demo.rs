//! A `tpa-ca demo` process for tests (its output collected as it comes) and
//! what tests do with a running demo: read its passwords, log in, find the
//! pending request.

use std::io::{BufRead as _, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::json;
use super::{Guard, free_port, http_send, tpa_ca_bin};

/// The demo process with its standard output collected as it comes.
pub struct Demo {
    pub guard: Guard,
    out: Arc<Mutex<String>>,
    err: PathBuf,
}

impl Demo {
    pub fn start(cwd: &Path, args: &[&str], env: &[(&str, &str)]) -> Self {
        Self::start_as(Command::new(tpa_ca_bin()), cwd, args, env)
    }

    /// `command` (tpa-ca, possibly run as another user) with `args`.
    pub fn start_as(mut command: Command, cwd: &Path, args: &[&str], env: &[(&str, &str)]) -> Self {
        let err = cwd.join(format!("demo-{}.err", free_port()));
        command
            .args(args)
            .current_dir(cwd)
            .env("TPA_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&err).unwrap());
        for (k, v) in env {
            command.env(k, v);
        }
        let mut child = command.spawn().expect("spawn tpa-ca demo");
        let stdout = child.stdout.take().unwrap();
        let out = Arc::new(Mutex::new(String::new()));
        let sink = Arc::clone(&out);
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let mut s = sink.lock().unwrap();
                s.push_str(&line);
                s.push('\n');
            }
        });
        Self {
            guard: Guard { child },
            out,
            err,
        }
    }

    pub fn printed(&self) -> String {
        format!(
            "{}\nstderr:\n{}",
            self.out.lock().unwrap(),
            std::fs::read_to_string(&self.err).unwrap_or_default()
        )
    }

    /// Waits (bounded) until the demo printed `needle`.
    pub fn wait_for(&mut self, needle: &str, within: Duration) {
        let deadline = Instant::now() + within;
        while !self.out.lock().unwrap().contains(needle) {
            if let Some(status) = self.guard.child.try_wait().unwrap() {
                panic!(
                    "the demo exited ({status}) before printing {needle:?}: {}",
                    self.printed()
                );
            }
            assert!(
                Instant::now() < deadline,
                "no {needle:?} within {within:?}: {}",
                self.printed()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

pub fn password(dir: &Path, user: &str) -> String {
    let text = std::fs::read_to_string(dir.join("tpa-demo/demo-passwords.txt")).unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{user} ")))
        .map(|rest| rest.split_whitespace().next().unwrap().to_owned())
        .unwrap_or_else(|| panic!("no password for {user}: {text}"))
}

pub fn api_login(addr: SocketAddr, user: &str, password: &str) -> String {
    let body = serde_json::json!({ "username": user, "password": password }).to_string();
    let (status, body) = http_send(
        addr,
        "POST",
        "/api/v1/login",
        &[("Content-Type", "application/json")],
        &body,
    );
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    json(&body)["token"].as_str().unwrap().to_owned()
}

/// The pending request in `token`'s inbox, once it is there.
pub fn pending_request(addr: SocketAddr, token: &str, also: &dyn Fn() -> String) -> String {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let auth = format!("Bearer {token}");
        let (_, body) = http_send(
            addr,
            "GET",
            "/api/v1/requests?scope=inbox",
            &[("Authorization", &auth)],
            "",
        );
        if let Some(id) = json(&body)["requests"][0]["id"].as_str() {
            return id.to_owned();
        }
        assert!(
            Instant::now() < deadline,
            "no request reached bob's inbox:\n{}",
            also()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}
