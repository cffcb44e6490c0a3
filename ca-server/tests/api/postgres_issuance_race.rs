//! Issuance racing a revocation on another replica (issue 15): on
//! PostgreSQL nothing process-local orders the two, so the database must.
//! The revocation holds its transaction open (its audit event written, not
//! yet committed) while an issuance batch starts on another connection; the
//! batch must wait for it and then see the request revoked, not sign from
//! the copy it could read before the revocation committed.

use std::time::Duration;

use ca_server::store::pg::{self, PgOptions};
use ca_server::store::sql::{Param, Row, Sql};
use ca_server::store::{Conn, StoreError, Transact, Tx};
use ca_server::workflow::issuance::{IssueJob, issue_batch};
use ca_server::workflow::requests::{self, WorkflowError};
use ca_server::workflow::revocation::{self, Revoker, Target};
use tpa_core::Username;
use tpa_testkit::{APPROVERS, DataDir, alice, bob, carol, ed25519_public_key, hotfix, now};

use crate::postgres_server::PgServer;

/// How long the revocation keeps its transaction open after writing.
const HOLD: Duration = Duration::from_millis(1500);

/// A PostgreSQL connection whose write transactions wait [`HOLD`] before
/// committing, as a replica slowed between its last statement and COMMIT.
struct SlowCommit(Conn);

impl Sql for SlowCommit {
    fn engine(&self) -> ca_server::store::sql::Engine {
        self.0.engine()
    }
    fn execute(&self, sql: &str, params: &[&dyn Param]) -> Result<u64, StoreError> {
        self.0.execute(sql, params)
    }
    fn query_each(
        &self,
        sql: &str,
        params: &[&dyn Param],
        f: &mut dyn FnMut(&Row<'_, '_>) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        self.0.query_each(sql, params, f)
    }
    fn execute_batch(&self, sql: &str) -> Result<(), StoreError> {
        self.0.execute_batch(sql)
    }
}

impl Transact for SlowCommit {
    fn write<T, E: From<StoreError>>(
        &mut self,
        f: impl FnOnce(&Tx<'_>) -> Result<T, E>,
    ) -> Result<T, E> {
        self.0.write(|tx| {
            let value = f(tx);
            std::thread::sleep(HOLD);
            value
        })
    }
}

fn connect(options: &PgOptions) -> Conn {
    Conn::Postgres(Box::new(pg::connect(options).unwrap()))
}

// issue 15: a revocation committed on replica A while replica B's issuance
// batch was starting: B signs nothing for the revoked request (before the
// fix B read the request before taking the audit chain's lock and issued a
// certificate for a request revoked before that certificate's commit).
#[test]
fn an_issuance_racing_a_revocation_on_another_replica_issues_nothing() {
    let mut data = DataDir::new();
    data.add_example_roles();
    data.add_accounts(APPROVERS);
    let db = PgServer::shared().database();
    let options = PgOptions {
        url: db.url.clone(),
        password: Some(db.password.clone()),
        ca_file: None,
    };
    pg::migrate(&mut pg::connect(&options).unwrap()).unwrap();
    let (config, identities, signer) = (data.config.clone(), data.identities(), data.signer());
    let mut conn = connect(&options);
    let id = requests::submit(
        &mut conn,
        &config.policy,
        &config.workflow,
        &alice(),
        &hotfix(&["web-1"], "1h"),
        "test",
        now(),
    )
    .unwrap()
    .request
    .id;
    for approver in [bob(), carol()] {
        requests::approve(
            &mut conn,
            &config.policy,
            &identities,
            &approver,
            &id,
            tpa_core::Narrowing::default(),
            "test",
            now(),
        )
        .unwrap();
    }

    // Replica A: revokes the request and holds its transaction open.
    let revoking = {
        let (options, policy, id) = (options.clone(), config.policy.clone(), id.clone());
        std::thread::spawn(move || {
            revocation::revoke(
                &mut SlowCommit(connect(&options)),
                &policy,
                &Revoker::operator(&Username::parse("root").unwrap()),
                &Target::Request(id),
                "INC-7 laptop stolen",
                "SHA256:not-the-signing-key",
                now(),
            )
        })
    };
    // Replica B: an issuance batch for the same request starts while A's
    // revocation is written but not committed.
    std::thread::sleep(HOLD / 3);
    assert!(
        !revoking.is_finished(),
        "the revocation committed too early"
    );
    let job = IssueJob {
        caller: alice(),
        id: id.clone(),
        public_key: ed25519_public_key(),
        hook_allowed: None,
        source: "test".to_owned(),
    };
    let mut replica_b = connect(&options);
    let issued = issue_batch(
        &mut replica_b,
        (&signer, &config.policy, &identities),
        &[job],
        now(),
    )
    .pop()
    .unwrap();
    revoking.join().unwrap().expect("the revocation commits");

    assert!(
        matches!(issued, Err(WorkflowError::Refused { .. })),
        "a certificate was issued for a request revoked before its commit: {issued:?}"
    );
    let certificates: i64 = conn
        .query_one("SELECT count(*) FROM certificates", &[], |r| r.get(0))
        .unwrap();
    assert_eq!(certificates, 0);
}
