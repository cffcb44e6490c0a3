//! `Csrf<T>`: a change made with an ambient credential (the session cookie)
//! must carry the session's CSRF token; the extractor checks it and gives the
//! body `T`, so no handler checks it by hand.

use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::HeaderMap;
use subtle::ConstantTimeEq as _;

use super::auth::{AuthVia, Authenticated, CSRF_HEADER};
use super::error::ApiError;
use crate::app::AppState;

/// The body `T` of a change whose CSRF token (header `X-CSRF-Token`) was
/// checked against the caller's session. API-token callers need none. Put
/// it last among the handler's extractors, after [`Authenticated`]: the
/// body is read first and the token checked after, as before this
/// extractor existed (a bad body is `400` whatever the token).
#[derive(Debug, Clone, Copy)]
pub struct Csrf<T>(pub T);

impl<T, M> FromRequest<AppState, M> for Csrf<T>
where
    T: FromRequest<AppState, M>,
    ApiError: From<T::Rejection>,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, ApiError> {
        let (mut parts, body) = req.into_parts();
        // `Authenticated` leaves itself in the extensions; authenticating
        // again costs a database read.
        let auth = match parts.extensions.get::<Authenticated>() {
            Some(auth) => auth.clone(),
            None => Authenticated::from_request_parts(&mut parts, state).await?,
        };
        let submitted = header_token(&parts.headers);
        let value = T::from_request(Request::from_parts(parts, body), state).await?;
        require_csrf(&auth, submitted.as_deref())?;
        Ok(Csrf(value))
    }
}

fn header_token(headers: &HeaderMap) -> Option<String> {
    headers
        .get(CSRF_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

/// For session callers, `submitted` must equal the session's CSRF token
/// (compared in constant time). API-token callers need none: a browser never
/// attaches a bearer token by itself. The one CSRF rule of the API and the
/// web forms.
pub fn require_csrf(auth: &Authenticated, submitted: Option<&str>) -> Result<(), ApiError> {
    match &auth.via {
        AuthVia::ApiToken => Ok(()),
        AuthVia::Session { csrf_token } => {
            let submitted = submitted.unwrap_or_default();
            let equal: bool = submitted.as_bytes().ct_eq(csrf_token.as_bytes()).into();
            if equal && !csrf_token.is_empty() {
                Ok(())
            } else {
                Err(ApiError::CsrfMismatch)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use chrono::Utc;
    use std::collections::BTreeSet;
    use tpa_core::{Identity, User, Username};

    use super::*;

    fn auth(via: AuthVia) -> Authenticated {
        let username = Username::parse("alice").unwrap();
        Authenticated {
            user: User {
                identity: Identity::local(&username),
                username,
                display_name: "Alice".to_owned(),
                groups: BTreeSet::new(),
            },
            token_id: "id".to_owned(),
            via,
            expires_at: Utc::now(),
            device_login: false,
            auditor: false,
        }
    }

    #[test]
    fn csrf_is_required_for_sessions_only() {
        let session = auth(AuthVia::Session {
            csrf_token: "s3cret-csrf".to_owned(),
        });
        assert!(require_csrf(&session, Some("s3cret-csrf")).is_ok());
        for bad in [None, Some(""), Some("s3cret-csrF"), Some("s3cret-csrf ")] {
            assert!(
                matches!(require_csrf(&session, bad), Err(ApiError::CsrfMismatch)),
                "{bad:?}"
            );
        }
        let empty = auth(AuthVia::Session {
            csrf_token: String::new(),
        });
        assert!(require_csrf(&empty, Some("")).is_err());
        assert!(require_csrf(&auth(AuthVia::ApiToken), None).is_ok());
    }
}
