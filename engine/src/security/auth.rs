//! Who may call what: HMAC-signed admin requests with roles, bearer tokens on read routes.
//!
//! Admin keys file (mode 0600):
//!
//! ```toml
//! [[keys]]
//! id = "ops-1"                 # sent as x-gauntlet-key-id
//! secret = "base64, >= 32 bytes"
//! principal = "alice"
//! role = "operator"            # viewer | operator | approver | auditor
//! ```
//!
//! Read tokens file (mode 0600), holding only SHA-256 digests of the tokens:
//!
//! ```toml
//! [[tokens]]
//! principal = "predictor"
//! sha256 = "64 lowercase hex digits"
//! ```

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::body::Body;
use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse as _, Response};
use base64::Engine as _;
use http::{HeaderMap, HeaderValue, StatusCode, header};
use serde::Deserialize;
use sha2::{Digest as _, Sha256};
use subtle::ConstantTimeEq as _;

use super::keyring::{check_private, is_valid_key_id};
use super::sign::{self, MIN_SECRET_LEN};
use crate::http::ApiError;
use crate::state::AppState;

/// The one message of every 401: it says nothing of which check failed.
pub(crate) const UNAUTHENTICATED: &str = "failed to authenticate the request";
/// Most nonces remembered at once; past it, signed requests get 503 until old ones expire.
const MAX_NONCES: usize = 1 << 20;

/// A principal's role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    /// Lists the repository.
    Viewer,
    /// Lists, loads (stages) and unloads models.
    Operator,
    /// Lists, promotes and rolls back models.
    Approver,
    /// Lists the repository (and reads audit data).
    Auditor,
}

impl Role {
    /// The role's name as in the keys file.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Operator => "operator",
            Role::Approver => "approver",
            Role::Auditor => "auditor",
        }
    }

    fn allows(self, action: Action) -> bool {
        match action {
            Action::Index => true,
            Action::Load | Action::Unload => self == Role::Operator,
            Action::Promote | Action::Rollback => self == Role::Approver,
        }
    }
}

/// An admin action, one per repository route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Action {
    Index,
    Load,
    Unload,
    Promote,
    Rollback,
}

impl Action {
    /// The action of a repository route template; `None` for any other route.
    fn of_route(route: &str) -> Option<Action> {
        Some(match route {
            "/v2/repository/index" => Action::Index,
            "/v2/repository/models/{m}/load" => Action::Load,
            "/v2/repository/models/{m}/unload" => Action::Unload,
            "/v2/repository/models/{m}/promote" => Action::Promote,
            "/v2/repository/models/{m}/rollback" => Action::Rollback,
            // Four-eyes promotion: reading a review is listing; approving is the approver's
            // promotion right; recording a Gauntlet run is the operator's, who stages.
            "/v2/repository/models/{m}/review" => Action::Index,
            "/v2/repository/models/{m}/approve" => Action::Promote,
            "/v2/repository/models/{m}/runs" => Action::Load,
            _ => return None,
        })
    }

    fn verb(self) -> &'static str {
        match self {
            Action::Index => "list the repository",
            Action::Load => "load models",
            Action::Unload => "unload models",
            Action::Promote => "promote models",
            Action::Rollback => "roll back models",
        }
    }
}

/// The authenticated caller of an admin route, put in the request's extensions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// The principal's name.
    pub name: String,
    /// Its role.
    pub role: Role,
    /// The key id it signed with.
    pub key_id: String,
}

/// Why an admin keys or read tokens file was refused. Never quotes a secret.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AuthFileError {
    /// Unreadable, or readable by group/others.
    #[error(transparent)]
    Access(#[from] super::keyring::KeyringError),
    /// Malformed TOML or schema.
    #[error("failed to parse `{}`: {message}", path.display())]
    Parse {
        /// The file.
        path: PathBuf,
        /// toml's message without the quoted line.
        message: String,
    },
    /// A field is invalid.
    #[error("invalid `{}`: {field}: {message}", path.display())]
    Invalid {
        /// The file.
        path: PathBuf,
        /// The field, e.g. `keys[0].secret`.
        field: String,
        /// What is wrong.
        message: String,
    },
}

struct AdminKey {
    secret: Vec<u8>,
    principal: Principal,
}

/// The admin keys: secrets by key id, each with a principal and a role. `Debug` shows ids only.
#[derive(Default)]
pub struct AdminKeys {
    keys: HashMap<String, AdminKey>,
}

impl std::fmt::Debug for AdminKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_set().entries(self.keys.keys()).finish()
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AdminKeysFile {
    #[serde(default)]
    keys: Vec<AdminKeyEntry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AdminKeyEntry {
    id: String,
    secret: String,
    principal: String,
    role: Role,
}

fn parse_toml<T: serde::de::DeserializeOwned>(path: &Path, text: &str) -> Result<T, AuthFileError> {
    toml::from_str(text).map_err(|e: toml::de::Error| AuthFileError::Parse {
        path: path.to_owned(),
        message: match e.span() {
            Some(span) => format!("{} (at byte {})", e.message(), span.start),
            None => e.message().to_owned(),
        },
    })
}

fn read_private(path: &Path) -> Result<String, AuthFileError> {
    check_private(path)?;
    std::fs::read_to_string(path).map_err(|source| {
        AuthFileError::Access(super::keyring::KeyringError::Io {
            action: "read",
            path: path.to_owned(),
            source,
        })
    })
}

impl AdminKeys {
    /// Reads an admin keys file, refusing one that group or others may read.
    ///
    /// # Errors
    /// [`AuthFileError`] naming the file and the field.
    pub fn load(path: &Path) -> Result<AdminKeys, AuthFileError> {
        let text = read_private(path)?;
        AdminKeys::from_toml_str(path, &text)
    }

    /// Parses an admin keys document (`path` names it in errors).
    ///
    /// # Errors
    /// [`AuthFileError::Parse`] or [`AuthFileError::Invalid`].
    pub fn from_toml_str(path: &Path, text: &str) -> Result<AdminKeys, AuthFileError> {
        let file: AdminKeysFile = parse_toml(path, text)?;
        let mut keys = AdminKeys::default();
        for (i, e) in file.keys.into_iter().enumerate() {
            let invalid = |field: &str, message: &str| AuthFileError::Invalid {
                path: path.to_owned(),
                field: format!("keys[{i}].{field}"),
                message: message.to_owned(),
            };
            if !is_valid_key_id(&e.id) {
                return Err(invalid("id", "must match [A-Za-z0-9_.-]{1,64}"));
            }
            let secret = base64::engine::general_purpose::STANDARD
                .decode(e.secret.trim())
                .map_err(|_| invalid("secret", "must be base64"))?;
            if secret.len() < MIN_SECRET_LEN {
                return Err(invalid(
                    "secret",
                    &format!("must be at least {MIN_SECRET_LEN} bytes"),
                ));
            }
            if e.principal.is_empty() || e.principal.len() > 128 {
                return Err(invalid("principal", "must be 1 to 128 bytes"));
            }
            keys.insert(e.id, secret, e.principal, e.role)
                .map_err(|_| invalid("id", "duplicate key id"))?;
        }
        Ok(keys)
    }

    /// Adds a key (for tests and embedding).
    ///
    /// # Errors
    /// The id when it is already present.
    pub fn insert(
        &mut self,
        id: String,
        secret: Vec<u8>,
        principal: String,
        role: Role,
    ) -> Result<(), String> {
        if self.keys.contains_key(&id) {
            return Err(id);
        }
        let principal = Principal {
            name: principal,
            role,
            key_id: id.clone(),
        };
        self.keys.insert(id, AdminKey { secret, principal });
        Ok(())
    }
}

/// The read tokens: SHA-256 digests with principals.
#[derive(Debug, Default)]
pub struct ReadTokens {
    digests: Vec<([u8; 32], String)>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TokensFile {
    #[serde(default)]
    tokens: Vec<TokenEntry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TokenEntry {
    principal: String,
    sha256: String,
}

impl ReadTokens {
    /// Reads a read tokens file, refusing one that group or others may read.
    ///
    /// # Errors
    /// [`AuthFileError`] naming the file and the field.
    pub fn load(path: &Path) -> Result<ReadTokens, AuthFileError> {
        let text = read_private(path)?;
        let file: TokensFile = parse_toml(path, &text)?;
        let mut tokens = ReadTokens::default();
        for (i, e) in file.tokens.into_iter().enumerate() {
            let digest = decode_digest(&e.sha256).ok_or_else(|| AuthFileError::Invalid {
                path: path.to_owned(),
                field: format!("tokens[{i}].sha256"),
                message: "must be 64 lowercase hex digits".into(),
            })?;
            tokens.digests.push((digest, e.principal));
        }
        Ok(tokens)
    }

    /// Adds a token by its plain value (for tests and embedding).
    pub fn insert_token(&mut self, token: &str, principal: &str) {
        self.digests.push((
            Sha256::digest(token.as_bytes()).into(),
            principal.to_owned(),
        ));
    }

    /// Whether `token` is one of the tokens. Every digest is compared, in constant time.
    pub fn accepts(&self, token: &[u8]) -> bool {
        let digest: [u8; 32] = Sha256::digest(token).into();
        let mut found = subtle::Choice::from(0);
        for (d, _) in &self.digests {
            found |= d.ct_eq(&digest);
        }
        bool::from(found)
    }
}

fn decode_digest(hex: &str) -> Option<[u8; 32]> {
    if hex.len() != 64 || !hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, pair) in hex.as_bytes().chunks(2).enumerate() {
        let s = std::str::from_utf8(pair).ok()?;
        out[i] = u8::from_str_radix(s, 16).ok()?;
    }
    Some(out)
}

/// Nonces accepted within the skew window, per key id, with the time they expire.
#[derive(Debug, Default)]
pub(crate) struct NonceCache {
    seen: Mutex<HashMap<(String, String), u64>>,
}

impl NonceCache {
    /// Records a nonce until `expires` (Unix seconds); false when it was already recorded
    /// (a replay) or the cache is full.
    fn insert(&self, key_id: &str, nonce: &str, now: u64, expires: u64) -> Result<bool, ()> {
        let mut seen = self
            .seen
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if seen.len() >= MAX_NONCES {
            seen.retain(|_, exp| *exp >= now);
            if seen.len() >= MAX_NONCES {
                return Err(());
            }
        }
        match seen.entry((key_id.to_owned(), nonce.to_owned())) {
            std::collections::hash_map::Entry::Occupied(mut e) => {
                if *e.get() < now {
                    e.insert(expires);
                    Ok(true)
                } else {
                    Ok(false)
                }
            }
            std::collections::hash_map::Entry::Vacant(e) => {
                e.insert(expires);
                Ok(true)
            }
        }
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn unauthenticated(reason: &'static str) -> Response {
    // The reason goes to the log only: the client learns nothing about which check failed.
    tracing::info!(reason, "request refused: not authenticated");
    let mut response = ApiError::new(StatusCode::UNAUTHORIZED, UNAUTHENTICATED).into_response();
    response.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static(sign::SCHEME),
    );
    response
}

fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    let mut values = headers.get_all(name).iter();
    let first = values.next()?;
    if values.next().is_some() {
        return None;
    }
    first.to_str().ok()
}

/// The admin layer: verifies the signature, the clock skew and the nonce of every request to a
/// repository route when admin keys are configured, then checks the principal's role (403).
pub(crate) async fn admin_auth(
    State(state): State<AppState>,
    req: Request,
    next: Next,
) -> Response {
    let Some(keys) = state.security().admin.as_ref() else {
        return next.run(req).await;
    };
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned());
    let Some(action) = route.as_deref().and_then(Action::of_route) else {
        // A route this layer does not know is refused, not waved through.
        return ApiError::new(StatusCode::FORBIDDEN, "no principal may call this route")
            .into_response();
    };
    let headers = req.headers();
    let (Some(key_id), Some(timestamp), Some(nonce), Some(signed), Some(signature)) = (
        header_str(headers, sign::HEADER_KEY_ID),
        header_str(headers, sign::HEADER_TIMESTAMP),
        header_str(headers, sign::HEADER_NONCE),
        header_str(headers, sign::HEADER_SIGNED_HEADERS),
        header_str(headers, sign::HEADER_SIGNATURE),
    ) else {
        return unauthenticated("missing or repeated signature header");
    };
    let Ok(timestamp) = timestamp.parse::<u64>() else {
        return unauthenticated("malformed timestamp");
    };
    if !(16..=64).contains(&nonce.len())
        || !nonce
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-'))
    {
        return unauthenticated("malformed nonce");
    }
    let now = unix_now();
    let skew = state.security().max_skew.as_secs();
    if now.abs_diff(timestamp) > skew {
        return unauthenticated("timestamp outside the allowed clock skew");
    }
    let names: Vec<&str> = if signed.is_empty() {
        Vec::new()
    } else {
        signed.split(';').collect()
    };
    let well_formed = names.windows(2).all(|w| w[0] < w[1])
        && names.iter().all(|n| {
            !n.is_empty()
                && *n != sign::HEADER_SIGNATURE
                && n.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        });
    if !well_formed
        || (headers.contains_key(header::CONTENT_TYPE) && !names.contains(&"content-type"))
    {
        return unauthenticated("malformed signed-headers list");
    }
    let mut signed_values = Vec::with_capacity(names.len());
    for name in &names {
        match header_str(headers, name) {
            Some(v) => signed_values.push(((*name).to_owned(), v.to_owned())),
            None => return unauthenticated("a signed header is missing"),
        }
    }
    let (key_id, nonce, signature) = (key_id.to_owned(), nonce.to_owned(), signature.to_owned());
    let (parts, body) = req.into_parts();
    let limit = state
        .config()
        .max_artifact_bytes
        .max(state.config().max_body_bytes);
    let body = match tokio::time::timeout(
        crate::http::LOAD_BODY_DEADLINE,
        crate::http::read_body(&parts.headers, body, limit, "max-artifact-bytes"),
    )
    .await
    {
        Ok(Ok(bytes)) => bytes,
        Ok(Err(err)) => return err.into_response(),
        Err(_) => {
            return ApiError::new(
                StatusCode::REQUEST_TIMEOUT,
                "failed to receive the request body within the load body deadline",
            )
            .into_response();
        }
    };
    let header_refs: Vec<(&str, &str)> = signed_values
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_str()))
        .collect();
    let request = sign::Request {
        method: parts.method.as_str(),
        path: parts.uri.path(),
        query: parts.uri.query(),
        headers: &header_refs,
        body: &body,
        key_id: &key_id,
        timestamp,
        nonce: &nonce,
    };
    let Some(key) = keys.keys.get(&key_id) else {
        // Same work as a known key, so that timing does not tell which ids exist.
        let _ = sign::verify(&[0u8; MIN_SECRET_LEN], &request, &signature);
        return unauthenticated("unknown key id");
    };
    if !sign::verify(&key.secret, &request, &signature) {
        return unauthenticated("signature does not verify");
    }
    match state
        .security()
        .nonces
        .insert(&key_id, &nonce, now, timestamp.saturating_add(skew))
    {
        Ok(true) => {}
        Ok(false) => return unauthenticated("replayed nonce"),
        Err(()) => {
            return ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "too many signed requests in the clock-skew window; retry later",
            )
            .into_response();
        }
    }
    let principal = key.principal.clone();
    if !principal.role.allows(action) {
        tracing::info!(
            principal = %principal.name,
            role = principal.role.as_str(),
            route = route.as_deref().unwrap_or(""),
            "request refused: role lacks permission"
        );
        return ApiError::new(
            StatusCode::FORBIDDEN,
            format!("role {} may not {}", principal.role.as_str(), action.verb()),
        )
        .into_response();
    }
    tracing::info!(
        principal = %principal.name,
        role = principal.role.as_str(),
        key = %principal.key_id,
        route = route.as_deref().unwrap_or(""),
        "signed admin request accepted"
    );
    let mut req = Request::from_parts(parts, Body::from(body));
    req.extensions_mut().insert(principal);
    next.run(req).await
}

/// The read layer: `Authorization: Bearer <token>` on every route but the health probes when
/// read tokens are configured.
pub(crate) async fn read_auth(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let Some(tokens) = state.security().tokens.as_ref() else {
        return next.run(req).await;
    };
    if req.uri().path().starts_with("/v2/health/") {
        return next.run(req).await;
    }
    let token = header_str(req.headers(), header::AUTHORIZATION.as_str())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    match token {
        Some(t) if tokens.accepts(t.as_bytes()) => next.run(req).await,
        _ => {
            tracing::info!("request refused: no valid bearer token");
            let mut response =
                ApiError::new(StatusCode::UNAUTHORIZED, UNAUTHENTICATED).into_response();
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            response
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_map_to_actions() {
        for role in [Role::Viewer, Role::Operator, Role::Approver, Role::Auditor] {
            assert!(role.allows(Action::Index));
        }
        assert!(Role::Operator.allows(Action::Load) && Role::Operator.allows(Action::Unload));
        assert!(!Role::Operator.allows(Action::Promote));
        assert!(Role::Approver.allows(Action::Promote) && Role::Approver.allows(Action::Rollback));
        assert!(!Role::Approver.allows(Action::Load));
        assert!(!Role::Viewer.allows(Action::Load) && !Role::Auditor.allows(Action::Promote));
    }

    #[test]
    fn nonces_replay_within_their_window_only() {
        let cache = NonceCache::default();
        assert_eq!(cache.insert("k", "n", 100, 400), Ok(true));
        assert_eq!(cache.insert("k", "n", 200, 500), Ok(false));
        assert_eq!(cache.insert("j", "n", 200, 500), Ok(true), "per key id");
        assert_eq!(
            cache.insert("k", "n", 401, 700),
            Ok(true),
            "expired entries are reused"
        );
    }

    #[test]
    fn tokens_compare_by_digest() {
        let mut t = ReadTokens::default();
        t.insert_token("s3cret-token-value", "p");
        assert!(t.accepts(b"s3cret-token-value"));
        assert!(!t.accepts(b"s3cret-token-valuf"));
        assert!(!ReadTokens::default().accepts(b""));
    }

    #[test]
    fn admin_key_files_are_checked_without_echoing_secrets() {
        let p = Path::new("admin.toml");
        let short =
            "[[keys]]\nid = \"a\"\nsecret = \"c2hvcnQ=\"\nprincipal = \"x\"\nrole = \"operator\"\n";
        let msg = AdminKeys::from_toml_str(p, short).unwrap_err().to_string();
        assert_eq!(
            msg,
            "invalid `admin.toml`: keys[0].secret: must be at least 32 bytes"
        );
        let bad_role = short.replace("operator", "root");
        let msg = AdminKeys::from_toml_str(p, &bad_role)
            .unwrap_err()
            .to_string();
        assert!(msg.contains("root") && !msg.contains("c2hvcnQ"), "{msg}");
    }
}
