//! What `tpa-ca demo` prints once the CA listens: the demo accounts and the
//! next steps to try, with web-1 and the bastion when they run.

use std::net::SocketAddr;
use std::path::Path;

use super::demo_hosts;

/// How to run this program again from the current directory.
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

pub(super) fn print_next_steps(
    dir: &Path,
    addr: SocketAddr,
    passwords: Option<&str>,
    hosts: Option<&demo_hosts::Hosts>,
    note: Option<&str>,
) {
    println!();
    println!("TPA demo CA running at http://{addr}   (Ctrl-C to stop)");
    println!();
    print_accounts(addr, passwords);
    println!();
    match hosts {
        Some(h) => print_with_hosts(dir, addr, h),
        None => print_without_hosts(addr, note),
    }
    print_curl_steps(dir, addr);
}

/// The demo accounts and their passwords.
fn print_accounts(addr: SocketAddr, passwords: Option<&str>) {
    match passwords {
        Some(passwords) => {
            println!("Demo accounts (log in at http://{addr}/login):");
            for line in passwords.lines().filter(|l| !l.starts_with('#')) {
                println!("  {line}");
            }
        }
        None => println!("No demo accounts in this directory (it predates them)."),
    }
}

/// With web-1 and the bastion: the whole path, from login to a revoked session.
fn print_with_hosts(dir: &Path, addr: SocketAddr, h: &demo_hosts::Hosts) {
    let config = dir.join("tpa.toml");
    let config = config.display();
    let tpa_ca = this_program();
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
}

/// The CA alone: a request and its certificate, without a host to use it on.
fn print_without_hosts(addr: SocketAddr, note: Option<&str>) {
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

/// The same by hand, with curl, and the operator's tools.
fn print_curl_steps(dir: &Path, addr: SocketAddr) {
    let config = dir.join("tpa.toml");
    let config = config.display();
    let tpa_ca = this_program();
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
