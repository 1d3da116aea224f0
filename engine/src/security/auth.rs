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
    /// Lists the repository and reads the audit log.
    Viewer,
    /// Lists, loads (stages) and unloads models.
    Operator,
    /// Lists, promotes and rolls back models.
    Approver,
    /// Lists the repository, reads the audit log and prunes it past its retention.
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

    /// Every role.
    pub const ALL: [Role; 4] = [Role::Viewer, Role::Operator, Role::Approver, Role::Auditor];

    /// The role named `name` (as in the keys file), if any.
    pub fn parse(name: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.as_str() == name)
    }

    /// Whether this role may make the admin call `method path` (a concrete path, such as
    /// `/v2/repository/models/m/load`); `None` when it is no admin call.
    pub fn may_call(self, method: &str, path: &str) -> Option<bool> {
        let (_, route) = admin_route(method, path)?;
        let method = http::Method::from_bytes(method.as_bytes()).ok()?;
        Action::of_route(&method, route).map(|a| self.allows(a))
    }

    fn allows(self, action: Action) -> bool {
        match action {
            // The trading controls authorise by name (`trading.risk-principals`), once the
            // signature has said who is calling; a checkpoint only signs what is logged.
            Action::Index
            | Action::Review
            | Action::Checkpoint
            | Action::KillSwitch
            | Action::EnableAlgo => true,
            Action::Load | Action::Unload => self == Role::Operator,
            Action::Promote | Action::Rollback => self == Role::Approver,
            // The log holds who did what (pseudonymised): read by those who watch, not by
            // those who act.
            Action::ReadAudit => matches!(self, Role::Viewer | Role::Auditor),
            Action::Prune => self == Role::Auditor,
        }
    }
}

/// An admin action: every route that changes the engine's state or acts for a principal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Action {
    Index,
    Load,
    Unload,
    Promote,
    Rollback,
    /// `POST /v2/audit/checkpoint`.
    Checkpoint,
    /// `POST /v2/trading/kill` and `POST /v2/trading/kill/release`.
    KillSwitch,
    /// `POST /v2/trading/algos/{algo}/enable`.
    EnableAlgo,
    /// `POST /v2/audit/prune`: deletes records past their retention.
    Prune,
    /// `GET` of a checkpoint, a proof or a record of the audit log.
    ReadAudit,
    /// `GET /v2/repository/models/{m}/review`: the staged version awaiting approval.
    Review,
}

impl Action {
    /// The action of a request to an admin route template; `None` for any other request. The
    /// router puts the admin layer on exactly these (method, route) pairs.
    fn of_route(method: &http::Method, route: &str) -> Option<Action> {
        if method == http::Method::GET {
            return match route {
                "/v2/audit/checkpoint"
                | "/v2/audit/proof/inclusion"
                | "/v2/audit/proof/consistency"
                | "/v2/audit/records/{index}" => Some(Action::ReadAudit),
                "/v2/repository/models/{m}/review" => Some(Action::Review),
                _ => None,
            };
        }
        if method != http::Method::POST {
            return None;
        }
        Some(match route {
            "/v2/repository/index" => Action::Index,
            "/v2/repository/models/{m}/load" => Action::Load,
            "/v2/repository/models/{m}/unload" => Action::Unload,
            "/v2/repository/models/{m}/promote" => Action::Promote,
            "/v2/repository/models/{m}/rollback" => Action::Rollback,
            "/v2/audit/checkpoint" => Action::Checkpoint,
            "/v2/trading/kill" | "/v2/trading/kill/release" => Action::KillSwitch,
            "/v2/trading/algos/{algo}/enable" => Action::EnableAlgo,
            // Four-eyes promotion: approving is the approver's promotion right; recording a
            // Gauntlet run is the operator's, who stages. Pruning the audit log is the auditor's.
            "/v2/repository/models/{m}/approve" => Action::Promote,
            "/v2/repository/models/{m}/runs" => Action::Load,
            // Sending a remote model's traffic to another backend (blue/green) is a
            // promotion: the approver's.
            "/v2/repository/models/{m}/backend" => Action::Promote,
            "/v2/audit/prune" => Action::Prune,
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
            Action::Checkpoint => "request audit checkpoints",
            Action::KillSwitch => "operate the kill switch",
            Action::EnableAlgo => "re-enable algorithms",
            Action::Prune => "prune the audit log",
            Action::ReadAudit => "read the audit log",
            Action::Review => "review staged models",
        }
    }
}

/// The admin routes, as (method, route template): what the admin layer guards when admin keys
/// are configured. The router layers it on each; a unit test checks each maps to an action.
pub const ADMIN_ROUTES: [(&str, &str); 18] = [
    ("POST", "/v2/repository/index"),
    ("POST", "/v2/repository/models/{m}/load"),
    ("POST", "/v2/repository/models/{m}/unload"),
    ("POST", "/v2/repository/models/{m}/promote"),
    ("POST", "/v2/repository/models/{m}/rollback"),
    ("POST", "/v2/repository/models/{m}/approve"),
    ("POST", "/v2/repository/models/{m}/runs"),
    ("POST", "/v2/repository/models/{m}/backend"),
    ("POST", "/v2/audit/checkpoint"),
    ("POST", "/v2/audit/prune"),
    ("POST", "/v2/trading/kill"),
    ("POST", "/v2/trading/kill/release"),
    ("POST", "/v2/trading/algos/{algo}/enable"),
    ("GET", "/v2/repository/models/{m}/review"),
    ("GET", "/v2/audit/checkpoint"),
    ("GET", "/v2/audit/proof/inclusion"),
    ("GET", "/v2/audit/proof/consistency"),
    ("GET", "/v2/audit/records/{index}"),
];

/// The admin route (method, template) of [`ADMIN_ROUTES`] a request `method path` matches:
/// what a client must sign when the server has admin keys.
pub fn admin_route(method: &str, path: &str) -> Option<(&'static str, &'static str)> {
    let path = path.split('?').next().unwrap_or(path);
    ADMIN_ROUTES.into_iter().find(|(m, template)| {
        m.eq_ignore_ascii_case(method) && {
            let (mut a, mut b) = (template.split('/'), path.split('/'));
            loop {
                match (a.next(), b.next()) {
                    (None, None) => break true,
                    (Some(t), Some(p)) if t.starts_with('{') && !p.is_empty() => {}
                    (Some(t), Some(p)) if t == p => {}
                    _ => break false,
                }
            }
        }
    })
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

/// The admin layer: verifies the signature, the clock skew and the nonce of every request to an
/// admin route ([`ADMIN_ROUTES`]) when admin keys are configured, then checks the principal's
/// role (403). The verified [`Principal`] goes into the request's extensions: with admin keys
/// configured it is the only principal the engine believes (`x-gauntlet-principal` is
/// ignored then).
///
/// Everything that can be checked without the body is checked before any of it is read (the
/// headers, the skew, the key id, a declared length over the route's limit), and the body is
/// bounded by the route's own limit: `max-artifact-bytes` for a load (read while holding the
/// load permit, so at most one unverified artifact is buffered), `max-body-bytes` otherwise.
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
    let Some(action) = route
        .as_deref()
        .and_then(|r| Action::of_route(req.method(), r))
    else {
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
    // An unknown key id is refused before a byte of the body is read: an unauthenticated
    // client must not make the engine buffer an artifact. (The ids are not secret; what a
    // timing difference could tell is only which ids exist.)
    let Some(key) = keys.keys.get(key_id) else {
        return unauthenticated("unknown key id");
    };
    let (key_id, nonce, signature) = (key_id.to_owned(), nonce.to_owned(), signature.to_owned());
    let config = state.config();
    let (limit, limit_key) = if action == Action::Load {
        (config.max_artifact_bytes, "max-artifact-bytes")
    } else {
        (config.max_body_bytes, "max-body-bytes")
    };
    if let Err(err) = crate::http::check_declared_length(headers, limit, limit_key) {
        return err.into_response();
    }
    let load_permit = if action == Action::Load {
        match std::sync::Arc::clone(state.load_permits())
            .acquire_owned()
            .await
        {
            Ok(permit) => Some(permit),
            Err(e) => {
                return ApiError::internal("the load semaphore is closed", &e).into_response();
            }
        }
    } else {
        None
    };
    let (parts, body) = req.into_parts();
    let body = match tokio::time::timeout(
        crate::http::LOAD_BODY_DEADLINE,
        crate::http::read_body(&parts.headers, body, limit, limit_key),
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
    // The handler takes the permit again for its own work.
    drop(load_permit);
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
        assert!(Role::Viewer.allows(Action::ReadAudit) && Role::Auditor.allows(Action::ReadAudit));
        assert!(!Role::Operator.allows(Action::ReadAudit));
        assert!(!Role::Approver.allows(Action::ReadAudit));
    }

    #[test]
    fn admin_routes_match_concrete_paths() {
        assert_eq!(
            admin_route("POST", "/v2/repository/models/m-1/load"),
            Some(("POST", "/v2/repository/models/{m}/load"))
        );
        assert_eq!(
            admin_route("post", "/v2/trading/kill?x=1").map(|r| r.1),
            Some("/v2/trading/kill")
        );
        assert_eq!(admin_route("GET", "/v2/trading/kill"), None);
        assert_eq!(
            admin_route("GET", "/v2/audit/proof/inclusion?index=1&size=2").map(|r| r.1),
            Some("/v2/audit/proof/inclusion")
        );
        assert_eq!(
            Role::Operator.may_call("GET", "/v2/audit/records/7"),
            Some(false)
        );
        assert_eq!(admin_route("POST", "/v2/repository/models//load"), None);
        assert_eq!(admin_route("POST", "/v2/repository/models/m/load/x"), None);
        assert_eq!(admin_route("POST", "/v2/models/m/infer"), None);
        for (method, route) in ADMIN_ROUTES {
            let m = http::Method::from_bytes(method.as_bytes()).unwrap();
            assert!(Action::of_route(&m, route).is_some(), "{route}");
        }
        assert_eq!(
            Role::Operator.may_call("POST", "/v2/repository/models/m/load"),
            Some(true)
        );
        assert_eq!(
            Role::Viewer.may_call("POST", "/v2/repository/models/m/load"),
            Some(false)
        );
        assert_eq!(
            Role::Approver.may_call("POST", "/v2/repository/models/m/backend"),
            Some(true)
        );
        assert_eq!(
            Role::Operator.may_call("POST", "/v2/repository/models/m/backend"),
            Some(false)
        );
        assert_eq!(Role::Viewer.may_call("GET", "/v2/models/m"), None);
        assert_eq!(Role::parse("approver"), Some(Role::Approver));
        assert_eq!(Role::parse("root"), None);
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
