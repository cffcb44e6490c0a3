//! `tpa-ssh login` with the company SSO in a browser on this machine: a
//! loopback listener on 127.0.0.1, a PKCE pair of the CLI's own, the browser
//! at the CA's consent page, and the one-time code exchanged for an API
//! token.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context as _, bail};
use base64ct::{Base64UrlUnpadded, Encoding as _};
use rand::RngExt as _;
use sha2::{Digest as _, Sha256};
use tokio::net::TcpListener;
use tpa_core::api::CliTokenRequest;

use crate::api::Client;

/// How long the CLI waits for the browser to come back.
const LOGIN_TIMEOUT: Duration = Duration::from_secs(300);

/// Opens `url` in the person's browser (webbrowser: `$BROWSER`, then
/// xdg-open and the desktop's own openers), only in a graphical session:
/// elsewhere a browser would start in this terminal, or nowhere. Whether
/// one was started.
fn open_browser(url: &str) -> bool {
    let graphical =
        std::env::var_os("DISPLAY").is_some() || std::env::var_os("WAYLAND_DISPLAY").is_some();
    graphical && webbrowser::open(url).is_ok()
}

/// Runs the SSO login through the browser.
pub async fn login(client: &Client) -> anyhow::Result<ExitCode> {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .context("cannot listen on 127.0.0.1 for the login callback")?;
    let port = listener
        .local_addr()
        .context("cannot read the listener's port")?
        .port();
    let redirect_uri = super::loopback::redirect_uri(port);
    let verifier_bytes: [u8; 32] = rand::rng().random();
    let verifier = Base64UrlUnpadded::encode_string(&verifier_bytes);
    let challenge = Base64UrlUnpadded::encode_string(&Sha256::digest(verifier.as_bytes()));
    let url = client.browser_login_url(&redirect_uri, &challenge);
    if open_browser(&url) {
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
    let code = match tokio::time::timeout(LOGIN_TIMEOUT, super::loopback::wait_for_code(&listener))
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
    let answer = client.exchange_cli_code(&body).await?;
    super::save(client, answer).await
}
