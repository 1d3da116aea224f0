//! Who is calling. With `security.admin-keys` configured, the caller is the principal of the
//! key that signed the request (put in the request's extensions by the admin layer), and the
//! `x-gauntlet-principal` header is ignored: anyone can write a header. Without admin keys the
//! engine is open and that header names the caller. Every control that needs a principal
//! reads it through [`caller`] (or the [`Caller`] extractor).

use axum::extract::FromRequestParts;
use http::HeaderMap;
use http::request::Parts;

use super::error::ApiError;
use crate::security::Principal;
use crate::state::AppState;

/// Header naming the calling principal.
pub const PRINCIPAL_HEADER: &str = "x-gauntlet-principal";
/// Header naming the end client of a data request; recorded only as a keyed pseudonym.
pub const CLIENT_HEADER: &str = "x-gauntlet-client";
/// Principal recorded for data requests that name none.
pub(crate) const ANONYMOUS: &str = "anonymous";

/// Whether `s` is a valid principal or client id: 1 to 64 of `[A-Za-z0-9_.@:-]`.
pub(crate) fn is_valid_id(s: &str) -> bool {
    (1..=64).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'@' | b':' | b'-'))
}

/// The caller: the verified principal when admin keys are configured (`None` on a route the
/// admin layer does not guard), else the principal header, if present and valid.
///
/// # Errors
/// 400 naming the header when it is honoured, present and malformed.
pub(crate) fn caller(
    state: &AppState,
    headers: &HeaderMap,
    verified: Option<&Principal>,
) -> Result<Option<String>, ApiError> {
    if state.security().admin.is_some() {
        return Ok(verified.map(|p| p.name.clone()));
    }
    id_header(headers, PRINCIPAL_HEADER)
}

/// The caller, required: 401 without one.
///
/// # Errors
/// 401 when absent, 400 when malformed.
pub(crate) fn require(caller: Option<String>) -> Result<String, ApiError> {
    caller.ok_or_else(|| {
        ApiError::new(
            http::StatusCode::UNAUTHORIZED,
            format!("{PRINCIPAL_HEADER}: this route needs a principal"),
        )
    })
}

/// Extracts the [`caller`] of a request.
pub(crate) struct Caller(pub(crate) Option<String>);

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Caller, ApiError> {
        caller(state, &parts.headers, parts.extensions.get::<Principal>()).map(Caller)
    }
}

/// A client-id header, if present and valid.
///
/// # Errors
/// 400 naming the header when it is malformed.
pub(crate) fn id_header(headers: &HeaderMap, name: &str) -> Result<Option<String>, ApiError> {
    let Some(value) = headers.get(name) else {
        return Ok(None);
    };
    match value.to_str() {
        Ok(s) if is_valid_id(s) => Ok(Some(s.to_owned())),
        _ => Err(ApiError::bad_request(format!(
            "{name}: must be 1 to 64 of [A-Za-z0-9_.@:-]"
        ))),
    }
}
