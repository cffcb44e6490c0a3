//! `tpa-ssh login` with the company SSO: a loopback listener on 127.0.0.1, a
//! PKCE pair of the CLI's own, the browser at the CA's `/cli/login`, and the
//! one-time code exchanged at `POST /api/v1/cli/token` for an API token.
//! With `--no-browser`, a device login instead: the CA gives a short user
//! code to confirm at its `/device` page from any browser, and the CLI polls
//! `POST /api/v1/cli/device/token` until it is approved, denied or expired.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context as _, bail};
use base64ct::{Base64UrlUnpadded, Encoding as _};
use rand::RngExt as _;
use reqwest::Method;
use sha2::{Digest as _, Sha256};
use tokio::net::TcpListener;
use tpa_core::api::{CliTokenRequest, DeviceAuthorization, DeviceTokenRequest, LoginResponse};

use crate::client::{ApiFailure, Client};

/// How long the CLI waits for the browser to come back.
const LOGIN_TIMEOUT: Duration = Duration::from_secs(300);

/// Percent-encodes a query value.
fn encode(value: &str) -> String {
    value
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                char::from(b).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// Runs the SSO login.
pub async fn login(ca: Option<&str>, no_browser: bool) -> anyhow::Result<ExitCode> {
    let ca = ca.context(
        "give the CA's URL: `tpa-ssh login --ca https://ca.example.com` (or set TPA_CA_URL)",
    )?;
    let client = Client::new(ca, None)?;
    if no_browser {
        return device_login(&client).await;
    }
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .context("cannot listen on 127.0.0.1 for the login callback")?;
    let port = listener
        .local_addr()
        .context("cannot read the listener's port")?
        .port();
    let redirect_uri = format!("http://127.0.0.1:{port}/callback");
    let verifier_bytes: [u8; 32] = rand::rng().random();
    let verifier = Base64UrlUnpadded::encode_string(&verifier_bytes);
    let challenge = Base64UrlUnpadded::encode_string(&Sha256::digest(verifier.as_bytes()));
    let url = format!(
        "{}/cli/login?redirect_uri={}&code_challenge={challenge}&code_challenge_method=S256",
        client.base(),
        encode(&redirect_uri)
    );
    let opened = (std::env::var_os("DISPLAY").is_some()
        || std::env::var_os("WAYLAND_DISPLAY").is_some())
        && std::process::Command::new("xdg-open")
            .arg(&url)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
    if opened {
        eprintln!("Opened your browser to log in. If nothing happened, open:\n  {url}");
    } else {
        eprintln!("Open this URL in a browser on this machine to log in:\n  {url}");
    }
    // issue 18: the consent page shows the same phrase, derived from this
    // login's challenge; a page with another phrase is someone else's login.
    eprintln!(
        "Then approve the tpa-ssh login on port {port} on the CA's page.\nConfirmation phrase: {}\nContinue only if the CA's page shows this same phrase.",
        tpa_core::login_phrase(&challenge)
    );
    let code = match tokio::time::timeout(LOGIN_TIMEOUT, crate::loopback::wait_for_code(&listener))
        .await
    {
        Ok(code) => code?,
        Err(_) => bail!(
            "no login within {} s; run `tpa-ssh login` again",
            LOGIN_TIMEOUT.as_secs()
        ),
    };
    let body = CliTokenRequest {
        code,
        code_verifier: verifier,
        redirect_uri,
    };
    let answer: LoginResponse = client
        .call(Method::POST, "/api/v1/cli/token", Some(&body))
        .await?;
    crate::commands::save_login(&client, answer).await
}

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
async fn device_login(client: &Client) -> anyhow::Result<ExitCode> {
    let started: DeviceAuthorization = client
        .call(Method::POST, "/api/v1/cli/device", None::<&()>)
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
        let answer: anyhow::Result<LoginResponse> = client
            .call(Method::POST, "/api/v1/cli/device/token", Some(&body))
            .await;
        let failure = match answer {
            Ok(answer) => return crate::commands::save_login(client, answer).await,
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

    use super::*;

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
