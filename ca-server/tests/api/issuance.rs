//! Admin issuance through `workflow::admin_issue`: every kind of bad input is
//! refused with a clear message, one `denied` audit row and no certificate;
//! good input gives exactly the template's certificate, recorded twice.

use ca_server::store::sql::Sql as _;
use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr};

use ca_server::commands::verify_database;
use ca_server::workflow::{AdminIssueInput, IssueError};
use chrono::Utc;
use ssh_key::certificate::CertType;
use ssh_key::{HashAlg, PublicKey};
use tpa_core::{Revocations, TrustedCas, verify_user_cert};

use crate::helpers::{
    DataDir, Fixture, audit_rows, count, ed25519_public_key, ssh_keygen, valid_input,
};

/// Runs `admin_issue` on a valid input changed by `edit` and checks the refusal:
/// an `Invalid` error whose message contains `expected`, exactly one new audit
/// row (`cert.issue`, `denied`, the same message) and no certificate row.
fn check(f: &mut Fixture, edit: impl FnOnce(&mut AdminIssueInput), expected: &str) {
    let mut input = valid_input(ed25519_public_key());
    edit(&mut input);
    let before = audit_rows(&f.conn);

    let result = f.issue(&input);

    let message = match result {
        Err(IssueError::Invalid(message)) => message,
        other => panic!("expected Invalid containing {expected:?}, got {other:?}"),
    };
    assert!(
        message.contains(expected),
        "message {message:?} does not contain {expected:?}"
    );
    let after = audit_rows(&f.conn);
    assert_eq!(after.len(), before.len() + 1, "one audit row per refusal");
    let row = after.last().unwrap();
    assert_eq!(
        (
            row.actor.as_str(),
            row.action.as_str(),
            row.object.as_str(),
            row.outcome.as_str()
        ),
        ("admin:root", "cert.issue", "cert:none", "denied"),
        "{row:?}"
    );
    assert_eq!(row.reason, message);
    assert_eq!(count(&f.conn, "certificates"), 0, "no certificate row");
}

/// The chain, including every denial, still verifies.
fn assert_trail_ok(f: &Fixture) {
    let report = verify_database(&f.conn).unwrap().unwrap();
    assert_eq!(report.events, count(&f.conn, "audit_events"));
}

#[test]
fn bad_principals_are_refused() {
    let mut f = Fixture::new();
    let mut principals = |list: &[&str], expected: &str| {
        let list: Vec<String> = list.iter().map(|p| (*p).to_owned()).collect();
        check(&mut f, |i| i.principals = list, expected);
    };
    principals(&["a,b"], "contains a comma");
    principals(&["root "], "contains whitespace");
    principals(&[" root"], "contains whitespace");
    principals(&["ro\not"], "contains whitespace (\\u{a})");
    principals(&[r"ro\not"], r"contains '\'");
    principals(&["ro\0ot"], "a control character (\\u{0})");
    principals(&["*"], "a wildcard (*)");
    principals(&["prod-*"], "a wildcard (*)");
    principals(&["web-?"], "a wildcard (?)");
    principals(&["!root"], "contains '!'");
    principals(&["Root"], "contains 'R'");
    principals(&["-root"], "must start with a lowercase letter or '_'");
    principals(&[], "at least one --principal is required");
    principals(&[""], "principal must not be empty");
    principals(&[&"a".repeat(33)], "33 bytes long; at most 32");
    // Cyrillic "о" (U+043E) looks like the Latin "o".
    principals(&["r\u{43e}\u{43e}t"], "a non-ASCII character (\\u{43e})");
    // One bad principal spoils the whole request: nothing partial is signed.
    principals(&["deploy", "prod-*"], "a wildcard (*)");
    assert_trail_ok(&f);
}

#[test]
fn bad_ttls_are_refused() {
    let mut f = Fixture::new();
    let max = f.data.config.admin_issue.max_ttl;
    assert_eq!(max.as_secs(), 3600, "init writes max_ttl = \"1h\"");
    let mut ttl = |ttl: &str, expected: &str| {
        let ttl = ttl.to_owned();
        check(&mut f, |i| i.ttl = ttl, expected);
    };
    ttl("0", "--ttl: duration \"0\" is not valid");
    ttl("0m", "--ttl: duration \"0m\" is zero");
    ttl("-5m", "--ttl: duration \"-5m\" is not valid");
    ttl("abc", "--ttl: duration \"abc\" is not valid");
    ttl("", "--ttl: duration \"\" is not valid");
    ttl("10 m", "is not valid");
    ttl("30m1h", "is not valid");
    ttl("400d", "longer than one year");
    ttl(
        "2h",
        "--ttl 2h exceeds the configured maximum 1h (admin_issue.max_ttl)",
    );
    ttl("1h1s", "exceeds the configured maximum");
    assert_trail_ok(&f);
}

#[test]
fn ttl_at_the_configured_maximum_is_accepted() {
    let mut f = Fixture::new();
    let mut input = valid_input(ed25519_public_key());
    input.ttl = "1h".to_owned();
    f.issue(&input).unwrap();
    assert_eq!(count(&f.conn, "certificates"), 1);
}

/// A DSA public key line: from ssh-keygen where it still makes DSA keys,
/// otherwise a well-formed line (the refusal goes by algorithm name).
fn dsa_public_key(dir: &std::path::Path) -> String {
    let generated = std::process::Command::new("ssh-keygen")
        .args(["-q", "-N", "", "-t", "dsa", "-f"])
        .arg(dir.join("dsa"))
        .output()
        .is_ok_and(|o| o.status.success());
    if generated {
        std::fs::read_to_string(dir.join("dsa.pub")).unwrap()
    } else {
        "ssh-dss AAAAB3NzaC1kc3MAAACBAP1/U4EddRIpUt9KnC7s5Of2EbdSPO9EAMMeP4C2USZpRV1AIlH7WT2NWPq/xfW6MPbLm1Vs14E7gB00b/JmYLdrmVClpJ+f6AR7ECLCT7up1/63xhv4O1fnxqimFQ8E+4P208UewwI1VBNaFpEy9nXzrith1yrv8iIDGZ3RSAHHAAAAFQCXYFCPFSMLzLKSuYKi64QL8Fgc9QAAAIEA9+GghdabPd7LvKtcNrhXuXmUr7v6OuqC+VdMCz0HgmdRWVeOutRZT+ZxBxCBgLRJFnEj6EwoFhO3zwkyjMim4TwWeotUfI0o4KOuHiuzpnWRbqN/C/ohNWLx+2J6ASQ7zKTxvqhRkImog9/hWuWfBpKLZl6Ae1UlZAFMO/7PSSoAAACBAPgY test@tpa\n".to_owned()
    }
}

#[test]
fn bad_subject_keys_are_refused() {
    let mut f = Fixture::new();
    let tmp = tempfile::tempdir().unwrap();
    let ed25519 = ed25519_public_key();

    // A real OpenSSH certificate, signed by ssh-keygen with some other CA.
    ssh_keygen(tmp.path(), "other_ca", &["-t", "ed25519"]);
    ssh_keygen(tmp.path(), "user", &["-t", "ed25519"]);
    let signed = std::process::Command::new("ssh-keygen")
        .args(["-q", "-s"])
        .arg(tmp.path().join("other_ca"))
        .args(["-I", "someone", "-n", "deploy"])
        .arg(tmp.path().join("user.pub"))
        .output()
        .unwrap();
    assert!(signed.status.success(), "{signed:?}");
    let certificate = std::fs::read_to_string(tmp.path().join("user-cert.pub")).unwrap();
    assert!(certificate.starts_with("ssh-ed25519-cert-v01@openssh.com "));
    let rsa_2048 = ssh_keygen(tmp.path(), "rsa2048", &["-t", "rsa", "-b", "2048"]);
    let dsa = dsa_public_key(tmp.path());
    let ca_key = f.data.ca_public_key();
    // The CA key again, without the comment: the key material is what counts.
    let ca_key_bare: String = ca_key.split(' ').take(2).collect::<Vec<_>>().join(" ");

    let mut key = |text: String, expected: &str| {
        check(&mut f, |i| i.public_key = text, expected);
    };
    key(certificate, "the key is a certificate");
    key(ca_key, "one of this CA's own keys");
    key(ca_key_bare, "one of this CA's own keys");
    key(dsa, "DSA keys (ssh-dss) are not accepted");
    key(rsa_2048, "RSA key of 2048 bits is too short");
    key(
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAI!!notbase64!! x".to_owned(),
        "not valid OpenSSH public key text",
    );
    key(
        format!("ssh-ed25519 {}", "A".repeat(40)),
        "not valid OpenSSH public key text",
    );
    key(
        format!("command=\"x\" {ed25519}"),
        "authorized_keys options prefix",
    );
    key(
        format!("no-pty,from=\"*\" {ed25519}"),
        "authorized_keys options prefix",
    );
    key(
        format!("{} {}", ed25519.trim(), "c".repeat(100 * 1024)),
        "bytes; at most 16384 are accepted",
    );
    key(
        format!("{ed25519}\n{}\n", ed25519_public_key()),
        "more than one line",
    );
    key(String::new(), "the public key is empty");
    key("\n \n".to_owned(), "the public key is empty");
    assert_trail_ok(&f);
}

#[test]
fn an_extra_trusted_ca_key_is_refused_as_subject() {
    let mut data = DataDir::new();
    let old = ssh_keygen(&data.dir, "old_ca", &["-t", "ed25519"]);
    data.edit_config(|text| {
        text.replace(
            "extra_trusted_public_key_files = []",
            "extra_trusted_public_key_files = [\"old_ca.pub\"]",
        )
    });
    let mut f = Fixture::over(data);
    check(&mut f, |i| i.public_key = old, "one of this CA's own keys");
}

#[test]
fn bad_extensions_options_and_reasons_are_refused() {
    let mut f = Fixture::new();
    let unknown = |name: &str| {
        let name = name.to_owned();
        move |i: &mut AdminIssueInput| i.extensions.push(name)
    };
    check(
        &mut f,
        unknown("permit-everything"),
        "unknown certificate extension \"permit-everything\"",
    );
    check(
        &mut f,
        unknown("PERMIT-PTY"),
        "unknown certificate extension",
    );
    check(
        &mut f,
        unknown("permit-pty "),
        "unknown certificate extension",
    );
    check(&mut f, unknown(""), "unknown certificate extension");

    check(
        &mut f,
        |i| i.force_command = Some("uptime\nrm -rf /".to_owned()),
        "force-command",
    );
    check(
        &mut f,
        |i| i.force_command = Some(" ".to_owned()),
        "force-command",
    );
    check(
        &mut f,
        |i| i.source_address = Some("10.0.0.0/8,evil".to_owned()),
        "source-address entry \"evil\" is not an IP address",
    );
    check(
        &mut f,
        |i| i.source_address = Some("10.0.0.0/33".to_owned()),
        "source-address entry",
    );
    check(
        &mut f,
        |i| i.source_address = Some(String::new()),
        "source-address must list",
    );

    check(&mut f, |i| i.reason = String::new(), "a reason is required");
    check(
        &mut f,
        |i| i.reason = " \t ".to_owned(),
        "a reason is required",
    );
    check(
        &mut f,
        |i| i.reason = "two\nlines".to_owned(),
        "at most 1024 bytes on one line",
    );
    check(
        &mut f,
        |i| i.reason = "r".repeat(1025),
        "at most 1024 bytes on one line",
    );
    assert_trail_ok(&f);
}

#[test]
fn the_denial_keeps_the_stated_reason_bounded() {
    let mut f = Fixture::new();
    let long_reason = "r".repeat(5000);
    check(
        &mut f,
        |i| i.reason = long_reason,
        "at most 1024 bytes on one line",
    );
    let row = audit_rows(&f.conn).pop().unwrap();
    let details: serde_json::Value = serde_json::from_str(&row.details).unwrap();
    assert_eq!(details["stated_reason"].as_str().unwrap().len(), 1024);
}

#[test]
fn a_successful_issuance_is_exactly_the_template_and_is_recorded() {
    let mut f = Fixture::new();
    let tmp = tempfile::tempdir().unwrap();
    let user_pub = ssh_keygen(tmp.path(), "id_ed25519", &["-t", "ed25519"]);
    let user_key = PublicKey::from_openssh(user_pub.trim()).unwrap();
    let input = AdminIssueInput {
        public_key: user_pub,
        principals: vec!["deploy".into(), "app-ops".into(), "deploy".into()],
        ttl: "15m".into(),
        reason: "  INC-4411 disk full  ".into(),
        extensions: vec!["permit-pty".into(), "permit-port-forwarding".into()],
        force_command: Some("/usr/bin/uptime".into()),
        source_address: Some("127.0.0.1,10.0.0.0/8".into()),
    };
    let now = Utc::now();
    let t = u64::try_from(now.timestamp()).unwrap();

    let issued = f.issue_at(&input, now).unwrap();

    let cert = &issued.certificate;
    assert_eq!(cert.cert_type(), CertType::User);
    assert_eq!(cert.serial(), issued.serial.get());
    assert_ne!(cert.serial(), 0);
    assert_eq!(cert.key_id(), "tpa:admin-issue:user=root");
    assert_eq!(cert.valid_principals(), ["app-ops", "deploy"]);
    let extensions: Vec<(&str, &str)> = cert
        .extensions()
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    assert_eq!(
        extensions,
        [("permit-port-forwarding", ""), ("permit-pty", "")]
    );
    let options: Vec<(&str, &str)> = cert
        .critical_options()
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    assert_eq!(
        options,
        [
            ("force-command", "/usr/bin/uptime"),
            ("source-address", "127.0.0.1/32,10.0.0.0/8")
        ]
    );
    assert_eq!(cert.valid_after(), t - 60);
    assert_eq!(cert.valid_before(), t + 15 * 60);
    assert_eq!(cert.public_key(), user_key.key_data());
    assert_eq!(cert.signature_key(), &f.signer.ca_key_data()[0]);
    let verified = verify_user_cert(
        cert,
        &TrustedCas::new(f.signer.ca_key_data()),
        "deploy",
        now,
        &Revocations::default(),
        Some(IpAddr::V4(Ipv4Addr::LOCALHOST)),
    )
    .unwrap();
    assert_eq!(verified.force_command.as_deref(), Some("/usr/bin/uptime"));

    // The certificate row, read with plain SQL.
    let serial = issued.serial.to_string();
    let row = f
        .conn
        .query_one(
            "SELECT key_id, principals, extensions, valid_after, valid_before,
                    subject_key_fingerprint, ca_key_fingerprint, request_id, issued_by, audit_seq
             FROM certificates WHERE serial = ?1",
            &[&&serial],
            |r| {
                Ok((
                    r.get::<String>(0)?,
                    r.get::<String>(1)?,
                    r.get::<String>(2)?,
                    r.get::<i64>(3)?,
                    r.get::<i64>(4)?,
                    r.get::<String>(5)?,
                    r.get::<String>(6)?,
                    r.get::<Option<String>>(7)?,
                    r.get::<String>(8)?,
                    r.get::<i64>(9)?,
                ))
            },
        )
        .unwrap();
    assert_eq!(row.0, "tpa:admin-issue:user=root");
    assert_eq!(row.1, r#"["app-ops","deploy"]"#);
    assert_eq!(row.2, r#"["permit-port-forwarding","permit-pty"]"#);
    assert_eq!(
        (row.3, row.4),
        (
            i64::try_from(t).unwrap() - 60,
            i64::try_from(t).unwrap() + 900
        )
    );
    assert_eq!(row.5, user_key.fingerprint(HashAlg::Sha256).to_string());
    assert_eq!(row.6, f.signer.fingerprint());
    assert_eq!(row.7, None);
    assert_eq!(row.8, "admin:root");
    assert_eq!(row.9, issued.audit_seq);
    assert_eq!(count(&f.conn, "certificates"), 1);

    // Its audit event: ca.init was seq 1, this is seq 2.
    let events = audit_rows(&f.conn);
    assert_eq!(events.len(), 2);
    let event = &events[1];
    assert_eq!(event.seq, issued.audit_seq);
    assert_eq!(event.action, "cert.issue");
    assert_eq!(event.object, format!("cert:{serial}"));
    assert_eq!(event.outcome, "success");
    assert_eq!(event.actor, "admin:root");
    assert_eq!(event.reason, "INC-4411 disk full");
    let details: serde_json::Value = serde_json::from_str(&event.details).unwrap();
    assert_eq!(details["key_id"], "tpa:admin-issue:user=root");
    assert_eq!(
        details["principals"],
        serde_json::json!(["app-ops", "deploy"])
    );
    assert_eq!(details["valid_before"], t + 900);

    let report = verify_database(&f.conn).unwrap().unwrap();
    assert_eq!(report.events, 2);
}

#[test]
fn accepted_key_types_are_certified() {
    let mut f = Fixture::new();
    let tmp = tempfile::tempdir().unwrap();
    for (name, args) in [
        ("ed25519", &["-t", "ed25519"][..]),
        ("ecdsa256", &["-t", "ecdsa", "-b", "256"]),
        ("ecdsa384", &["-t", "ecdsa", "-b", "384"]),
        ("ecdsa521", &["-t", "ecdsa", "-b", "521"]),
        ("rsa3072", &["-t", "rsa", "-b", "3072"]),
    ] {
        let public = ssh_keygen(tmp.path(), name, args);
        let issued = f
            .issue(&valid_input(public.clone()))
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let key = PublicKey::from_openssh(public.trim()).unwrap();
        assert_eq!(issued.certificate.public_key(), key.key_data(), "{name}");
    }
    assert_eq!(count(&f.conn, "certificates"), 5);
    assert_trail_ok(&f);
}

#[test]
fn serials_are_unique_and_non_zero() {
    let mut f = Fixture::new();

    let issued = f.issue_many(25);

    let serials: BTreeSet<u64> = issued.iter().map(|i| i.serial.get()).collect();
    assert_eq!(serials.len(), 25);
    assert!(!serials.contains(&0));
    let seqs: Vec<i64> = issued.iter().map(|i| i.audit_seq).collect();
    assert_eq!(seqs, (2..=26).collect::<Vec<_>>());
    assert_eq!(count(&f.conn, "certificates"), 25);
    assert_trail_ok(&f);
}
