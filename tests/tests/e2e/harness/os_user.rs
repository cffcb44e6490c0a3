//! A throwaway local OS account for tests that must run `tpa-ssh` and `ssh` as
//! someone whose name is not the role's login (issue 12: the login bug hid
//! whenever the local user name equalled it). Made with `useradd`, removed
//! with `userdel` on drop; commands run as it through util-linux `setpriv`.

use std::ffi::OsStr;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

use super::{is_root, require, tpa_ca_bin};

static NEXT: AtomicU32 = AtomicU32::new(0);

/// A local account with its own HOME, deleted when dropped.
pub struct LocalUser {
    pub name: String,
    pub home: PathBuf,
}

impl LocalUser {
    /// Creates an account whose HOME is `<parent>/<name>`. `parent` (and
    /// every directory above it) is made traversable for the account.
    pub fn create(parent: &Path) -> Self {
        assert!(
            is_root(),
            "the e2e tests create a local test user with useradd: run them as root (./scripts/test does)"
        );
        let useradd = require("useradd", "install passwd (apt-get install passwd)");
        require("setpriv", "install util-linux (apt-get install util-linux)");
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        // Never `root`, never the role's login; unique per test process and test.
        let name = format!("tpae2e{}x{n}", std::process::id() % 1_000_000);
        std::fs::set_permissions(parent, std::fs::Permissions::from_mode(0o711)).unwrap();
        let home = parent.join(&name);
        let out = Command::new(useradd)
            .args([
                "--no-create-home",
                "--user-group",
                "--shell",
                "/bin/sh",
                "--home-dir",
            ])
            .arg(&home)
            .arg(&name)
            .output()
            .expect("run useradd");
        assert!(
            out.status.success(),
            "useradd {name} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let user = Self { name, home };
        std::fs::create_dir_all(&user.home).unwrap();
        user.chown_home();
        user
    }

    /// Gives everything under HOME (written by the test as root) to the account.
    pub fn chown_home(&self) {
        let out = Command::new("chown")
            .arg("-R")
            .arg(format!("{0}:{0}", self.name))
            .arg(&self.home)
            .output()
            .expect("run chown");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// `program` run as this account, with a clean environment: HOME, USER,
    /// LOGNAME and a PATH that starts with the workspace's binaries.
    pub fn command(&self, program: impl AsRef<OsStr>) -> Command {
        let bin_dir = tpa_ca_bin().parent().unwrap().to_owned();
        let mut c = Command::new("setpriv");
        c.args([
            "--reuid",
            &self.name,
            "--regid",
            &self.name,
            "--init-groups",
            "--",
        ])
        .arg(program)
        .env_clear()
        .env("HOME", &self.home)
        .env("USER", &self.name)
        .env("LOGNAME", &self.name)
        .env(
            "PATH",
            format!("{}:/usr/local/bin:/usr/bin:/bin", bin_dir.display()),
        )
        .env("LANG", "C.UTF-8")
        .current_dir(&self.home);
        c
    }
}

impl Drop for LocalUser {
    fn drop(&mut self) {
        // Processes of the account were started by the test and are gone by
        // now (their guards dropped first); HOME goes with the temporary dir.
        let _ = Command::new("userdel").arg(&self.name).output();
    }
}
