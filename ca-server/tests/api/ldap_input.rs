//! Issue 16: the LDAP connector against a real slapd, one test per bad
//! input: empty and NUL passwords, filter metacharacters in usernames, a
//! 300-character username, two entries with one uid, another user's DN,
//! a referral, a slow directory, a wrong CA pin, StartTLS stripped, and
//! disabled or expired accounts.

use std::path::Path;
use std::time::{Duration, Instant};

use ca_server::auth::identity::ldap::{LdapConnector, LdapError};
use ca_server::config::Config;

use crate::slapd::{self, PEOPLE, Slapd, password};

/// A connector over `server` (ldaps, pinned CA) with `extra` keys.
fn connector(server: &Slapd, extra: &str) -> LdapConnector {
    connector_toml(&slapd::connector_toml(server, server.dir.path(), extra))
}

fn connector_toml(block: &str) -> LdapConnector {
    let text = format!("[ca]\nkey_file = \"k\"\n[database]\npath = \"d\"\n{block}");
    let config = Config::parse(&text, Path::new("/etc/tpa/tpa.toml")).unwrap();
    LdapConnector::new(config.ldap[0].clone()).unwrap()
}

/// A connector to `url` that nothing real answers (the directory must not be contacted).
fn unreachable_connector(server: &Slapd, url: &str) -> LdapConnector {
    let block =
        slapd::connector_toml(server, server.dir.path(), "").replace(&server.ldaps_url(), url);
    connector_toml(&block)
}

#[tokio::test]
async fn ldap_login_finds_the_entry_binds_and_reads_nested_groups() {
    let server = Slapd::start();
    let c = connector(&server, "");
    let alice = c.login("alice", &password("alice")).await.unwrap();
    assert_eq!(alice.user.username.as_str(), "alice");
    assert_eq!(alice.user.display_name, "Alice Example");
    assert_eq!(alice.verified_email.as_deref(), Some("alice@example.org"));
    assert_eq!(alice.dn, format!("uid=alice,{PEOPLE}"));
    // Identity = (directory URL + base, entryUUID): never the DN or the username.
    assert_eq!(
        alice.user.identity.issuer(),
        format!("{}/{PEOPLE}", server.ldaps_url())
    );
    let subject = alice.user.identity.subject();
    assert_eq!(subject.len(), 36, "an entryUUID: {subject}");
    assert!(!subject.contains("alice"), "{subject}");
    let groups = |l: &ca_server::auth::identity::ldap::LdapLogin| -> Vec<String> {
        l.user
            .groups
            .iter()
            .map(|g| g.as_str().to_owned())
            .collect()
    };
    assert_eq!(groups(&alice), ["engineers"]);
    let carol = c.login("carol", &password("carol")).await.unwrap();
    assert_eq!(groups(&carol), ["managers", "mgmt-staff"], "nested group");
    let eve = c.login("eve", &password("eve")).await.unwrap();
    assert!(groups(&eve).is_empty());
    assert_eq!(
        c.login("alice", "wrong password").await.unwrap_err(),
        LdapError::WrongPassword
    );
    assert_eq!(
        c.login("nobody", "whatever").await.unwrap_err(),
        LdapError::NotFound
    );
    c.check().await.unwrap();
}

// issue 16: groups from the entry's `memberOf` (slapd's memberof overlay),
// nested ones followed through the group search.
#[tokio::test]
async fn member_of_groups_are_read_and_followed() {
    let server = Slapd::start();
    let c = connector(&server, "group_membership = \"member_of\"");
    let names = |l: &ca_server::auth::identity::ldap::LdapLogin| -> Vec<String> {
        l.user
            .groups
            .iter()
            .map(|g| g.as_str().to_owned())
            .collect()
    };
    let carol = c.login("carol", &password("carol")).await.unwrap();
    assert_eq!(names(&carol), ["managers", "mgmt-staff"]);
    let bob = c.login("bob", &password("bob")).await.unwrap();
    assert_eq!(names(&bob), ["sre-leads"]);
    let flat = connector(
        &server,
        "group_membership = \"member_of\"\nnested_depth = 0",
    );
    let carol = flat.login("carol", &password("carol")).await.unwrap();
    assert_eq!(names(&carol), ["mgmt-staff"], "depth 0: direct groups only");
}

// issue 16: an empty password is an "unauthenticated bind" that slapd
// accepts; it is refused before any network step (the connector here points
// at a port nobody listens on, so any contact would fail differently).
#[tokio::test]
async fn empty_password_is_refused_before_any_bind() {
    let server = Slapd::start();
    let nowhere = unreachable_connector(&server, "ldaps://127.0.0.1:1");
    assert_eq!(
        nowhere.login("alice", "").await.unwrap_err(),
        LdapError::EmptyPassword
    );
    let c = connector(&server, "");
    assert_eq!(
        c.login("alice", "").await.unwrap_err(),
        LdapError::EmptyPassword
    );
}

// issue 16
#[tokio::test]
async fn password_with_nul_is_refused_before_any_bind() {
    let server = Slapd::start();
    let nowhere = unreachable_connector(&server, "ldaps://127.0.0.1:1");
    let with_nul = format!("{}\0tail", password("alice"));
    assert_eq!(
        nowhere.login("alice", &with_nul).await.unwrap_err(),
        LdapError::BadPassword
    );
    let c = connector(&server, "");
    assert_eq!(
        c.login("alice", &with_nul).await.unwrap_err(),
        LdapError::BadPassword
    );
}

/// `username` with alice's password logs nobody in: no entry matches.
async fn matches_nobody(username: &str) {
    let server = Slapd::start();
    let c = connector(&server, "");
    assert_eq!(
        c.login(username, &password("alice")).await.unwrap_err(),
        LdapError::NotFound,
        "{username:?}"
    );
    assert_eq!(
        c.lookup(username).await.unwrap_err(),
        LdapError::NotFound,
        "{username:?}"
    );
}

// issue 16: unescaped, `(uid=*)` matches every person.
#[tokio::test]
async fn username_star_matches_nobody() {
    matches_nobody("*").await;
}

// issue 16: unescaped, this filter would match alice and log in with her password.
#[tokio::test]
async fn username_closing_the_filter_matches_nobody() {
    matches_nobody("alice)(uid=*").await;
}

// issue 16: unescaped, a trailing backslash breaks the filter.
#[tokio::test]
async fn username_with_backslash_matches_nobody() {
    matches_nobody("alice\\").await;
}

// issue 16
#[tokio::test]
async fn username_with_dn_characters_matches_nobody() {
    matches_nobody("a,b=c").await;
}

// issue 16
#[tokio::test]
async fn username_of_300_characters_is_refused_before_any_search() {
    let server = Slapd::start();
    let nowhere = unreachable_connector(&server, "ldaps://127.0.0.1:1");
    let long = "a".repeat(300);
    assert_eq!(
        nowhere.login(&long, "pw").await.unwrap_err(),
        LdapError::BadUsername
    );
    assert_eq!(
        nowhere.lookup(&long).await.unwrap_err(),
        LdapError::BadUsername
    );
}

// issue 16
#[tokio::test]
async fn two_entries_with_one_uid_log_nobody_in() {
    let server = Slapd::start();
    let c = connector(&server, "");
    assert_eq!(
        c.login("twin", &password("twin")).await.unwrap_err(),
        LdapError::Ambiguous
    );
}

// issue 16: another user's DN as the username is only text to search for;
// with a direct-bind template it is escaped into one RDN value.
#[tokio::test]
async fn bind_dn_of_another_user_logs_nobody_in() {
    let server = Slapd::start();
    let c = connector(&server, "");
    let bob_dn = format!("uid=bob,{PEOPLE}");
    assert_eq!(
        c.login(&bob_dn, &password("bob")).await.unwrap_err(),
        LdapError::NotFound
    );
    let block = slapd::connector_toml(&server, server.dir.path(), "")
        .replace(
            &format!("bind_dn = \"{}\"\n", slapd::SERVICE_DN),
            &format!("user_dn_template = \"uid={{username}},{PEOPLE}\"\n"),
        )
        .lines()
        .filter(|l| !l.starts_with("bind_password_file"))
        .collect::<Vec<_>>()
        .join("\n");
    let direct = connector_toml(&block);
    assert_eq!(
        direct
            .login(&format!("bob,{PEOPLE}"), &password("bob"))
            .await
            .unwrap_err(),
        LdapError::WrongPassword,
        "the escaped DN names no entry"
    );
    let alice = direct.login("alice", &password("alice")).await.unwrap();
    assert_eq!(alice.user.username.as_str(), "alice", "direct bind works");
}

// issue 16: referrals are reported, never followed.
#[tokio::test]
async fn referral_answer_is_refused_with_a_clear_error() {
    let server = Slapd::start();
    let block = slapd::connector_toml(&server, server.dir.path(), "").replace(
        &format!("user_base = \"{PEOPLE}\""),
        "user_base = \"ou=elsewhere,dc=example,dc=org\"",
    );
    let c = connector_toml(&block);
    let LdapError::Unavailable(message) = c.login("alice", &password("alice")).await.unwrap_err()
    else {
        panic!("not unavailable");
    };
    assert!(message.contains("referral"), "{message}");
    assert!(message.contains("ldap://127.0.0.1:1/"), "{message}");
}

// issue 16
#[tokio::test]
async fn disabled_account_is_refused_with_a_clear_message() {
    let server = Slapd::start();
    let c = connector(&server, "");
    assert_eq!(
        c.login("frank", &password("frank")).await.unwrap_err(),
        LdapError::AccountDisabled
    );
    // A wrong password tells nothing about the account.
    assert_eq!(
        c.login("frank", "wrong").await.unwrap_err(),
        LdapError::WrongPassword
    );
}

// issue 16
#[tokio::test]
async fn expired_password_is_refused_with_a_clear_message() {
    let server = Slapd::start();
    let c = connector(&server, "");
    assert_eq!(
        c.login("grace", &password("grace")).await.unwrap_err(),
        LdapError::PasswordExpired
    );
}

// issue 16
#[tokio::test]
async fn wrong_ca_pin_is_refused() {
    let server = Slapd::start();
    let other = slapd::TestCa::new("another CA");
    let other_file = server.dir.path().join("other-ca.pem");
    other.write(&other_file);
    let block = slapd::connector_toml(&server, server.dir.path(), "").replace(
        &server.ca_file.display().to_string(),
        &other_file.display().to_string(),
    );
    for url in [server.ldaps_url(), server.ldap_url()] {
        let c = connector_toml(&block.replace(&server.ldaps_url(), &url));
        let LdapError::Unavailable(message) =
            c.login("alice", &password("alice")).await.unwrap_err()
        else {
            panic!("not unavailable");
        };
        assert!(message.contains("certificate"), "{url}: {message}");
        assert!(c.check().await.is_err());
    }
}

// issue 16: StartTLS on the real slapd works with the pinned CA.
#[tokio::test]
async fn starttls_with_the_pinned_ca_logs_in() {
    let server = Slapd::start();
    let block = slapd::connector_toml(&server, server.dir.path(), "")
        .replace(&server.ldaps_url(), &server.ldap_url());
    let c = connector_toml(&block);
    let bob = c.login("bob", &password("bob")).await.unwrap();
    assert_eq!(bob.user.username.as_str(), "bob");
}

// issue 16: a man in the middle answers StartTLS "unavailable" and would
// relay the rest to the real directory in plain text: refused at once.
#[tokio::test]
async fn starttls_stripped_by_a_plaintext_server_is_refused() {
    let server = Slapd::start();
    let proxy = crate::ldap_fakes::StripStartTls::start(server.port).await;
    let url = format!("ldap://127.0.0.1:{}", proxy.port);
    let block =
        slapd::connector_toml(&server, server.dir.path(), "").replace(&server.ldaps_url(), &url);
    let c = connector_toml(&block);
    let LdapError::Unavailable(message) = c.login("alice", &password("alice")).await.unwrap_err()
    else {
        panic!("not unavailable");
    };
    assert!(message.contains("StartTLS"), "{message}");
    // The proxy does relay: in (test-only) plain text the same login passes.
    let plain = block
        .replace(&format!("ca_file = \"{}\"\n", server.ca_file.display()), "")
        .replace(
            "trust_group_names",
            "insecure_plaintext = true\ntrust_group_names",
        );
    let insecure = connector_toml(&plain);
    insecure.login("alice", &password("alice")).await.unwrap();
    assert!(proxy.stripped() >= 1);
}

// issue 16: a directory that accepts and stays silent for 5 s: each login
// ends at the timeout with a clear error, and no thread or task is left
// (the connector's runtime has fixed threads; a timed-out connection's
// socket is shut down and its tasks end at once).
#[tokio::test]
async fn slow_directory_times_out_without_leaking_threads_or_tasks() {
    let server = Slapd::start();
    let silent = crate::ldap_fakes::Silent::start(Duration::from_secs(5)).await;
    // The connector's runtime threads are named `tpa-ldap-<name>` (15
    // bytes at most in /proc).
    let threads = |name: &str| {
        std::fs::read_dir("/proc/self/task")
            .unwrap()
            .filter_map(|t| std::fs::read_to_string(t.unwrap().path().join("comm")).ok())
            .filter(|comm| comm.trim() == name)
            .count()
    };
    for (name, url) in [
        ("slow1", format!("ldaps://127.0.0.1:{}", silent.port)),
        ("slow2", format!("ldap://127.0.0.1:{}", silent.port)),
    ] {
        let block = slapd::connector_toml(&server, server.dir.path(), "timeout = \"1s\"")
            .replace("name = \"corp\"", &format!("name = \"{name}\""))
            .replace(&server.ldaps_url(), &url);
        let c = connector_toml(&block);
        for _ in 0..3 {
            let started = Instant::now();
            let err = c.login("alice", &password("alice")).await.unwrap_err();
            let took = started.elapsed();
            let LdapError::Unavailable(message) = err else {
                panic!("not unavailable: {err:?}");
            };
            assert!(
                message.contains("did not answer within 1"),
                "{url}: {message}"
            );
            assert!(took < Duration::from_secs(4), "{url}: took {took:?}");
            let n = threads(&format!("tpa-ldap-{name}"));
            assert!((1..=2).contains(&n), "{url}: {n} threads");
            // Every task of the login (ldap3's connection driver and its
            // StartTLS step) ended with it, long before the server's 5 s.
            let deadline = Instant::now() + Duration::from_millis(500);
            while c.alive_tasks() > 0 && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            assert_eq!(c.alive_tasks(), 0, "{url}: directory tasks left behind");
        }
    }
    assert!(silent.accepted() >= 6, "{}", silent.accepted());
}
