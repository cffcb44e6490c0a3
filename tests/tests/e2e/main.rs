//! End-to-end tests with real processes: `tpa-ca`, OpenSSH's `sshd`, `ssh` and `ssh-keygen`, the npm `oidc-provider`, and headless Chromium.
//!
//! Build the binaries first (`cargo build --workspace`); `./scripts/test` does
//! that and installs openssh-server when run as root.

mod bastion;
mod browser;
mod ca_server;
mod cli;
mod config_check;
mod crash;
mod demo;
mod demo_postgres;
mod flood;
mod flow;
mod harness;
mod host_patterns;
mod ldap_login;
mod login_at_host;
mod on_call;
mod pages;
mod readme;
mod replicas;
mod replicas_faults;
mod replicas_outage;
mod revocation;
mod ssh_interop;
mod ssh_targets;
mod sso;
mod wait_restart;
