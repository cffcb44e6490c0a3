//! The CA's HTTP interface as typed calls: one method per endpoint, and the
//! only place in `tpa-ssh` that knows the CA's URL paths. What the CA
//! announces for ssh_config is checked again here with tpa-core's grammars.

mod transport;

use anyhow::Context as _;
use reqwest::{Method, Url};
use tpa_core::api::{
    CertificateBody, CertificateResponse, CliTokenRequest, ClientConfig, CreateRequestBody,
    DeviceAuthorization, DeviceTokenRequest, ExplainView, LoginRequest, LoginResponse, RequestList,
    RequestView, StoredSession, SubmitResponse, WhoAmI,
};
use tpa_core::{BastionAddress, DomainSuffix, HostPattern};

use transport::Http;
pub use transport::{ApiFailure, is_transient};

/// No request body.
const NONE: Option<&()> = None;

/// A path under the CA's base URL: each segment percent-encoded on its own
/// (so a request id typed by the user cannot name another endpoint), then
/// the query.
fn path(segments: &[&str], query: &[(&str, &str)]) -> String {
    let mut url = Url::parse("http://ca.invalid/").expect("a constant URL parses");
    url.path_segments_mut()
        .expect("an http URL has a path")
        .extend(segments);
    if !query.is_empty() {
        url.query_pairs_mut().extend_pairs(query);
    }
    match url.query() {
        Some(query) => format!("{}?{query}", url.path()),
        None => url.path().to_owned(),
    }
}

/// `/api/v1/…`.
fn api(segments: &[&str]) -> String {
    let mut all = vec!["api", "v1"];
    all.extend_from_slice(segments);
    path(&all, &[])
}

/// `/api/v1/requests/ID[/TAIL]`.
fn request_path(id: &str, tail: Option<&str>) -> String {
    let mut segments = vec!["requests", id];
    segments.extend(tail);
    api(&segments)
}

/// A client for one CA's API.
#[derive(Debug, Clone)]
pub struct Client {
    http: Http,
}

/// What the CA announces (`GET /api/v1/client-config`), checked again here:
/// the values go into ssh_config and onto ssh's command line.
#[derive(Debug)]
pub struct Announced {
    /// Where users reach the bastion.
    pub bastion: Option<BastionAddress>,
    /// The host patterns for the snippet (not yet checked against the bounds).
    pub patterns: Vec<HostPattern>,
    /// The domains patterns may lie under.
    pub allowed_suffixes: Vec<DomainSuffix>,
}

impl Client {
    /// A client for the CA at `base` without a login (to log in).
    pub fn anonymous(base: &str) -> anyhow::Result<Self> {
        Ok(Self {
            http: Http::new(base, None)?,
        })
    }

    /// A client acting with the saved login's token.
    pub fn logged_in(session: &StoredSession) -> anyhow::Result<Self> {
        Ok(Self {
            http: Http::new(&session.ca_url, Some(session.token.clone()))?,
        })
    }

    /// The CA's base URL.
    pub fn base(&self) -> &str {
        self.http.base()
    }

    /// `POST /api/v1/login`: a local account's password login.
    pub async fn login(&self, body: &LoginRequest) -> anyhow::Result<LoginResponse> {
        self.http
            .call(Method::POST, &api(&["login"]), Some(body))
            .await
    }

    /// The CA's consent page for a loopback SSO login, to open in a browser.
    pub fn browser_login_url(&self, redirect_uri: &str, code_challenge: &str) -> String {
        let page = path(
            &["cli", "login"],
            &[
                ("redirect_uri", redirect_uri),
                ("code_challenge", code_challenge),
                ("code_challenge_method", "S256"),
            ],
        );
        format!("{}{page}", self.base())
    }

    /// `POST /api/v1/cli/token`: the loopback login's one-time code for a token.
    pub async fn exchange_cli_code(&self, body: &CliTokenRequest) -> anyhow::Result<LoginResponse> {
        self.http
            .call(Method::POST, &api(&["cli", "token"]), Some(body))
            .await
    }

    /// `POST /api/v1/cli/device`: starts a device login.
    pub async fn start_device_login(&self) -> anyhow::Result<DeviceAuthorization> {
        self.http
            .call(Method::POST, &api(&["cli", "device"]), NONE)
            .await
    }

    /// `POST /api/v1/cli/device/token`: one poll of a device login; refusals
    /// such as `authorization_pending` come back as [`ApiFailure`].
    pub async fn poll_device_login(
        &self,
        body: &DeviceTokenRequest,
    ) -> anyhow::Result<LoginResponse> {
        self.http
            .call(Method::POST, &api(&["cli", "device", "token"]), Some(body))
            .await
    }

    /// `POST /api/v1/logout`: revokes this client's token.
    pub async fn logout(&self) -> anyhow::Result<()> {
        self.http.call(Method::POST, &api(&["logout"]), NONE).await
    }

    /// `GET /api/v1/whoami`.
    pub async fn whoami(&self) -> anyhow::Result<WhoAmI> {
        self.http.call(Method::GET, &api(&["whoami"]), NONE).await
    }

    /// `GET /api/v1/requests?scope=mine`: your requests, newest first.
    pub async fn my_requests(&self) -> anyhow::Result<RequestList> {
        let mine = path(&["api", "v1", "requests"], &[("scope", "mine")]);
        self.http.call(Method::GET, &mine, NONE).await
    }

    /// `GET /api/v1/requests/ID`.
    pub async fn request(&self, id: &str) -> anyhow::Result<RequestView> {
        self.http
            .call(Method::GET, &request_path(id, None), NONE)
            .await
    }

    /// `POST /api/v1/requests`: asks for access.
    pub async fn submit(&self, body: &CreateRequestBody) -> anyhow::Result<SubmitResponse> {
        self.http
            .call(Method::POST, &api(&["requests"]), Some(body))
            .await
    }

    /// `POST /api/v1/requests/ID/cancel`.
    pub async fn cancel(&self, id: &str) -> anyhow::Result<RequestView> {
        self.http
            .call(Method::POST, &request_path(id, Some("cancel")), NONE)
            .await
    }

    /// `GET /api/v1/requests/ID/wait?timeout=SECS`: answers the moment the
    /// decision commits, or after `timeout_secs` with the request as it is.
    pub async fn wait(&self, id: &str, timeout_secs: u64) -> anyhow::Result<RequestView> {
        let timeout = timeout_secs.to_string();
        let wait = path(
            &["api", "v1", "requests", id, "wait"],
            &[("timeout", &timeout)],
        );
        self.http.call(Method::GET, &wait, NONE).await
    }

    /// `POST /api/v1/requests/ID/certificate`: a certificate for the key sent.
    pub async fn issue_certificate(
        &self,
        id: &str,
        body: &CertificateBody,
    ) -> anyhow::Result<CertificateResponse> {
        self.http
            .call(
                Method::POST,
                &request_path(id, Some("certificate")),
                Some(body),
            )
            .await
    }

    /// `GET /api/v1/policy/explain?role=…&host=…[&for=…]`.
    pub async fn explain(
        &self,
        role: &str,
        host: &str,
        duration: Option<&str>,
    ) -> anyhow::Result<ExplainView> {
        let mut query = vec![("role", role), ("host", host)];
        query.extend(duration.map(|d| ("for", d)));
        let explain = path(&["api", "v1", "policy", "explain"], &query);
        self.http.call(Method::GET, &explain, NONE).await
    }

    /// `GET /ca.pub`: the CA's user-CA public keys, one per line.
    pub async fn user_ca_keys(&self) -> anyhow::Result<Vec<ssh_key::PublicKey>> {
        let text = self.http.text(&path(&["ca.pub"], &[])).await?;
        text.lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .map(|l| {
                ssh_key::PublicKey::from_openssh(l).with_context(|| {
                    format!("the CA's /ca.pub has a line that is not a public key: {l:?}")
                })
            })
            .collect()
    }

    /// `GET /api/v1/client-config`: the bastion and host patterns the CA
    /// announces, parsed by tpa-core's grammars.
    pub async fn announced(&self) -> anyhow::Result<Announced> {
        let answer: ClientConfig = match self
            .http
            .call(Method::GET, &api(&["client-config"]), NONE)
            .await
        {
            Ok(c) => c,
            // A CA from before the endpoint existed announces nothing.
            Err(e)
                if e.downcast_ref::<ApiFailure>()
                    .is_some_and(|f| f.code == "not_found") =>
            {
                ClientConfig::default()
            }
            Err(e) => return Err(e),
        };
        let bastion = answer
            .bastion
            .as_deref()
            .map(BastionAddress::parse)
            .transpose()
            .context(
                "the CA announces a bastion address that is not host[:port]; tell its operator",
            )?;
        let patterns = answer
            .host_patterns
            .iter()
            .map(|p| HostPattern::parse(p))
            .collect::<Result<Vec<_>, _>>()
            .context("the CA announces an invalid host pattern; tell its operator")?;
        let allowed_suffixes = answer
            .allowed_suffixes
            .iter()
            .map(|s| DomainSuffix::parse(s))
            .collect::<Result<Vec<_>, _>>()
            .context("the CA announces an invalid allowed suffix; tell its operator")?;
        Ok(Announced {
            bastion,
            patterns,
            allowed_suffixes,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_keep_a_typed_id_in_its_segment() {
        let check = |actual: String, expected: &str| assert_eq!(actual, expected);
        check(api(&["whoami"]), "/api/v1/whoami");
        check(
            request_path("req_abc", Some("cancel")),
            "/api/v1/requests/req_abc/cancel",
        );
        // A typed id with a slash or a query cannot reach another endpoint.
        check(
            request_path("../logout", None),
            "/api/v1/requests/..%2Flogout",
        );
        check(
            request_path("x?scope=all", None),
            "/api/v1/requests/x%3Fscope=all",
        );
        check(path(&["ca.pub"], &[]), "/ca.pub");
        check(
            path(
                &["api", "v1", "policy", "explain"],
                &[("role", "a b"), ("host", "web-1")],
            ),
            "/api/v1/policy/explain?role=a+b&host=web-1",
        );
    }

    #[test]
    fn the_browser_login_url_carries_the_redirect_and_the_challenge() {
        let client = Client::anonymous("https://ca.example.com/").unwrap();
        assert_eq!(
            client.browser_login_url("http://127.0.0.1:4242/callback", "abc-_123"),
            "https://ca.example.com/cli/login?redirect_uri=http%3A%2F%2F127.0.0.1%3A4242%2Fcallback&code_challenge=abc-_123&code_challenge_method=S256"
        );
    }
}
