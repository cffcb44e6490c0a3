//! direct-tcpip only, only to approved inventory hosts; bytes counted; cut at expiry.

use std::time::Duration;

use bastion::config::Limits;
use bastion::{ConnectionEnd, Event, ForwardEnd};
use russh::ChannelMsg;

use crate::helpers::*;

#[tokio::test]
async fn direct_tcpip_to_an_approved_host_round_trips_bytes() {
    let echo = echo_server().await;
    let mut b = spawn_bastion(&[("web-1", echo)]).await;
    let (session, ok) = b.login(LOGIN, &CertSpec::for_hosts("web-1")).await;
    assert!(ok);
    let mut channel = session
        .channel_open_direct_tcpip("web-1", 22, "127.0.0.1", 40000)
        .await
        .unwrap();
    let payload: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
    channel.data(&payload[..]).await.unwrap();
    let mut echoed = Vec::new();
    while echoed.len() < payload.len() {
        match tokio::time::timeout(Duration::from_secs(10), channel.wait()).await {
            Ok(Some(ChannelMsg::Data { data })) => echoed.extend_from_slice(&data),
            Ok(Some(_)) => {}
            other => panic!("channel ended early: {other:?}"),
        }
    }
    assert_eq!(echoed, payload);
    channel.eof().await.unwrap();
    let (to_host, from_host, end) = b
        .expect_event(Duration::from_secs(5), |e| match e {
            Event::ForwardEnded {
                host,
                bytes_to_host,
                bytes_from_host,
                end,
                ..
            } if host == "web-1" => Some((*bytes_to_host, *bytes_from_host, end.clone())),
            _ => None,
        })
        .await;
    assert_eq!((to_host, from_host), (100_000, 100_000));
    assert_eq!(end, ForwardEnd::ClientClosed);
}

/// Security review (rev-bastion): one authenticated client could open forwards
/// without limit, each holding a socket to a host, and exhaust the bastion's
/// file descriptors for everyone.
#[tokio::test]
async fn forwards_per_connection_are_capped() {
    let echo = echo_server().await;
    let limits = Limits {
        max_forwards_per_connection: 2,
        ..Limits::default()
    };
    let mut b = spawn_bastion_with(&[("web-1", echo)], limits).await;
    let (session, ok) = b.login(LOGIN, &CertSpec::for_hosts("web-1")).await;
    assert!(ok);
    let first = session
        .channel_open_direct_tcpip("web-1", 22, "127.0.0.1", 40000)
        .await
        .unwrap();
    let _second = session
        .channel_open_direct_tcpip("web-1", 22, "127.0.0.1", 40001)
        .await
        .unwrap();
    assert!(
        session
            .channel_open_direct_tcpip("web-1", 22, "127.0.0.1", 40002)
            .await
            .is_err(),
        "a third forward was opened"
    );
    assert!(
        b.refusal_reason().await.contains("too many forwards"),
        "refusal names the limit"
    );
    // A forward that ends gives its place back.
    first.eof().await.unwrap();
    b.expect_event(Duration::from_secs(5), |e| match e {
        Event::ForwardEnded { .. } => Some(()),
        _ => None,
    })
    .await;
    let mut again = None;
    for _ in 0..50 {
        if let Ok(c) = session
            .channel_open_direct_tcpip("web-1", 22, "127.0.0.1", 40003)
            .await
        {
            again = Some(c);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(again.is_some(), "the freed place was not given back");
}

#[tokio::test]
async fn target_not_in_the_certificate_is_refused() {
    let echo = echo_server().await;
    let mut b = spawn_bastion(&[("web-1", echo), ("db-1", echo)]).await;
    let (session, ok) = b.login(LOGIN, &CertSpec::for_hosts("web-1")).await;
    assert!(ok);
    // An open forward beside the refused ones: only the refused channels
    // fail (issue 12: a refusal never cuts a sibling forward).
    let mut sibling = session
        .channel_open_direct_tcpip("web-1", 22, "127.0.0.1", 40001)
        .await
        .unwrap();
    assert!(
        session
            .channel_open_direct_tcpip("db-1", 22, "127.0.0.1", 40000)
            .await
            .is_err()
    );
    assert!(b.refusal_reason().await.contains("db-1 is not approved"));
    // Nor by address: the target must be the name from the certificate.
    assert!(
        session
            .channel_open_direct_tcpip(echo.ip().to_string(), 22, "127.0.0.1", 40000)
            .await
            .is_err()
    );
    assert!(b.refusal_reason().await.contains("is not approved"));
    sibling.data(&b"still here"[..]).await.unwrap();
    let mut echoed = Vec::new();
    while echoed.len() < 10 {
        match tokio::time::timeout(Duration::from_secs(10), sibling.wait()).await {
            Ok(Some(ChannelMsg::Data { data })) => echoed.extend_from_slice(&data),
            Ok(Some(_)) => {}
            other => panic!("the sibling forward ended: {other:?}"),
        }
    }
    assert_eq!(echoed, b"still here");
}

#[tokio::test]
async fn a_refused_only_forward_ends_the_connection_with_the_reason() {
    // Issue 12: `ssh -J` to a host the certificate does not approve saw only
    // "administratively prohibited"; its only forward is refused with a
    // disconnect message that says why.
    let echo = echo_server().await;
    let mut b = spawn_bastion(&[("web-1", echo)]).await;
    let (session, ok) = b.login(LOGIN, &CertSpec::for_hosts("web-1")).await;
    assert!(ok);
    assert!(
        session
            .channel_open_direct_tcpip("web-2", 22, "127.0.0.1", 40000)
            .await
            .is_err()
    );
    let end = b
        .expect_event(Duration::from_secs(10), |e| match e {
            Event::ConnectionEnded { end, .. } => Some(end.clone()),
            _ => None,
        })
        .await;
    let ConnectionEnd::Refused(text) = end else {
        panic!("connection ended as {end:?}");
    };
    assert!(text.contains("host web-2 is not approved"), "{text}");
    assert!(text.contains("tpa-ssh request --host"), "{text}");
}

#[tokio::test]
async fn approved_target_missing_from_the_inventory_is_refused() {
    let echo = echo_server().await;
    let mut b = spawn_bastion(&[("web-1", echo)]).await;
    let (session, ok) = b.login(LOGIN, &CertSpec::for_hosts("web-1,web-2")).await;
    assert!(ok);
    assert!(
        session
            .channel_open_direct_tcpip("web-2", 22, "127.0.0.1", 40000)
            .await
            .is_err()
    );
    assert!(
        b.refusal_reason()
            .await
            .contains("web-2 is not in the bastion's inventory")
    );
}

#[tokio::test]
async fn other_ports_are_refused() {
    let echo = echo_server().await;
    let mut b = spawn_bastion(&[("web-1", echo)]).await;
    let (session, ok) = b.login(LOGIN, &CertSpec::for_hosts("web-1")).await;
    assert!(ok);
    assert!(
        session
            .channel_open_direct_tcpip("web-1", 80, "127.0.0.1", 40000)
            .await
            .is_err()
    );
    assert!(b.refusal_reason().await.contains("port 80 refused"));
}

#[tokio::test]
async fn unreachable_host_fails_the_channel() {
    let dead = closed_port().await;
    let mut b = spawn_bastion(&[("web-1", dead)]).await;
    let (session, ok) = b.login(LOGIN, &CertSpec::for_hosts("web-1")).await;
    assert!(ok);
    assert!(
        session
            .channel_open_direct_tcpip("web-1", 22, "127.0.0.1", 40000)
            .await
            .is_err()
    );
    assert!(b.refusal_reason().await.contains("cannot connect to web-1"));
}

#[tokio::test]
async fn session_channel_is_refused() {
    let mut b = spawn_bastion(&[]).await;
    let (session, ok) = b.login(LOGIN, &CertSpec::for_hosts("web-1")).await;
    assert!(ok);
    assert!(session.channel_open_session().await.is_err());
    assert!(
        b.refusal_reason()
            .await
            .contains("shell, exec and subsystems")
    );
}

#[tokio::test]
async fn remote_forwarding_is_refused() {
    let mut b = spawn_bastion(&[]).await;
    let (session, ok) = b.login(LOGIN, &CertSpec::for_hosts("web-1")).await;
    assert!(ok);
    assert!(session.tcpip_forward("127.0.0.1", 0).await.is_err());
    assert!(b.refusal_reason().await.contains("remote forwarding"));
}

#[tokio::test]
async fn connection_is_cut_when_the_certificate_expires() {
    let echo = echo_server().await;
    let mut b = spawn_bastion(&[("web-1", echo)]).await;
    let mut spec = CertSpec::for_hosts("web-1");
    spec.valid_before = unix_now() + 3;
    let (session, ok) = b.login(LOGIN, &spec).await;
    assert!(ok);
    let mut channel = session
        .channel_open_direct_tcpip("web-1", 22, "127.0.0.1", 40000)
        .await
        .unwrap();
    channel.data(&b"still here"[..]).await.unwrap();
    let end = b
        .expect_event(Duration::from_secs(8), |e| match e {
            Event::ConnectionEnded { end, .. } => Some(end.clone()),
            _ => None,
        })
        .await;
    assert_eq!(end, ConnectionEnd::CertificateExpired);
    // The forward ended and the client sees its connection closed.
    tokio::time::timeout(Duration::from_secs(5), async {
        while channel.wait().await.is_some() {}
    })
    .await
    .expect("channel still open after expiry");
    tokio::time::timeout(Duration::from_secs(5), async {
        while !session.is_closed() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("client still connected after expiry");
}
