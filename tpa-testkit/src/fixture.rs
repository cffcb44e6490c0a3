//! The workflow in-process, without HTTP: a data directory, its signer and a
//! store connection ([`Fixture`]), the team as `User`s, and the use cases
//! (`f.submit`, `f.approve`, `f.issue`) called as the handlers call them.

use ca_server::signer::Signer;
use ca_server::workflow::requests::{self, WorkflowError};
use ca_server::workflow::{AdminIssueInput, IssueError, Issued, admin_issue};
use chrono::{DateTime, Utc};
use tpa_core::{
    ApproveOutcome, GroupName, Identity, Narrowing, RequestId, RequestInput, User, Username,
};

use crate::conn::TestConn;
use crate::data_dir::DataDir;
use crate::keys::ed25519_public_key;

/// The approvers of the workflow tests as `[[accounts]]` (groups as `bob()`,
/// `carol()`, … give them).
pub const APPROVERS: &[(&str, &[&str])] = &[
    ("bob", &["sre-leads"]),
    ("carol", &["managers"]),
    ("erin", &["sre-leads", "managers"]),
    ("frank", &["managers"]),
];

/// A local user `name` in `groups`.
pub fn user(name: &str, groups: &[&str]) -> User {
    let username = Username::parse(name).unwrap();
    User {
        identity: Identity::local(&username),
        username,
        display_name: name.to_owned(),
        groups: groups
            .iter()
            .map(|g| GroupName::parse(g).unwrap())
            .collect(),
    }
}

/// alice, an engineer (the requester).
pub fn alice() -> User {
    user("alice", &["engineers"])
}

/// bob, an SRE lead (stage one of hotfix-admin).
pub fn bob() -> User {
    user("bob", &["sre-leads"])
}

/// carol, a manager (stage two of hotfix-admin).
pub fn carol() -> User {
    user("carol", &["managers"])
}

/// A hotfix-admin request for `hosts` and `duration`.
pub fn hotfix(hosts: &[&str], duration: &str) -> RequestInput {
    RequestInput {
        role: "hotfix-admin".into(),
        hosts: hosts.iter().map(|h| (*h).to_owned()).collect(),
        duration: Some(duration.into()),
        reason: "INC-4411 disk full".into(),
        ticket: Some("INC-4411".into()),
        ..RequestInput::default()
    }
}

/// The clock of the workflow tests.
pub fn now() -> DateTime<Utc> {
    Utc::now()
}

/// Input that `admin_issue` accepts: one principal, 10 minutes, one extension.
pub fn valid_input(public_key: String) -> AdminIssueInput {
    AdminIssueInput {
        public_key,
        principals: vec!["deploy".to_owned()],
        ttl: "10m".to_owned(),
        reason: "INC-4411 disk full".to_owned(),
        extensions: vec!["permit-pty".to_owned()],
        force_command: None,
        source_address: None,
    }
}

/// What the in-process tests need: a data directory, its signer and a
/// store connection, acting as administrator `root`.
#[derive(Debug)]
pub struct Fixture {
    /// The data directory.
    pub data: DataDir,
    /// The CA key.
    pub signer: Signer,
    /// A connection opened as the CA opens it, on the run's engine.
    pub conn: TestConn,
    /// The administrator the audit trail names.
    pub admin: Username,
}

impl Fixture {
    /// A fresh data directory with its signer and connection.
    pub fn new() -> Self {
        Self::over(DataDir::new())
    }

    /// A fixture whose config holds the brief's two roles and the [`APPROVERS`].
    pub fn with_roles() -> Self {
        Self::with_roles_over(DataDir::new())
    }

    /// A fixture on SQLite whatever `TPA_TEST_ENGINE` asks (see
    /// [`DataDir::sqlite`]).
    pub fn sqlite() -> Self {
        Self::over(DataDir::sqlite())
    }

    /// [`Fixture::with_roles`] on SQLite whatever `TPA_TEST_ENGINE` asks.
    pub fn sqlite_with_roles() -> Self {
        Self::with_roles_over(DataDir::sqlite())
    }

    fn with_roles_over(mut data: DataDir) -> Self {
        data.add_example_roles();
        data.add_accounts(APPROVERS);
        Self::over(data)
    }

    /// A fixture over an existing data directory.
    pub fn over(data: DataDir) -> Self {
        Self {
            signer: data.signer(),
            conn: data.open_store(),
            admin: Username::parse("root").unwrap(),
            data,
        }
    }

    /// `workflow::admin_issue` now.
    pub fn issue(&mut self, input: &AdminIssueInput) -> Result<Issued, IssueError> {
        self.issue_at(input, Utc::now())
    }

    /// `workflow::admin_issue` at `now`.
    pub fn issue_at(
        &mut self,
        input: &AdminIssueInput,
        now: DateTime<Utc>,
    ) -> Result<Issued, IssueError> {
        admin_issue(
            &mut self.conn,
            &self.signer,
            &self.data.config.admin_issue,
            &self.admin,
            input,
            now,
        )
    }

    /// Issues `n` certificates for fresh keys and returns them.
    pub fn issue_many(&mut self, n: usize) -> Vec<Issued> {
        (0..n)
            .map(|_| self.issue(&valid_input(ed25519_public_key())).unwrap())
            .collect()
    }

    /// `who` submits `input` now.
    pub fn submit(
        &mut self,
        who: &User,
        input: &RequestInput,
    ) -> Result<requests::Submitted, WorkflowError> {
        let c = &self.data.config;
        requests::submit(
            &mut self.conn,
            &c.policy,
            &c.workflow,
            who,
            input,
            "test",
            now(),
        )
    }

    /// `who` approves request `id` now, without narrowing.
    pub fn approve(&mut self, who: &User, id: &RequestId) -> Result<ApproveOutcome, WorkflowError> {
        requests::approve(
            &mut self.conn,
            &self.data.config.policy,
            &self.data.identities(),
            who,
            id,
            Narrowing::default(),
            "test",
            now(),
        )
        .map(|(_, o)| o)
    }
}

impl Default for Fixture {
    fn default() -> Self {
        Self::new()
    }
}
