//! Revocation (issue #7) in-process and through the real `tpa-ca`: by serial,
//! request, user and CA key; the KRL checked with the real `ssh-keygen -Q`;
//! idempotence, refusals with their audit events, the KRL version, the
//! bastion feed, and `tpa-ca krl --out`.

use ca_server::store::sql::Sql as _;
use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;

use ca_server::commands::verify_database;
use ca_server::refusal::Refusal;
use ca_server::workflow::requests as wf;
use ca_server::workflow::revocation::{self, Revoked, Revoker, Target};
use ca_server::workflow::{Issued, bastion, krl};
use chrono::Utc;
use tpa_core::{RequestId, RequestInput, RequestState, User, Username};

use crate::helpers::{
    DataDir, Fixture, count, ed25519_public_key, run, ssh_keygen, tpa_ca, user, valid_input,
};
use crate::helpers::{alice, bob, carol, hotfix};

fn debug_grant(f: &mut Fixture, who: &User, host: &str) -> RequestId {
    let input = RequestInput {
        role: "read-only-debug".into(),
        hosts: vec![host.into()],
        duration: Some("30m".into()),
        reason: "look at logs".into(),
        ..RequestInput::default()
    };
    let r = f.submit(who, &input).unwrap().request;
    assert_eq!(r.state, RequestState::Approved);
    r.id
}

fn cert_for(f: &mut Fixture, who: &User, id: &RequestId) -> Issued {
    crate::helpers::issue_one(
        &mut f.conn,
        (&f.signer, &f.data.config.policy, &f.data.identities()),
        who,
        id,
        &ed25519_public_key(),
        "test",
        Utc::now(),
    )
    .unwrap()
}

fn operator() -> Revoker {
    Revoker::operator(&Username::parse("oncall").unwrap())
}

fn revoke(f: &mut Fixture, target: Target, reason: &str) -> Result<Revoked, wf::WorkflowError> {
    let signing = f.signer.fingerprint();
    revocation::revoke(
        &mut f.conn,
        &f.data.config.policy,
        &operator(),
        &target,
        reason,
        &signing,
        Utc::now(),
    )
}

/// Writes the current KRL and each certificate, and asks `ssh-keygen -Q`.
struct KrlCheck {
    dir: tempfile::TempDir,
}

impl KrlCheck {
    fn new(f: &Fixture) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let krl = krl::build(&f.conn, &f.signer.ca_key_data(), Utc::now().timestamp()).unwrap();
        std::fs::write(dir.path().join("krl"), krl.bytes).unwrap();
        Self { dir }
    }

    fn revoked(&self, issued: &Issued) -> bool {
        let path = self.dir.path().join(format!("{}-cert.pub", issued.serial));
        std::fs::write(&path, issued.certificate.to_openssh().unwrap()).unwrap();
        query(&self.dir.path().join("krl"), &path)
    }
}

fn query(krl: &Path, file: &Path) -> bool {
    let out = std::process::Command::new("ssh-keygen")
        .arg("-Q")
        .arg("-f")
        .arg(krl)
        .arg(file)
        .output()
        .expect("ssh-keygen (openssh-client) is needed");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    match out.status.code() {
        Some(0) => {
            assert!(text.contains(": ok"), "{text}");
            false
        }
        Some(1) => {
            assert!(text.contains("REVOKED"), "{text}");
            true
        }
        other => panic!(
            "ssh-keygen -Q failed ({other:?}): {text}{}",
            String::from_utf8_lossy(&out.stderr)
        ),
    }
}

fn events(f: &Fixture, action: &str, outcome: &str) -> i64 {
    f.conn.one(
        "SELECT count(*) FROM audit_events WHERE action = ?1 AND outcome = ?2",
        &[&action, &outcome],
    )
}

#[test]
fn revoking_a_request_revokes_all_of_its_certificates_and_ends_it() {
    let mut f = Fixture::with_roles();
    let id = debug_grant(&mut f, &alice(), "web-1");
    let certs: Vec<Issued> = (0..3).map(|_| cert_for(&mut f, &alice(), &id)).collect();
    let other_id = debug_grant(&mut f, &alice(), "web-2");
    let other = cert_for(&mut f, &alice(), &other_id);
    let version_before = ca_server::store::revocations::krl_version(&f.conn).unwrap();

    let done = revoke(&mut f, Target::Request(id.clone()), "INC-9 laptop lost").unwrap();

    assert_eq!(done.certificates, 3);
    assert_eq!(done.requests, vec![id.to_string()]);
    assert!(!done.already);
    assert!(done.krl_version > version_before);
    let r = wf::get(&f.conn, &f.data.config.policy, &alice(), &id).unwrap();
    assert_eq!(r.state, RequestState::Revoked);
    let check = KrlCheck::new(&f);
    for c in &certs {
        assert!(check.revoked(c), "serial {} not in the KRL", c.serial);
    }
    assert!(
        !check.revoked(&other),
        "a certificate of another request was revoked"
    );
    // No further certificate for the revoked request.
    let refused = crate::helpers::issue_one(
        &mut f.conn,
        (&f.signer, &f.data.config.policy, &f.data.identities()),
        &alice(),
        &id,
        &ed25519_public_key(),
        "test",
        Utc::now(),
    );
    assert!(refused.is_err());
    // Audited with who and why.
    let (actor, reason): (String, String) = f
        .conn
        .query_one(
            "SELECT actor, reason FROM audit_events WHERE seq = ?1",
            &[&done.audit_seq],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!(
        (actor.as_str(), reason.as_str()),
        ("admin:oncall", "INC-9 laptop lost")
    );

    // Idempotent and final: again succeeds, changes nothing.
    let again = revoke(&mut f, Target::Request(id.clone()), "again").unwrap();
    assert!(again.already, "{again:?}");
    assert_eq!(again.certificates, 0);
    assert!(KrlCheck::new(&f).revoked(&certs[0]));
    let e = f
        .conn
        .execute("DELETE FROM revoked_certificates", &[])
        .unwrap_err();
    assert!(e.to_string().contains("final"), "{e}");
    assert!(verify_database(&f.conn).unwrap().is_ok());
}

#[test]
fn a_serial_revocation_names_only_that_certificate() {
    let mut f = Fixture::with_roles();
    let id = debug_grant(&mut f, &alice(), "web-1");
    let first = cert_for(&mut f, &alice(), &id);
    let second = cert_for(&mut f, &alice(), &id);

    let done = revoke(&mut f, Target::Serial(first.serial), "key leaked").unwrap();

    assert_eq!((done.certificates, done.requests.len()), (1, 0));
    let check = KrlCheck::new(&f);
    assert!(check.revoked(&first));
    assert!(
        !check.revoked(&second),
        "the sibling certificate must stay valid"
    );
    // The grant itself goes on.
    let r = wf::get(&f.conn, &f.data.config.policy, &alice(), &id).unwrap();
    assert_eq!(r.state, RequestState::Approved);
    assert_eq!(events(&f, "cert.revoke", "success"), 1);
}

#[test]
fn revoking_a_user_ends_their_grants_and_break_glass_certificates() {
    let mut f = Fixture::with_roles();
    let a1 = debug_grant(&mut f, &alice(), "web-1");
    let a2 = debug_grant(&mut f, &alice(), "web-2");
    let (c1, c2) = (
        cert_for(&mut f, &alice(), &a1),
        cert_for(&mut f, &alice(), &a2),
    );
    // A break-glass certificate `tpa-ca issue` made for alice.
    f.admin = Username::parse("alice").unwrap();
    let glass = f.issue(&valid_input(ed25519_public_key())).unwrap();
    // Someone else's grant and break-glass certificate stay.
    let b = debug_grant(&mut f, &user("dave", &["engineers"]), "web-1");
    let dave_cert = cert_for(&mut f, &user("dave", &["engineers"]), &b);
    f.admin = Username::parse("root").unwrap();
    let root_glass = f.issue(&valid_input(ed25519_public_key())).unwrap();

    let done = revoke(
        &mut f,
        Target::User(Username::parse("alice").unwrap()),
        "offboarding",
    )
    .unwrap();

    assert_eq!(done.certificates, 3, "{done:?}");
    let mut ended = done.requests.clone();
    ended.sort();
    let mut expected = vec![a1.to_string(), a2.to_string()];
    expected.sort();
    assert_eq!(ended, expected);
    let check = KrlCheck::new(&f);
    for c in [&c1, &c2, &glass] {
        assert!(check.revoked(c), "serial {}", c.serial);
    }
    assert!(!check.revoked(&dave_cert));
    assert!(!check.revoked(&root_glass));
    // Each ended grant also has its own request.revoke event (timeline, feed).
    assert_eq!(events(&f, "request.revoke", "success"), 2);
    assert_eq!(events(&f, "user.revoke", "success"), 1);
    let again = revoke(
        &mut f,
        Target::User(Username::parse("alice").unwrap()),
        "offboarding",
    )
    .unwrap();
    assert!(again.already);

    // The bastion feed carries the serials.
    let feed = bastion::revocation_feed(&f.conn, None, Utc::now()).unwrap();
    for c in [&c1, &c2, &glass] {
        assert!(feed.revoked_serials.contains(&c.serial.to_string()));
    }
    assert!(!feed.revoked_serials.contains(&dave_cert.serial.to_string()));
}

// Security review 2026-11-24: revoking a user by name used to leave their
// pending requests (a second approval after the revocation still granted
// access) and the grants the same identity (issuer, subject) held under an
// earlier username.
#[test]
fn revoking_a_user_covers_pending_requests_and_earlier_usernames() {
    let mut f = Fixture::with_roles();
    // A two-stage request with one of its two approvals.
    let pending = f
        .submit(&alice(), &hotfix(&["web-1"], "1h"))
        .unwrap()
        .request
        .id;
    f.approve(&bob(), &pending).unwrap();
    // The same identity (tpa:local#alice) when its username was alice-old.
    let mut earlier = alice();
    earlier.username = Username::parse("alice-old").unwrap();
    let old = debug_grant(&mut f, &earlier, "web-2");
    let old_cert = cert_for(&mut f, &earlier, &old);
    // Another identity's grant stays.
    let dave = user("dave", &["engineers"]);
    let d = debug_grant(&mut f, &dave, "web-1");
    let dave_cert = cert_for(&mut f, &dave, &d);

    let done = revoke(
        &mut f,
        Target::User(Username::parse("alice").unwrap()),
        "account compromised",
    )
    .unwrap();

    let mut ended = done.requests.clone();
    ended.sort();
    let mut expected = vec![pending.to_string(), old.to_string()];
    expected.sort();
    assert_eq!(ended, expected, "{done:?}");
    assert_eq!(done.certificates, 1);
    let policy = f.data.config.policy.clone();
    let r = wf::get(&f.conn, &policy, &alice(), &pending).unwrap();
    assert_eq!(r.state, RequestState::Revoked);
    let late = f.approve(&carol(), &pending);
    assert!(
        matches!(
            late,
            Err(wf::WorkflowError::Refused {
                code: Refusal::NotPending,
                ..
            })
        ),
        "{late:?}"
    );
    let refused = crate::helpers::issue_one(
        &mut f.conn,
        (&f.signer, &policy, &f.data.identities()),
        &alice(),
        &pending,
        &ed25519_public_key(),
        "test",
        Utc::now(),
    );
    assert!(refused.is_err(), "a certificate after the revocation");
    let check = KrlCheck::new(&f);
    assert!(
        check.revoked(&old_cert),
        "the earlier username's certificate"
    );
    assert!(!check.revoked(&dave_cert));
    assert_eq!(events(&f, "request.revoke", "success"), 2);
    assert!(verify_database(&f.conn).unwrap().is_ok());
}

#[test]
fn refusals_are_audited_and_change_nothing() {
    let mut f = Fixture::with_roles();
    let id = debug_grant(&mut f, &alice(), "web-1");
    let c = cert_for(&mut f, &alice(), &id);
    let check = |r: Result<Revoked, wf::WorkflowError>| match r {
        Err(wf::WorkflowError::Refused { code, .. }) => code.code(),
        other => panic!("{other:?}"),
    };
    assert_eq!(
        check(revoke(&mut f, Target::Serial(c.serial), "  ")),
        "reason_required"
    );
    assert_eq!(
        check(revoke(
            &mut f,
            Target::Serial(tpa_core::CertSerial::parse("12345").unwrap()),
            "why"
        )),
        "not_found"
    );
    let signing = f.signer.fingerprint();
    assert_eq!(
        check(revoke(&mut f, Target::CaKey(signing), "why")),
        "signing_key"
    );
    assert_eq!(events(&f, "cert.revoke", "denied"), 2);
    assert_eq!(events(&f, "ca_key.revoke", "denied"), 1);
    assert_eq!(count(&f.conn, "revocations"), 0);
    assert!(!KrlCheck::new(&f).revoked(&c));
    for (kind, value) in [
        ("serial", "0"),
        ("request", "nope"),
        ("user", "Bad User"),
        ("ca_key", "MD5:aa"),
        ("host", "x"),
    ] {
        assert!(Target::parse(kind, value).is_err(), "{kind} {value}");
    }
}

#[test]
fn an_old_ca_key_is_revoked_as_a_whole_key() {
    // Issue under the first key, then rotate: a new signing key, the old one
    // kept trusted (the rotation overlap), then revoke the old one.
    let mut data = DataDir::new();
    data.edit_config(|t| format!("{t}{}", ca_server::config::EXAMPLE_ROLES));
    let mut f = Fixture::over(data);
    let id = debug_grant(&mut f, &alice(), "web-1");
    let old_cert = cert_for(&mut f, &alice(), &id);
    let old_fp = f.signer.fingerprint();
    let old_pub = f.data.dir.join("ca_key.pub");
    ssh_keygen(&f.data.dir, "ca_key2", &["-t", "ed25519"]);
    let old_pub_text = old_pub.display().to_string();
    let mut data = f.data;
    data.edit_config(|t| {
        t.replace("key_file = \"ca_key\"", "key_file = \"ca_key2\"")
            .replace(
                "extra_trusted_public_key_files = []",
                &format!("extra_trusted_public_key_files = [{old_pub_text:?}]"),
            )
    });
    let mut f = Fixture::over(data);
    let id2 = debug_grant(&mut f, &alice(), "web-2");
    let new_cert = cert_for(&mut f, &alice(), &id2);
    assert_ne!(f.signer.fingerprint(), old_fp);

    let done = revoke(&mut f, Target::CaKey(old_fp.clone()), "old key retired").unwrap();

    assert!(done.ca_key);
    assert_eq!(done.certificates, 1);
    let check = KrlCheck::new(&f);
    assert!(check.revoked(&old_cert));
    assert!(!check.revoked(&new_cert));
    // The key itself is in the KRL (sshd checks a certificate's CA key against it).
    assert!(query(&check.dir.path().join("krl"), &old_pub));
    let feed = bastion::revocation_feed(&f.conn, None, Utc::now()).unwrap();
    assert_eq!(feed.revoked_ca_keys, vec![old_fp.clone()]);
    let again = revoke(&mut f, Target::CaKey(old_fp), "old key retired").unwrap();
    assert!(again.already);

    // Security review 2026-11-24: the revoked key configured as the signing
    // key again used to sign on (certificates every host refuses, and a key
    // left out of /ca.pub). Now `serve` and `issue` refuse to start with it.
    let mut data = f.data;
    data.edit_config(|t| t.replace("key_file = \"ca_key2\"", "key_file = \"ca_key\""));
    let e = ca_server::app::AppState::load(&data.config).unwrap_err();
    let e = format!("{e:#}");
    assert!(
        e.contains("was revoked") && e.contains("ca.key_file"),
        "{e}"
    );
    let pubkey = data.dir.join("user.pub");
    std::fs::write(&pubkey, ed25519_public_key()).unwrap();
    let (code, stdout, stderr) = run(tpa_ca()
        .args(["issue", "--config"])
        .arg(&data.config_path)
        .args(["--principal", "deploy", "--ttl", "5m", "--pubkey"])
        .arg(&pubkey)
        .args(["--reason", "INC-1 test", "--admin", "root"]));
    assert_ne!(code, 0, "{stdout}");
    assert!(
        stderr.contains("was revoked") && stderr.contains("no certificate was issued"),
        "{stderr}"
    );
    assert_eq!(stdout, "");
}

// issue 15 (review of two replicas): replica B, rotated to a new key,
// revokes the old one while replica A still runs on it; A signs nothing
// more with it (it used to check only at start-up), and says why.
#[test]
fn a_replica_still_on_a_revoked_key_signs_nothing_more() {
    let mut data = DataDir::new();
    data.edit_config(|t| format!("{t}{}", ca_server::config::EXAMPLE_ROLES));
    let mut f = Fixture::over(data);
    let id = debug_grant(&mut f, &alice(), "web-1");
    cert_for(&mut f, &alice(), &id);
    let old_fp = f.signer.fingerprint();
    ssh_keygen(&f.data.dir, "ca_key2", &["-t", "ed25519"]);
    f.data
        .edit_config(|t| t.replace("key_file = \"ca_key\"", "key_file = \"ca_key2\""));
    let replica_a = std::mem::replace(&mut f.signer, f.data.signer());
    revoke(&mut f, Target::CaKey(old_fp), "rotated on replica B").unwrap();

    f.signer = replica_a;
    let e = crate::helpers::issue_one(
        &mut f.conn,
        (&f.signer, &f.data.config.policy, &f.data.identities()),
        &alice(),
        &id,
        &ed25519_public_key(),
        "test",
        Utc::now(),
    )
    .unwrap_err();
    assert!(
        matches!(&e, wf::WorkflowError::Refused { code: Refusal::SigningKeyRevoked, message } if message.contains("ca.key_file")),
        "{e:?}"
    );
    assert_eq!(
        events(&f, "cert.issue", "denied"),
        1,
        "the refusal is audited"
    );
}

#[test]
fn the_requester_ending_a_grant_early_revokes_its_certificates() {
    let mut f = Fixture::with_roles();
    let id = debug_grant(&mut f, &alice(), "web-1");
    let c = cert_for(&mut f, &alice(), &id);
    let before = ca_server::store::revocations::krl_version(&f.conn).unwrap();
    wf::cancel(
        &mut f.conn,
        &f.data.config.policy,
        &alice(),
        &id,
        "test",
        Utc::now(),
    )
    .unwrap();
    assert!(KrlCheck::new(&f).revoked(&c));
    assert!(ca_server::store::revocations::krl_version(&f.conn).unwrap() > before);
    assert_eq!(count(&f.conn, "revoked_certificates"), 1);
}

#[test]
fn the_krl_version_only_grows_and_survives_a_reopen() {
    let mut f = Fixture::with_roles();
    let mut last = ca_server::store::revocations::krl_version(&f.conn).unwrap();
    for host in ["web-1", "web-2", "web-3"] {
        let id = debug_grant(&mut f, &alice(), host);
        cert_for(&mut f, &alice(), &id);
        let done = revoke(&mut f, Target::Request(id), "rotate").unwrap();
        assert!(done.krl_version > last);
        last = done.krl_version;
    }
    let conn = f.data.open_store();
    let krl = krl::build(&conn, &f.signer.ca_key_data(), Utc::now().timestamp()).unwrap();
    assert_eq!(i64::try_from(krl.version).unwrap(), last);
    // The version is in the KRL header (bytes 12..20).
    assert_eq!(&krl.bytes[12..20], &krl.version.to_be_bytes());
}

#[test]
fn tpa_ca_revoke_and_krl_out_through_the_binary() {
    let mut f = Fixture::with_roles();
    let id = debug_grant(&mut f, &alice(), "web-1");
    let c = cert_for(&mut f, &alice(), &id);
    let config = f.data.config_path.clone();
    let out = f.data.tmp.path().join("hosts").join("tpa.krl");
    std::fs::create_dir_all(out.parent().unwrap()).unwrap();

    let (code, _, stderr) = run(tpa_ca()
        .args([
            "revoke",
            "request",
            id.as_str(),
            "--admin",
            "oncall",
            "--config",
        ])
        .arg(&config));
    assert_eq!(code, 2, "--reason is required: {stderr}");
    let (code, stdout, stderr) = run(tpa_ca()
        .args([
            "revoke", "serial", "99", "--reason", "x", "--admin", "oncall", "--config",
        ])
        .arg(&config));
    assert_eq!(code, 1, "{stdout}{stderr}");
    assert!(stderr.contains("no certificate with serial 99"), "{stderr}");

    let (code, stdout, stderr) = run(tpa_ca()
        .args(["revoke", "request", id.as_str()])
        .args([
            "--reason",
            "INC-7 stolen laptop",
            "--admin",
            "oncall",
            "--config",
        ])
        .arg(&config));
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stdout.contains("1 certificate(s), 1 grant(s) ended"),
        "{stdout}"
    );

    let (code, stdout, stderr) = run(tpa_ca()
        .args(["krl", "--out"])
        .arg(&out)
        .arg("--config")
        .arg(&config));
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.starts_with("wrote KRL version"), "{stdout}");
    let mode = std::fs::metadata(&out).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o644);
    let cert = f.data.tmp.path().join("c-cert.pub");
    std::fs::write(&cert, c.certificate.to_openssh().unwrap()).unwrap();
    assert!(query(&out, &cert));
    // Replacing the file leaves no temporary file behind.
    let (code, _, stderr) = run(tpa_ca()
        .args(["krl", "--out"])
        .arg(&out)
        .arg("--config")
        .arg(&config));
    assert_eq!(code, 0, "{stderr}");
    let names: Vec<String> = std::fs::read_dir(out.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, ["tpa.krl"]);

    let actor: String = f.conn.one(
        "SELECT revoked_by FROM revocations WHERE kind = 'request'",
        &[],
    );
    assert_eq!(actor, "admin:oncall");
    let _ = bob();
}
