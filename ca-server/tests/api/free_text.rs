//! Free text on every path (issue 11, build item 5): a reason, ticket or
//! comment holding a control, format or bidi character is refused with a
//! stable code on the API, the web form and the `tpa-ca` command line, and
//! nothing is stored; a multi-line reason typed in a browser still works.

use crate::helpers::{PW, audit_rows, count, run, spawn_team_app, tpa_ca};

/// The characters of the adversarial pass, each inside an otherwise fine reason.
const HOSTILE: [(&str, &str); 5] = [
    ("U+202E", "\u{202E}"),
    ("U+200B", "\u{200B}"),
    ("U+001B", "\u{1b}]0;owned\u{7}"),
    ("U+0000", "\u{0}"),
    ("U+000D", "\r"),
];

fn reason_body(reason: &str) -> String {
    serde_json::json!({
        "role": "read-only-debug", "hosts": ["web-1"], "duration": "30m", "reason": reason,
    })
    .to_string()
}

// issue 11
#[tokio::test]
async fn a_reason_with_bidi_zero_width_or_control_characters_is_refused_on_the_api() {
    let app = spawn_team_app().await;
    let alice = app.login("alice").await;
    for (name, bad) in HOSTILE {
        let r = app
            .post_as(
                &alice,
                "/api/v1/requests",
                &reason_body(&format!("INC-1 {bad}txt.exe disk full")),
            )
            .await;
        assert_eq!(r.status, 422, "{name}: {}", r.body);
        assert_eq!(r.json()["code"], "bad_reason", "{name}");
        let message = r.json()["message"].as_str().unwrap().to_owned();
        assert!(message.contains(name), "{name}: {message}");
        assert!(
            !message.contains(bad),
            "the message never echoes it: {message:?}"
        );
    }
    // The same rule for the ticket, with its own code.
    let body = serde_json::json!({
        "role": "hotfix-admin", "hosts": ["web-1"], "duration": "1h",
        "reason": "disk full", "ticket": "INC-1\u{202E}",
    })
    .to_string();
    let r = app.post_as(&alice, "/api/v1/requests", &body).await;
    assert_eq!(r.json()["code"], "bad_ticket", "{}", r.body);
    // A fine reason still goes through: the refusals were the characters.
    let r = app
        .post_as(&alice, "/api/v1/requests", &reason_body("INC-1 disk full"))
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(
        count(&app.data.open_store(), "requests"),
        1,
        "only the fine one"
    );
    app.stop().await;
}

// issue 11
#[tokio::test]
async fn a_reason_with_bidi_zero_width_or_control_characters_is_refused_on_the_web_form() {
    let app = spawn_team_app().await;
    let alice = app.browser("alice", PW).await;
    for (name, bad) in HOSTILE {
        let r = app
            .post_form(
                &alice,
                "/requests",
                &[
                    ("role", "read-only-debug"),
                    ("hosts", "web-1"),
                    ("duration", "30m"),
                    ("reason", &format!("INC-1 {bad}disk full")),
                ],
            )
            .await;
        assert_eq!(r.status, 422, "{name}: {}", r.body);
        assert!(r.body.contains("id=\"error\""), "{name}: {}", r.body);
        assert!(r.body.contains(name), "{name}: the message names it");
    }
    assert_eq!(count(&app.data.open_store(), "requests"), 0);
    // A textarea sends its line breaks as CRLF: that is a plain line feed.
    let r = app
        .post_form(
            &alice,
            "/requests",
            &[
                ("role", "read-only-debug"),
                ("hosts", "web-1"),
                ("duration", "30m"),
                ("reason", "INC-1 disk full\r\nsee the runbook"),
            ],
        )
        .await;
    assert_eq!(r.status, 303, "{}", r.body);
    let reason: String = app
        .data
        .open_store()
        .one("SELECT reason FROM requests", &[]);
    assert_eq!(reason, "INC-1 disk full\nsee the runbook");
    app.stop().await;
}

// issue 11
#[tokio::test]
async fn a_revocation_reason_with_control_characters_is_refused_by_tpa_ca_revoke() {
    let app = spawn_team_app().await;
    let alice = app.login("alice").await;
    let r = app
        .post_as(&alice, "/api/v1/requests", &reason_body("INC-1 logs"))
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let id = r.json()["request"]["id"].as_str().unwrap().to_owned();
    // NUL cannot be passed in an argument; the others can.
    let on_a_command_line: Vec<_> = HOSTILE.iter().filter(|(_, bad)| *bad != "\u{0}").collect();
    for (name, bad) in &on_a_command_line {
        let (code, stdout, stderr) = run(tpa_ca()
            .args(["revoke", "request", &id, "--admin", "oncall", "--reason"])
            .arg(format!("laptop {bad}stolen"))
            .arg("--config")
            .arg(&app.data.config_path));
        assert_eq!(code, 1, "{name}: {stdout}{stderr}");
        assert!(stderr.contains("(bad_reason)"), "{name}: {stderr}");
        assert!(stderr.contains(name), "{name}: {stderr}");
        assert!(!stderr.contains(bad), "{name}: never echoed raw");
    }
    let conn = app.data.open_store();
    assert_eq!(count(&conn, "revocations"), 0);
    let denied: Vec<String> = audit_rows(&conn)
        .into_iter()
        .filter(|e| e.outcome == "denied")
        .map(|e| e.details)
        .collect();
    assert_eq!(
        denied.len(),
        on_a_command_line.len(),
        "each refusal audited"
    );
    for details in denied {
        assert!(
            !details.contains("\\u001b")
                && !details.contains("\\u0000")
                && !details.contains("\\r"),
            "the trail keeps no control character: {details}"
        );
    }
    app.stop().await;
}

// issue 11: the review path stored ESC/BEL/CR/NUL raw; the revoke path did not.
#[tokio::test]
async fn a_break_glass_review_comment_with_terminal_controls_is_refused() {
    let app = spawn_team_app().await;
    let alice = app.login("alice").await;
    let bob = app.login("bob").await;
    let glass = r#"{"role":"hotfix-admin","hosts":["db-1"],"duration":"20m","reason":"site down","ticket":"INC-77","break_glass":true}"#;
    let r = app.post_as(&alice, "/api/v1/requests", glass).await;
    assert_eq!(r.status, 201, "{}", r.body);
    let id = r.json()["request"]["id"].as_str().unwrap().to_owned();
    let path = format!("/api/v1/requests/{id}/review");
    for (name, bad) in [
        ("U+001B", "\u{1b}[2J"),
        ("U+0007", "\u{7}"),
        ("U+000D", "\r"),
        ("U+0000", "\u{0}"),
        ("U+202E", "\u{202E}"),
    ] {
        let body = serde_json::json!({ "comment": format!("checked {bad}history") }).to_string();
        let r = app.post_as(&bob, &path, &body).await;
        assert_eq!(r.status, 422, "{name}: {}", r.body);
        assert_eq!(r.json()["code"], "bad_comment", "{name}");
        assert!(r.json()["message"].as_str().unwrap().contains(name));
    }
    let conn = app.data.open_store();
    let reviewed: i64 = conn.one(
        "SELECT count(*) FROM break_glass_reviews WHERE reviewed_at IS NOT NULL",
        &[],
    );
    assert_eq!(reviewed, 0, "no review was recorded");
    for e in audit_rows(&conn) {
        assert!(
            !e.reason.chars().any(|c| c.is_control() && c != '\n'),
            "the trail holds no control character: {e:?}"
        );
    }
    let r = app
        .post_as(&bob, &path, r#"{"comment":"checked the history"}"#)
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    app.stop().await;
}
