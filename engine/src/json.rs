//! JSON parsing that keeps the path of the failing value (`inputs[0].shape[1]`).

use std::fmt;

use serde::de::DeserializeOwned;

/// A JSON syntax or schema error with the path of the offending value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct JsonError {
    /// JSON path of the failing value, `None` at the document root.
    pub(crate) path: Option<String>,
    /// 1-based line.
    pub(crate) line: usize,
    /// 1-based column.
    pub(crate) column: usize,
    /// serde_json's message, which ends with the line and column.
    pub(crate) message: String,
}

impl fmt::Display for JsonError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.path {
            Some(path) => write!(f, "{path}: {}", self.message),
            None => f.write_str(&self.message),
        }
    }
}

impl JsonError {
    fn new(path: Option<String>, err: &serde_json::Error) -> Self {
        JsonError {
            path,
            line: err.line(),
            column: err.column(),
            message: err.to_string(),
        }
    }
}

/// Deserialises one JSON document from `bytes`, rejecting trailing data.
///
/// A valid document is read by serde_json alone; only a failing one is read again with path
/// tracking, which nearly doubled the parse time of an infer request (in a profile of the
/// infer route) to name the path of an error that most requests never have. Both reads see the same bytes and the same
/// types, so the second fails where the first did.
pub(crate) fn parse<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, JsonError> {
    match serde_json::from_slice(bytes) {
        Ok(value) => Ok(value),
        Err(_) => parse_tracked(bytes),
    }
}

/// [`parse`] with the path of the failing value.
fn parse_tracked<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, JsonError> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value: T = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        // `.` is the root and `?` an unknown position (such as an early end of input).
        let known = path != "." && path != "?";
        JsonError::new(known.then_some(path), &inner)
    })?;
    de.end().map_err(|e| JsonError::new(None, &e))?;
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[expect(dead_code, reason = "fields exist only to be parsed")]
    struct Doc {
        inputs: Vec<Input>,
    }

    #[derive(Debug, serde::Deserialize)]
    #[expect(dead_code, reason = "fields exist only to be parsed")]
    struct Input {
        shape: Vec<u64>,
    }

    #[test]
    fn error_names_the_path_and_line() {
        let err = parse::<Doc>(b"{\"inputs\": [{\"shape\": [1, \"x\"]}]}").unwrap_err();
        assert_eq!(err.path.as_deref(), Some("inputs[0].shape[1]"));
        assert_eq!(err.line, 1);
        assert!(
            err.to_string()
                .starts_with("inputs[0].shape[1]: invalid type"),
            "{err}"
        );
    }

    /// The fast read and the tracked read agree: a document either parses in both or fails in
    /// both, and the tracked one's error is what `parse` returns.
    #[test]
    fn fast_and_tracked_reads_agree() {
        for doc in [
            &b"{\"inputs\": [{\"shape\": [1, 2]}]}"[..],
            b"{\"inputs\": [{\"shape\": [1, -2]}]}",
            b"{\"inputs\": []}   ",
            b"{\"inputs\": [] ,}",
            b"",
        ] {
            let fast = serde_json::from_slice::<Doc>(doc).is_ok();
            let tracked = parse_tracked::<Doc>(doc);
            assert_eq!(fast, tracked.is_ok(), "{}", String::from_utf8_lossy(doc));
            assert_eq!(
                parse::<Doc>(doc).map_err(|e| e.to_string()).err(),
                tracked.map_err(|e| e.to_string()).err()
            );
        }
    }

    #[test]
    fn syntax_error_and_trailing_data_are_errors() {
        let err = parse::<Doc>(b"{\"inputs\": [").unwrap_err();
        assert!(err.message.contains("EOF"), "{err}");
        let err = parse::<Doc>(b"{\"inputs\": []} x").unwrap_err();
        assert!(err.message.contains("trailing"), "{err}");
        assert!(err.path.is_none());
    }
}
