//! `tpa-ca demo`: a local CA in `./tpa-demo`, created on first run and reused after.

use std::net::SocketAddr;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::Path;
use std::process::ExitCode;

use anyhow::Context as _;
use base64ct::{Base64UrlUnpadded, Encoding as _};
use rand::RngExt as _;

use crate::config::Config;
use crate::identity::hash_password;

use super::init::{InitOptions, init_data_dir};

pub(super) fn run(dir: &Path, listen: SocketAddr) -> anyhow::Result<ExitCode> {
    let config_path = dir.join("tpa.toml");
    if config_path.exists() {
        eprintln!("Reusing the demo CA in {}", dir.display());
    } else {
        init_data_dir(&InitOptions {
            data_dir: dir.to_owned(),
            passphrase_file: None,
            listen,
        })?;
        add_demo_accounts(dir, &config_path)?;
        add_demo_roles(&config_path)?;
        eprintln!(
            "Created a demo CA in {} (key, configuration, database, demo accounts)",
            dir.display()
        );
    }
    let passwords = std::fs::read_to_string(dir.join(PASSWORDS_FILE)).ok();
    let config = Config::load(&config_path)?;
    super::serve::serve(&config, Some(listen), |addr| {
        let config = config_path.display();
        println!();
        println!("TPA demo CA running at http://{addr}   (Ctrl-C to stop)");
        println!();
        match &passwords {
            Some(passwords) => {
                println!("Demo accounts (log in at http://{addr}/login):");
                for line in passwords.lines().filter(|l| !l.starts_with('#')) {
                    println!("  {line}");
                }
            }
            None => println!("No demo accounts in this directory (it predates them)."),
        }
        println!();
        println!("Try next, in another terminal (as an engineer, with tpa-ssh):");
        println!("  tpa-ssh login --ca http://{addr} --username alice");
        println!("  tpa-ssh config                              # once: the ssh_config snippet");
        println!(
            "  tpa-ssh request --role hotfix-admin --host web-1 --for 1h --reason 'INC-1 disk full' --ticket INC-1 --wait"
        );
        println!("  # approve it as bob, then carol, at http://{addr}/ ; then: tpa-ssh cert");
        println!();
        println!("Or with curl:");
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
            "  cargo run -q --release -p ca-server -- issue --config {config} --principal \"$(id -un)\" --ttl 10m \\\n      --pubkey ./demo_key.pub --reason 'trying TPA' --extension permit-pty > ./demo_key-cert.pub"
        );
        println!("  ssh-keygen -L -f ./demo_key-cert.pub        # inspect the certificate");
        println!(
            "  cargo run -q --release -p ca-server -- revoke request REQ_ID --reason \"done\" --config {config}"
        );
        println!("  curl -s http://{addr}/krl | ssh-keygen -Q -f /dev/stdin ./demo_key-cert.pub");
        println!("  cargo run -q --release -p ca-server -- audit checkpoint --config {config}");
        println!("  cargo run -q --release -p ca-server -- audit verify --config {config}");
        println!(
            "  # log in as dave (auditor) at http://{addr}/audit: the audit log, request timelines, certificates, sessions"
        );
        println!(
            "  curl http://{addr}/metrics                 # Prometheus metrics (loopback only)"
        );
        println!();
    })
}

/// What the demo announces to `tpa-ssh` (`GET /api/v1/client-config`): the
/// example roles' host groups, so `tpa-ssh config` needs no flag.
const DEMO_CLIENT: &str = "
[client]
host_patterns = [\"web-*\", \"db-*\"]
";

/// Appends the product brief's two roles (`read-only-debug`, `hotfix-admin`)
/// and the `[client]` section for `tpa-ssh`.
fn add_demo_roles(config_path: &Path) -> anyhow::Result<()> {
    use std::io::Write as _;
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .open(config_path)
        .with_context(|| format!("cannot open {}", config_path.display()))?;
    file.write_all(crate::config::EXAMPLE_ROLES.as_bytes())
        .and_then(|()| file.write_all(DEMO_CLIENT.as_bytes()))
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
