//! The consent step of `tpa-ssh login` as a browser goes through it: the
//! consent page, its hidden fields, and the decision posted back.

use crate::app::TestApp;
use crate::http::Response;
use crate::sso::{Browser, continue_to};

/// A consent page as a browser holds it.
#[derive(Debug)]
pub struct ConsentPage {
    /// `/cli/consent/{id}`.
    pub path: String,
    /// The consent id of its forms.
    pub id: String,
    /// The session's CSRF token in its forms.
    pub csrf: String,
    /// The page.
    pub body: String,
}

pub fn hidden(body: &str, name: &str) -> String {
    let marker = format!("name=\"{name}\" value=\"");
    let start = body
        .find(&marker)
        .unwrap_or_else(|| panic!("no {name} in {body}"))
        + marker.len();
    let end = start + body[start..].find('"').unwrap();
    body[start..end].to_owned()
}

/// From the page the SSO callback answered, to the consent page.
pub async fn open_consent(
    browser: &mut Browser,
    app: &TestApp,
    signed_in: &Response,
) -> ConsentPage {
    assert_eq!(signed_in.status, 200, "{}", signed_in.body);
    let path = continue_to(signed_in);
    assert!(path.starts_with("/cli/consent/"), "{path}");
    consent_at(browser, app, &path).await
}

pub async fn consent_at(browser: &mut Browser, app: &TestApp, path: &str) -> ConsentPage {
    let page = browser.get(&format!("http://{}{path}", app.address)).await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert_eq!(page.header("cache-control"), Some("no-store"));
    ConsentPage {
        path: path.to_owned(),
        id: hidden(&page.body, "consent"),
        csrf: hidden(&page.body, "csrf_token"),
        body: page.body,
    }
}

pub async fn post_decision(
    browser: &mut Browser,
    app: &TestApp,
    id: &str,
    csrf: Option<&str>,
    decision: &str,
) -> Response {
    let mut fields = vec![("consent", id), ("decision", decision)];
    if let Some(csrf) = csrf {
        fields.push(("csrf_token", csrf));
    }
    browser
        .post_form(&format!("http://{}/cli/consent", app.address), &fields)
        .await
}

/// Posts `decision` on the consent page; returns the loopback URL the answer
/// continues to.
pub async fn decide(
    browser: &mut Browser,
    app: &TestApp,
    page: &ConsentPage,
    decision: &str,
) -> String {
    let r = post_decision(browser, app, &page.id, Some(&page.csrf), decision).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.header("cache-control"), Some("no-store"));
    let to = continue_to(&r);
    assert!(to.starts_with("http://127.0.0.1:"), "{to}");
    to
}
