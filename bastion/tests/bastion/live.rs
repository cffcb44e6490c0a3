//! Live enforcement and session records (issue 6, items 4 and 5): the
//! revocation feed cuts a live session within 5 s and bounds it by the
//! request's window; each forward's record reaches the CA with its byte
//! counts, through the spool when the CA is down; the revocation state is
//! saved and logins wait for it; refusals reach the CA.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bastion::ca_client::CaClient;
use bastion::config::Limits;
use bastion::{Event, feed, recorder, refusals};
use russh::ChannelMsg;
use russh::client::Msg;
use tokio::sync::oneshot;
use tpa_core::TrustedCas;
use tpa_core::api::SessionRecord;

use crate::helpers::*;

const CA_TOKEN: &str = "tpab_test-token";
const KEY_ID: &str = "tpa:request=req_aaaaaaaaaaaaaaaaaaaaaaaaaa:user=alice";

/// Sends `payload`, waits for its echo.
async fn echo_round_trip(channel: &mut russh::Channel<Msg>, payload: &[u8]) {
    channel.data(payload).await.unwrap();
    let mut echoed = Vec::new();
    while echoed.len() < payload.len() {
        match tokio::time::timeout(Duration::from_secs(10), channel.wait()).await {
            Ok(Some(ChannelMsg::Data { data })) => echoed.extend_from_slice(&data),
            Ok(Some(_)) => {}
            other => panic!("channel ended early: {other:?}"),
        }
    }
    assert_eq!(echoed, payload);
}

/// Waits (bounded) until the channel ends; returns how long that took.
async fn wait_closed(channel: &mut russh::Channel<Msg>, within: Duration) -> Duration {
    let start = Instant::now();
    let closed = tokio::time::timeout(within, async {
        loop {
            match channel.wait().await {
                None | Some(ChannelMsg::Close) => break,
                Some(_) => {}
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "session still open after {within:?}");
    start.elapsed()
}

async fn next_record(b: &mut TestBastion) -> tpa_core::api::SessionRecord {
    b.expect_event(Duration::from_secs(10), |e| match e {
        Event::SessionRecord(r) => Some(tpa_core::api::SessionRecord::clone(r)),
        _ => None,
    })
    .await
}

#[tokio::test]
async fn feed_revocation_cuts_a_live_session_within_five_seconds() {
    let echo = echo_server().await;
    let (ca, ca_state) = fake_ca().await;
    let window_end = unix_now() + 3600;
    ca_state.lock().unwrap().feed = serde_json::json!({
        "cursor": 5, "full": true, "revoked": [],
        "active": [{"key_id": KEY_ID, "request": REQUEST, "window_end": window_end}],
    });
    let mut b = spawn_bastion(&[("web-1", echo)]).await;
    let client = CaClient::new(&format!("http://{ca}"), CA_TOKEN).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let state_file = dir.path().join("revocations.json");
    let (feed_stop, feed_stopped) = oneshot::channel::<()>();
    let poller = tokio::spawn(feed::run(
        client,
        b.trust_updates.clone(),
        Duration::from_secs(1),
        b.poll_now.clone(),
        feed::FeedState::default(),
        state_file.clone(),
        async {
            let _ = feed_stopped.await;
        },
    ));
    let (session, ok) = b.login(LOGIN, &CertSpec::for_hosts("web-1")).await;
    assert!(ok);
    let mut channel = session
        .channel_open_direct_tcpip("web-1", 22, "127.0.0.1", 40000)
        .await
        .unwrap();
    echo_round_trip(&mut channel, b"before the revocation").await;
    // The feed has been read: the window is known, the session is alive.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        b.trust_updates.borrow().windows.get(KEY_ID),
        Some(&window_end)
    );

    ca_state.lock().unwrap().feed = serde_json::json!({
        "cursor": 6, "full": false, "active": [],
        "revoked": [{"key_id": KEY_ID, "request": REQUEST, "state": "revoked", "forget_after": window_end}],
    });
    let took = wait_closed(&mut channel, Duration::from_secs(8)).await;
    assert!(took < Duration::from_secs(5), "cut after {took:?}");
    let record = next_record(&mut b).await;
    assert_eq!(record.end, "access_revoked");
    assert_eq!(record.key_id, KEY_ID);
    assert_eq!(record.request, REQUEST);
    assert_eq!(record.requester, "alice");
    assert_eq!(record.login, LOGIN);
    assert_eq!(record.target, "web-1");
    assert_eq!(record.serial, "4242");
    assert_eq!(record.bytes_to_target, 21);
    assert_eq!(record.bytes_from_target, 21);
    assert!(record.session_id.starts_with("ses_") && record.session_id.len() == 36);
    // The bastion polled with its token, never another.
    assert!(
        ca_state
            .lock()
            .unwrap()
            .tokens
            .iter()
            .all(|t| t == CA_TOKEN)
    );

    // A new connection with the revoked key id is refused.
    let (_again, ok) = b.login(LOGIN, &CertSpec::for_hosts("web-1")).await;
    assert!(!ok);
    assert!(b.rejection_reason().await.contains("revoked"));
    let _ = feed_stop.send(());
    poller.await.unwrap();
    // The revocation survives a restart: it is in the saved state.
    let saved = feed::load_state(&state_file, unix_now()).unwrap().unwrap();
    assert!(saved.revoked.contains_key(KEY_ID), "{saved:?}");
    assert_eq!(saved.cursor, Some(6));
    b.stop().await;
}

#[tokio::test]
async fn without_saved_revocation_state_logins_wait_for_the_first_poll() {
    // Issue 6: fail closed until the bastion knows what has been revoked.
    let (ca, ca_state) = fake_ca().await;
    ca_state.lock().unwrap().down = true;
    ca_state.lock().unwrap().feed = serde_json::json!({
        "cursor": 5, "full": true, "revoked": [],
        "active": [{"key_id": KEY_ID, "request": REQUEST, "window_end": unix_now() + 3600}],
    });
    let mut b = spawn_bastion(&[]).await;
    let pending = Trust {
        revocations_pending: true,
        require_active: true,
        ..Trust::clone(&b.trust_updates.borrow())
    };
    b.trust_updates.send(Arc::new(pending)).unwrap();
    let (_s, ok) = b.login(LOGIN, &CertSpec::for_hosts("web-1")).await;
    assert!(
        !ok,
        "a login was accepted before the revocation state was known"
    );
    assert!(
        b.rejection_reason()
            .await
            .contains("revocation state unknown")
    );
    let dir = tempfile::tempdir().unwrap();
    let state_file = dir.path().join("revocations.json");
    let client = CaClient::new(&format!("http://{ca}"), CA_TOKEN).unwrap();
    let (feed_stop, feed_stopped) = oneshot::channel::<()>();
    let poller = tokio::spawn(feed::run(
        client,
        b.trust_updates.clone(),
        Duration::from_millis(200),
        b.poll_now.clone(),
        feed::FeedState::default(),
        state_file.clone(),
        async {
            let _ = feed_stopped.await;
        },
    ));
    // While the CA is down, logins stay refused.
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert!(b.trust_updates.borrow().revocations_pending);
    ca_state.lock().unwrap().down = false;
    let deadline = Instant::now() + Duration::from_secs(5);
    while b.trust_updates.borrow().revocations_pending {
        assert!(Instant::now() < deadline, "first poll not applied");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (_s, ok) = b.login(LOGIN, &CertSpec::for_hosts("web-1")).await;
    assert!(ok);
    assert!(feed::load_state(&state_file, unix_now()).unwrap().is_some());
    let _ = feed_stop.send(());
    poller.await.unwrap();
    b.stop().await;
}

#[tokio::test]
async fn a_session_is_cut_when_its_ca_is_no_longer_trusted() {
    // Issue 6: the trusted keys are refreshed from /ca.pub; a key that goes
    // away takes its live sessions with it.
    let echo = echo_server().await;
    let mut b = spawn_bastion(&[("web-1", echo)]).await;
    let (session, ok) = b.login(LOGIN, &CertSpec::for_hosts("web-1")).await;
    assert!(ok);
    let mut channel = session
        .channel_open_direct_tcpip("web-1", 22, "127.0.0.1", 40000)
        .await
        .unwrap();
    echo_round_trip(&mut channel, b"hello").await;
    let other_ca = random_key();
    b.trust_updates
        .send(Arc::new(Trust {
            cas: TrustedCas::new(vec![other_ca.public_key().key_data().clone()]),
            ..Trust::default()
        }))
        .unwrap();
    let took = wait_closed(&mut channel, Duration::from_secs(5)).await;
    assert!(took < Duration::from_secs(3), "cut after {took:?}");
    assert_eq!(next_record(&mut b).await.end, "access_revoked");
    b.stop().await;
}

#[tokio::test]
async fn refusals_reach_the_ca_coalesced_and_spooled_while_it_is_down() {
    // Issue 6: every rejection and refused channel is audited at the CA.
    let echo = echo_server().await;
    let (ca, ca_state) = fake_ca().await;
    ca_state.lock().unwrap().down = true;
    let dir = tempfile::tempdir().unwrap();
    let spool = dir.path().join("refusals.spool");
    let client = CaClient::new(&format!("http://{ca}"), CA_TOKEN).unwrap();
    // Each rejection takes the bastion's 1 s rejection delay: one window holds them all.
    let (reporter, reports) = refusals::start(spool.clone(), Some(client), Duration::from_secs(6));
    let b = spawn_bastion_full(
        &[("web-1", echo)],
        Limits::default(),
        Some(Arc::new(reporter)),
    )
    .await;
    // Three identical rejections (wrong principal) from one address...
    for _ in 0..3 {
        let (_s, ok) = b.login("root", &CertSpec::for_hosts("web-1")).await;
        assert!(!ok);
    }
    // ...and one refused forward after a good login.
    let (session, ok) = b.login(LOGIN, &CertSpec::for_hosts("web-1")).await;
    assert!(ok);
    assert!(
        session
            .channel_open_direct_tcpip("db-1", 22, "127.0.0.1", 40000)
            .await
            .is_err()
    );
    // They wait in the spool while the CA is down.
    let deadline = Instant::now() + Duration::from_secs(10);
    while recorder::read_spool::<tpa_core::api::BastionEvent>(&spool)
        .unwrap()
        .len()
        < 2
    {
        assert!(Instant::now() < deadline, "refusals not spooled");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(ca_state.lock().unwrap().events.is_empty());
    ca_state.lock().unwrap().down = false;
    let deadline = Instant::now() + Duration::from_secs(15);
    let events = loop {
        let events = ca_state.lock().unwrap().events.clone();
        if events.len() >= 2 {
            break events;
        }
        assert!(Instant::now() < deadline, "refusals not delivered");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(events.len(), 2, "{events:#?}");
    assert_eq!(events[0].kind, "auth_rejected");
    assert_eq!(events[0].login, "root");
    assert_eq!(events[0].source, "127.0.0.1");
    assert_eq!(events[0].count, 3);
    assert!(
        events[0].reason.contains("principal"),
        "{}",
        events[0].reason
    );
    assert_eq!(events[1].kind, "channel_refused");
    assert_eq!(events[1].what, "direct-tcpip db-1:22");
    assert_eq!(events[1].request.as_deref(), Some(REQUEST));
    assert_eq!(events[1].login, LOGIN);
    assert!(
        recorder::read_spool::<tpa_core::api::BastionEvent>(&spool)
            .unwrap()
            .is_empty()
    );
    b.stop().await;
    reports.finish(Duration::from_secs(5)).await;
    assert_eq!(ca_state.lock().unwrap().events.len(), 2);
}

#[tokio::test]
async fn session_is_cut_when_the_request_window_ends() {
    let echo = echo_server().await;
    let mut b = spawn_bastion(&[("web-1", echo)]).await;
    // The feed says the window ends in 2 s; the certificate is good for 10 min.
    let mut trust = Trust::clone(&b.trust_updates.borrow());
    trust.windows.insert(KEY_ID.to_owned(), unix_now() + 2);
    b.trust_updates.send(Arc::new(trust)).unwrap();
    let (session, ok) = b.login(LOGIN, &CertSpec::for_hosts("web-1")).await;
    assert!(ok);
    let mut channel = session
        .channel_open_direct_tcpip("web-1", 22, "127.0.0.1", 40000)
        .await
        .unwrap();
    echo_round_trip(&mut channel, b"x").await;
    wait_closed(&mut channel, Duration::from_secs(6)).await;
    assert_eq!(next_record(&mut b).await.end, "window_ended");
    b.stop().await;
}

#[tokio::test]
async fn records_are_spooled_while_the_ca_is_down_and_delivered_in_order_after() {
    let echo = echo_server().await;
    let (ca, ca_state) = fake_ca().await;
    ca_state.lock().unwrap().down = true;
    let dir = tempfile::tempdir().unwrap();
    let spool = dir.path().join("sessions.spool");
    let client = CaClient::new(&format!("http://{ca}"), CA_TOKEN).unwrap();
    let (sink, delivery) = recorder::start(spool.clone(), Some(client));
    let mut b =
        spawn_bastion_full(&[("web-1", echo)], Limits::default(), Some(Arc::new(sink))).await;
    let (session, ok) = b.login(LOGIN, &CertSpec::for_hosts("web-1")).await;
    assert!(ok);
    let mut ids = Vec::new();
    for size in [10usize, 2000] {
        let mut channel = session
            .channel_open_direct_tcpip("web-1", 22, "127.0.0.1", 40000)
            .await
            .unwrap();
        echo_round_trip(&mut channel, &vec![7u8; size]).await;
        channel.eof().await.unwrap();
        let record = next_record(&mut b).await;
        assert_eq!(
            (
                record.bytes_to_target,
                record.bytes_from_target,
                record.end.as_str()
            ),
            (size as u64, size as u64, "client_closed")
        );
        ids.push(record.session_id);
    }
    // Both are in the spool, none at the CA.
    let deadline = Instant::now() + Duration::from_secs(5);
    while recorder::read_spool::<SessionRecord>(&spool).unwrap().len() < 2 {
        assert!(Instant::now() < deadline, "records not spooled");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(ca_state.lock().unwrap().records.is_empty());

    // The CA comes back: delivered once each, in order, and the spool empties.
    ca_state.lock().unwrap().down = false;
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let delivered: Vec<String> = ca_state
            .lock()
            .unwrap()
            .records
            .iter()
            .map(|r| r.session_id.clone())
            .collect();
        if delivered.len() >= 2 {
            assert_eq!(delivered, ids);
            break;
        }
        assert!(
            Instant::now() < deadline,
            "records not delivered: {delivered:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        recorder::read_spool::<SessionRecord>(&spool)
            .unwrap()
            .is_empty()
    );
    b.stop().await;
    delivery.finish(Duration::from_secs(5)).await;
    assert_eq!(ca_state.lock().unwrap().records.len(), 2);
}

#[tokio::test]
async fn a_request_the_feed_does_not_list_as_active_is_refused_and_a_fresh_one_is_polled_at_once() {
    // Issue 6: the request behind the certificate must still be active.
    let (ca, ca_state) = fake_ca().await;
    let mut b = spawn_bastion(&[]).await;
    let strict = Trust {
        require_active: true,
        ..Trust::clone(&b.trust_updates.borrow())
    };
    b.trust_updates.send(Arc::new(strict)).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let client = CaClient::new(&format!("http://{ca}"), CA_TOKEN).unwrap();
    let (feed_stop, feed_stopped) = oneshot::channel::<()>();
    // A long interval: only an immediate poll can make the next login pass in time.
    let poller = tokio::spawn(feed::run(
        client,
        b.trust_updates.clone(),
        Duration::from_secs(60),
        b.poll_now.clone(),
        feed::FeedState::default(),
        dir.path().join("revocations.json"),
        async {
            let _ = feed_stopped.await;
        },
    ));
    // The feed lists no active request: refused, with the reason.
    let (_s, ok) = b.login(LOGIN, &CertSpec::for_hosts("web-1")).await;
    assert!(!ok);
    assert!(
        b.rejection_reason()
            .await
            .contains("is not active at the CA"),
        "{:?}",
        b.drain()
    );
    // The request is approved a moment later: the next login asks the feed at once.
    ca_state.lock().unwrap().feed = serde_json::json!({
        "cursor": 7, "full": true, "revoked": [],
        "active": [{"key_id": KEY_ID, "request": REQUEST, "window_end": unix_now() + 3600}],
    });
    let started = Instant::now();
    let (_s, ok) = b.login(LOGIN, &CertSpec::for_hosts("web-1")).await;
    assert!(ok, "{:?}", b.drain());
    assert!(started.elapsed() < Duration::from_secs(3));
    let _ = feed_stop.send(());
    poller.await.unwrap();
    b.stop().await;
}
