//! The engine's security controls: envelope-encrypted artifacts ([`envelope`]) under a KEK
//! [`keyring`], HMAC-signed admin requests ([`sign`], checked by `auth`), bearer tokens on
//! read routes, TLS ([`tls`]) and hostile-input limits. `engine/SECURITY.md` describes them
//! for operators.
//!
//! Settings live in the `[security]` table of the engine config ([`SecurityConfig`]); the
//! files it names are read once by [`Security::load`].

pub(crate) mod auth;
pub mod envelope;
pub mod keyring;
pub(crate) mod limits;
pub mod sign;
pub mod tls;

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use self::auth::{
    ADMIN_ROUTES, AdminKeys, AuthFileError, Principal, ReadTokens, Role, admin_route,
};
use self::envelope::{EnvelopeError, Expect};
use self::keyring::{Keyring, KeyringError};
use crate::artifact::{ArtifactError, ModelArtifact};

/// Default largest clock difference between a signed request's timestamp and the server.
pub const DEFAULT_MAX_CLOCK_SKEW: Duration = Duration::from_secs(300);
/// Default most request headers.
pub const DEFAULT_MAX_HEADERS: usize = 64;
/// Default largest total size of the request headers (names and values), in bytes.
pub const DEFAULT_MAX_HEADER_BYTES: usize = 16 * 1024;
/// Default deepest JSON nesting of a request body.
pub const DEFAULT_MAX_JSON_DEPTH: usize = 32;
/// Default most tensor elements (values) in one infer request.
pub const DEFAULT_MAX_TENSOR_ELEMENTS: usize = 1_000_000;

/// The `[security]` table of the engine config.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case", default)]
pub struct SecurityConfig {
    /// KEK keyring file (mode 0600) that decrypts envelope-encrypted artifacts.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub keyring: Option<PathBuf>,
    /// Refuse plain (unencrypted) artifacts, from the model directory and the load route.
    pub require_encrypted_artifacts: bool,
    /// Admin keys file (mode 0600): HMAC secrets with principals and roles. When set, every
    /// repository route requires a signed request; when not, they are open (bind loopback).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub admin_keys: Option<PathBuf>,
    /// Largest difference between a signed request's timestamp and the server clock; a
    /// nonce is remembered this long on either side of its timestamp. `5m` by default.
    #[serde(with = "humantime_serde")]
    pub max_clock_skew: Duration,
    /// Read tokens file (mode 0600): SHA-256 digests of bearer tokens. When set, every route
    /// but the health probes requires `Authorization: Bearer <token>`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub read_tokens: Option<PathBuf>,
    /// PEM certificate chain: with `tls-key`, the engine serves HTTPS only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of `tls-cert` (mode 0600).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_key: Option<PathBuf>,
    /// Most request headers (431 above).
    pub max_headers: usize,
    /// Largest total size of the request headers in bytes (431 above).
    pub max_header_bytes: usize,
    /// Deepest nesting of arrays and objects in a JSON body (400 above).
    pub max_json_depth: usize,
    /// Most values in the tensors of one infer request (413 above).
    pub max_tensor_elements: usize,
}

impl Default for SecurityConfig {
    fn default() -> Self {
        SecurityConfig {
            keyring: None,
            require_encrypted_artifacts: false,
            admin_keys: None,
            max_clock_skew: DEFAULT_MAX_CLOCK_SKEW,
            read_tokens: None,
            tls_cert: None,
            tls_key: None,
            max_headers: DEFAULT_MAX_HEADERS,
            max_header_bytes: DEFAULT_MAX_HEADER_BYTES,
            max_json_depth: DEFAULT_MAX_JSON_DEPTH,
            max_tensor_elements: DEFAULT_MAX_TENSOR_ELEMENTS,
        }
    }
}

impl SecurityConfig {
    /// True when every field has its default (the table is then not serialised).
    pub fn is_default(&self) -> bool {
        *self == SecurityConfig::default()
    }

    /// Checks ranges and pairs of settings.
    ///
    /// # Errors
    /// The kebab-case key (`security.max-headers`) and what is wrong.
    pub fn validate(&self) -> Result<(), (&'static str, String)> {
        let at_least_one = [
            ("security.max-headers", self.max_headers),
            ("security.max-header-bytes", self.max_header_bytes),
            ("security.max-json-depth", self.max_json_depth),
            ("security.max-tensor-elements", self.max_tensor_elements),
        ];
        for (key, value) in at_least_one {
            if value == 0 {
                return Err((key, "must be at least 1".into()));
            }
        }
        if self.max_headers > limits::HARD_MAX_HEADERS {
            return Err((
                "security.max-headers",
                format!(
                    "must be at most {}, got {}",
                    limits::HARD_MAX_HEADERS,
                    self.max_headers
                ),
            ));
        }
        if self.max_clock_skew.is_zero() || self.max_clock_skew > Duration::from_secs(3600) {
            return Err((
                "security.max-clock-skew",
                "must be between 1s and 1h".into(),
            ));
        }
        if self.tls_cert.is_some() != self.tls_key.is_some() {
            return Err((
                "security.tls-cert",
                "tls-cert and tls-key must be set together".into(),
            ));
        }
        if self.require_encrypted_artifacts && self.keyring.is_none() {
            return Err((
                "security.require-encrypted-artifacts",
                "needs a security.keyring to decrypt with".into(),
            ));
        }
        Ok(())
    }
}

/// Why the security files could not be loaded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SecurityError {
    /// The keyring file.
    #[error("failed to load security.keyring")]
    Keyring(#[source] KeyringError),
    /// The admin keys or read tokens file.
    #[error("failed to load security.{key}")]
    AuthFile {
        /// `admin-keys` or `read-tokens`.
        key: &'static str,
        /// What is wrong with it.
        #[source]
        source: AuthFileError,
    },
}

/// The loaded security settings and the replay cache; one per engine.
#[derive(Debug)]
pub struct Security {
    pub(crate) keyring: Option<Keyring>,
    pub(crate) require_encrypted: bool,
    pub(crate) admin: Option<AdminKeys>,
    pub(crate) tokens: Option<ReadTokens>,
    pub(crate) nonces: auth::NonceCache,
    pub(crate) max_skew: Duration,
}

impl Security {
    /// Reads the files `config` names.
    ///
    /// # Errors
    /// [`SecurityError`] naming the config key and the file.
    pub fn load(config: &SecurityConfig) -> Result<Security, SecurityError> {
        let keyring = match &config.keyring {
            Some(path) => Some(Keyring::load(path).map_err(SecurityError::Keyring)?),
            None => None,
        };
        let admin = match &config.admin_keys {
            Some(path) => {
                Some(
                    AdminKeys::load(path).map_err(|source| SecurityError::AuthFile {
                        key: "admin-keys",
                        source,
                    })?,
                )
            }
            None => None,
        };
        let tokens = match &config.read_tokens {
            Some(path) => {
                Some(
                    ReadTokens::load(path).map_err(|source| SecurityError::AuthFile {
                        key: "read-tokens",
                        source,
                    })?,
                )
            }
            None => None,
        };
        Ok(Security::from_parts(config, keyring, admin, tokens))
    }

    /// Settings without reading files. A file `config` names but that is not given here
    /// fails closed: an empty keyring, no admin key, no read token.
    pub fn from_parts(
        config: &SecurityConfig,
        keyring: Option<Keyring>,
        admin: Option<AdminKeys>,
        tokens: Option<ReadTokens>,
    ) -> Security {
        Security {
            keyring: keyring.or_else(|| config.keyring.as_ref().map(|_| Keyring::new())),
            require_encrypted: config.require_encrypted_artifacts,
            admin: admin.or_else(|| config.admin_keys.as_ref().map(|_| AdminKeys::default())),
            tokens: tokens.or_else(|| config.read_tokens.as_ref().map(|_| ReadTokens::default())),
            nonces: auth::NonceCache::default(),
            max_skew: config.max_clock_skew,
        }
    }

    /// Parses an artifact file's bytes: an envelope is decrypted and verified (its model must
    /// be `expected_name` when given), plain JSON is accepted unless encryption is required.
    ///
    /// # Errors
    /// [`OpenError`].
    pub fn open_artifact(
        &self,
        bytes: &[u8],
        expected_name: Option<&str>,
    ) -> Result<ModelArtifact, OpenError> {
        if !envelope::is_envelope(bytes) {
            if self.require_encrypted {
                return Err(OpenError::PlainRefused);
            }
            return Ok(ModelArtifact::from_json(bytes)?);
        }
        let keyring = self.keyring.as_ref().ok_or(OpenError::NoKeyring)?;
        let (header, plaintext) = envelope::decrypt(
            keyring,
            bytes,
            Expect {
                name: expected_name,
                version: None,
            },
        )?;
        let artifact = ModelArtifact::from_json(&plaintext)?;
        if artifact.name != header.name || artifact.version != header.version {
            return Err(OpenError::HeaderMismatch);
        }
        Ok(artifact)
    }
}

/// Why an artifact file could not be opened.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OpenError {
    /// The envelope is bad (see [`EnvelopeError`]).
    #[error(transparent)]
    Envelope(#[from] EnvelopeError),
    /// The (decrypted) JSON is not a valid artifact.
    #[error(transparent)]
    Artifact(#[from] ArtifactError),
    /// A plain artifact while `require-encrypted-artifacts` is set.
    #[error("failed to accept a plain artifact: security.require-encrypted-artifacts is set")]
    PlainRefused,
    /// An envelope but no keyring is configured.
    #[error("failed to decrypt artifact: no security.keyring is configured")]
    NoKeyring,
    /// The decrypted artifact names another model or version than its header.
    #[error(
        "failed to decrypt artifact: the decrypted artifact's name or version differs from its header"
    )]
    HeaderMismatch,
}
