//! The web pages as a signed-in browser sees them: a session cookie and its
//! CSRF token, pages fetched with the cookie, forms posted same-origin.

use crate::app::TestApp;
use crate::http::Response;

/// A browser signed in with the password form: its session cookie and CSRF token.
#[derive(Debug, Clone)]
pub struct WebSession {
    /// `tpa_session=…`, as the `Cookie` header sends it.
    pub cookie: String,
    /// The CSRF token of the session's pages.
    pub csrf: String,
}

/// Percent-encodes a form or query value.
pub fn form_encode(value: &str) -> String {
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

impl TestApp {
    /// `POST /login` with the password form, plus `extra` headers.
    pub async fn web_login(
        &self,
        username: &str,
        password: &str,
        extra: &[(&str, &str)],
    ) -> Response {
        let body = format!(
            "username={username}&password={}",
            password.replace(' ', "+")
        );
        let mut headers = vec![("Content-Type", "application/x-www-form-urlencoded")];
        headers.extend_from_slice(extra);
        self.send("POST", "/login", &headers, &body).await
    }

    /// Signs `username` in with the password form and reads the CSRF token
    /// off the home page.
    pub async fn browser(&self, username: &str, password: &str) -> WebSession {
        let body = format!("username={username}&password={}", form_encode(password));
        // What Chromium sends for the CA's own form under `Referrer-Policy:
        // no-referrer`: `Origin: null` (regression found by the e2e browser test).
        let r = self
            .send(
                "POST",
                "/login",
                &[
                    ("Content-Type", "application/x-www-form-urlencoded"),
                    ("Origin", "null"),
                    ("Sec-Fetch-Site", "same-origin"),
                ],
                &body,
            )
            .await;
        assert_eq!(r.status, 303, "{}", r.body);
        let cookie = r
            .header("set-cookie")
            .unwrap()
            .split(';')
            .next()
            .unwrap()
            .to_owned();
        let mut browser = WebSession {
            cookie,
            csrf: String::new(),
        };
        let page = self.page(&browser, "/").await;
        browser.csrf = page
            .body
            .split("name=\"csrf_token\" value=\"")
            .nth(1)
            .and_then(|rest| rest.split('"').next())
            .unwrap()
            .to_owned();
        browser
    }

    /// `GET path` with the session's cookie.
    pub async fn page(&self, browser: &WebSession, path: &str) -> Response {
        self.send("GET", path, &[("Cookie", &browser.cookie)], "")
            .await
    }

    /// Posts a form as `browser`, its CSRF token first.
    pub async fn post_form(
        &self,
        browser: &WebSession,
        path: &str,
        fields: &[(&str, &str)],
    ) -> Response {
        let mut all = vec![("csrf_token", browser.csrf.as_str())];
        all.extend_from_slice(fields);
        self.post_raw(browser, path, &all).await
    }

    /// Posts a form as `browser` with exactly `fields` (no CSRF token added).
    pub async fn post_raw(
        &self,
        browser: &WebSession,
        path: &str,
        fields: &[(&str, &str)],
    ) -> Response {
        let body: Vec<String> = fields
            .iter()
            .map(|(n, v)| format!("{}={}", form_encode(n), form_encode(v)))
            .collect();
        let origin = format!("http://{}", self.address);
        self.send(
            "POST",
            path,
            &[
                ("Content-Type", "application/x-www-form-urlencoded"),
                ("Cookie", &browser.cookie),
                ("Origin", &origin),
                ("Sec-Fetch-Site", "same-origin"),
            ],
            &body.join("&"),
        )
        .await
    }
}
