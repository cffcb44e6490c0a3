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
    let mut hosts_note = None;
    let hosts = if config_path.exists() {
        eprintln!("Reusing the demo CA in {}", dir.display());
        let hosts = demo_hosts::load(dir)?;
        if hosts.is_none() && demo_hosts::programs().is_ok() {
            hosts_note = Some(format!(
                "This demo was made without web-1 (sshd was missing then); remove {} and run the demo again to get web-1 and a bastion.",
                dir.display()
            ));
        }
        hosts
    } else {
        init_data_dir(&InitOptions {
            data_dir: dir.to_owned(),
            passphrase_file: None,
            listen,
        })?;
        add_demo_accounts(dir, &config_path)?;
        // Whatever goes wrong with web-1, the CA's directory is completed,
        // so that a later run does not find a half-made demo.
        let made = match demo_hosts::programs() {
            Ok(programs) => match demo_hosts::demo_login()
                .and_then(|login| demo_hosts::create(dir, &programs, &login))
            {
                Ok(made) => Some(made),
                Err(e) => {
                    hosts_note = Some(format!(
                        "No web-1: {e:#}. The CA runs alone; remove {} and run the demo again to retry.",
                        dir.display()
                    ));
                    None
                }
            },
            Err(why) => {
                hosts_note = Some(format!(
                    "No web-1: {why}; then remove {} and run the demo again. The CA runs alone.",
                    dir.display()
                ));
                None
            }
        };
        add_demo_roles(&config_path, made.as_ref())?;
        // Engineers may be other local accounts: they read ssh_config and
        // known_hosts by name; everything else stays private to the demo.
        std::fs::set_permissions(&config_path, std::fs::Permissions::from_mode(0o600))
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
        made.map(|(hosts, _)| hosts)
    };
    let programs = match &hosts {
        Some(_) => Some(
            demo_hosts::programs()
                .map_err(|why| anyhow::anyhow!("this demo has web-1 and a bastion, but {why}"))?,
        ),
        None => None,
    };
    let passwords = std::fs::read_to_string(dir.join(PASSWORDS_FILE)).ok();
    let config = Config::load(&config_path)?;
    let mut running = None;
    let result = super::serve::serve(&config, Some(listen), |addr| {
        let started = match (&hosts, &programs) {
            (Some(h), Some(p)) => match demo_hosts::start(dir, h, p, &config, addr) {
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
            hosts.as_ref().filter(|_| started),
            hosts_note.as_deref(),
        );
        if let (true, Some(h)) = (started, hosts.clone()) {
            let dir = dir.to_owned();
            std::thread::spawn(move || match demo_hosts::wait_ready(&dir, &h) {
                Ok(()) => println!(
                    "web-1 (127.0.0.1:{}) and the bastion (127.0.0.1:{}) are up.",
                    h.web_1_port, h.bastion_port
                ),
                Err(e) => eprintln!("tpa-ca demo: {e:#}"),
            });
        }
    });
    // Stops sshd and the bastion (by PID) whatever way the CA stopped.
    drop(running);
    result
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
fn this_program() -> String {
    let exe = std::env::current_exe().ok();
    let cwd = std::env::current_dir().ok();
    match (exe, cwd) {
        (Some(exe), Some(cwd)) => match exe.strip_prefix(&cwd) {
            Ok(rel) => format!("./{}", rel.display()),
            Err(_) => exe.display().to_string(),
        },
        _ => "tpa-ca".to_owned(),
    }
}

fn print_next_steps(
    dir: &Path,
    addr: SocketAddr,
    passwords: Option<&str>,
    hosts: Option<&demo_hosts::Hosts>,
    note: Option<&str>,
) {
    let config = dir.join("tpa.toml");
    let config = config.display();
    let tpa_ca = this_program();
    println!();
    println!("TPA demo CA running at http://{addr}   (Ctrl-C to stop)");
    println!();
    match passwords {
        Some(passwords) => {
            println!("Demo accounts (log in at http://{addr}/login):");
            for line in passwords.lines().filter(|l| !l.starts_with('#')) {
                println!("  {line}");
            }
        }
        None => println!("No demo accounts in this directory (it predates them)."),
    }
    println!();
    if let Some(h) = hosts {
        println!(
            "web-1: OpenSSH's sshd on 127.0.0.1:{} trusting this CA and its KRL, behind the bastion",
            h.web_1_port
        );
        println!(
            "(tpa-bastion on 127.0.0.1:{}, announced to tpa-ssh); logs in {}/web-1 and {}/bastion.",
            h.bastion_port,
            dir.display(),
            dir.display()
        );
        println!();
        println!(
            "Try next, in another terminal in this directory, as an engineer (`cargo install --locked --path tpa-ssh-client` puts tpa-ssh on your PATH):"
        );
        println!("  tpa-ssh login --ca http://{addr} --username alice");
        println!(
            "  mkdir -p ~/.ssh && cat {}/{} >> ~/.ssh/config   # once: the host keys of web-1 and the bastion",
            dir.display(),
            demo_hosts::SSH_CONFIG_FILE
        );
        println!("  tpa-ssh config                              # once: the ssh_config snippet");
        println!(
            "  tpa-ssh ssh {}@web-1 --role hotfix-admin --reason \"INC-1 disk full\" --ticket INC-1",
            h.login
        );
        println!(
            "  # approve it as bob, then carol, at http://{addr}/ : the shell on web-1 opens. Then, as the operator:"
        );
        println!(
            "  {tpa_ca} revoke request REQ_ID --reason \"INC-1 done\" --config {config}   # the bastion cuts the session"
        );
        println!("  {tpa_ca} audit verify --config {config}");
        println!();
        println!("More, with curl:");
    } else {
        if let Some(note) = note {
            println!("{note}");
            println!();
        }
        println!("Try next, in another terminal (as an engineer, with tpa-ssh):");
        println!("  tpa-ssh login --ca http://{addr} --username alice");
        println!("  tpa-ssh config                              # once: the ssh_config snippet");
        println!(
            "  tpa-ssh request --role hotfix-admin --host web-1 --for 1h --reason 'INC-1 disk full' --ticket INC-1 --wait"
        );
        println!("  # approve it as bob, then carol, at http://{addr}/ ; then: tpa-ssh cert");
        println!();
        println!("Or with curl:");
    }
    println!(
        "  curl http://{addr}/ca.pub                  # the key hosts trust (TrustedUserCAKeys)"
    );
    println!("  curl http://{addr}/healthz");
    println!(
        "  curl -s http://{addr}/api/v1/login -H 'Content-Type: application/json' \\\n      -d '{{\"username\":\"alice\",\"password\":\"<alice's password>\"}}'   # an API token"
    );
    println!("  export TOKEN=tpa_...                        # the token from the login answer");
    println!(
        "  curl -s http://{addr}/api/v1/requests -H \"Authorization: Bearer $TOKEN\" -H 'Content-Type: application/json' \\\n      -d '{{\"role\":\"hotfix-admin\",\"hosts\":[\"web-1\"],\"duration\":\"1h\",\"reason\":\"INC-1 disk full\",\"ticket\":\"INC-1\"}}'"
    );
    println!(
        "  # then approve it as bob, then carol, at http://{addr}/ (or POST /api/v1/requests/ID/approve)"
    );
    println!("  ssh-keygen -t ed25519 -f ./demo_key -N ''   # a user key");
    println!(
        "  curl -s http://{addr}/api/v1/requests/ID/certificate -H \"Authorization: Bearer $TOKEN\" \\\n      -H 'Content-Type: application/json' -d \"{{\\\"public_key\\\":\\\"$(cat demo_key.pub)\\\"}}\""
    );
    println!("  # or the administrator's break-glass path, without a request:");
    println!(
        "  {tpa_ca} issue --config {config} --principal \"$(id -un)\" --ttl 10m \\\n      --pubkey ./demo_key.pub --reason 'trying TPA' --extension permit-pty > ./demo_key-cert.pub"
    );
    println!("  ssh-keygen -L -f ./demo_key-cert.pub        # inspect the certificate");
    println!("  curl -s http://{addr}/krl | ssh-keygen -Q -f /dev/stdin ./demo_key-cert.pub");
    println!("  {tpa_ca} audit checkpoint --config {config}");
    println!(
        "  # log in as dave (auditor) at http://{addr}/audit: the audit log, request timelines, certificates, sessions"
    );
    println!("  curl http://{addr}/metrics                 # Prometheus metrics (loopback only)");
    println!();
}

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
