//! The API error: a status and a message, rendered as `{"error": "..."}`.

use axum::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode, header};

use crate::oip::ErrorBody;
use crate::registry::RegistryError;
use crate::sanitise::SanitiseError;

/// An error answered to the client. Internal details are logged, never put in `message`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ApiError {
    pub(crate) status: StatusCode,
    pub(crate) message: String,
}

impl ApiError {
    pub(crate) fn new(status: StatusCode, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            message: message.into(),
        }
    }

    pub(crate) fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, message)
    }

    pub(crate) fn not_found(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, message)
    }

    pub(crate) fn too_large(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, message)
    }

    /// Logs the full error chain and answers a bare 500.
    pub(crate) fn internal(context: &str, err: &(dyn std::error::Error + 'static)) -> ApiError {
        tracing::error!(error = %chain(err), "{context}");
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal server error")
    }

    pub(crate) fn unknown_model(name: &str) -> ApiError {
        ApiError::not_found(format!("unknown model {name:?}"))
    }
}

impl From<RegistryError> for ApiError {
    fn from(err: RegistryError) -> ApiError {
        let message = match &err {
            RegistryError::InvalidArtifact(e) => format!("invalid artifact: {e}"),
            other => other.to_string(),
        };
        ApiError::new(err.http_status(), message)
    }
}

impl From<SanitiseError> for ApiError {
    fn from(err: SanitiseError) -> ApiError {
        ApiError::bad_request(err.to_string())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        json_error(self.status, self.message)
    }
}

/// `{"error": message}` with a JSON content type.
pub(crate) fn json_error(status: StatusCode, message: String) -> Response {
    let body = serde_json::to_vec(&ErrorBody { error: message })
        .unwrap_or_else(|_| br#"{"error":"error"}"#.to_vec());
    (
        status,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        body,
    )
        .into_response()
}

/// `outer: inner: innermost`, for logs and for errors whose sources are all user-facing.
pub(crate) fn chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut out = err.to_string();
    let mut source = err.source();
    while let Some(e) = source {
        out.push_str(": ");
        out.push_str(&e.to_string());
        source = e.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registry_errors_map_to_statuses() {
        let e = ApiError::from(RegistryError::NothingStaged { name: "m".into() });
        assert_eq!(e.status, StatusCode::CONFLICT);
        let e = ApiError::from(RegistryError::InvalidArtifact(
            crate::artifact::ArtifactError::NoFeatures,
        ));
        assert_eq!(e.status, StatusCode::BAD_REQUEST);
        assert!(
            e.message.starts_with("invalid artifact: features:"),
            "{}",
            e.message
        );
    }

    #[test]
    fn chain_joins_sources() {
        let io = std::io::Error::other("disk on fire");
        let err = crate::EngineError::ReadModelFile {
            file: "m.json".into(),
            source: io,
        };
        assert_eq!(
            chain(&err),
            "failed to read model file `m.json`: disk on fire"
        );
    }
}
