//! `tpa-ca demo`: a local CA in `./tpa-demo`, created on first run and reused after.

use std::net::SocketAddr;
use std::path::Path;
use std::process::ExitCode;

use crate::config::Config;

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
        eprintln!(
            "Created a demo CA in {} (key, configuration, database)",
            dir.display()
        );
    }
    let config = Config::load(&config_path)?;
    super::serve::serve(&config, Some(listen), |addr| {
        let config = config_path.display();
        println!();
        println!("TPA demo CA running at http://{addr}   (Ctrl-C to stop)");
        println!();
        println!("Try next, in another terminal:");
        println!(
            "  curl http://{addr}/ca.pub                  # the key hosts trust (TrustedUserCAKeys)"
        );
        println!("  curl http://{addr}/healthz");
        println!("  ssh-keygen -t ed25519 -f ./demo_key -N ''   # a user key");
        println!(
            "  cargo run -q --release -p ca-server -- issue --config {config} --principal \"$(id -un)\" --ttl 10m \\\n      --pubkey ./demo_key.pub --reason 'trying TPA' --extension permit-pty > ./demo_key-cert.pub"
        );
        println!("  ssh-keygen -L -f ./demo_key-cert.pub        # inspect the certificate");
        println!("  cargo run -q --release -p ca-server -- audit verify --config {config}");
        println!();
    })
}
