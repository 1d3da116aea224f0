//! Hostile-input limits checked before a handler runs: header count and size, JSON depth and
//! tensor elements. Each refusal is a JSON 4xx naming the config key and the limit.

use http::{HeaderMap, StatusCode};

use super::SecurityConfig;
use crate::http::ApiError;

/// Largest `max-headers` accepted, and hyper's own parse limit: a head with more headers than
/// this is refused by hyper itself (431 without a body) before the engine sees it.
pub const HARD_MAX_HEADERS: usize = 256;

/// Refuses more than `max-headers` headers or more than `max-header-bytes` of them (431).
pub(crate) fn check_headers(headers: &HeaderMap, config: &SecurityConfig) -> Result<(), ApiError> {
    let count = headers.len();
    if count > config.max_headers {
        return Err(ApiError::new(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            format!(
                "request has {count} headers, over the security.max-headers limit of {}",
                config.max_headers
            ),
        ));
    }
    let bytes: usize = headers
        .iter()
        .map(|(n, v)| n.as_str().len() + v.len())
        .sum();
    if bytes > config.max_header_bytes {
        return Err(ApiError::new(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            format!(
                "request headers are {bytes} bytes, over the security.max-header-bytes limit of {}",
                config.max_header_bytes
            ),
        ));
    }
    Ok(())
}

/// Refuses JSON nested deeper than `max` arrays and objects (400), in one pass over the bytes
/// before any parse: serde_json's own limit (128) answers with a parser message instead.
pub(crate) fn check_json_depth(bytes: &[u8], max: usize) -> Result<(), ApiError> {
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    for &b in bytes {
        if in_string {
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                in_string = false;
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                if depth > max {
                    return Err(ApiError::bad_request(format!(
                        "request body nests JSON deeper than the security.max-json-depth limit of {max}"
                    )));
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    Ok(())
}

/// Refuses more than `max` tensor values in one request (413).
pub(crate) fn check_tensor_elements(values: usize, max: usize) -> Result<(), ApiError> {
    if values > max {
        return Err(ApiError::too_large(format!(
            "request carries {values} tensor elements, over the security.max-tensor-elements limit of {max}"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn depth_counts_only_structure_outside_strings() {
        assert!(check_json_depth(b"[[[1]]]", 3).is_ok());
        let err = check_json_depth(b"[[[[1]]]]", 3).unwrap_err();
        assert_eq!(
            err.message,
            "request body nests JSON deeper than the security.max-json-depth limit of 3"
        );
        assert!(check_json_depth(br#"{"a": "[[[[[[\"[["}"#, 1).is_ok());
        assert!(check_json_depth(br#"[{"a":[]},{"b":[]}]"#, 3).is_ok());
    }

    #[test]
    fn headers_are_counted_and_measured() {
        let mut h = HeaderMap::new();
        for i in 0..5 {
            h.insert(
                http::HeaderName::try_from(format!("x-h{i}")).unwrap(),
                http::HeaderValue::from_static("v"),
            );
        }
        let c = SecurityConfig {
            max_headers: 4,
            ..SecurityConfig::default()
        };
        let err = check_headers(&h, &c).unwrap_err();
        assert_eq!(err.status, StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);
        assert!(
            err.message.contains("max-headers limit of 4"),
            "{}",
            err.message
        );
        let c = SecurityConfig {
            max_header_bytes: 10,
            ..SecurityConfig::default()
        };
        assert!(
            check_headers(&h, &c)
                .unwrap_err()
                .message
                .contains("max-header-bytes")
        );
        assert!(check_headers(&h, &SecurityConfig::default()).is_ok());
    }
}
