//! `tpa-ssh login --no-browser`: a device login (RFC 8628 style). The CA
//! gives a short user code to confirm at its `/device` page from any browser,
//! and the CLI polls until it is approved, denied or expired, with the CA's
//! interval and `slow_down`, bounded by the code's expiry.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context as _, bail};
use tpa_core::api::DeviceTokenRequest;

use crate::api::{ApiFailure, Client};

/// The longest a device login is waited for, whatever the CA says.
const DEVICE_MAX_WAIT: Duration = Duration::from_secs(15 * 60);

/// What to do after one poll of a device login.
#[derive(Debug, PartialEq, Eq)]
enum Next {
    /// Poll again after this many seconds.
    Wait(u64),
    /// Stop with this error.
    Stop(String),
}

/// The next step after a refused poll with `code`, polling every `interval` s.
fn after_refusal(code: &str, message: &str, interval: u64) -> Next {
    match code {
        "authorization_pending" => Next::Wait(interval),
        // RFC 8628 §3.5: slow down by 5 s, for this and every later poll.
        "slow_down" => Next::Wait(interval + 5),
        "access_denied" => Next::Stop(
            "the login was denied in the browser; run `tpa-ssh login --no-browser` again if that was a mistake".to_owned(),
        ),
        "expired_token" => Next::Stop(
            "the code expired before it was confirmed; run `tpa-ssh login --no-browser` again".to_owned(),
        ),
        _ => Next::Stop(format!("the CA refused the login: {message} ({code})")),
    }
}

/// What `tpa-ssh login --no-browser` tells the person: the page, then the
/// code to type there, on separate lines.
fn device_instructions(page: &str, user_code: &str, expires_in: i64) -> String {
    format!(
        "To log in, open this page in a browser on any machine and log in:\n  {page}\nthen type this code there:\n  {user_code}\nNever type a code someone else sent you.\nWaiting for the confirmation (the code expires in {} min)…",
        expires_in.max(0) / 60
    )
}

/// `tpa-ssh login --no-browser`: a device login.
pub async fn login(client: &Client) -> anyhow::Result<ExitCode> {
    let started = client
        .start_device_login()
        .await
        .context("cannot start the login")?;
    let page = format!("{}{}", client.base(), started.verification_path);
    // The page and the code are printed apart, never as one `?code=` link
    // (issue 18): the person types the code, so a link someone else sent
    // them cannot approve that someone's login in two clicks.
    eprintln!(
        "{}",
        device_instructions(&page, &started.user_code, started.expires_in)
    );
    let limit =
        Duration::from_secs(u64::try_from(started.expires_in).unwrap_or(0)).min(DEVICE_MAX_WAIT);
    let deadline = tokio::time::Instant::now() + limit;
    let mut interval = u64::try_from(started.interval).unwrap_or(5).clamp(1, 60);
    let body = DeviceTokenRequest {
        device_code: started.device_code,
    };
    loop {
        if tokio::time::Instant::now() + Duration::from_secs(interval) > deadline {
            bail!(
                "the code expired before it was confirmed; run `tpa-ssh login --no-browser` again"
            );
        }
        tokio::time::sleep(Duration::from_secs(interval)).await;
        let failure = match client.poll_device_login(&body).await {
            Ok(answer) => return super::save(client, answer).await,
            Err(e) => match e.downcast::<ApiFailure>() {
                Ok(failure) => failure,
                Err(other) => return Err(other),
            },
        };
        match after_refusal(&failure.code, &failure.message, interval) {
            Next::Wait(next) => interval = next.min(60),
            Next::Stop(why) => bail!(why),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn poll_answers() {
        assert_eq!(after_refusal("authorization_pending", "", 5), Next::Wait(5));
        assert_eq!(after_refusal("slow_down", "", 5), Next::Wait(10));
        assert!(
            matches!(after_refusal("access_denied", "", 5), Next::Stop(m) if m.contains("denied"))
        );
        assert!(
            matches!(after_refusal("expired_token", "", 5), Next::Stop(m) if m.contains("expired"))
        );
        assert!(
            matches!(after_refusal("invalid_grant", "unknown", 5), Next::Stop(m) if m.contains("unknown"))
        );
    }

    /// Issue 18: the CLI prints the page and the code apart, never a link
    /// that carries the code (which made phishing a two-click approval).
    #[test]
    fn device_instructions_never_carry_the_code_in_a_link() {
        let text = device_instructions("https://ca.example/device", "BCDF-GHJK", 600);
        assert!(!text.contains("?code="), "{text}");
        assert!(!text.contains("device?"), "{text}");
        let lines: Vec<&str> = text.lines().map(str::trim).collect();
        assert!(lines.contains(&"https://ca.example/device"), "{text}");
        assert!(lines.contains(&"BCDF-GHJK"), "{text}");
        assert!(text.contains("10 min"), "{text}");
    }
}
