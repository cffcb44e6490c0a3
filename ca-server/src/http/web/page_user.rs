//! Extractors of the web pages: `PageUser` (a logged-in person, else a 303
//! to `/login`) and `PageForm` (a same-origin form post by a logged-in
//! person, with the session's CSRF token), so no page handler repeats the
//! redirect or the checks.

use axum::Form;
use axum::extract::{FromRequest, FromRequestParts, OptionalFromRequestParts, Request};
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};

use super::{FormFields, PageError, to_login};
use crate::app::AppState;
use crate::http::auth::{Authenticated, CSRF_FIELD, check_same_origin};
use crate::http::csrf::require_csrf;
use crate::http::error::ApiError;

/// The logged-in person of a page; without a session the page answers a
/// 303 to `/login` (an error page only when the CA cannot check).
#[derive(Debug, Clone)]
pub struct PageUser(pub Authenticated);

impl FromRequestParts<AppState> for PageUser {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Response> {
        match <Authenticated as OptionalFromRequestParts<AppState>>::from_request_parts(
            parts, state,
        )
        .await
        {
            Ok(Some(auth)) => Ok(PageUser(auth)),
            Ok(None) => Err(to_login()),
            Err(e) => Err(PageError::from(e).into_response()),
        }
    }
}

/// What a page form post needs before it may change anything, checked in
/// this order: a same-origin browser, a logged-in user (else a 303 to
/// `/login`), a form body, and the session's CSRF token in it. Put it last
/// among the handler's extractors (it reads the body).
#[derive(Debug)]
pub struct PageForm {
    /// The person posting.
    pub auth: Authenticated,
    /// The form's fields.
    pub fields: FormFields,
}

impl FromRequest<AppState> for PageForm {
    type Rejection = Response;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Response> {
        let page = |e: ApiError| PageError::from(e).into_response();
        let (mut parts, body) = req.into_parts();
        check_same_origin(&parts.headers, &state.config).map_err(page)?;
        let PageUser(auth) = PageUser::from_request_parts(&mut parts, state).await?;
        let Form(fields) =
            Form::<Vec<(String, String)>>::from_request(Request::from_parts(parts, body), state)
                .await
                .map_err(|e| page(ApiError::from(e)))?;
        let fields = FormFields(fields);
        require_csrf(&auth, fields.get(CSRF_FIELD)).map_err(page)?;
        Ok(PageForm { auth, fields })
    }
}
