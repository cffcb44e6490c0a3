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

/// Issues one certificate through the real path (`issue_batch` with one
/// job), as the HTTP handler does.
#[allow(clippy::too_many_arguments, reason = "the use case's inputs, named")]
pub fn issue_one(
    conn: &mut impl ca_server::store::engine::Transact,
    deps: (
        &ca_server::signer::Signer,
        &tpa_core::Policy,
        &ca_server::auth::identity::Identities,
    ),
    caller: &tpa_core::User,
    id: &tpa_core::RequestId,
    public_key: &str,
    source: &str,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<ca_server::workflow::Issued, ca_server::workflow::requests::WorkflowError> {
    let job = ca_server::workflow::issuance::IssueJob {
        caller: caller.clone(),
        id: id.clone(),
        public_key: public_key.to_owned(),
        source: source.to_owned(),
        hook_allowed: None,
    };
    ca_server::workflow::issuance::issue_batch(conn, deps, &[job], now)
        .pop()
        .expect("one answer per job")
}

/// A CA on a PostgreSQL database of its own (whatever `TPA_TEST_ENGINE`
/// says), with the brief's roles and the accounts their stages name
/// (alice in engineers, bob in sre-leads). Blocking.
pub fn postgres_ca() -> DataDir {
    let mut data = DataDir::new();
    data.move_to_postgres();
    data.add_example_roles();
    data.add_accounts(&[("alice", &["engineers"]), ("bob", &["sre-leads"])]);
    data
}

/// `tpa-ca issue` (break-glass) of a 5-minute certificate for `principal`
/// on a fresh key, as root with reason "INC-1 test".
pub fn tpa_ca_issue(data: &DataDir, principal: &str) -> (i32, String, String) {
    let key = data.tmp.path().join("user.pub");
    std::fs::write(&key, ed25519_public_key()).unwrap();
    run(tpa_ca()
        .args(["issue", "--admin", "root", "--reason", "INC-1 test"])
        .arg("--config")
        .arg(&data.config_path)
        .args(["--principal", principal, "--ttl", "5m", "--pubkey"])
        .arg(&key))
}
