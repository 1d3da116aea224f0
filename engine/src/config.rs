//! Engine configuration, read from TOML (kebab-case keys, unknown keys rejected).
//!
//! ```toml
//! listen = "127.0.0.1:8080"
//! grpc-listen = "127.0.0.1:8081"  # the OIP over gRPC too; off by default
//! model-dir = "models"
//! max-body-bytes = 1048576
//! max-batch-rows = 10000
//! request-timeout = "5s"
//! shutdown-delay = "5s"
//! shutdown-grace = "10s"
//! header-read-timeout = "10s"
//! worker-threads = 2
//! inject-latency = "0s"
//!
//! [security]                      # engine/SECURITY.md
//! keyring = "/etc/gauntlet/keyring.toml"
//! require-encrypted-artifacts = false
//! admin-keys = "/etc/gauntlet/admin-keys.toml"
//! max-clock-skew = "5m"
//! read-tokens = "/etc/gauntlet/read-tokens.toml"
//! tls-cert = "/etc/gauntlet/cert.pem"
//! tls-key = "/etc/gauntlet/key.pem"
//! max-headers = 64
//! max-header-bytes = 16384
//! max-json-depth = 32
//! max-tensor-elements = 1000000
//! ```

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::security::SecurityConfig;

/// Default listen address: loopback only, since admin routes are not yet authenticated.
pub const DEFAULT_LISTEN: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(Ipv4Addr::LOCALHOST), 8080);
/// Default request body limit (1 MiB).
pub const DEFAULT_MAX_BODY_BYTES: usize = 1_048_576;
/// Default largest batch (rows) one infer request may carry.
pub const DEFAULT_MAX_BATCH_ROWS: usize = 10_000;
/// Default limit of an artifact uploaded to the load route or read from the model directory
/// (16 MiB). Parsing and compiling take a few times the document's size in memory.
pub const DEFAULT_MAX_ARTIFACT_BYTES: usize = 16 * 1_048_576;
/// Default time the server waits for in-flight requests on shutdown.
pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(10);
/// Default time the server keeps serving, not ready, after a shutdown signal: none.
pub const DEFAULT_SHUTDOWN_DELAY: Duration = Duration::ZERO;
/// Default time a client has to send a whole request head.
pub const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest `inject-latency`: a fault-injection delay longer than a minute is a typo.
pub const MAX_INJECT_LATENCY: Duration = Duration::from_secs(60);
/// Most `worker-threads`.
pub const MAX_WORKER_THREADS: usize = 1024;

/// The engine's configuration. Every field has a compiled-in default.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case", default)]
pub struct EngineConfig {
    /// Address to bind (`127.0.0.1:8080`; port 0 picks a free port).
    pub listen: SocketAddr,
    /// Address of the second port, serving the Open Inference Protocol over gRPC (KServe V2
    /// `inference.GRPCInferenceService`, HTTP/2 cleartext; port 0 picks a free port); off when
    /// absent. Not with `security.tls-cert`: the gRPC port has no TLS.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub grpc_listen: Option<SocketAddr>,
    /// Directory of `*.json` artifacts loaded and promoted at start, and read by the
    /// repository load route when no artifact is posted.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model_dir: Option<PathBuf>,
    /// Largest request body accepted, in bytes (413 above).
    pub max_body_bytes: usize,
    /// Most rows one infer request may carry (413 above).
    pub max_batch_rows: usize,
    /// Largest artifact accepted by the load route or read from the model directory, in bytes.
    pub max_artifact_bytes: usize,
    /// Per-request deadline (`"5s"`, `"250ms"`); none by default. A request over it gets 408.
    /// The repository routes (`/v2/repository/...`) are exempt: see [`crate::app`].
    #[serde(with = "humantime_serde", skip_serializing_if = "Option::is_none")]
    pub request_timeout: Option<Duration>,
    /// How long, after a shutdown signal, the server keeps accepting and serving requests
    /// while `/v2/health/ready` answers 400, so that load balancers see it leave before it
    /// stops listening. `0s` by default.
    #[serde(with = "humantime_serde")]
    pub shutdown_delay: Duration,
    /// How long shutdown then waits for in-flight requests, once it has stopped accepting
    /// connections, before exiting anyway (with its own exit code).
    #[serde(with = "humantime_serde")]
    pub shutdown_grace: Duration,
    /// How long a client has to send a whole request head, timed from when the server starts
    /// reading it (at connect, and after each response on a kept-alive connection, so it also
    /// bounds how long such a connection stays idle). The connection is closed when it expires,
    /// so a stalled client (slow-loris) neither holds it nor delays shutdown. `10s` by default.
    #[serde(with = "humantime_serde")]
    pub header_read_timeout: Duration,
    /// Async worker threads of the `gauntlet-engine` binary's runtime (`--worker-threads`);
    /// by default `TOKIO_WORKER_THREADS` if set, else one per core the process may run on (so
    /// `taskset -c 0` gives one). A library user runs [`crate::serve`] on a runtime of its
    /// own and this key is not read.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub worker_threads: Option<usize>,
    /// Fault injection: an artificial delay before every inference response (`"5ms"`), at
    /// most [`MAX_INJECT_LATENCY`]; `0s`, none, by default. It makes a deliberately slowed
    /// target, to prove that a latency gate fails when it should. The delay is a timer, not
    /// busy work: the worker serves other requests meanwhile. It counts in the request's
    /// duration metric and against `request-timeout` (a request answered 408 in it counts no
    /// sanitiser changes, as a slow batch cut short); other routes are not delayed.
    #[serde(with = "humantime_serde")]
    pub inject_latency: Duration,
    /// The `[security]` table: keyring, admin keys, read tokens, TLS and input limits.
    #[serde(skip_serializing_if = "SecurityConfig::is_default")]
    pub security: SecurityConfig,
    /// `[audit]`: the tamper-evident audit log; off when absent. See
    /// [`crate::audit::AuditConfig`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub audit: Option<crate::audit::AuditConfig>,
    /// `[trading]`: signal derivation and pre-trade limits. See
    /// [`crate::trading::TradingConfig`].
    pub trading: crate::trading::TradingConfig,
    /// `[[remote-model]]`: models served by other OIP servers, each behind a circuit
    /// breaker with a fallback chain. See [`crate::backend`].
    #[serde(rename = "remote-model", skip_serializing_if = "Vec::is_empty")]
    pub remote_models: Vec<crate::backend::RemoteModelConfig>,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            listen: DEFAULT_LISTEN,
            grpc_listen: None,
            model_dir: None,
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            max_batch_rows: DEFAULT_MAX_BATCH_ROWS,
            max_artifact_bytes: DEFAULT_MAX_ARTIFACT_BYTES,
            request_timeout: None,
            shutdown_delay: DEFAULT_SHUTDOWN_DELAY,
            shutdown_grace: DEFAULT_SHUTDOWN_GRACE,
            header_read_timeout: DEFAULT_HEADER_READ_TIMEOUT,
            worker_threads: None,
            inject_latency: Duration::ZERO,
            security: SecurityConfig::default(),
            audit: None,
            trading: crate::trading::TradingConfig::default(),
            remote_models: Vec::new(),
        }
    }
}

/// Why a configuration was rejected.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The TOML is malformed, has an unknown key or a value of the wrong type.
    #[error("invalid config: {message}")]
    Toml {
        /// toml's message, naming the key and the line.
        message: String,
    },
    /// A value is out of range.
    #[error("invalid config: {field} {message}")]
    Invalid {
        /// The kebab-case key.
        field: &'static str,
        /// What is wrong, with the limit.
        message: String,
    },
    /// The config file could not be read.
    #[error("failed to read config file `{}`", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
}

impl EngineConfig {
    /// Parses and validates a TOML document.
    ///
    /// # Errors
    /// [`ConfigError::Toml`] naming the key and line, or [`ConfigError::Invalid`].
    pub fn from_toml_str(s: &str) -> Result<Self, ConfigError> {
        let config: EngineConfig = toml::from_str(s).map_err(|e| ConfigError::Toml {
            message: e.to_string().trim_end().to_owned(),
        })?;
        config.validate()?;
        Ok(config)
    }

    /// Reads, parses and validates a TOML file.
    ///
    /// # Errors
    /// [`ConfigError::Read`] or the errors of [`EngineConfig::from_toml_str`].
    pub fn from_toml_file(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::from_toml_str(&text)
    }

    /// Checks the ranges of the numeric settings.
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] naming the key and the limit.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |field, message: &str| {
            Err(ConfigError::Invalid {
                field,
                message: message.to_owned(),
            })
        };
        if self.max_body_bytes == 0 {
            return invalid("max-body-bytes", "must be at least 1");
        }
        if self.max_batch_rows == 0 {
            return invalid("max-batch-rows", "must be at least 1");
        }
        if self.max_artifact_bytes == 0 {
            return invalid("max-artifact-bytes", "must be at least 1");
        }
        if self.request_timeout == Some(Duration::ZERO) {
            return invalid("request-timeout", "must be greater than 0");
        }
        if self.header_read_timeout.is_zero() {
            return invalid("header-read-timeout", "must be greater than 0");
        }
        match self.worker_threads {
            Some(threads) if !(1..=MAX_WORKER_THREADS).contains(&threads) => {
                return invalid(
                    "worker-threads",
                    &format!("must be between 1 and {MAX_WORKER_THREADS}, got {threads}"),
                );
            }
            _ => {}
        }
        self.trading
            .validate()
            .map_err(|(field, message)| ConfigError::Invalid { field, message })?;
        if let Some(audit) = &self.audit {
            audit
                .validate()
                .map_err(|(field, message)| ConfigError::Invalid { field, message })?;
        }
        check_inject_latency(self.inject_latency).or_else(|m| invalid("inject-latency", &m))?;
        for (i, remote) in self.remote_models.iter().enumerate() {
            remote.validate().or_else(|m| invalid("remote-model", &m))?;
            if self.remote_models[..i]
                .iter()
                .any(|r| r.name == remote.name)
            {
                return invalid(
                    "remote-model",
                    &format!("[{}] name is used by another remote model", remote.name),
                );
            }
        }
        if self.grpc_listen.is_some() && self.security.tls_cert.is_some() {
            return invalid(
                "grpc-listen",
                "serves plain HTTP/2 (no TLS), so it cannot be combined with security.tls-cert",
            );
        }
        self.security
            .validate()
            .or_else(|(field, message)| invalid(field, &message))
    }
}

/// Checks an `inject-latency` against [`MAX_INJECT_LATENCY`].
///
/// # Errors
/// What is wrong, with the limit (`must be at most 1m, got 2m`).
pub fn check_inject_latency(delay: Duration) -> Result<(), String> {
    if delay > MAX_INJECT_LATENCY {
        return Err(format!(
            "must be at most {}, got {}",
            humantime::format_duration(MAX_INJECT_LATENCY),
            humantime::format_duration(delay)
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults() {
        let c = EngineConfig::from_toml_str("").unwrap();
        assert_eq!(c, EngineConfig::default());
        assert_eq!(c.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(c.max_body_bytes, 1_048_576);
        assert_eq!(c.max_batch_rows, 10_000);
        assert_eq!(c.request_timeout, None);
        assert_eq!(c.max_artifact_bytes, 16 << 20);
        assert_eq!(c.shutdown_delay, Duration::ZERO);
        assert_eq!(c.header_read_timeout, Duration::from_secs(10));
        assert_eq!(c.worker_threads, None);
        assert_eq!(
            c.inject_latency,
            Duration::ZERO,
            "no injected delay by default"
        );
    }

    #[test]
    fn grpc_listen_refuses_tls() {
        let msg = EngineConfig::from_toml_str(
            "grpc-listen = \"127.0.0.1:0\"\n[security]\ntls-cert = \"c.pem\"\ntls-key = \"k.pem\"\n",
        )
        .unwrap_err()
        .to_string();
        assert_eq!(
            msg,
            "invalid config: grpc-listen serves plain HTTP/2 (no TLS), so it cannot be combined with security.tls-cert"
        );
    }

    #[test]
    fn parses_every_key() {
        let c = EngineConfig::from_toml_str(
            "listen = \"127.0.0.1:0\"\nmodel-dir = \"/m\"\nmax-body-bytes = 10\n\
             max-batch-rows = 5\nmax-artifact-bytes = 7\nrequest-timeout = \"250ms\"\n\
             shutdown-delay = \"3s\"\nshutdown-grace = \"1s\"\nheader-read-timeout = \"300ms\"\n\
             worker-threads = 3\ninject-latency = \"5ms\"\ngrpc-listen = \"127.0.0.1:9\"\n",
        )
        .unwrap();
        assert_eq!(c.grpc_listen.map(|a| a.port()), Some(9));
        assert_eq!(c.worker_threads, Some(3));
        assert_eq!(c.inject_latency, Duration::from_millis(5));
        assert_eq!(c.listen.port(), 0);
        assert_eq!(c.model_dir.as_deref(), Some(Path::new("/m")));
        assert_eq!(
            (c.max_body_bytes, c.max_batch_rows, c.max_artifact_bytes),
            (10, 5, 7)
        );
        assert_eq!(c.request_timeout, Some(Duration::from_millis(250)));
        assert_eq!(c.shutdown_grace, Duration::from_secs(1));
        assert_eq!(c.shutdown_delay, Duration::from_secs(3));
        assert_eq!(c.header_read_timeout, Duration::from_millis(300));
        let round = toml::to_string(&c).unwrap();
        assert_eq!(EngineConfig::from_toml_str(&round).unwrap(), c);
    }

    #[test]
    fn unknown_key_is_named_with_its_line() {
        let err =
            EngineConfig::from_toml_str("listen = \"127.0.0.1:1\"\nmax-body = 3\n").unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("max-body"), "{msg}");
        assert!(msg.contains("line 2"), "{msg}");
    }

    #[test]
    fn wrong_type_and_bad_address_are_named() {
        let msg = EngineConfig::from_toml_str("max-batch-rows = \"ten\"")
            .unwrap_err()
            .to_string();
        assert!(msg.contains("max-batch-rows"), "{msg}");
        let msg = EngineConfig::from_toml_str("listen = \"nowhere\"")
            .unwrap_err()
            .to_string();
        assert!(msg.contains("listen"), "{msg}");
    }

    #[test]
    fn ranges_are_checked() {
        for (toml, key) in [
            ("max-body-bytes = 0", "max-body-bytes"),
            ("max-batch-rows = 0", "max-batch-rows"),
            ("max-artifact-bytes = 0", "max-artifact-bytes"),
            ("request-timeout = \"0s\"", "request-timeout"),
            ("header-read-timeout = \"0s\"", "header-read-timeout"),
            ("worker-threads = 0", "worker-threads"),
            ("worker-threads = 1025", "worker-threads"),
            ("inject-latency = \"61s\"", "inject-latency"),
        ] {
            let msg = EngineConfig::from_toml_str(toml).unwrap_err().to_string();
            assert!(msg.contains(key), "{msg}");
        }
        let msg = EngineConfig::from_toml_str("inject-latency = \"2m\"")
            .unwrap_err()
            .to_string();
        assert_eq!(
            msg,
            "invalid config: inject-latency must be at most 1m, got 2m"
        );
        let msg = EngineConfig::from_toml_str("worker-threads = 0")
            .unwrap_err()
            .to_string();
        assert!(msg.contains("between 1 and 1024, got 0"), "{msg}");
        let c =
            EngineConfig::from_toml_str("inject-latency = \"60s\"\nworker-threads = 1024").unwrap();
        assert_eq!(c.inject_latency, MAX_INJECT_LATENCY);
    }

    #[test]
    fn security_table_is_parsed_and_checked() {
        let c = EngineConfig::from_toml_str(
            "[security]\nkeyring = \"k.toml\"\nrequire-encrypted-artifacts = true\n\
             admin-keys = \"a.toml\"\nmax-clock-skew = \"2m\"\nread-tokens = \"t.toml\"\n\
             tls-cert = \"c.pem\"\ntls-key = \"k.pem\"\nmax-headers = 10\n\
             max-header-bytes = 100\nmax-json-depth = 4\nmax-tensor-elements = 5\n",
        )
        .unwrap();
        assert_eq!(c.security.max_clock_skew, Duration::from_secs(120));
        assert_eq!(c.security.max_tensor_elements, 5);
        assert!(c.security.require_encrypted_artifacts);
        let round = toml::to_string(&c).unwrap();
        assert_eq!(EngineConfig::from_toml_str(&round).unwrap(), c);
        for (toml, message) in [
            (
                "[security]\ntls-cert = \"c.pem\"",
                "invalid config: security.tls-cert tls-cert and tls-key must be set together",
            ),
            (
                "[security]\nrequire-encrypted-artifacts = true",
                "invalid config: security.require-encrypted-artifacts needs a security.keyring to decrypt with",
            ),
            (
                "[security]\nmax-headers = 0",
                "invalid config: security.max-headers must be at least 1",
            ),
            (
                "[security]\nmax-headers = 300",
                "invalid config: security.max-headers must be at most 256, got 300",
            ),
            (
                "[security]\nmax-clock-skew = \"2h\"",
                "invalid config: security.max-clock-skew must be between 1s and 1h",
            ),
        ] {
            let msg = EngineConfig::from_toml_str(toml).unwrap_err().to_string();
            assert_eq!(msg, message);
        }
        let msg = EngineConfig::from_toml_str("[security]\nadmin-key = \"a\"")
            .unwrap_err()
            .to_string();
        assert!(msg.contains("admin-key"), "{msg}");
    }

    #[test]
    fn remote_models_are_parsed_and_checked() {
        let c = EngineConfig::from_toml_str(
            "[[remote-model]]\nname = \"m\"\nbackend = \"http://127.0.0.1:9\"\n\
             timeout = \"250ms\"\n[remote-model.breaker]\nsliding-window-type = \"time-based\"\n",
        )
        .unwrap();
        assert_eq!(c.remote_models[0].timeout, Duration::from_millis(250));
        let round = toml::to_string(&c).unwrap();
        assert_eq!(EngineConfig::from_toml_str(&round).unwrap(), c);
        let msg = EngineConfig::from_toml_str(
            "[[remote-model]]\nname = \"m\"\nbackend = \"http://h:1\"\n\
             [[remote-model]]\nname = \"m\"\nbackend = \"http://h:2\"\n",
        )
        .unwrap_err()
        .to_string();
        assert_eq!(
            msg,
            "invalid config: remote-model [m] name is used by another remote model"
        );
        let msg = EngineConfig::from_toml_str(
            "[[remote-model]]\nname = \"m\"\nbackend = \"http://h:1\"\n\
             [remote-model.breaker]\nfailure-rate-threshold = 101.0\n",
        )
        .unwrap_err()
        .to_string();
        assert_eq!(
            msg,
            "invalid config: remote-model [m] breaker.failure-rate-threshold must be over 0 and at most 100, got 101"
        );
    }

    #[test]
    fn missing_file_is_a_read_error() {
        let err =
            EngineConfig::from_toml_file(Path::new("/nonexistent/gauntlet.toml")).unwrap_err();
        assert!(matches!(err, ConfigError::Read { .. }));
    }
}
