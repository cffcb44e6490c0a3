//! A cookie-jar browser for tests: follows the provider's redirects by hand,
//! logs in at the provider, and reads what the CA's pages answer.

use std::net::SocketAddr;

use crate::app::TestApp;
use crate::http::{Response, http_send};
use crate::web::form_encode;

/// A browser: a cookie jar per port, redirects followed by hand.
#[derive(Debug, Default)]
pub struct Browser {
    jars: std::collections::HashMap<u16, Vec<(String, String)>>,
}

pub fn split_url(url: &str) -> (SocketAddr, String) {
    let rest = url.strip_prefix("http://").expect("http URL");
    let (host, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let path = if path.is_empty() { "/" } else { path };
    (host.parse().unwrap(), path.to_owned())
}

impl Browser {
    pub async fn get(&mut self, url: &str) -> Response {
        let (address, path) = split_url(url);
        let jar = self.jars.entry(address.port()).or_default();
        let cookie: String = jar
            .iter()
            .map(|(n, v)| format!("{n}={v}"))
            .collect::<Vec<_>>()
            .join("; ");
        let mut headers = vec![];
        if !cookie.is_empty() {
            headers.push(("Cookie", cookie.as_str()));
        }
        let response = http_send(address, "GET", &path, &headers, "").await;
        remember(jar, &response);
        response
    }

    /// A form post (`application/x-www-form-urlencoded`) with this browser's cookies.
    pub async fn post_form(&mut self, url: &str, fields: &[(&str, &str)]) -> Response {
        let (address, path) = split_url(url);
        let jar = self.jars.entry(address.port()).or_default();
        let cookie: String = jar
            .iter()
            .map(|(n, v)| format!("{n}={v}"))
            .collect::<Vec<_>>()
            .join("; ");
        let body: String = fields
            .iter()
            .map(|(n, v)| format!("{n}={}", form_encode(v)))
            .collect::<Vec<_>>()
            .join("&");
        let mut headers = vec![("Content-Type", "application/x-www-form-urlencoded")];
        if !cookie.is_empty() {
            headers.push(("Cookie", cookie.as_str()));
        }
        let response = http_send(address, "POST", &path, &headers, &body).await;
        remember(self.jars.entry(address.port()).or_default(), &response);
        response
    }

    pub fn cookie(&self, port: u16, name: &str) -> Option<String> {
        self.jars
            .get(&port)?
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
    }

    /// Starts a login at the CA and follows the provider (as `login_hint`)
    /// until it sends the browser back to the CA; returns that callback URL.
    pub async fn login_at_provider(
        &mut self,
        ca: &TestApp,
        start: &str,
        login_hint: &str,
    ) -> String {
        let r = self.get(&format!("http://{}{start}", ca.address)).await;
        assert_eq!(r.status, 303, "{}", r.body);
        let mut url = format!("{}&login_hint={login_hint}", r.header("location").unwrap());
        for _ in 0..10 {
            let (address, _) = split_url(&url);
            if address == ca.address {
                return url;
            }
            let r = self.get(&url).await;
            assert!(
                matches!(r.status, 302 | 303),
                "{} {}: {}",
                r.status,
                url,
                r.body
            );
            let location = r.header("location").unwrap();
            url = if location.starts_with('/') {
                format!("http://{address}{location}")
            } else {
                location.to_owned()
            };
        }
        panic!("the provider did not send the browser back to the CA");
    }

    /// Logs in through connector `idp` as `login_hint`; returns the callback's answer.
    pub async fn web_login(
        &mut self,
        ca: &TestApp,
        connector: &str,
        login_hint: &str,
        next: &str,
    ) -> Response {
        let callback = self
            .login_at_provider(
                ca,
                &format!("/login/oidc/{connector}?next={next}"),
                login_hint,
            )
            .await;
        self.get(&callback).await
    }

    pub async fn whoami(&mut self, ca: &TestApp) -> Response {
        self.get(&format!("http://{}/api/v1/whoami", ca.address))
            .await
    }
}

/// Keeps the cookies a response sets (and forgets the ones it clears).
pub fn remember(jar: &mut Vec<(String, String)>, response: &Response) {
    for (name, value) in &response.headers {
        if name != "set-cookie" {
            continue;
        }
        let pair = value.split(';').next().unwrap();
        let (n, v) = pair.split_once('=').unwrap();
        jar.retain(|(existing, _)| existing != n);
        if !v.is_empty() && !value.contains("Max-Age=0") {
            jar.push((n.to_owned(), v.to_owned()));
        }
    }
}

/// The URL the signed-in page continues to.
pub fn continue_to(page: &Response) -> String {
    let start = page.body.find("url=").expect("meta refresh") + 4;
    let end = start + page.body[start..].find('"').unwrap();
    page.body[start..end].replace("&#x2f;", "/")
}

pub fn query_param(url: &str, name: &str) -> String {
    let query = url.split_once('?').unwrap().1;
    query
        .split('&')
        .filter_map(|p| p.split_once('='))
        .find(|(n, _)| *n == name)
        .map(|(_, v)| v.to_owned())
        .unwrap_or_else(|| panic!("no {name} in {url}"))
}

/// The CSRF token of the logged-in page.
pub async fn csrf(browser: &mut Browser, app: &TestApp) -> String {
    let page = browser.get(&format!("http://{}/my", app.address)).await;
    let marker = "name=\"csrf_token\" value=\"";
    let start = page.body.find(marker).unwrap() + marker.len();
    let end = start + page.body[start..].find('"').unwrap();
    page.body[start..end].to_owned()
}

pub async fn post_json(
    browser: &Browser,
    app: &TestApp,
    path: &str,
    csrf: &str,
    body: &str,
) -> Response {
    let cookie = format!(
        "tpa_session={}",
        browser.cookie(app.address.port(), "tpa_session").unwrap()
    );
    http_send(
        app.address,
        "POST",
        path,
        &[
            ("Content-Type", "application/json"),
            ("Cookie", &cookie),
            ("X-CSRF-Token", csrf),
        ],
        body,
    )
    .await
}
