//! One rejection test for each way in that must fail, and the one that succeeds.

use std::sync::Arc;
use std::time::Duration;

use bastion::config::Limits;
use bastion::{ConnectionEnd, Event, Trust};
use russh::keys::PrivateKeyWithHashAlg;
use russh::keys::ssh_key::certificate::CertType;
use tokio::io::AsyncReadExt as _;
use tpa_core::TrustedCas;

use crate::helpers::*;

fn assert_contains(reason: &str, needle: &str) {
    assert!(
        reason.contains(needle),
        "reason {reason:?} lacks {needle:?}"
    );
}

#[tokio::test]
async fn valid_certificate_is_accepted_for_its_principal() {
    let mut b = spawn_bastion(&[]).await;
    let (_session, ok) = b.login(LOGIN, &CertSpec::for_hosts("web-1")).await;
    assert!(ok);
    let (login, serial, request) = b
        .expect_event(Duration::from_secs(5), |e| match e {
            Event::Authenticated {
                login,
                serial,
                request,
                ..
            } => Some((login.clone(), *serial, request.clone())),
            _ => None,
        })
        .await;
    assert_eq!(
        (login.as_str(), serial, request.as_str()),
        (LOGIN, 4242, REQUEST)
    );
}

#[tokio::test]
async fn untrusted_ca_is_rejected() {
    let mut b = spawn_bastion(&[]).await;
    let other_ca = random_key();
    let key = random_key();
    let cert = CertSpec::for_hosts("web-1").sign(&key, &other_ca);
    let mut session = b.connect().await;
    let result = session
        .authenticate_openssh_cert(LOGIN, Arc::new(key), cert)
        .await
        .unwrap();
    assert!(!result.success());
    assert_contains(&b.rejection_reason().await, "untrusted CA");
}

#[tokio::test]
async fn expired_certificate_is_rejected() {
    let mut b = spawn_bastion(&[]).await;
    let mut spec = CertSpec::for_hosts("web-1");
    spec.valid_after = unix_now() - 3600;
    spec.valid_before = unix_now() - 10;
    let (_session, ok) = b.login(LOGIN, &spec).await;
    assert!(!ok);
    // russh refuses an expired window before asking the bastion; either way,
    // nothing may be accepted.
    assert!(
        !b.drain()
            .iter()
            .any(|e| matches!(e, Event::Authenticated { .. })),
        "an expired certificate was accepted"
    );
}

#[tokio::test]
async fn not_yet_valid_certificate_is_rejected() {
    let mut b = spawn_bastion(&[]).await;
    let mut spec = CertSpec::for_hosts("web-1");
    spec.valid_after = unix_now() + 600;
    spec.valid_before = unix_now() + 1200;
    let (_session, ok) = b.login(LOGIN, &spec).await;
    assert!(!ok);
    assert!(
        !b.drain()
            .iter()
            .any(|e| matches!(e, Event::Authenticated { .. })),
        "a not-yet-valid certificate was accepted"
    );
}

#[tokio::test]
async fn wrong_principal_is_rejected() {
    let mut b = spawn_bastion(&[]).await;
    let (_session, ok) = b.login("root", &CertSpec::for_hosts("web-1")).await;
    assert!(!ok);
    assert_contains(
        &b.rejection_reason().await,
        "login \"root\" is not a principal",
    );
}

#[tokio::test]
async fn host_certificate_is_rejected() {
    let mut b = spawn_bastion(&[]).await;
    let mut spec = CertSpec::for_hosts("web-1");
    spec.cert_type = CertType::Host;
    let (_session, ok) = b.login(LOGIN, &spec).await;
    assert!(!ok);
    assert_contains(&b.rejection_reason().await, "host certificate");
}

#[tokio::test]
async fn unknown_critical_option_is_rejected() {
    let mut b = spawn_bastion(&[]).await;
    let mut spec = CertSpec::for_hosts("web-1");
    spec.critical_options
        .push(("verify-required".to_owned(), String::new()));
    let (_session, ok) = b.login(LOGIN, &spec).await;
    assert!(!ok);
    assert_contains(
        &b.rejection_reason().await,
        "unknown critical option \"verify-required\"",
    );
}

#[tokio::test]
async fn revoked_serial_is_rejected() {
    let mut b = spawn_bastion(&[]).await;
    let mut trust = Trust {
        cas: TrustedCas::new(vec![b.ca.public_key().key_data().clone()]),
        ..Default::default()
    };
    trust.revocations.serials.insert(4242);
    b.trust_updates.send(Arc::new(trust)).unwrap();
    let (_session, ok) = b.login(LOGIN, &CertSpec::for_hosts("web-1")).await;
    assert!(!ok);
    assert_contains(&b.rejection_reason().await, "serial 4242 is revoked");
}

#[tokio::test]
async fn plain_key_without_certificate_is_rejected() {
    let mut b = spawn_bastion(&[]).await;
    let mut session = b.connect().await;
    let key = PrivateKeyWithHashAlg::new(Arc::new(random_key()), None);
    let result = session.authenticate_publickey(LOGIN, key).await.unwrap();
    assert!(!result.success());
    assert_contains(&b.rejection_reason().await, "plain public key SHA256:");
}

#[tokio::test]
async fn password_attempt_is_rejected() {
    let mut b = spawn_bastion(&[]).await;
    let mut session = b.connect().await;
    let result = session
        .authenticate_password(LOGIN, "hunter2")
        .await
        .unwrap();
    assert!(!result.success());
    assert_contains(&b.rejection_reason().await, "password authentication");
}

#[tokio::test]
async fn certificate_without_request_extension_is_rejected() {
    // Issue 6: a break-glass certificate names no approved host.
    let mut b = spawn_bastion(&[]).await;
    let mut spec = CertSpec::for_hosts("web-1");
    spec.extensions.clear();
    let (_session, ok) = b.login(LOGIN, &spec).await;
    assert!(!ok);
    assert_contains(&b.rejection_reason().await, "no tpa-request@tpa extension");
}

#[tokio::test]
async fn principal_is_checked_for_the_username_of_each_attempt() {
    // Issue 6: russh (unlike sshd) lets a client change the username between
    // attempts; the principal must be checked against the attempt that succeeds.
    let mut b = spawn_bastion(&[]).await;
    let key = Arc::new(random_key());
    let cert = CertSpec::for_hosts("web-1").sign(&key, &b.ca);
    let mut session = b.connect().await;

    let plain = PrivateKeyWithHashAlg::new(key.clone(), None);
    assert!(
        !session
            .authenticate_publickey(LOGIN, plain)
            .await
            .unwrap()
            .success()
    );
    assert_contains(&b.rejection_reason().await, "plain public key");

    let as_root = session
        .authenticate_openssh_cert("root", key.clone(), cert.clone())
        .await
        .unwrap();
    assert!(
        !as_root.success(),
        "certificate for deploy accepted as root"
    );
    assert_contains(&b.rejection_reason().await, "login \"root\"");

    let as_deploy = session
        .authenticate_openssh_cert(LOGIN, key, cert)
        .await
        .unwrap();
    assert!(as_deploy.success());
    let login = b
        .expect_event(Duration::from_secs(5), |e| match e {
            Event::Authenticated { login, .. } => Some(login.clone()),
            _ => None,
        })
        .await;
    assert_eq!(login, LOGIN);
}

#[tokio::test]
async fn too_many_failed_attempts_close_the_connection() {
    let limits = Limits {
        max_auth_attempts: 2,
        ..Limits::default()
    };
    let mut b = spawn_bastion_with(&[], limits).await;
    let mut session = b.connect().await;
    for _ in 0..2 {
        let result = session.authenticate_password(LOGIN, "x").await.unwrap();
        assert!(!result.success());
    }
    // The third attempt gets no answer but a disconnect.
    let third = session.authenticate_password(LOGIN, "x").await;
    assert!(
        !matches!(third, Ok(ref r) if r.success()),
        "third attempt accepted"
    );
    b.expect_event(Duration::from_secs(5), |e| match e {
        Event::ConnectionEnded { .. } => Some(()),
        _ => None,
    })
    .await;
}

#[tokio::test]
async fn unauthenticated_connection_is_closed_at_auth_timeout() {
    let limits = Limits {
        auth_timeout: Duration::from_secs(1),
        ..Limits::default()
    };
    let mut b = spawn_bastion_with(&[], limits).await;
    // A client that sends its version line and then nothing.
    let mut tcp = tokio::net::TcpStream::connect(b.addr).await.unwrap();
    tokio::io::AsyncWriteExt::write_all(&mut tcp, b"SSH-2.0-idle\r\n")
        .await
        .unwrap();
    let mut sink = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), tcp.read_to_end(&mut sink)).await;
    assert!(read.is_ok(), "connection still open after the auth timeout");
    let end = b
        .expect_event(Duration::from_secs(5), |e| match e {
            Event::ConnectionEnded { end, .. } => Some(end.clone()),
            _ => None,
        })
        .await;
    assert_eq!(end, ConnectionEnd::AuthTimeout);
}

#[tokio::test]
async fn shutdown_disconnects_clients() {
    let b = spawn_bastion(&[]).await;
    let (session, ok) = b.login(LOGIN, &CertSpec::for_hosts("web-1")).await;
    assert!(ok);
    b.stop().await;
    tokio::time::timeout(Duration::from_secs(5), async {
        while !session.is_closed() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("client still connected after shutdown");
}

#[tokio::test]
async fn every_signed_attempt_is_answered() {
    // Issue 13 (finding 5): a second signed attempt on one connection must
    // get its answer, not wait for auth_timeout.
    let mut b = spawn_bastion(&[]).await;
    let key = Arc::new(random_key());
    let cert = CertSpec::for_hosts("web-1").sign(&key, &b.ca);
    let mut session = b.connect().await;
    let within = Duration::from_secs(10);
    for _ in 0..2 {
        let plain = PrivateKeyWithHashAlg::new(Arc::new(random_key()), None);
        let answer = tokio::time::timeout(within, session.authenticate_publickey(LOGIN, plain))
            .await
            .expect("a signed plain-key attempt got no answer");
        assert!(!answer.unwrap().success());
    }
    for _ in 0..2 {
        let answer = tokio::time::timeout(
            within,
            session.authenticate_openssh_cert("root", key.clone(), cert.clone()),
        )
        .await
        .expect("a signed certificate attempt got no answer");
        assert!(!answer.unwrap().success());
    }
    let answer = tokio::time::timeout(
        within,
        session.authenticate_openssh_cert(LOGIN, key.clone(), cert.clone()),
    )
    .await
    .expect("the last signed attempt got no answer");
    assert!(answer.unwrap().success());
    let _ = b.drain();
}

#[tokio::test]
async fn idle_connections_cannot_keep_a_client_out() {
    // Issue 13 (finding 4): idle TCP connections filled every slot and a real
    // client was refused until they timed out.
    let limits = Limits {
        max_unauthenticated: 8,
        max_unauthenticated_per_address: 4,
        ..Limits::default()
    };
    let mut b = spawn_bastion_with(&[], limits).await;
    let mut idle = Vec::new();
    for _ in 0..50 {
        idle.push(tokio::net::TcpStream::connect(b.addr).await.unwrap());
    }
    let started = std::time::Instant::now();
    let (_session, ok) = tokio::time::timeout(
        Duration::from_secs(20),
        b.login(LOGIN, &CertSpec::for_hosts("web-1")),
    )
    .await
    .expect("login under an idle flood timed out");
    assert!(ok, "login refused under an idle flood");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    let evicted = b
        .drain()
        .iter()
        .filter(|e| {
            matches!(
                e,
                Event::ConnectionEnded {
                    end: ConnectionEnd::Evicted,
                    ..
                }
            )
        })
        .count();
    assert!(
        evicted >= 40,
        "only {evicted} idle connections were evicted"
    );
    drop(idle);
}

#[tokio::test]
async fn a_client_silent_before_its_version_line_is_closed_at_handshake_timeout() {
    // Issue 13: a connection that sends nothing held its slot for auth_timeout.
    let limits = Limits {
        handshake_timeout: Duration::from_secs(1),
        ..Limits::default()
    };
    let mut b = spawn_bastion_with(&[], limits).await;
    let mut tcp = tokio::net::TcpStream::connect(b.addr).await.unwrap();
    let mut sink = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), tcp.read_to_end(&mut sink)).await;
    assert!(
        read.is_ok(),
        "connection still open after the handshake timeout"
    );
    let end = b
        .expect_event(Duration::from_secs(5), |e| match e {
            Event::ConnectionEnded { end, .. } => Some(end.clone()),
            _ => None,
        })
        .await;
    assert_eq!(end, ConnectionEnd::HandshakeTimeout);
}
