//! `tpa-ssh ssh LOGIN@HOST` as a local user whose name is not the login
//! (issue 12), directly and through the bastion.

use crate::harness::{ca_with_roles, login_alice, text};
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use crate::harness::LocalUser;
use crate::harness::{
    Guard, RunningCa, Sshd, free_port, http_get, tpa_bastion_bin, tpa_ssh_bin, wait_for_port,
};

/// A CA, a root sshd as web-1 and, when `through_bastion`, a tpa-bastion in
/// front of it announced in `[client]`; a local test user logged in as alice
/// whose ssh knows the host keys.
struct World {
    _bastion: Option<Guard>,
    bastion_dir: PathBuf,
    sshd: Sshd,
    _ca: RunningCa,
    user: LocalUser,
    _tmp: tempfile::TempDir,
}

impl World {
    fn start(through_bastion: bool) -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let bastion_port = free_port();
        let client = if through_bastion {
            format!(
                "\n[client]\nbastion = \"127.0.0.1:{bastion_port}\"\nhost_patterns = [\"web-*\"]\n"
            )
        } else {
            String::new()
        };
        let ca = ca_with_roles(tmp.path(), &client);
        let running = ca.serve();
        let (_, ca_pub) = http_get(running.addr, "/ca.pub");
        let sshd = Sshd::start(&tmp.path().join("sshd"), &ca_pub);
        let sshd_pub = std::fs::read_to_string(sshd.dir.join("host_ed25519.pub")).unwrap();
        let bastion_dir = tmp.path().join("bastion");
        let mut known = format!("web-1 {sshd_pub}");
        let bastion = through_bastion.then(|| {
            std::fs::create_dir_all(&bastion_dir).unwrap();
            std::fs::write(
                bastion_dir.join("bastion.toml"),
                format!(
                    "listen = \"127.0.0.1:{bastion_port}\"\nhost_key_file = \"host_ed25519\"\nca_url = \"http://{}\"\ninsecure_without_ca_feed = true\n\n[hosts]\nweb-1 = \"127.0.0.1:{}\"\n",
                    running.addr, sshd.port
                ),
            )
            .unwrap();
            let child = Command::new(tpa_bastion_bin())
                .args(["serve", "--config"])
                .arg(bastion_dir.join("bastion.toml"))
                .env("TPA_LOG", "info")
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(bastion_dir.join("bastion.log")).unwrap())
                .spawn()
                .expect("spawn tpa-bastion");
            let guard = Guard { child };
            wait_for_port(
                format!("127.0.0.1:{bastion_port}").parse().unwrap(),
                Duration::from_secs(20),
                "tpa-bastion",
            );
            guard
        });
        if through_bastion {
            let bastion_pub =
                std::fs::read_to_string(bastion_dir.join("host_ed25519.pub")).unwrap();
            known.push_str(&format!("[127.0.0.1]:{bastion_port} {bastion_pub}"));
        }
        let user = LocalUser::create(&tmp.path().join("homes").tap_mkdir());
        let ssh_dir = user.home.join(".ssh");
        std::fs::create_dir_all(&ssh_dir).unwrap();
        std::fs::write(ssh_dir.join("known_hosts"), known).unwrap();
        // Without a bastion, web-1 is the sshd's port; with one, the bastion
        // maps the name (and only port 22 is asked for).
        let direct = if through_bastion {
            String::new()
        } else {
            format!(
                "Host web-1\n  HostName 127.0.0.1\n  Port {}\n  HostKeyAlias web-1\n",
                sshd.port
            )
        };
        std::fs::write(
            ssh_dir.join("config"),
            format!(
                "{direct}Host *\n  StrictHostKeyChecking yes\n  BatchMode yes\n  IdentityAgent none\n  ConnectTimeout 20\n  LogLevel ERROR\n"
            ),
        )
        .unwrap();
        user.chown_home();
        let out = login_alice(user.command(tpa_ssh_bin()), running.addr);
        assert!(out.status.success(), "{}", text(&out));
        Self {
            _bastion: bastion,
            bastion_dir,
            sshd,
            _ca: running,
            user,
            _tmp: tmp,
        }
    }

    fn tpa_ssh(&self, args: &[&str]) -> Output {
        self.user
            .command(tpa_ssh_bin())
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("run tpa-ssh")
    }

    fn logs(&self) -> String {
        let bastion =
            std::fs::read_to_string(self.bastion_dir.join("bastion.log")).unwrap_or_default();
        format!("bastion:\n{bastion}\nsshd:\n{}", self.sshd.log())
    }
}

trait MkDir {
    fn tap_mkdir(self) -> Self;
}

impl MkDir for PathBuf {
    fn tap_mkdir(self) -> Self {
        std::fs::create_dir_all(&self).unwrap();
        self
    }
}

// issue 12: `tpa-ssh ssh root@web-1` ran ssh as the local user
// ("ncalice@127.0.0.1: Permission denied"); hidden while the tests ran as root.
#[test]
fn login_at_host_reaches_a_direct_sshd_as_another_local_user() {
    let w = World::start(false);
    let out = w.tpa_ssh(&[
        "ssh",
        "root@web-1",
        "--role",
        "web-debug",
        "--reason",
        "INC-12 direct",
        "--",
        "id -un; echo local=$SSH_CLIENT",
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.starts_with("root\n"),
        "{}\n{}",
        text(&out),
        w.logs()
    );
    assert_ne!(w.user.name, "root");
}

// issue 12: through the bastion the ProxyCommand and the outer ssh both carry
// the login, for a local user whose name is neither `root` nor a principal.
#[test]
fn login_at_host_reaches_the_host_through_the_bastion_as_another_local_user() {
    let w = World::start(true);
    let out = w.tpa_ssh(&[
        "ssh",
        "root@web-1",
        "--role",
        "web-debug",
        "--reason",
        "INC-12 jump",
        "--",
        "id -un",
    ]);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "root",
        "{}\n{}",
        text(&out),
        w.logs()
    );
    assert!(
        w.logs().contains("certificate accepted"),
        "the session went through the bastion: {}",
        w.logs()
    );
    // Without LOGIN@ the certificate's first principal (`deploy`) is used,
    // never the local user name: sshd has no such account, so it fails there.
    let out = w.tpa_ssh(&["ssh", "web-1", "--", "true"]);
    assert!(!out.status.success(), "{}", text(&out));
    assert!(
        !w.logs().contains(&format!("\"{}\"", w.user.name)),
        "the local user name reached the bastion: {}",
        w.logs()
    );
}
