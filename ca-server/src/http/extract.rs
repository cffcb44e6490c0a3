//! Extractors whose rejections are [`ApiError`]s, so that every app-level
//! error is JSON `{code, message}` with a stable code: `AppJson` (strict
//! JSON object bodies), `AppJsonOrEmpty` (the same, or no body at all),
//! `AppPath` and `AppQuery`. Modelled on axum's `examples/error-handling`.

use axum::body::Bytes;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Path, Query, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, header};
use serde::de::DeserializeOwned;

use super::error::ApiError;

/// A JSON object body: `Content-Type: application/json` (or `+json`), an
/// object at the top level (never `[]`, which serde would take for a struct),
/// fields as `T` declares them.
#[derive(Debug, Clone, Copy, Default)]
pub struct AppJson<T>(pub T);

/// Like [`AppJson`], but an empty (or all-whitespace) body, with any or no
/// `Content-Type`, is `T::default()`.
#[derive(Debug, Clone, Copy, Default)]
pub struct AppJsonOrEmpty<T>(pub T);

/// Path parameters; a malformed one (`%FF`) is `400 invalid_path`.
#[derive(Debug, Clone)]
pub struct AppPath<T>(pub T);

/// Query parameters; malformed ones are `400 invalid_query`.
#[derive(Debug, Clone)]
pub struct AppQuery<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for AppJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        if !is_json(req.headers()) {
            return Err(ApiError::UnsupportedMediaType);
        }
        let bytes = body(req, state).await?;
        parse_object(&bytes).map(AppJson)
    }
}

impl<T: DeserializeOwned + Default, S: Send + Sync> FromRequest<S> for AppJsonOrEmpty<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let json = is_json(req.headers());
        let bytes = body(req, state).await?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(AppJsonOrEmpty(T::default()));
        }
        if !json {
            return Err(ApiError::UnsupportedMediaType);
        }
        parse_object(&bytes).map(AppJsonOrEmpty)
    }
}

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for AppPath<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        match Path::<T>::from_request_parts(parts, state).await {
            Ok(Path(value)) => Ok(AppPath(value)),
            Err(PathRejection::FailedToDeserializePathParams(e)) => {
                Err(ApiError::InvalidPath(e.body_text()))
            }
            Err(other) => Err(ApiError::Internal(anyhow::anyhow!(
                "path parameters missing: {}",
                other.body_text()
            ))),
        }
    }
}

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for AppQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        Query::<T>::from_request_parts(parts, state)
            .await
            .map(|Query(value)| AppQuery(value))
            .map_err(|e: QueryRejection| ApiError::InvalidQuery(e.body_text()))
    }
}

/// `application/json` or `application/<something>+json`, with any parameters.
fn is_json(headers: &HeaderMap) -> bool {
    let Some(value) = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let essence = value.split(';').next().unwrap_or_default().trim();
    let Some((kind, subtype)) = essence.split_once('/') else {
        return false;
    };
    kind.eq_ignore_ascii_case("application")
        && (subtype.eq_ignore_ascii_case("json") || subtype.to_ascii_lowercase().ends_with("+json"))
}

/// The whole body, within the route's size limit and the server's body deadline.
async fn body<S: Send + Sync>(req: Request, state: &S) -> Result<Bytes, ApiError> {
    Bytes::from_request(req, state)
        .await
        .map_err(ApiError::from)
}

fn parse_object<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let first = bytes.iter().find(|b| !b.is_ascii_whitespace());
    if first != Some(&b'{') {
        return Err(ApiError::InvalidBody(
            "the body must be a JSON object ({…})".to_owned(),
        ));
    }
    axum::Json::<T>::from_bytes(bytes)
        .map(|axum::Json(value)| value)
        .map_err(ApiError::from)
}

/// A request id from a path; an id that cannot exist is the same as one that does not.
pub(crate) fn parse_id(id: &str) -> Result<tpa_core::RequestId, ApiError> {
    // An id that cannot exist is the same as one that does not.
    tpa_core::RequestId::parse(id).map_err(|_| ApiError::NotFound)
}

/// The query of the audit views, with the audit pages' rejection mapping
/// (`400 invalid_body` with the parser's words), shared by their JSON and
/// web faces.
pub(crate) fn query<T>(
    q: Result<axum::extract::Query<T>, axum::extract::rejection::QueryRejection>,
) -> Result<T, ApiError> {
    q.map(|axum::extract::Query(q)| q)
        .map_err(|e| ApiError::InvalidBody(e.body_text()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_content_types() {
        let check = |ct: &str| {
            let mut h = HeaderMap::new();
            h.insert(header::CONTENT_TYPE, ct.parse().unwrap());
            is_json(&h)
        };
        assert!(check("application/json"));
        assert!(check("Application/JSON; charset=utf-8"));
        assert!(check("application/problem+json"));
        assert!(!check("text/plain"));
        assert!(!check("application/x-www-form-urlencoded"));
        assert!(!check("application/jsonx"));
        assert!(!is_json(&HeaderMap::new()));
    }

    #[test]
    fn only_objects_are_bodies() {
        #[derive(serde::Deserialize, Default, Debug)]
        #[serde(deny_unknown_fields)]
        struct Body {
            #[allow(dead_code, reason = "read by serde only")]
            comment: Option<String>,
        }
        assert!(parse_object::<Body>(b"{}").is_ok());
        assert!(parse_object::<Body>(b" {\"comment\":\"x\"}").is_ok());
        for bad in [
            &b"[]"[..],
            b"null",
            b"\"x\"",
            b"1",
            b"[\"x\"]",
            b"{\"other\":1}",
        ] {
            assert!(
                matches!(parse_object::<Body>(bad), Err(ApiError::InvalidBody(_))),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }
}
