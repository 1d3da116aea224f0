//! Who is calling. Until signed admin requests carry an authenticated principal, the
//! `x-gauntlet-principal` header names it; every control that needs a principal reads it
//! through [`principal`] so that the signed form can replace it in one place.

use http::HeaderMap;

use super::error::ApiError;

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

/// The principal header, if present and valid.
///
/// # Errors
/// 400 naming the header when it is present but malformed.
pub(crate) fn principal(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    id_header(headers, PRINCIPAL_HEADER)
}

/// The principal, required: 401 without one.
///
/// # Errors
/// 401 when absent, 400 when malformed.
pub(crate) fn require_principal(headers: &HeaderMap) -> Result<String, ApiError> {
    principal(headers)?.ok_or_else(|| {
        ApiError::new(
            http::StatusCode::UNAUTHORIZED,
            format!("{PRINCIPAL_HEADER}: this route needs a principal"),
        )
    })
}

/// The acting principal of an admin call: the signed one when the request was signed
/// (`security.admin-keys`), else the header; 401 without either.
///
/// # Errors
/// 401 when absent, 400 when the header is malformed.
pub(crate) fn acting_principal(
    signed: Option<&crate::security::auth::Principal>,
    headers: &HeaderMap,
) -> Result<String, ApiError> {
    match signed {
        Some(p) => Ok(p.name.clone()),
        None => require_principal(headers),
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
