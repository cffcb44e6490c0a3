//! The expiry pass (`workflow::requests::expire_due`, run by `tpa-ca
//! serve` every 15 s): pending requests whose pending TTL ran out expire
//! once each, in transactions of 50 requests rather than one per request.

use ca_server::workflow::requests;
use chrono::TimeDelta;

use crate::helpers::{Fixture, alice, audit_rows, hotfix, now};

// issue 15: a pass over more requests than one transaction takes (60 > 50)
// expires every due request exactly once (one state change, one audit
// event, one webhook event each) and leaves those not yet due; a second
// pass finds nothing.
#[test]
fn an_expiry_pass_expires_each_due_request_once_across_chunks() {
    let mut f = Fixture::with_roles();
    let ids: Vec<_> = (0..60)
        .map(|i| {
            f.submit(&alice(), &hotfix(&[&format!("web-{i}")], "1h"))
                .unwrap()
                .request
                .id
        })
        .collect();
    let policy = f.data.config.policy.clone();
    // Not due yet: nothing happens.
    assert_eq!(
        requests::expire_due(&mut f.conn, &policy, now()).unwrap(),
        0
    );
    let later = now() + TimeDelta::hours(25);
    assert_eq!(
        requests::expire_due(&mut f.conn, &policy, later).unwrap(),
        60
    );
    for id in &ids {
        let state: String = f
            .conn
            .one("SELECT state FROM requests WHERE id = ?1", &[&id.as_str()]);
        assert_eq!(state, "expired", "{id}");
    }
    let expired_events = audit_rows(&f.conn)
        .into_iter()
        .filter(|r| r.action == "request.expire")
        .count();
    assert_eq!(expired_events, 60, "one audit event each");
    let queued: i64 = f.conn.one(
        "SELECT count(*) FROM outbox WHERE kind = 'request.expired'",
        &[],
    );
    assert_eq!(queued, 60, "one webhook event each");
    assert_eq!(
        requests::expire_due(&mut f.conn, &policy, later).unwrap(),
        0,
        "a second pass finds nothing"
    );
}
