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
pub(crate) fn parse<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, JsonError> {
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

    #[test]
    fn syntax_error_and_trailing_data_are_errors() {
        let err = parse::<Doc>(b"{\"inputs\": [").unwrap_err();
        assert!(err.message.contains("EOF"), "{err}");
        let err = parse::<Doc>(b"{\"inputs\": []} x").unwrap_err();
        assert!(err.message.contains("trailing"), "{err}");
        assert!(err.path.is_none());
    }
}
