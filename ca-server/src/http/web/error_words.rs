//! Error pages in plain words: what happened and what to do next, for the
//! refusals people meet in a browser (403, 404). The JSON API keeps its
//! terse messages and stable codes; the page shows the code too, small, for
//! whoever reads it to an administrator.

use axum::http::StatusCode;
use minijinja::{Value, context};

/// A link to a next step.
fn link(href: &'static str, label: &'static str) -> Value {
    context! { href => href, label => label }
}

/// The heading, message and next-step links of an error page for `status`
/// and `code`; `message` is the API's own message, used where no plainer
/// words are known.
pub fn words(status: StatusCode, code: &str, message: &str) -> (String, String, Vec<Value>) {
    let home = || {
        vec![
            link("/", "Go to your inbox"),
            link("/my", "See your requests"),
        ]
    };
    match (status, code) {
        (StatusCode::NOT_FOUND, _) => (
            "Not found".to_owned(),
            "There is nothing to show here: the page or request does not exist, the link is \
             mistyped or old, or the request is not one you asked for or may decide."
                .to_owned(),
            home(),
        ),
        (_, "not_auditor") => (
            "For auditors only".to_owned(),
            "The audit pages are open to auditors, and your account is not one. If your work \
             needs the audit trail, ask your TPA administrator to make you an auditor."
                .to_owned(),
            home(),
        ),
        (_, "not_admin" | "metrics_forbidden") => (
            "For administrators only".to_owned(),
            "This page is open to TPA administrators and auditors, and your account is neither. \
             Ask your TPA administrator if you need it."
                .to_owned(),
            home(),
        ),
        (_, "csrf" | "cross_site") => (
            "The form has expired".to_owned(),
            "The page you sent this from is too old or came from another site. Go back, reload \
             the page and try again."
                .to_owned(),
            vec![link("/", "Go to your inbox")],
        ),
        (StatusCode::FORBIDDEN, _) => ("Not allowed".to_owned(), sentence(message), home()),
        _ => (
            format!("Error {}", status.as_u16()),
            sentence(message),
            vec![link("/", "Go to your inbox")],
        ),
    }
}

/// `message` as a sentence: capital first letter, final period.
fn sentence(message: &str) -> String {
    let mut chars = message.chars();
    let mut out: String = chars
        .next()
        .map(|c| c.to_uppercase().chain(chars).collect())
        .unwrap_or_default();
    if !out.ends_with(['.', '!', '?']) {
        out.push('.');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_config_jargon_in_the_words_people_read() {
        for (status, code) in [
            (StatusCode::NOT_FOUND, "not_found"),
            (StatusCode::FORBIDDEN, "not_auditor"),
            (StatusCode::FORBIDDEN, "not_admin"),
            (StatusCode::FORBIDDEN, "csrf"),
        ] {
            let (heading, message, next) = words(status, code, "[auditors] groups");
            assert!(!heading.is_empty() && !next.is_empty(), "{code}");
            assert!(!message.contains('['), "{code}: {message}");
            assert!(!message.contains('_'), "{code}: {message}");
        }
        assert_eq!(
            words(
                StatusCode::FORBIDDEN,
                "own_request",
                "you may not approve your own request"
            )
            .1,
            "You may not approve your own request."
        );
    }
}
