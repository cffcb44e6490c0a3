//! Issue 11: an approval binds exactly what the certificate will carry, and
//! remembers why it counted. Each reproduction of the issue runs against the
//! real workflow over a real SQLite store and a configuration file that an
//! administrator edits between the approval and the certificate.

use ca_server::refusal::Refusal;
use ca_server::workflow::requests as wf;
use tpa_core::{RequestId, RequestInput, User};

use crate::helpers::{Fixture, ed25519_public_key};
use crate::helpers::{alice, bob, carol, hotfix, now, user};

fn issue(f: &mut Fixture, who: &User, id: &RequestId) -> Result<ssh_key::Certificate, String> {
    let ids = f.data.identities();
    crate::helpers::issue_one(
        &mut f.conn,
        (&f.signer, &f.data.config.policy, &ids),
        who,
        id,
        &ed25519_public_key(),
        "test",
        now(),
    )
    .map(|i| i.certificate)
    .map_err(|e| match e {
        wf::WorkflowError::Refused { code, message } => format!("{code}: {message}"),
        other => format!("{other:?}"),
    })
}

fn approved(f: &mut Fixture, hosts: &[&str]) -> RequestId {
    let id = f.submit(&alice(), &hotfix(hosts, "1h")).unwrap().request.id;
    f.approve(&bob(), &id).unwrap();
    f.approve(&carol(), &id).unwrap();
    id
}

fn count(f: &Fixture, sql: &str, id: &RequestId) -> i64 {
    f.conn.one(sql, &[&id.as_str()])
}

fn certificates(f: &Fixture, id: &RequestId) -> i64 {
    count(
        f,
        "SELECT count(*) FROM certificates WHERE request_id = ?1",
        id,
    )
}

fn denied_issuances(f: &Fixture, id: &RequestId) -> i64 {
    let request_id = f.conn.json_text("details", "request_id");
    count(
        f,
        &format!(
            "SELECT count(*) FROM audit_events WHERE action = 'cert.issue' AND outcome = 'denied'
               AND {request_id} = ?1"
        ),
        id,
    )
}

fn reapprovals(f: &Fixture, id: &RequestId) -> i64 {
    count(
        f,
        "SELECT count(*) FROM audit_events WHERE action = 'request.reapproval' AND object = 'request:' || ?1",
        id,
    )
}

fn state(f: &Fixture, id: &RequestId) -> String {
    f.conn
        .one("SELECT state FROM requests WHERE id = ?1", &[&id.as_str()])
}

// issue 11, reproduction 1: an administrator widens the role (logins,
// extensions, cert TTL) after approval; the next certificate carries only
// what was approved.
#[test]
fn role_widened_after_approval_does_not_widen_the_certificate() {
    let mut f = Fixture::with_roles();
    let id = approved(&mut f, &["web-1"]);
    f.data.edit_config(|text| {
        text.replace(
            "logins = [\"root\"]",
            "logins = [\"postgres\", \"root\"]",
        )
        .replace(
            "extensions = [\"permit-pty\"]",
            "extensions = [\"permit-pty\", \"permit-agent-forwarding\", \"permit-port-forwarding\"]",
        )
        .replace("cert_ttl = \"15m\"", "cert_ttl = \"4h\"")
    });
    let cert = issue(&mut f, &alice(), &id).unwrap();
    assert_eq!(cert.valid_principals(), ["root"]);
    let mut extensions: Vec<&str> = cert.extensions().keys().map(String::as_str).collect();
    extensions.sort_unstable();
    assert_eq!(extensions, ["permit-pty", "tpa-request@tpa"]);
    assert!(cert.valid_before() - cert.valid_after() <= 15 * 60 + 60);
}

// issue 11: narrowing the role (removing an extension, shortening the cert
// TTL) takes effect on existing grants at once.
#[test]
fn role_narrowed_after_approval_narrows_the_certificate_at_once() {
    let mut f = Fixture::with_roles();
    let id = approved(&mut f, &["web-1"]);
    f.data.edit_config(|text| {
        text.replace("extensions = [\"permit-pty\"]", "extensions = []")
            .replace("cert_ttl = \"15m\"", "cert_ttl = \"2m\"")
    });
    let cert = issue(&mut f, &alice(), &id).unwrap();
    assert_eq!(cert.valid_principals(), ["root"]);
    assert!(!cert.extensions().contains_key("permit-pty"));
    assert!(cert.valid_before() - cert.valid_after() <= 2 * 60 + 60);
}

// issue 11: a role removed after approval issues nothing.
#[test]
fn role_removed_after_approval_gets_no_certificate() {
    let mut f = Fixture::with_roles();
    let id = approved(&mut f, &["web-1"]);
    f.data
        .edit_config(|text| text.replace("name = \"hotfix-admin\"", "name = \"hotfix-gone\""));
    let e = issue(&mut f, &alice(), &id).unwrap_err();
    assert!(e.starts_with("unknown_role:"), "{e}");
    assert_eq!(certificates(&f, &id), 0);
    assert_eq!(denied_issuances(&f, &id), 1);
}

// issue 11, reproduction 2: bob approves stage 1 (sre-leads), is moved to
// engineers, the CA restarts with the new configuration: the approval no
// longer counts, the request is pending again, and no certificate is issued.
#[test]
fn approver_moved_out_of_stage_group_gets_no_certificate() {
    let mut f = Fixture::with_roles();
    let id = approved(&mut f, &["web-1"]);
    // bob is the first account with `groups = ["sre-leads"]` (APPROVERS).
    f.data.edit_config(|text| {
        text.replacen("groups = [\"sre-leads\"]", "groups = [\"engineers\"]", 1)
    });
    let e = issue(&mut f, &alice(), &id).unwrap_err();
    assert!(e.starts_with("needs_reapproval:"), "{e}");
    assert!(e.contains("bob is no longer a member of sre-leads"), "{e}");
    assert_eq!(state(&f, &id), "pending");
    assert_eq!(certificates(&f, &id), 0);
    assert_eq!(denied_issuances(&f, &id), 1);
    assert_eq!(reapprovals(&f, &id), 1);
    // The approval left is carol's, recorded for managers.
    let groups: Vec<String> = f.conn.column(
        "SELECT group_name FROM approvals WHERE request_id = ?1",
        &[&id.as_str()],
    );
    assert_eq!(groups, ["managers"]);
    // Another SRE lead approves again: the grant holds once more.
    f.approve(&user("erin", &["sre-leads", "managers"]), &id)
        .unwrap();
    assert_eq!(state(&f, &id), "approved");
    assert!(issue(&mut f, &alice(), &id).is_ok());
}

// issue 11: a stage's count raised after one approval voids that approval;
// a fully approved grant goes back to pending.
#[test]
fn stage_count_raised_after_one_approval_needs_reapproval() {
    let mut f = Fixture::with_roles();
    let pending = f
        .submit(&alice(), &hotfix(&["web-1"], "1h"))
        .unwrap()
        .request
        .id;
    f.approve(&bob(), &pending).unwrap();
    let full = approved(&mut f, &["web-2"]);
    f.data.edit_config(|text| {
        text.replace(
            "{ group = \"sre-leads\", approvals = 1 },\n  { group = \"managers\"",
            "{ group = \"sre-leads\", approvals = 2 },\n  { group = \"managers\"",
        )
    });
    assert!(
        f.data
            .config
            .policy
            .roles()
            .any(|r| r.stages.first().is_some_and(|s| s.approvals == 2))
    );
    // The pending request: carol (managers) cannot complete it; erin's
    // approval voids bob's (recorded for the old stage) and counts 1 of 2.
    let e = f.approve(&carol(), &pending).unwrap_err();
    assert!(format!("{e}").contains("sre-leads"), "{e}");
    f.approve(&user("erin", &["sre-leads", "managers"]), &pending)
        .unwrap();
    assert_eq!(state(&f, &pending), "pending");
    assert_eq!(reapprovals(&f, &pending), 1);
    // The store holds erin's approval, not bob's voided one (the review of
    // issue 11 found the new approval dropped and the voided one kept).
    let stored: Vec<String> = f.conn.column(
        "SELECT approver_username FROM approvals WHERE request_id = ?1 ORDER BY position",
        &[&pending.as_str()],
    );
    assert_eq!(stored, ["erin"]);
    // The approved one: no certificate, back to pending.
    let e = issue(&mut f, &alice(), &full).unwrap_err();
    assert!(e.starts_with("needs_reapproval:"), "{e}");
    assert!(e.contains("changed"), "{e}");
    assert_eq!(state(&f, &full), "pending");
    assert_eq!(certificates(&f, &full), 0);
    assert_eq!(reapprovals(&f, &full), 1);
}

fn refused_host(f: &mut Fixture, host: &str) -> String {
    let before: i64 = f.conn.one(
        "SELECT count(*) FROM audit_events WHERE action = 'request.submit' AND outcome = 'denied'",
        &[],
    );
    let e = f.submit(&alice(), &hotfix(&[host], "1h")).unwrap_err();
    let after: i64 = f.conn.one(
        "SELECT count(*) FROM audit_events WHERE action = 'request.submit' AND outcome = 'denied'",
        &[],
    );
    assert_eq!(after, before + 1, "the refusal of {host:?} is audited");
    match e {
        wf::WorkflowError::Refused { code, .. } => code.code().to_owned(),
        other => format!("{other:?}"),
    }
}

// issue 11, reproduction 3: `web-*` does not reach a host name with more
// labels, so no request (and no auto-approved certificate) exists for it.
#[test]
fn star_crossing_dots_is_refused() {
    let mut f = Fixture::with_roles();
    assert_eq!(
        refused_host(&mut f, "web-1.db-1.payments.internal"),
        "host_not_in_role"
    );
    let auto = RequestInput {
        role: "read-only-debug".into(),
        hosts: vec!["web-1.db-1.payments.internal".into()],
        duration: Some("30m".into()),
        reason: "logs".into(),
        ..RequestInput::default()
    };
    assert!(f.submit(&alice(), &auto).is_err());
    let rows: i64 = f.conn.one("SELECT count(*) FROM certificates", &[]);
    assert_eq!(rows, 0);
}

// issue 11, reproduction 3 (host_scoped_principals): one host in two host
// groups would carry both groups' principals; it is refused naming them.
#[test]
fn host_in_two_host_groups_is_refused_at_submission() {
    let mut f = Fixture::with_roles();
    f.data.edit_config(|text| {
        let text = text
            .replace(
                "web = [\"web-*\"]\ndb = [\"db-*\"]",
                "web = [\"web-*\"]\ndb = [\"db-*\"]\npweb = [\"web-*.payments.internal\"]\npay = [\"*.payments.internal\"]",
            );
        format!(
            "{text}\n[[roles]]\nname = \"pay-ops\"\nlogins = [\"ops\"]\nhosts = [\"@pweb\", \"@pay\"]\n\
             host_scoped_principals = true\nmax_duration = \"1h\"\ncert_ttl = \"5m\"\n\
             requestable_by = [\"engineers\"]\nstages = [{{ group = \"sre-leads\", approvals = 1 }}]\n"
        )
    });
    let input = |host: &str| RequestInput {
        role: "pay-ops".into(),
        hosts: vec![host.into()],
        duration: Some("30m".into()),
        reason: "INC-1".into(),
        ..RequestInput::default()
    };
    let e = f
        .submit(&alice(), &input("web-1.payments.internal"))
        .unwrap_err();
    match e {
        wf::WorkflowError::Refused { code, message } => {
            assert_eq!(code, Refusal::HostInSeveralGroups);
            assert!(
                message.contains("pweb") && message.contains("pay"),
                "{message}"
            );
        }
        other => panic!("{other:?}"),
    }
    let ok = f
        .submit(&alice(), &input("db-1.payments.internal"))
        .unwrap();
    // The snapshot with its host-scoped principal reads back from the store.
    let stored = ca_server::store::requests::load(&f.conn, &ok.request.id)
        .unwrap()
        .unwrap();
    assert_eq!(stored.grant, ok.request.grant);
    let grant = ok.request.grant.unwrap();
    let names: Vec<&str> = grant.principals.iter().map(|p| p.as_str()).collect();
    assert_eq!(names, ["pay:ops"]);
}

// issue 11: host names are canonicalized (WEB-1 and web-1. are web-1) and
// anything else that is not a host name is refused and audited.
#[test]
fn host_trailing_dot_and_uppercase_are_canonical_web_1() {
    let mut f = Fixture::with_roles();
    for host in ["web-1.", "WEB-1"] {
        let r = f.submit(&alice(), &hotfix(&[host], "1h")).unwrap().request;
        let hosts: Vec<&str> = r.hosts.iter().map(|h| h.as_str()).collect();
        assert_eq!(hosts, ["web-1"], "{host:?}");
    }
    let both = f
        .submit(&alice(), &hotfix(&["web-2", "WEB-2."], "1h"))
        .unwrap()
        .request;
    assert_eq!(both.hosts.len(), 1);
}

// issue 11
#[test]
fn host_with_an_extra_label_is_refused() {
    let mut f = Fixture::with_roles();
    assert_eq!(refused_host(&mut f, "web-1.evil"), "host_not_in_role");
}

// issue 11
#[test]
fn host_with_a_nul_is_refused() {
    let mut f = Fixture::with_roles();
    assert_eq!(refused_host(&mut f, "web-1\u{0}"), "bad_host");
    assert_eq!(refused_host(&mut f, "web-1\u{0}.evil"), "bad_host");
}

// issue 11
#[test]
fn idna_punycode_host_is_refused() {
    let mut f = Fixture::with_roles();
    assert_eq!(refused_host(&mut f, "xn--wb-1-bsa"), "bad_host");
    assert_eq!(refused_host(&mut f, "wéb-1"), "bad_host");
}

// issue 11, reproduction 4 (workflow level; the real OpenID provider version
// is oidc::one_person_with_two_identities_cannot_approve_own_request): SSO
// identities whose username is the requester's are the requester.
#[test]
fn same_username_under_another_issuer_cannot_approve() {
    let mut f = Fixture::with_roles();
    let id = f
        .submit(&alice(), &hotfix(&["web-1"], "1h"))
        .unwrap()
        .request
        .id;
    let mut sso_alice = user("alice", &["sre-leads", "managers"]);
    sso_alice.identity = tpa_core::Identity::new("https://idp.example", "alice-sub").unwrap();
    let e = f.approve(&sso_alice, &id).unwrap_err();
    assert!(matches!(
        e,
        wf::WorkflowError::Refused {
            code: Refusal::OwnRequest,
            ..
        }
    ));
    let e = wf::deny(
        &mut f.conn,
        &f.data.config.policy,
        &sso_alice,
        &id,
        "",
        "test",
        now(),
    )
    .unwrap_err();
    assert!(matches!(
        e,
        wf::WorkflowError::Refused {
            code: Refusal::OwnRequest,
            ..
        }
    ));
    assert_eq!(state(&f, &id), "pending");
}

// issue 11: `[[identity_links]]` joins usernames of one person.
#[test]
fn linked_username_cannot_approve_and_revoke_user_covers_it() {
    let mut f = Fixture::with_roles();
    f.data.edit_config(|text| {
        format!("{text}\n[[identity_links]]\nusernames = [\"alice\", \"asmith\"]\n")
    });
    let id = f
        .submit(&alice(), &hotfix(&["web-1"], "1h"))
        .unwrap()
        .request
        .id;
    let e = f.approve(&user("asmith", &["sre-leads"]), &id).unwrap_err();
    assert!(matches!(
        e,
        wf::WorkflowError::Refused {
            code: Refusal::OwnRequest,
            ..
        }
    ));
    // revoke user asmith ends alice's pending request: one person.
    let by = ca_server::workflow::revocation::Revoker::operator(
        &tpa_core::Username::parse("root").unwrap(),
    );
    let target =
        ca_server::workflow::revocation::Target::User(tpa_core::Username::parse("asmith").unwrap());
    ca_server::workflow::revocation::revoke(
        &mut f.conn,
        &f.data.config.policy,
        &by,
        &target,
        "left the company",
        &f.signer.fingerprint(),
        now(),
    )
    .unwrap();
    assert_eq!(state(&f, &id), "revoked");
}

// issue 11: the break-glass review path uses the same person rule: an SSO
// identity with the requester's username cannot review her own grant.
#[test]
fn same_username_cannot_review_own_break_glass_grant() {
    let mut f = Fixture::with_roles();
    let input = RequestInput {
        break_glass: true,
        duration: Some("30m".into()),
        ..hotfix(&["web-1"], "30m")
    };
    let id = f.submit(&alice(), &input).unwrap().request.id;
    assert_eq!(state(&f, &id), "approved");
    let mut sso_alice = user("alice", &["sre-leads", "managers"]);
    sso_alice.identity = tpa_core::Identity::new("https://idp.example", "alice-sub").unwrap();
    let e = ca_server::workflow::reviews::review_break_glass(
        &mut f.conn,
        &f.data.config.policy,
        &sso_alice,
        &id,
        "looked fine",
        "test",
        now(),
    )
    .unwrap_err();
    assert!(matches!(
        e,
        wf::WorkflowError::Refused {
            code: Refusal::OwnRequest,
            ..
        }
    ));
    let denied = count(
        &f,
        "SELECT count(*) FROM audit_events WHERE action = 'request.review' AND outcome = 'denied'
           AND object = 'request:' || ?1",
        &id,
    );
    assert_eq!(denied, 1);
    ca_server::workflow::reviews::review_break_glass(
        &mut f.conn,
        &f.data.config.policy,
        &bob(),
        &id,
        "looked fine",
        "test",
        now(),
    )
    .unwrap();
}
