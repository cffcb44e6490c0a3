//! `tpa_sink_refusing` on `/metrics` (issue 15): a sink whose receiver
//! refuses an item (a 4xx but 408 and 429) waits at the longest backoff
//! until someone acts; the gauge says so, per sink, where a scraper can
//! alert on it.

use std::time::Duration;

use crate::fake_http::{Reply, fake_server};
use crate::helpers::{HOTFIX, spawn_team_app_with};

/// The value of the sample `series` (`name{labels}`) in `text`.
fn sample(text: &str, series: &str) -> Option<i64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

// issue 15: a webhook whose receiver answers 400 shows as refusing (1),
// a webhook whose receiver takes the same item shows 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_webhook_shows_in_the_refusing_gauge() {
    let refusing = fake_server(|_, _| Reply {
        status: 400,
        ..Reply::default()
    })
    .await;
    let taking = fake_server(|_, _| Reply {
        status: 204,
        ..Reply::default()
    })
    .await;
    // Names of their own: the refusing list is per process.
    let app = spawn_team_app_with(|data| {
        data.edit_config(|t| {
            format!(
                "{t}\n[[webhooks]]\nname = \"gauge-refused\"\nurl = \"{}/hook\"\n\
                 \n[[webhooks]]\nname = \"gauge-taken\"\nurl = \"{}/hook\"\n",
                refusing.base, taking.base
            )
        });
    })
    .await;
    let before = app.get("/metrics").await;
    assert_eq!(before.status, 200, "{}", before.body);
    let refused = "tpa_sink_refusing{kind=\"webhook\",sink=\"gauge-refused\"}";
    let taken = "tpa_sink_refusing{kind=\"webhook\",sink=\"gauge-taken\"}";
    assert_eq!(sample(&before.body, refused), Some(0), "{}", before.body);
    let alice = app.login("alice").await;
    app.submit(&alice, HOTFIX).await;
    refusing.wait_for(1, Duration::from_secs(60)).await;
    taking.wait_for(1, Duration::from_secs(60)).await;
    let mut text = String::new();
    for _ in 0..300 {
        text = app.get("/metrics").await.body;
        if sample(&text, refused) == Some(1) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(sample(&text, refused), Some(1), "{text}");
    assert_eq!(sample(&text, taken), Some(0), "{text}");
    assert!(text.contains("# TYPE tpa_sink_refusing gauge"), "{text}");
    app.stop().await;
}
