//! Server-rendered web pages: the templates (minijinja, autoescaped,
//! embedded in the binary), the shared [`render`] helper, the headers every
//! page carries, and the stylesheet. Pages live in one file each.

pub mod home;
pub mod login;

use std::sync::LazyLock;

use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use minijinja::{Environment, Value, context};

use super::auth::{AuthVia, Authenticated, user_info};
use super::error::ApiError;

/// The Content-Security-Policy of every page: no inline script or style, no
/// framing, forms post only to the CA.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; style-src 'self'; script-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// Every template, by name. `.html` templates are HTML-escaped by default.
const TEMPLATES: &[(&str, &str)] = &[
    ("base.html", include_str!("../../../templates/base.html")),
    ("login.html", include_str!("../../../templates/login.html")),
    ("home.html", include_str!("../../../templates/home.html")),
];

/// The stylesheet served at `/static/app.css`.
const APP_CSS: &str = include_str!("../../../static/app.css");

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

/// Adds the headers every HTML page carries.
pub fn add_page_headers(headers: &mut HeaderMap) {
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
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
    let mut response = (
        status,
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        html,
    )
        .into_response();
    add_page_headers(response.headers_mut());
    Ok(response)
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
    }
}

/// The context of a page without a logged-in user.
pub fn anonymous_context() -> Value {
    context! { user => Value::from(()), csrf_token => "" }
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

#[cfg(test)]
mod tests {
    use super::*;

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
        let headers = response.headers();
        assert_eq!(
            headers.get(header::CONTENT_SECURITY_POLICY).unwrap(),
            CONTENT_SECURITY_POLICY
        );
        assert_eq!(headers.get(header::X_FRAME_OPTIONS).unwrap(), "DENY");
    }
}
