//! The `GNT1-HMAC-SHA256` request-signing scheme of the admin API, for servers and clients.
//!
//! A client signs a request with a key id and a shared secret and sends five headers:
//!
//! | header | value |
//! |---|---|
//! | `x-gauntlet-key-id` | the key id, `[A-Za-z0-9_.-]{1,64}` |
//! | `x-gauntlet-timestamp` | Unix time in whole seconds, decimal |
//! | `x-gauntlet-nonce` | 16 to 64 characters of `[A-Za-z0-9_-]`, never reused |
//! | `x-gauntlet-signed-headers` | lowercase names of the other signed headers, sorted, `;`-separated; must include `content-type` when the request has one (may be empty) |
//! | `x-gauntlet-signature` | lowercase hex of HMAC-SHA256(secret, canonical request) |
//!
//! The canonical request is these lines joined by `\n` (no final newline):
//!
//! ```text
//! GNT1-HMAC-SHA256
//! <method, uppercase>
//! <path exactly as sent, percent-encoding kept, no query>
//! <query: the raw `&`-separated parts, empty parts dropped, sorted bytewise, joined by `&`>
//! <signed header names joined by `;`>
//! <one line per signed header, in that order: name:value with surrounding blanks trimmed>
//! <key id>
//! <timestamp>
//! <nonce>
//! <lowercase hex SHA-256 of the body (of the empty string when there is none)>
//! ```
//!
//! The server refuses (401) a missing or malformed header, an unknown key id, a timestamp more
//! than `max-clock-skew` (5 minutes) away from its clock, a signature that does not verify
//! (compared in constant time), and a nonce it has already accepted for that key within the
//! skew window. Test vectors: `engine/tests/vectors/signing.json`.
//!
//! ```
//! use gauntlet_engine::security::sign::{Request, sign, verify};
//!
//! let request = Request {
//!     method: "POST",
//!     path: "/v2/repository/models/m/promote",
//!     query: None,
//!     headers: &[],
//!     body: b"",
//!     key_id: "ops-1",
//!     timestamp: 1_767_225_600,
//!     nonce: "0123456789abcdef",
//! };
//! let signature = sign(b"a secret of at least 32 bytes!!!", &request);
//! assert!(verify(b"a secret of at least 32 bytes!!!", &request, &signature));
//! ```

use hmac::{Hmac, Mac as _};
use sha2::{Digest as _, Sha256};

/// The scheme's name, the canonical request's first line.
pub const SCHEME: &str = "GNT1-HMAC-SHA256";
/// Header carrying the key id.
pub const HEADER_KEY_ID: &str = "x-gauntlet-key-id";
/// Header carrying the Unix timestamp in seconds.
pub const HEADER_TIMESTAMP: &str = "x-gauntlet-timestamp";
/// Header carrying the nonce.
pub const HEADER_NONCE: &str = "x-gauntlet-nonce";
/// Header listing the other signed headers.
pub const HEADER_SIGNED_HEADERS: &str = "x-gauntlet-signed-headers";
/// Header carrying the signature.
pub const HEADER_SIGNATURE: &str = "x-gauntlet-signature";
/// Shortest admin secret, in bytes.
pub const MIN_SECRET_LEN: usize = 32;

/// The parts of a request that are signed.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    /// HTTP method (`POST`); uppercased in the canonical form.
    pub method: &'a str,
    /// Path as sent, without the query.
    pub path: &'a str,
    /// Raw query string without `?`, if any.
    pub query: Option<&'a str>,
    /// Signed headers as (lowercase name, value), sorted by name.
    pub headers: &'a [(&'a str, &'a str)],
    /// The body.
    pub body: &'a [u8],
    /// Key id.
    pub key_id: &'a str,
    /// Unix time in seconds.
    pub timestamp: u64,
    /// Nonce.
    pub nonce: &'a str,
}

/// Lowercase hex.
pub fn hex(bytes: &[u8]) -> String {
    crate::audit::hex::encode(bytes)
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    let digit = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    };
    s.as_bytes()
        .chunks(2)
        .map(|p| Some(digit(p[0])? << 4 | digit(p[1])?))
        .collect()
}

/// The canonical query: raw `&`-separated parts, empty ones dropped, sorted bytewise.
pub fn canonical_query(query: Option<&str>) -> String {
    let mut parts: Vec<&str> = query
        .unwrap_or("")
        .split('&')
        .filter(|p| !p.is_empty())
        .collect();
    parts.sort_unstable();
    parts.join("&")
}

/// The canonical request (see the [module docs](self)).
pub fn canonical_request(r: &Request<'_>) -> String {
    let names: Vec<&str> = r.headers.iter().map(|(n, _)| *n).collect();
    let mut out = String::with_capacity(256 + r.path.len());
    out.push_str(SCHEME);
    out.push('\n');
    out.push_str(&r.method.to_ascii_uppercase());
    out.push('\n');
    out.push_str(r.path);
    out.push('\n');
    out.push_str(&canonical_query(r.query));
    out.push('\n');
    out.push_str(&names.join(";"));
    out.push('\n');
    for (name, value) in r.headers {
        out.push_str(name);
        out.push(':');
        out.push_str(value.trim());
        out.push('\n');
    }
    out.push_str(r.key_id);
    out.push('\n');
    out.push_str(&r.timestamp.to_string());
    out.push('\n');
    out.push_str(r.nonce);
    out.push('\n');
    out.push_str(&hex(&Sha256::digest(r.body)));
    out
}

fn mac(secret: &[u8], r: &Request<'_>) -> Hmac<Sha256> {
    // HMAC takes a key of any length.
    let mut mac = <Hmac<Sha256> as hmac::digest::KeyInit>::new_from_slice(secret)
        .unwrap_or_else(|_| unreachable!("HMAC accepts every key length"));
    mac.update(canonical_request(r).as_bytes());
    mac
}

/// The signature: lowercase hex of HMAC-SHA256(secret, canonical request).
pub fn sign(secret: &[u8], r: &Request<'_>) -> String {
    hex(&mac(secret, r).finalize().into_bytes())
}

/// Whether `signature` (lowercase hex) signs `r`; compared in constant time.
pub fn verify(secret: &[u8], r: &Request<'_>, signature: &str) -> bool {
    match unhex(signature) {
        Some(bytes) => mac(secret, r).verify_slice(&bytes).is_ok(),
        None => false,
    }
}

/// A random nonce: 32 lowercase hex characters from the OS generator.
pub fn random_nonce() -> String {
    use aes_gcm::aead::{OsRng, rand_core::RngCore as _};
    let mut bytes = [0u8; 16];
    OsRng.fill_bytes(&mut bytes);
    hex(&bytes)
}

/// A random admin secret of [`MIN_SECRET_LEN`] bytes from the OS generator.
pub fn random_secret() -> [u8; MIN_SECRET_LEN] {
    use aes_gcm::aead::{OsRng, rand_core::RngCore as _};
    let mut bytes = [0u8; MIN_SECRET_LEN];
    OsRng.fill_bytes(&mut bytes);
    bytes
}

/// The five signature headers for a request, as (name, value): what a client adds. Signs
/// `content-type` when given.
#[expect(
    clippy::too_many_arguments,
    reason = "each is one signed part of the request"
)]
pub fn signature_headers(
    secret: &[u8],
    key_id: &str,
    method: &str,
    path_and_query: &str,
    content_type: Option<&str>,
    body: &[u8],
    timestamp: u64,
    nonce: &str,
) -> Vec<(&'static str, String)> {
    let (path, query) = match path_and_query.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (path_and_query, None),
    };
    let headers: Vec<(&str, &str)> = content_type
        .map(|ct| ("content-type", ct))
        .into_iter()
        .collect();
    let request = Request {
        method,
        path,
        query,
        headers: &headers,
        body,
        key_id,
        timestamp,
        nonce,
    };
    vec![
        (HEADER_KEY_ID, key_id.to_owned()),
        (HEADER_TIMESTAMP, timestamp.to_string()),
        (HEADER_NONCE, nonce.to_owned()),
        (
            HEADER_SIGNED_HEADERS,
            if content_type.is_some() {
                "content-type".to_owned()
            } else {
                String::new()
            },
        ),
        (HEADER_SIGNATURE, sign(secret, &request)),
    ]
}

/// Environment variable naming the admin key id ([`Credentials::from_env`]).
pub const ENV_KEY_ID: &str = "GAUNTLET_ADMIN_KEY_ID";
/// Environment variable holding the base64 admin secret ([`Credentials::from_env`]).
pub const ENV_SECRET: &str = "GAUNTLET_ADMIN_SECRET";

/// Environment variable naming the role of [`ENV_KEY_ID`] (optional; [`Credentials::from_env`]).
pub const ENV_ROLE: &str = "GAUNTLET_ADMIN_ROLE";

/// A client's signing credentials: a key id, its secret and, when known, the role the server
/// gives it. `Debug` shows the id and role only.
#[derive(Clone)]
pub struct Credentials {
    key_id: String,
    secret: Vec<u8>,
    role: Option<super::Role>,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("key_id", &self.key_id)
            .field("role", &self.role)
            .finish_non_exhaustive()
    }
}

/// Why credentials could not be read. Never quotes the secret.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CredentialsError {
    /// A variable or field is missing.
    #[error("failed to read admin credentials: {0} is not set")]
    Missing(&'static str),
    /// The key id or the secret is malformed.
    #[error("failed to read admin credentials: {field} {message}")]
    Invalid {
        /// The variable or field.
        field: &'static str,
        /// What is wrong.
        message: &'static str,
    },
    /// The credentials file is unreadable or readable by group/others.
    #[error(transparent)]
    File(#[from] super::keyring::KeyringError),
    /// The credentials file is not `key-id = "…"` and `secret = "…"`.
    #[error("failed to parse admin credentials file: {0}")]
    Parse(String),
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct CredentialsFile {
    key_id: String,
    secret: String,
    #[serde(default)]
    role: Option<super::Role>,
}

impl Credentials {
    /// Credentials from a key id and a base64 secret of at least [`MIN_SECRET_LEN`] bytes.
    ///
    /// # Errors
    /// [`CredentialsError::Invalid`].
    pub fn new(key_id: &str, secret_base64: &str) -> Result<Credentials, CredentialsError> {
        use base64::Engine as _;
        if !super::keyring::is_valid_key_id(key_id) {
            return Err(CredentialsError::Invalid {
                field: "key id",
                message: "must match [A-Za-z0-9_.-]{1,64}",
            });
        }
        let secret = base64::engine::general_purpose::STANDARD
            .decode(secret_base64.trim())
            .map_err(|_| CredentialsError::Invalid {
                field: "secret",
                message: "must be base64",
            })?;
        if secret.len() < MIN_SECRET_LEN {
            return Err(CredentialsError::Invalid {
                field: "secret",
                message: "must be at least 32 bytes",
            });
        }
        Ok(Credentials {
            key_id: key_id.to_owned(),
            secret,
            role: None,
        })
    }

    /// Credentials from a key id and raw secret bytes (at least [`MIN_SECRET_LEN`]).
    ///
    /// # Errors
    /// [`CredentialsError::Invalid`].
    pub fn from_secret(key_id: &str, secret: &[u8]) -> Result<Credentials, CredentialsError> {
        use base64::Engine as _;
        Credentials::new(
            key_id,
            &base64::engine::general_purpose::STANDARD.encode(secret),
        )
    }

    /// The same credentials, saying which role the server gives the key.
    #[must_use]
    pub fn with_role(mut self, role: super::Role) -> Credentials {
        self.role = Some(role);
        self
    }

    /// The role the server gives the key, when known.
    pub fn role(&self) -> Option<super::Role> {
        self.role
    }

    /// The secret, for a test harness that must forge near-misses of a valid signature
    /// (an expired timestamp, a swapped body) and look for the secret in what a server says.
    pub fn secret(&self) -> &[u8] {
        &self.secret
    }

    /// From [`ENV_KEY_ID`] and [`ENV_SECRET`], and [`ENV_ROLE`] when set.
    ///
    /// # Errors
    /// [`CredentialsError::Missing`] or [`CredentialsError::Invalid`].
    pub fn from_env() -> Result<Credentials, CredentialsError> {
        let id = std::env::var(ENV_KEY_ID).map_err(|_| CredentialsError::Missing(ENV_KEY_ID))?;
        let secret =
            std::env::var(ENV_SECRET).map_err(|_| CredentialsError::Missing(ENV_SECRET))?;
        let credentials = Credentials::new(&id, &secret)?;
        match std::env::var(ENV_ROLE) {
            Ok(role) => match super::Role::parse(&role) {
                Some(role) => Ok(credentials.with_role(role)),
                None => Err(CredentialsError::Invalid {
                    field: ENV_ROLE,
                    message: "must be viewer, operator, approver or auditor",
                }),
            },
            Err(_) => Ok(credentials),
        }
    }

    /// From a TOML file (mode 0600) with `key-id = "…"`, `secret = "…"` (base64) and
    /// optionally `role = "operator"`.
    ///
    /// # Errors
    /// [`CredentialsError`]; a file group or others may read is refused.
    pub fn from_file(path: &std::path::Path) -> Result<Credentials, CredentialsError> {
        super::keyring::check_private(path)?;
        let text =
            std::fs::read_to_string(path).map_err(|source| super::keyring::KeyringError::Io {
                action: "read",
                path: path.to_owned(),
                source,
            })?;
        let file: CredentialsFile = toml::from_str(&text)
            .map_err(|e: toml::de::Error| CredentialsError::Parse(e.message().to_owned()))?;
        let credentials = Credentials::new(&file.key_id, &file.secret)?;
        Ok(match file.role {
            Some(role) => credentials.with_role(role),
            None => credentials,
        })
    }

    /// The key id.
    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    /// The five signature headers for a request signed now with a random nonce.
    pub fn sign_now(
        &self,
        method: &str,
        path_and_query: &str,
        content_type: Option<&str>,
        body: &[u8],
    ) -> Vec<(&'static str, String)> {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        signature_headers(
            &self.secret,
            &self.key_id,
            method,
            path_and_query,
            content_type,
            body,
            now,
            &random_nonce(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Deserialize)]
    struct Vector {
        name: String,
        secret_hex: String,
        method: String,
        path: String,
        query: Option<String>,
        headers: Vec<(String, String)>,
        body: String,
        key_id: String,
        timestamp: u64,
        nonce: String,
        canonical_request: String,
        signature: String,
    }

    /// The published vectors: a third-party implementation checks itself against this file.
    #[test]
    fn published_test_vectors_hold() {
        let text = include_str!("../../tests/vectors/signing.json");
        let vectors: Vec<Vector> = serde_json::from_str(text).unwrap();
        assert!(vectors.len() >= 3);
        for v in &vectors {
            let headers: Vec<(&str, &str)> = v
                .headers
                .iter()
                .map(|(n, v)| (n.as_str(), v.as_str()))
                .collect();
            let r = Request {
                method: &v.method,
                path: &v.path,
                query: v.query.as_deref(),
                headers: &headers,
                body: v.body.as_bytes(),
                key_id: &v.key_id,
                timestamp: v.timestamp,
                nonce: &v.nonce,
            };
            let secret = unhex(&v.secret_hex).unwrap();
            assert_eq!(canonical_request(&r), v.canonical_request, "{}", v.name);
            assert_eq!(sign(&secret, &r), v.signature, "{}", v.name);
            assert!(verify(&secret, &r, &v.signature), "{}", v.name);
        }
    }

    #[test]
    fn credentials_sign_and_never_show_the_secret() {
        use base64::Engine as _;
        let b64 = base64::engine::general_purpose::STANDARD.encode([5u8; 32]);
        let c = Credentials::new("ops-1", &b64).unwrap();
        assert!(!format!("{c:?}").contains(&b64));
        let h = c.sign_now("POST", "/v2/repository/index?x=1", None, b"");
        let get = |n: &str| h.iter().find(|(k, _)| *k == n).unwrap().1.clone();
        let r = Request {
            method: "POST",
            path: "/v2/repository/index",
            query: Some("x=1"),
            headers: &[],
            body: b"",
            key_id: "ops-1",
            timestamp: get(HEADER_TIMESTAMP).parse().unwrap(),
            nonce: &get(HEADER_NONCE),
        };
        assert!(verify(&[5u8; 32], &r, &get(HEADER_SIGNATURE)));
        let short = base64::engine::general_purpose::STANDARD.encode([5u8; 8]);
        let err = Credentials::new("ops-1", &short).unwrap_err().to_string();
        assert_eq!(
            err,
            "failed to read admin credentials: secret must be at least 32 bytes"
        );
    }

    #[test]
    fn any_change_breaks_the_signature() {
        let secret = [7u8; 32];
        let headers = [("content-type", "application/json")];
        let r = Request {
            method: "POST",
            path: "/v2/repository/models/m/load",
            query: Some("b=2&a=1"),
            headers: &headers,
            body: b"{}",
            key_id: "k",
            timestamp: 1,
            nonce: "nonce-nonce-nonce",
        };
        let sig = sign(&secret, &r);
        assert!(verify(&secret, &r, &sig));
        assert!(
            verify(
                &secret,
                &Request {
                    query: Some("a=1&b=2&"),
                    ..r
                },
                &sig
            ),
            "query order is canonical"
        );
        for changed in [
            Request { method: "GET", ..r },
            Request {
                path: "/v2/repository/models/n/load",
                ..r
            },
            Request {
                query: Some("a=1"),
                ..r
            },
            Request {
                headers: &[("content-type", "text/plain")],
                ..r
            },
            Request { body: b"{ }", ..r },
            Request { key_id: "j", ..r },
            Request { timestamp: 2, ..r },
            Request {
                nonce: "nonce-nonce-noncf",
                ..r
            },
        ] {
            assert!(
                !verify(&secret, &changed, &sig),
                "{}",
                canonical_request(&changed)
            );
        }
        assert!(!verify(&[8u8; 32], &r, &sig));
        assert!(!verify(&secret, &r, &sig.to_uppercase()));
        assert!(!verify(&secret, &r, "zz"));
    }
}
