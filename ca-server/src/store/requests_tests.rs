//! Tests of `requests.rs` on both engines (issue 15).

use chrono::TimeDelta;

use super::*;
use crate::store::engine::test_engines;
use crate::store::sql::Engine;
use crate::store::{Conn, StoreError};

/// `automated_approvals` (issue 17) is not in the PostgreSQL schema yet:
/// engineer pgops' migration brings issue 17's tables. Until it lands, the
/// PostgreSQL test database gets the table as `docs/schema.sql` has it.
fn engines() -> Vec<(Engine, Conn, Option<tempfile::TempDir>)> {
    let engines = test_engines();
    for (engine, conn, _) in &engines {
        if *engine == Engine::Postgres {
            conn.execute_batch(
                "CREATE TABLE IF NOT EXISTS automated_approvals (
                     request_id   TEXT PRIMARY KEY REFERENCES requests (id),
                     source       TEXT NOT NULL,
                     evidence     TEXT NOT NULL,
                     at           TEXT NOT NULL,
                     content_hash TEXT NOT NULL)",
            )
            .unwrap();
        }
    }
    engines
}

fn t0() -> DateTime<Utc> {
    DateTime::from_timestamp(1_800_000_000, 0).unwrap()
}

fn id(c: char) -> RequestId {
    // The last character carries two zero bits: `a` fits whatever `c` is.
    RequestId::parse(&format!("req_{}a", c.to_string().repeat(25))).unwrap()
}

fn who(name: &str) -> Identity {
    Identity::new("tpa:local", name).unwrap()
}

fn request(c: char, requester: &str, created_at: DateTime<Utc>) -> AccessRequest {
    let grant = r#"{"principals":["alice"],"extensions":["permit-pty"],
        "force_command":"journalctl -f","source_address":null,"cert_ttl_secs":3600}"#;
    AccessRequest {
        id: id(c),
        requester: who(requester),
        requester_username: Username::parse(requester).unwrap(),
        role: RoleName::parse("hotfix-admin").unwrap(),
        hosts: ["web-1", "web-2"]
            .iter()
            .map(|h| HostName::parse(h).unwrap())
            .collect(),
        duration: HumanDuration::from_secs(3600).unwrap(),
        reason: "INC-1 disk full".into(),
        ticket: Some("INC-1".into()),
        start: None,
        path: ApprovalPath::Stages,
        grant: grant_from(Some(grant.into())).unwrap(),
        created_at,
        pending_until: created_at + TimeDelta::hours(24),
        state: RequestState::Pending,
        approvals: Vec::new(),
        automated: None,
        window: None,
        decided_by: None,
        comment: None,
    }
}

fn approval(name: &str, stage: usize, at: DateTime<Utc>) -> Approval {
    Approval {
        approver: who(name),
        approver_username: Username::parse(name).unwrap(),
        stage,
        stage_hash: format!("stage-{stage}"),
        group: GroupName::parse("sre-leads").unwrap(),
        comment: Some(format!("ok from {name}")),
        at,
        content_hash: "hash".into(),
    }
}

// issue 15: a request and its approvals come back as stored, through
// appended approvals, a rewrite after a voided one, and the final decision,
// on both engines.
#[test]
fn a_request_round_trips_through_its_transitions() {
    for (engine, mut conn, _dir) in engines() {
        let mut r = request('a', "alice", t0());
        r.approvals.push(approval("bob", 0, t0()));
        conn.write(|tx| insert(tx, &r, t0())).unwrap();
        assert_eq!(load(&conn, &r.id).unwrap().as_ref(), Some(&r), "{engine:?}");
        assert_eq!(load(&conn, &id('q')).unwrap(), None, "{engine:?}");

        // An approval appended.
        r.approvals
            .push(approval("carol", 1, t0() + TimeDelta::minutes(1)));
        conn.write(|tx| update(tx, &r, 1, t0())).unwrap();
        assert_eq!(load(&conn, &r.id).unwrap().as_ref(), Some(&r), "{engine:?}");

        // Bob's approval voided while dave's is added: same count, rewritten.
        r.approvals.remove(0);
        r.approvals
            .push(approval("dave", 1, t0() + TimeDelta::minutes(2)));
        conn.write(|tx| update(tx, &r, 2, t0())).unwrap();
        assert_eq!(load(&conn, &r.id).unwrap().as_ref(), Some(&r), "{engine:?}");

        // Approved: the window opens and the grant is found while it lasts.
        let later = t0() + TimeDelta::minutes(5);
        r.state = RequestState::Approved;
        r.window = Some(Window {
            start: later,
            end: later + TimeDelta::hours(1),
        });
        r.hosts.remove(&HostName::parse("web-2").unwrap());
        conn.write(|tx| update(tx, &r, 2, later)).unwrap();
        assert_eq!(load(&conn, &r.id).unwrap().as_ref(), Some(&r), "{engine:?}");
        assert_eq!(
            updated_at(&conn, &r.id).unwrap(),
            Some(format_time(later)),
            "{engine:?}"
        );
        let found = |conn: &Conn, r: &AccessRequest, at| {
            find_active_grant(conn, &r.requester, &r.role, &r.hosts, at).unwrap()
        };
        assert_eq!(found(&conn, &r, later), Some(r.id.clone()), "{engine:?}");
        assert_eq!(
            found(&conn, &r, later + TimeDelta::hours(1)),
            None,
            "{engine:?}"
        );

        // Denied with a comment by someone.
        r.state = RequestState::Revoked;
        r.decided_by = Some(who("erin"));
        r.comment = Some("done early".into());
        conn.write(|tx| update(tx, &r, 2, later)).unwrap();
        assert_eq!(load(&conn, &r.id).unwrap().as_ref(), Some(&r), "{engine:?}");
        assert_eq!(
            found(&conn, &r, later),
            None,
            "{engine:?}: revoked is no grant"
        );
    }
}

// issue 15: listings filter, order and bound the same way on both engines,
// and expiry picks pending requests past their TTL only.
#[test]
fn listings_and_expiry_agree_on_both_engines() {
    for (engine, mut conn, _dir) in engines() {
        let a = request('a', "alice", t0());
        let b = request('b', "bob", t0() + TimeDelta::minutes(1));
        let mut c = request('c', "alice", t0() + TimeDelta::minutes(2));
        c.state = RequestState::Denied;
        conn.write(|tx| {
            for r in [&a, &b, &c] {
                insert(tx, r, t0())?;
            }
            Ok::<_, StoreError>(())
        })
        .unwrap();
        let ids = |rs: Vec<AccessRequest>| rs.into_iter().map(|r| r.id).collect::<Vec<_>>();
        assert_eq!(
            ids(list(&conn, Listing::Requester(&who("alice")), 10).unwrap()),
            vec![c.id.clone(), a.id.clone()],
            "{engine:?}"
        );
        assert_eq!(
            ids(list(&conn, Listing::Pending, 10).unwrap()),
            vec![a.id.clone(), b.id.clone()],
            "{engine:?}"
        );
        assert_eq!(
            ids(list(&conn, Listing::All, 2).unwrap()),
            vec![c.id.clone(), b.id.clone()],
            "{engine:?}"
        );
        let due = |at, limit| due_for_expiry(&conn, at, limit).unwrap();
        assert_eq!(due(t0(), 10), Vec::<RequestId>::new(), "{engine:?}");
        let past = t0() + TimeDelta::hours(25);
        assert_eq!(
            due(past, 10),
            vec![a.id.clone(), b.id.clone()],
            "{engine:?}"
        );
        assert_eq!(due(past, 1), vec![a.id.clone()], "{engine:?}");
    }
}

// issue 15: the database refuses a request id twice and an approver twice
// on one request, on both engines; the refused transaction leaves nothing.
#[test]
fn ids_and_approvers_are_unique_in_the_database() {
    for (engine, mut conn, _dir) in engines() {
        let r = request('a', "alice", t0());
        conn.write(|tx| insert(tx, &r, t0())).unwrap();
        let again: Result<(), StoreError> = conn.write(|tx| insert(tx, &r, t0()));
        assert!(again.is_err(), "{engine:?}: a request id is stored once");

        let mut twice = r.clone();
        twice.approvals.push(approval("bob", 0, t0()));
        twice.approvals.push(approval("bob", 1, t0()));
        let refused: Result<(), StoreError> = conn.write(|tx| update(tx, &twice, 0, t0()));
        assert!(refused.is_err(), "{engine:?}: an approver counts once");
        assert_eq!(load(&conn, &r.id).unwrap(), Some(r.clone()), "{engine:?}");
    }
}

// issue 15: an on-call request is stored on the `stages` path with its
// automated approval, and loads back as on-call, on both engines.
#[test]
fn an_on_call_request_loads_as_on_call() {
    for (engine, mut conn, _dir) in engines() {
        let mut r = request('a', "alice", t0());
        r.path = ApprovalPath::OnCall;
        r.automated = Some(tpa_core::AutomatedApproval {
            source: "pagerduty:pd:PSCHED1".into(),
            evidence: "on call in PSCHED1".into(),
            at: t0(),
            content_hash: "hash".into(),
        });
        conn.write(|tx| insert(tx, &r, t0())).unwrap();
        assert_eq!(load(&conn, &r.id).unwrap(), Some(r.clone()), "{engine:?}");
        let path: String = conn
            .query_one("SELECT path FROM requests", &[], |row| row.get(0))
            .unwrap();
        assert_eq!(path, "stages", "{engine:?}");
    }
}

// issue 15: the window-end pass's reads and claims on both engines: an
// approved request with a ticket is due once its window ended, until its end
// is claimed; the claim is taken once; the notice names the outbox item.
#[test]
fn a_window_end_is_due_until_claimed_once() {
    use crate::store::{outbox, window_ends};
    for (engine, mut conn, _dir) in engines() {
        let mut r = request('w', "alice", t0());
        r.state = RequestState::Approved;
        r.approvals.push(approval("bob", 0, t0()));
        let end = t0() + TimeDelta::hours(1);
        r.window = Some(Window { start: t0(), end });
        conn.write(|tx| insert(tx, &r, t0())).unwrap();
        let after = end + TimeDelta::minutes(1);
        let due = |conn: &Conn, now| window_ends::due(conn, t0(), now, 10).unwrap();

        assert_eq!(due(&conn, end - TimeDelta::seconds(1)), [], "{engine:?}");
        assert_eq!(due(&conn, after), [r.id.clone()], "{engine:?}");
        assert_eq!(
            window_ends::notice(&conn, &r.id).unwrap(),
            None,
            "{engine:?}"
        );
        assert!(
            conn.write(|tx| window_ends::claim(tx, &r.id, after))
                .unwrap()
        );
        assert!(
            !conn
                .write(|tx| window_ends::claim(tx, &r.id, after))
                .unwrap(),
            "{engine:?}: a second claim is refused"
        );
        assert_eq!(due(&conn, after), [], "{engine:?}");
        assert_eq!(
            window_ends::notice(&conn, &r.id).unwrap(),
            Some(None),
            "{engine:?}"
        );
        let item = conn
            .write(|tx| {
                let item = outbox::enqueue(tx, "ticket.comment", "{}", after)?;
                window_ends::record_outbox(tx, &r.id, item)?;
                Ok::<_, StoreError>(item)
            })
            .unwrap();
        assert_eq!(
            window_ends::notice(&conn, &r.id).unwrap(),
            Some(Some(item)),
            "{engine:?}"
        );
    }
}
