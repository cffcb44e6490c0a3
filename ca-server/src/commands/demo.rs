//! `tpa-ca demo`: a local CA in `./tpa-demo`, created on first run and reused
//! after, with a target host `web-1` and a bastion when sshd is installed.

use std::net::SocketAddr;
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _, PermissionsExt as _};
use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context as _, bail};
use base64ct::{Base64UrlUnpadded, Encoding as _};
use rand::RngExt as _;

use crate::auth::identity::hash_password;
use crate::config::Config;

use super::demo_guide::print_next_steps;
use super::demo_hosts;
use super::init::{InitOptions, init_data_dir};

pub(super) fn run(dir: &Path, listen: SocketAddr) -> anyhow::Result<ExitCode> {
    let config_path = dir.join("tpa.toml");
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("cannot create {}", dir.display()))?;
    let _lock = lock(dir)?;
    check_port(listen)?;
    let demo = if config_path.exists() {
        reuse(dir)?
    } else {
        create(dir, &config_path, listen)?
    };
    let programs = match &demo.hosts {
        Some(_) => Some(
            demo_hosts::programs()
                .map_err(|why| anyhow::anyhow!("this demo has web-1 and a bastion, but {why}"))?,
        ),
        None => None,
    };
    let config = Config::load(&config_path)?;
    serve(dir, listen, &config, &demo, programs.as_ref())
}

/// The demo directory's hosts (web-1 and the bastion), and why there are
/// none when there could be.
struct Demo {
    hosts: Option<demo_hosts::Hosts>,
    note: Option<String>,
}

/// The demo made by an earlier run.
fn reuse(dir: &Path) -> anyhow::Result<Demo> {
    eprintln!("Reusing the demo CA in {}", dir.display());
    let hosts = demo_hosts::load(dir)?;
    let note = (hosts.is_none() && demo_hosts::programs().is_ok()).then(|| {
        format!(
            "This demo was made without web-1 (sshd was missing then); remove {} and run the demo again to get web-1 and a bastion.",
            dir.display()
        )
    });
    Ok(Demo { hosts, note })
}

/// A new demo: the CA's directory, its accounts, web-1 and the bastion
/// (when sshd is there), the roles.
fn create(dir: &Path, config_path: &Path, listen: SocketAddr) -> anyhow::Result<Demo> {
    init_data_dir(&InitOptions {
        data_dir: dir.to_owned(),
        passphrase_file: None,
        listen,
    })?;
    add_demo_accounts(dir, config_path)?;
    // Whatever goes wrong with web-1, the CA's directory is completed,
    // so that a later run does not find a half-made demo.
    let (made, note) = match demo_hosts::programs() {
        Ok(programs) => match demo_hosts::demo_login()
            .and_then(|login| demo_hosts::create(dir, &programs, &login))
        {
            Ok(made) => (Some(made), None),
            Err(e) => (
                None,
                Some(format!(
                    "No web-1: {e:#}. The CA runs alone; remove {} and run the demo again to retry.",
                    dir.display()
                )),
            ),
        },
        Err(why) => (
            None,
            Some(format!(
                "No web-1: {why}; then remove {} and run the demo again. The CA runs alone.",
                dir.display()
            )),
        ),
    };
    add_demo_roles(config_path, made.as_ref())?;
    // Engineers may be other local accounts: they read ssh_config and
    // known_hosts by name; everything else stays private to the demo.
    std::fs::set_permissions(config_path, std::fs::Permissions::from_mode(0o600))
        .and_then(|()| std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o711)))
        .with_context(|| format!("cannot set the permissions of {}", dir.display()))?;
    eprintln!(
        "Created a demo CA in {} (key, configuration, database, demo accounts{})",
        dir.display(),
        if made.is_some() {
            ", web-1 and a bastion"
        } else {
            ""
        }
    );
    Ok(Demo {
        hosts: made.map(|(hosts, _)| hosts),
        note,
    })
}

/// Runs the CA; once it listens, starts web-1 and the bastion and prints
/// the next steps. Stops them (by PID) whatever way the CA stopped.
fn serve(
    dir: &Path,
    listen: SocketAddr,
    config: &Config,
    demo: &Demo,
    programs: Option<&demo_hosts::Programs>,
) -> anyhow::Result<ExitCode> {
    let passwords = std::fs::read_to_string(dir.join(PASSWORDS_FILE)).ok();
    let mut running = None;
    let result = super::serve::serve(config, Some(listen), |addr| {
        let started = match (&demo.hosts, programs) {
            (Some(h), Some(p)) => match demo_hosts::start(dir, h, p, config, addr) {
                Ok(r) => {
                    running = Some(r);
                    true
                }
                Err(e) => {
                    eprintln!("tpa-ca demo: web-1 and the bastion did not start: {e:#}");
                    false
                }
            },
            _ => false,
        };
        print_next_steps(
            dir,
            addr,
            passwords.as_deref(),
            demo.hosts.as_ref().filter(|_| started),
            demo.note.as_deref(),
        );
        if let (true, Some(h)) = (started, demo.hosts.clone()) {
            announce_when_ready(dir, h);
        }
    });
    drop(running);
    result
}

/// Says when web-1 and the bastion answer, without holding up the CA.
fn announce_when_ready(dir: &Path, h: demo_hosts::Hosts) {
    let dir = dir.to_owned();
    std::thread::spawn(move || match demo_hosts::wait_ready(&dir, &h) {
        Ok(()) => println!(
            "web-1 (127.0.0.1:{}) and the bastion (127.0.0.1:{}) are up.",
            h.web_1_port, h.bastion_port
        ),
        Err(e) => eprintln!("tpa-ca demo: {e:#}"),
    });
}

/// Holds `demo.lock` in `dir` while the demo runs: two demos on one directory
/// would share a database and fight over web-1's and the bastion's ports.
fn lock(dir: &Path) -> anyhow::Result<std::fs::File> {
    let path = dir.join("demo.lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .open(&path)
        .with_context(|| format!("cannot open {}", path.display()))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => bail!(
            "a demo is already running in {}: use that one (its terminal shows the next steps), stop it with Ctrl-C, or start another with --dir OTHER --listen 127.0.0.1:PORT",
            dir.display()
        ),
        Err(std::fs::TryLockError::Error(e)) => {
            Err(e).with_context(|| format!("cannot lock {}", path.display()))
        }
    }
}

/// Refuses, in words, a listen address that is taken. The probe binds
/// without listening: a listening probe would accept (then reset) the first
/// connections of clients that are already waiting for the demo.
fn check_port(listen: SocketAddr) -> anyhow::Result<()> {
    use rustix::net::{AddressFamily, SocketType};
    let family = if listen.is_ipv4() {
        AddressFamily::INET
    } else {
        AddressFamily::INET6
    };
    let probe = rustix::net::socket(family, SocketType::STREAM, None)
        .with_context(|| format!("cannot check {listen}"))?;
    // As the server will: connections of an earlier run in TIME_WAIT do not
    // make the port busy, a listening socket does.
    rustix::net::sockopt::set_socket_reuseaddr(&probe, true)
        .with_context(|| format!("cannot check {listen}"))?;
    match rustix::net::bind(&probe, &listen).map_err(std::io::Error::from) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => bail!(
            "port {} on {} is already in use (another tpa-ca demo, or another program: `ss -ltnp | grep :{}` shows which); stop it, or pick a free port with --listen 127.0.0.1:PORT",
            listen.port(),
            listen.ip(),
            listen.port()
        ),
        Err(e) => Err(e).with_context(|| format!("cannot listen on {listen}")),
    }
}

/// This program as the user can type it: `./target/release/tpa-ca` when it
/// is below the current directory.
/// What the demo announces to `tpa-ssh` (`GET /api/v1/client-config`): the
/// example roles' host groups, so `tpa-ssh config` needs no flag.
const DEMO_CLIENT: &str = "
[client]
host_patterns = [\"web-*\", \"db-*\"]
";

/// Appends the product brief's two roles (`read-only-debug`, `hotfix-admin`)
/// and the `[client]` section for `tpa-ssh`; with web-1, the bastion in
/// `[client]` and `[[bastions]]`, and web-1's login among hotfix-admin's
/// logins when it is not root.
fn add_demo_roles(
    config_path: &Path,
    hosts: Option<&(demo_hosts::Hosts, String)>,
) -> anyhow::Result<()> {
    use std::io::Write as _;
    let mut text = crate::config::EXAMPLE_ROLES.to_owned();
    let mut client = DEMO_CLIENT.to_owned();
    if let Some((h, bastions)) = hosts {
        if h.login != "root" {
            text = text.replace(
                "logins = [\"root\"]",
                &format!("logins = [\"root\", \"{}\"]", h.login),
            );
        }
        client.push_str(&format!("bastion = \"127.0.0.1:{}\"\n", h.bastion_port));
        client.push_str(bastions);
    }
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .open(config_path)
        .with_context(|| format!("cannot open {}", config_path.display()))?;
    file.write_all(text.as_bytes())
        .and_then(|()| file.write_all(client.as_bytes()))
        .with_context(|| format!("cannot write {}", config_path.display()))
}

/// The demo's accounts: username, groups.
const DEMO_ACCOUNTS: &[(&str, &str, &str)] = &[
    ("alice", "Alice (engineer)", "engineers"),
    ("bob", "Bob (SRE lead)", "sre-leads"),
    ("carol", "Carol (manager)", "managers"),
    ("dave", "Dave (auditor)", "auditors"),
];

/// Where the demo keeps its generated passwords (mode 0600), so a re-run can show them again.
const PASSWORDS_FILE: &str = "demo-passwords.txt";

/// Generates a password per demo account, appends their argon2id hashes to
/// `tpa.toml` and writes the passwords to `demo-passwords.txt` (mode 0600).
fn add_demo_accounts(dir: &Path, config_path: &Path) -> anyhow::Result<()> {
    use std::io::Write as _;
    let mut toml = String::from(
        "\n# Members of these groups may read the audit pages (/audit); dave is one.\n[auditors]\ngroups = [\"auditors\"]\n\n# Demo accounts made by `tpa-ca demo`; passwords in demo-passwords.txt.\n",
    );
    let mut listing = String::from("# username  password  (groups)\n");
    for (username, display_name, group) in DEMO_ACCOUNTS {
        let bytes: [u8; 12] = rand::rng().random();
        let password = Base64UrlUnpadded::encode_string(&bytes);
        let hash = hash_password(&password).context("cannot hash a demo password")?;
        toml.push_str(&format!(
            "\n[[accounts]]\nusername = \"{username}\"\ndisplay_name = \"{display_name}\"\npassword_hash = \"{hash}\"\ngroups = [\"{group}\"]\n"
        ));
        listing.push_str(&format!("{username:<6} {password}  ({group})\n"));
    }
    let passwords_path = dir.join(PASSWORDS_FILE);
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&passwords_path)
        .and_then(|mut f| f.write_all(listing.as_bytes()))
        .with_context(|| format!("cannot write {}", passwords_path.display()))?;
    std::fs::OpenOptions::new()
        .append(true)
        .open(config_path)
        .and_then(|mut f| f.write_all(toml.as_bytes()))
        .with_context(|| format!("cannot add demo accounts to {}", config_path.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    // A demo run by a user other than root adds that user to hotfix-admin's
    // logins by replacing this exact text: EXAMPLE_ROLES must keep it, once.
    #[test]
    fn hotfix_admin_logins_can_take_the_demo_users_login() {
        let text = crate::config::EXAMPLE_ROLES;
        assert_eq!(text.matches("logins = [\"root\"]").count(), 1, "{text}");
    }
}
