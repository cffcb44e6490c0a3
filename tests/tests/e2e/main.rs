//! End-to-end tests with real processes: `tpa-ca`, OpenSSH's `sshd`, `ssh` and `ssh-keygen`.
//!
//! Build the binaries first (`cargo build --workspace`); `./scripts/test` does
//! that and installs openssh-server when run as root.

mod bastion;
mod ca_server;
mod flow;
mod harness;
mod ssh_interop;
