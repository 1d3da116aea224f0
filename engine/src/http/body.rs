//! Request bodies: content type, size limit and JSON with the path of a bad value.

use axum::body::Body;
use bytes::Bytes;
use http::{HeaderMap, StatusCode, header};
use http_body_util::{BodyExt as _, LengthLimitError, Limited};
use serde::de::DeserializeOwned;

use super::error::ApiError;

/// Accepts a missing content type (many OIP clients omit it) or any JSON media type.
pub(crate) fn require_json(headers: &HeaderMap) -> Result<(), ApiError> {
    let Some(value) = headers.get(header::CONTENT_TYPE) else {
        return Ok(());
    };
    let mime = value
        .to_str()
        .unwrap_or("")
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    if mime == "application/json" || (mime.starts_with("application/") && mime.ends_with("+json")) {
        Ok(())
    } else {
        Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!(
                "content-type: expected application/json, got {:?}",
                String::from_utf8_lossy(value.as_bytes())
            ),
        ))
    }
}

/// Refuses a declared `content-length` over `limit` (413, naming `limit_key`) before any of
/// the body is read.
pub(crate) fn check_declared_length(
    headers: &HeaderMap,
    limit: usize,
    limit_key: &str,
) -> Result<(), ApiError> {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    match declared {
        Some(len) if len > limit as u64 => Err(ApiError::too_large(format!(
            "request body of {len} bytes exceeds the {limit_key} limit of {limit} bytes"
        ))),
        _ => Ok(()),
    }
}

/// Reads the whole body, refusing more than `limit` bytes (413, naming `limit_key`).
pub(crate) async fn read_body(
    headers: &HeaderMap,
    body: Body,
    limit: usize,
    limit_key: &str,
) -> Result<Bytes, ApiError> {
    check_declared_length(headers, limit, limit_key)?;
    match Limited::new(body, limit).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(err) if err.downcast_ref::<LengthLimitError>().is_some() => Err(ApiError::too_large(
            format!("request body exceeds the {limit_key} limit of {limit} bytes"),
        )),
        Err(err) => Err(ApiError::bad_request(format!(
            "failed to read request body: {err}"
        ))),
    }
}

/// True for an empty or all-whitespace body: optional bodies may be omitted.
pub(crate) fn is_blank(bytes: &[u8]) -> bool {
    bytes.iter().all(u8::is_ascii_whitespace)
}

/// Parses JSON; a bad document is a 400 naming the JSON path, line and column.
pub(crate) fn parse<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    crate::json::parse(bytes).map_err(|e| ApiError::bad_request(format!("invalid JSON body: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn headers(ct: Option<&'static str>, len: Option<&'static str>) -> HeaderMap {
        let mut h = HeaderMap::new();
        if let Some(ct) = ct {
            h.insert(header::CONTENT_TYPE, HeaderValue::from_static(ct));
        }
        if let Some(len) = len {
            h.insert(header::CONTENT_LENGTH, HeaderValue::from_static(len));
        }
        h
    }

    #[test]
    fn content_types() {
        assert!(require_json(&headers(None, None)).is_ok());
        assert!(require_json(&headers(Some("application/json; charset=utf-8"), None)).is_ok());
        assert!(require_json(&headers(Some("Application/JSON"), None)).is_ok());
        assert!(require_json(&headers(Some("application/vnd.oip+json"), None)).is_ok());
        let err = require_json(&headers(Some("text/plain"), None)).unwrap_err();
        assert_eq!(err.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
        assert!(err.message.contains("content-type"));
    }

    #[tokio::test]
    async fn limits() {
        let ok = read_body(&headers(None, None), Body::from("abc"), 3, "max-body-bytes").await;
        assert_eq!(ok.unwrap(), Bytes::from_static(b"abc"));
        let err = read_body(
            &headers(None, None),
            Body::from("abcd"),
            3,
            "max-body-bytes",
        )
        .await
        .unwrap_err();
        assert_eq!(err.status, StatusCode::PAYLOAD_TOO_LARGE);
        assert!(
            err.message.contains("max-body-bytes limit of 3 bytes"),
            "{}",
            err.message
        );
        let err = read_body(
            &headers(None, Some("10")),
            Body::empty(),
            3,
            "max-body-bytes",
        )
        .await
        .unwrap_err();
        assert!(err.message.contains("10 bytes"), "{}", err.message);
    }

    #[test]
    fn blank_and_parse() {
        assert!(is_blank(b" \n") && is_blank(b"") && !is_blank(b"{}"));
        let err = parse::<crate::oip::InferRequest>(b"{\"inputs\": 3}").unwrap_err();
        assert!(
            err.message
                .starts_with("invalid JSON body: inputs: invalid type"),
            "{}",
            err.message
        );
    }
}
