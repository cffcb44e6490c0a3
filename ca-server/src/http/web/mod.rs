//! Server-rendered web pages: the templates (minijinja, autoescaped,
//! embedded in the binary), the shared [`render`] helper, the headers every
//! page carries, HTML error pages, form helpers, and the static files (the
//! stylesheet and the live-refresh script). Pages live in one file per group.

pub mod audit;
pub mod cli_consent;
pub mod device;
pub mod error_words;
pub mod history;
pub mod inbox;
pub mod login;
pub mod mine;
pub mod new_request;
pub mod oidc;
pub mod page_user;
pub mod request;
pub mod reviews;
mod routes;

use chrono::{DateTime, Utc};
use tpa_core::{AccessRequest, Policy};

use tpa_core::api::RequestView;

use std::sync::LazyLock;

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use minijinja::{Environment, Value, context};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};

use super::auth::{AuthVia, Authenticated, user_info};
use super::error::ApiError;
pub use routes::routes;

/// The Content-Security-Policy of every page: no inline script or style, no
/// framing, forms post only to the CA, and scripts (`/static/refresh.js`) may
/// fetch only from the CA.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; style-src 'self'; script-src 'self'; connect-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// Every template, by name. `.html` templates are HTML-escaped by default.
const TEMPLATES: &[(&str, &str)] = &[
    ("base.html", include_str!("../../../templates/base.html")),
    ("login.html", include_str!("../../../templates/login.html")),
    ("error.html", include_str!("../../../templates/error.html")),
    ("inbox.html", include_str!("../../../templates/inbox.html")),
    ("list.html", include_str!("../../../templates/list.html")),
    (
        "request.html",
        include_str!("../../../templates/request.html"),
    ),
    (
        "new_request.html",
        include_str!("../../../templates/new_request.html"),
    ),
    (
        "request_table.html",
        include_str!("../../../templates/request_table.html"),
    ),
    (
        "reviews.html",
        include_str!("../../../templates/reviews.html"),
    ),
    (
        "signed_in.html",
        include_str!("../../../templates/signed_in.html"),
    ),
    (
        "audit_log.html",
        include_str!("../../../templates/audit_log.html"),
    ),
    (
        "audit_timeline.html",
        include_str!("../../../templates/audit_timeline.html"),
    ),
    (
        "audit_certificates.html",
        include_str!("../../../templates/audit_certificates.html"),
    ),
    (
        "audit_cert_table.html",
        include_str!("../../../templates/audit_cert_table.html"),
    ),
    (
        "audit_session_table.html",
        include_str!("../../../templates/audit_session_table.html"),
    ),
    (
        "audit_sessions.html",
        include_str!("../../../templates/audit_sessions.html"),
    ),
    (
        "cli_login.html",
        include_str!("../../../templates/cli_login.html"),
    ),
    (
        "cli_consent.html",
        include_str!("../../../templates/cli_consent.html"),
    ),
    (
        "device.html",
        include_str!("../../../templates/device.html"),
    ),
    (
        "login_decision.html",
        include_str!("../../../templates/login_decision.html"),
    ),
];

/// The stylesheet served at `/static/app.css`.
const APP_CSS: &str = include_str!("../../../static/app.css");

/// The live-refresh script served at `/static/refresh.js`.
const REFRESH_JS: &str = include_str!("../../../static/refresh.js");

static ENVIRONMENT: LazyLock<Result<Environment<'static>, minijinja::Error>> =
    LazyLock::new(|| {
        let mut env = Environment::new();
        // Undefined variables are errors, so a typo fails the template tests
        // instead of rendering as an empty string.
        env.set_undefined_behavior(minijinja::UndefinedBehavior::Strict);
        for (name, source) in TEMPLATES {
            env.add_template(name, source)?;
        }
        Ok(env)
    });

/// The headers every HTML page carries (a response whose `Content-Type` is
/// `text/html`), set by the router's `SetResponseHeaderLayer`s.
pub const PAGE_HEADERS: [(header::HeaderName, &str); 3] = [
    (header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY),
    (header::X_FRAME_OPTIONS, "DENY"),
    (header::REFERRER_POLICY, "no-referrer"),
];

/// `value` for an HTML page, nothing for other responses.
pub fn if_page(value: &'static str) -> impl Fn(&Response) -> Option<HeaderValue> + Clone {
    move |response| {
        response
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("text/html"))
            .then(|| HeaderValue::from_static(value))
    }
}

/// Renders template `name` with `ctx` as a 200 HTML page.
pub fn render(name: &str, ctx: Value) -> Result<Response, ApiError> {
    render_status(StatusCode::OK, name, ctx)
}

/// Renders template `name` with `ctx` as an HTML page with `status`.
pub fn render_status(status: StatusCode, name: &str, ctx: Value) -> Result<Response, ApiError> {
    let env = ENVIRONMENT
        .as_ref()
        .map_err(|e| ApiError::Internal(anyhow::anyhow!("templates do not load: {e:#}")))?;
    let html = env
        .get_template(name)
        .and_then(|t| t.render(ctx))
        .map_err(|e| ApiError::Internal(anyhow::anyhow!("cannot render {name}: {e:#}")))?;
    Ok((
        status,
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        html,
    )
        .into_response())
}

/// What the base layout needs for a logged-in page: `user` and `csrf_token`.
/// Pages add their own keys: `context! { items => …, ..page_context(&auth) }`.
pub fn page_context(auth: &Authenticated) -> Value {
    let csrf_token = match &auth.via {
        AuthVia::Session { csrf_token } => csrf_token.clone(),
        AuthVia::ApiToken => String::new(),
    };
    context! {
        user => Value::from_serialize(user_info(&auth.user)),
        csrf_token => csrf_token,
        auditor => auth.auditor,
    }
}

/// The context of a page without a logged-in user.
pub fn anonymous_context() -> Value {
    context! { user => Value::from(()), csrf_token => "", auditor => false }
}

/// 303 to the login page (a GET), for pages that need a session.
pub fn to_login() -> Response {
    Redirect::to("/login").into_response()
}

/// `GET /static/app.css`.
pub async fn app_css() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        APP_CSS,
    )
}

/// `GET /static/refresh.js`.
pub async fn refresh_js() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        REFRESH_JS,
    )
}

/// An error answered to a browser: the same status and message as the JSON
/// API's [`ApiError`], as an HTML page (internal errors stay generic).
#[derive(Debug)]
pub struct PageError(pub ApiError);

impl From<ApiError> for PageError {
    fn from(e: ApiError) -> Self {
        Self(e)
    }
}

impl From<crate::workflow::requests::WorkflowError> for PageError {
    fn from(e: crate::workflow::requests::WorkflowError) -> Self {
        Self(e.into())
    }
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        let reply = self.0.reply();
        let (heading, message, next) = error_words::words(reply.status, reply.code, &reply.message);
        let ctx = context! {
            status => reply.status.as_u16(),
            code => reply.code,
            heading => heading,
            message => message,
            next => next,
            ..anonymous_context()
        };
        let mut response = match render_status(reply.status, "error.html", ctx) {
            Ok(r) => r,
            Err(e) => {
                let fallback = e.reply();
                (fallback.status, "internal error; the CA logged the details").into_response()
            }
        };
        if let Some(secs) = reply.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        response
    }
}

/// The fields of a submitted form, in order; a name may repeat (checkboxes).
#[derive(Debug, Default)]
pub struct FormFields(Vec<(String, String)>);

impl FormFields {
    /// The first value of `name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The first value of `name` as typed in a textarea: HTML forms send
    /// every line break as CRLF, which becomes the line feed of free text
    /// (a lone CR stays, and the free-text rule refuses it).
    pub fn text(&self, name: &str) -> String {
        self.get(name).unwrap_or_default().replace("\r\n", "\n")
    }

    /// The first value of `name`, trimmed, or `None` when absent or blank.
    pub fn non_empty(&self, name: &str) -> Option<String> {
        self.get(name)
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .map(str::to_owned)
    }

    /// The `decision` of a confirmation form: `approve` (true) or `deny`.
    pub fn decision(&self) -> Result<bool, ApiError> {
        match self.get("decision") {
            Some("approve") => Ok(true),
            Some("deny") => Ok(false),
            _ => Err(ApiError::InvalidBody(
                "decision must be approve or deny".to_owned(),
            )),
        }
    }

    /// Every value of `name`.
    pub fn all(&self, name: &str) -> Vec<String> {
        self.0
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
            .collect()
    }
}

/// The bytes percent-encoded in a query value: all but the URL's
/// unreserved characters (RFC 3986).
pub const QUERY_VALUE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// Percent-encodes `value` for a query string: every byte in `set`.
pub fn percent_encode(value: &str, set: &'static AsciiSet) -> String {
    utf8_percent_encode(value, set).to_string()
}

/// The HTML error page of a login (SSO or CLI consent) with a stable code.
pub(crate) fn login_error(
    status: StatusCode,
    code: &str,
    message: &str,
) -> Result<Response, ApiError> {
    render_status(
        status,
        "error.html",
        context! {
            status => status.as_u16(),
            code => code,
            heading => "The login did not complete",
            message => message,
            next => vec![context! { href => "/login", label => "Log in again" }],
            ..anonymous_context()
        },
    )
}

/// A time as pages show it: UTC, to the second.
pub fn utc(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%S UTC").to_string()
}

/// How long ago `t` was, roughly: `just now`, `5 min ago`, `3 h ago`, `2 d ago`.
pub fn ago(now: DateTime<Utc>, t: DateTime<Utc>) -> String {
    let secs = (now - t).num_seconds().max(0);
    match secs {
        0..60 => "just now".to_owned(),
        60..3600 => format!("{} min ago", secs / 60),
        3600..86_400 => format!("{} h ago", secs / 3600),
        _ => format!("{} d ago", secs / 86_400),
    }
}

/// What the request templates show of `r` at `now`: the API view (`r`) plus
/// times in UTC, its age, the approvals and what is still needed.
pub fn request_value(r: &AccessRequest, policy: &Policy, now: DateTime<Utc>) -> Value {
    let v = RequestView::of(r, policy, now);
    let stages = policy.role(&r.role).map_or(0, |role| role.stages.len());
    let needed = v.still_needed.as_ref().map(|n| {
        format!(
            "stage {} of {stages}: {} more needed from {}",
            n.stage, n.approvals, n.group
        )
    });
    let approvals: Vec<Value> = r
        .approvals
        .iter()
        .map(|a| {
            context! {
                who => a.approver_username.as_str(),
                stage => a.stage + 1,
                group => a.group.as_str(),
                comment => a.comment.as_deref(),
                at => utc(a.at),
            }
        })
        .collect();
    context! {
        id => v.id.clone(),
        created => utc(r.created_at),
        age => ago(now, r.created_at),
        pending_until => utc(r.pending_until),
        window_start => r.window.map(|w| utc(w.start)),
        window_end => r.window.map(|w| utc(w.end)),
        needed => needed,
        approvals => approvals,
        v => Value::from_serialize(&v),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_read_well() {
        let t = DateTime::parse_from_rfc3339("2026-11-23T10:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let check = |secs: i64, expected: &str| {
            assert_eq!(ago(t + chrono::TimeDelta::seconds(secs), t), expected);
        };
        check(-5, "just now");
        check(59, "just now");
        check(60, "1 min ago");
        check(3599, "59 min ago");
        check(7200, "2 h ago");
        check(3 * 86_400, "3 d ago");
        assert_eq!(utc(t), "2026-11-23 10:00:00 UTC");
    }

    #[test]
    fn every_template_loads() {
        let env = ENVIRONMENT.as_ref().unwrap();
        for (name, _) in TEMPLATES {
            env.get_template(name).unwrap();
        }
    }

    #[test]
    fn output_is_escaped() {
        let ctx = context! {
            error => "<script>alert(1)</script>",
            username => "\"><b>x",
            connectors => Vec::<Value>::new(),
            next => "/",
            local => true,
            ..anonymous_context()
        };
        let env = ENVIRONMENT.as_ref().unwrap();
        let html = env
            .get_template("login.html")
            .unwrap()
            .render(&ctx)
            .unwrap();
        assert!(
            html.contains("&lt;script&gt;alert(1)&lt;&#x2f;script&gt;"),
            "{html}"
        );
        assert!(html.contains("value=\"&quot;&gt;&lt;b&gt;x\""), "{html}");
        assert!(!html.contains("<script"), "{html}");
        let response = render("login.html", ctx).unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        // The router's layers add the page headers to this response (the API
        // test `auth::pages_carry_security_headers_and_escape_output` reads
        // them over HTTP), and to no JSON answer.
        assert_eq!(
            if_page(CONTENT_SECURITY_POLICY)(&response).unwrap(),
            CONTENT_SECURITY_POLICY
        );
        assert_eq!(if_page("DENY")(&response).unwrap(), "DENY");
        let json = ApiError::NotFound.into_response();
        assert!(if_page(CONTENT_SECURITY_POLICY)(&json).is_none());
    }
}
