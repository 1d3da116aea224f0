//! `[[remote-model]]`: a model served by another OIP server, behind a circuit breaker.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::breaker::BreakerConfig;

/// Default deadline of one backend call.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(1);
/// Longest backend `timeout`: a longer one is a typo.
pub const MAX_TIMEOUT: Duration = Duration::from_secs(60);

/// One `[[remote-model]]` entry.
///
/// ```toml
/// [[remote-model]]
/// name = "ref-linear"                  # the name clients infer
/// backend = "http://127.0.0.1:9001"    # base URL of an OIP (KServe V2) server
/// remote-name = "ref-linear"           # its name there (default: name)
/// timeout = "250ms"                    # per call, connect to last byte
/// rule-model = "ref-rule"              # a local model, second in the fallback chain
/// neutral = 0.0                        # the last fallback's prediction
/// [remote-model.breaker]               # resilience4j's settings, see BreakerConfig
/// sliding-window-size = 10
/// minimum-number-of-calls = 5
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RemoteModelConfig {
    /// The model name clients use: `[A-Za-z0-9_.-]{1,64}`, unique among remote models.
    pub name: String,
    /// `http://host:port` of the backend (no path, no TLS).
    pub backend: String,
    /// The model's name on the backend; `name` when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remote_name: Option<String>,
    /// Deadline of one backend call, over 0 and at most [`MAX_TIMEOUT`] (`1s`).
    #[serde(with = "humantime_serde", default = "default_timeout")]
    pub timeout: Duration,
    /// A local model (by name, its live version) that answers when neither the backend nor
    /// a local model of `name` can.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule_model: Option<String>,
    /// The neutral signal: every row's prediction when no model can answer (`0.0`).
    #[serde(default)]
    pub neutral: f64,
    /// The breaker around the backend.
    #[serde(default)]
    pub breaker: BreakerConfig,
}

fn default_timeout() -> Duration {
    DEFAULT_TIMEOUT
}

impl RemoteModelConfig {
    /// The model's name on the backend.
    pub fn remote_name(&self) -> &str {
        self.remote_name.as_deref().unwrap_or(&self.name)
    }

    /// Checks names, URL and ranges.
    ///
    /// # Errors
    /// A message naming the entry, the key and the limit.
    pub fn validate(&self) -> Result<(), String> {
        let name = &self.name;
        for (key, value) in [
            ("name", Some(name.as_str())),
            ("remote-name", self.remote_name.as_deref()),
            ("rule-model", self.rule_model.as_deref()),
        ] {
            if let Some(value) = value
                && !crate::artifact::is_valid_name(value)
            {
                return Err(format!(
                    "[{name}] {key}: {value:?} must match [A-Za-z0-9_.-]{{1,64}}"
                ));
            }
        }
        parse_backend(&self.backend).map_err(|m| format!("[{name}] backend: {m}"))?;
        if self.timeout.is_zero() || self.timeout > MAX_TIMEOUT {
            return Err(format!(
                "[{name}] timeout must be over 0 and at most {}, got {}",
                humantime::format_duration(MAX_TIMEOUT),
                humantime::format_duration(self.timeout)
            ));
        }
        if !self.neutral.is_finite() {
            return Err(format!("[{name}] neutral must be finite"));
        }
        self.breaker
            .validate()
            .map_err(|(key, m)| format!("[{name}] breaker.{key} {m}"))
    }
}

/// Parses a backend base URL: `http://host:port`, with an optional trailing `/`.
///
/// # Errors
/// What is wrong with it.
pub(crate) fn parse_backend(url: &str) -> Result<http::uri::Authority, String> {
    let uri: http::Uri = url
        .parse()
        .map_err(|e| format!("{url:?} is not a URL: {e}"))?;
    if uri.scheme_str() != Some("http") {
        return Err(format!("{url:?} must start with http://"));
    }
    let Some(authority) = uri.authority().cloned() else {
        return Err(format!("{url:?} has no host"));
    };
    if authority.port_u16().is_none() {
        return Err(format!("{url:?} has no port"));
    }
    if !matches!(uri.path(), "" | "/") || uri.query().is_some() {
        return Err(format!("{url:?} must have no path or query"));
    }
    Ok(authority)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(toml: &str) -> Result<RemoteModelConfig, String> {
        let c: RemoteModelConfig = toml::from_str(toml).map_err(|e| e.to_string())?;
        c.validate().map(|()| c)
    }

    #[test]
    fn parses_with_defaults() {
        let c = entry("name = \"m\"\nbackend = \"http://127.0.0.1:9\"\n").unwrap();
        assert_eq!(c.remote_name(), "m");
        assert_eq!(c.timeout, DEFAULT_TIMEOUT);
        assert_eq!(c.breaker, BreakerConfig::default());
        assert_eq!(c.neutral, 0.0);
    }

    #[test]
    fn bad_values_name_the_entry_and_key() {
        for (toml, needle) in [
            (
                "name = \"m\"\nbackend = \"https://h:1\"",
                "[m] backend: \"https://h:1\" must start with http://",
            ),
            ("name = \"m\"\nbackend = \"http://h\"", "has no port"),
            (
                "name = \"m\"\nbackend = \"http://h:1/v2\"",
                "must have no path",
            ),
            (
                "name = \"m\"\nbackend = \"http://h:1\"\ntimeout = \"0s\"",
                "[m] timeout must be over 0",
            ),
            (
                "name = \"m\"\nbackend = \"http://h:1\"\ntimeout = \"2m\"",
                "at most 1m, got 2m",
            ),
            (
                "name = \"m m\"\nbackend = \"http://h:1\"",
                "name: \"m m\" must match",
            ),
            (
                "name = \"m\"\nbackend = \"http://h:1\"\nneutral = nan",
                "[m] neutral must be finite",
            ),
            (
                "name = \"m\"\nbackend = \"http://h:1\"\n[breaker]\nsliding-window-size = 0",
                "[m] breaker.sliding-window-size must be between 1 and 10000, got 0",
            ),
            (
                "name = \"m\"\nbackend = \"http://h:1\"\n[breaker]\nwindow = 3",
                "unknown field `window`",
            ),
        ] {
            let err = entry(toml).unwrap_err();
            assert!(err.contains(needle), "{toml}: {err}");
        }
    }
}
