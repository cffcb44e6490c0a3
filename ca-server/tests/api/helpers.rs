//! The suite's fixtures: everything of `tpa-testkit` (a fresh data directory,
//! `TestApp` on 127.0.0.1 port 0 with domain methods, the in-process
//! `Fixture`, an HTTP client on reqwest, real `ssh-keygen` keys, plain-SQL
//! views), plus the `tpa-ca` binary Cargo built for this test binary.

use std::process::{Command, Stdio};

pub use tpa_testkit::*;

/// The `tpa-ca` binary built for these tests.
pub fn tpa_ca() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_tpa-ca"));
    cmd.stdin(Stdio::null()).env("TPA_LOG", "warn");
    cmd
}
