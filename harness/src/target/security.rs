//! What a target needs to reach a secured server, and what a security case may use against it.
//!
//! [`ClientSecurity`] is what the user gives an [`HttpTarget`](super::HttpTarget): a CA file for
//! `https://`, extra headers for every request (`Authorization: Bearer …`), and admin signing
//! credentials (`GNT1-HMAC-SHA256`, the engine's [`sign`] module). Header values and secrets
//! never appear in a `Debug`, an error message or a report.
//!
//! [`SecurityAccess`] is what a target hands the `security` suite: the same credentials, the
//! artifact keyrings (made by the harness in process, given with `--artifact-keyring` and
//! `--retired-keyring` by URL), the raw address for
//! socket-level attacks (slowloris, TLS probes), and every secret the run used, so the suite can
//! look for them in what the target says.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderName, HeaderValue, Request};

use gauntlet_engine::security::keyring::{KeyState, Keyring, KeyringError};
use gauntlet_engine::security::sign::{self, Credentials, CredentialsError};

/// Marks a request that the target must send as it is: no admin signature added. The
/// `security` suite's unsigned and hand-signed attacks carry it.
#[derive(Debug, Clone, Copy)]
pub struct Unsigned;

/// One extra header for every request, from `--header 'Name: value'`. `Debug` shows the name.
#[derive(Clone)]
pub struct ExtraHeader {
    name: HeaderName,
    value: HeaderValue,
}

impl std::fmt::Debug for ExtraHeader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: ***", self.name)
    }
}

/// Why a `--header` was refused. Never quotes the value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HeaderError {
    /// No `:` between name and value.
    #[error("--header: expected `Name: value`, got no `:` (the value is not shown)")]
    NoColon,
    /// The name is not a valid header name.
    #[error("--header: `{0}` is not a valid header name")]
    Name(String),
    /// The value has bytes a header may not carry (control characters, say).
    #[error("--header {0}: the value is not a valid header value (it is not shown)")]
    Value(String),
    /// A header the harness sets itself.
    #[error("--header {0}: this header is set by gauntlet itself")]
    Reserved(String),
}

impl ExtraHeader {
    /// Parses `Name: value`; surrounding blanks of the value are trimmed. The value is marked
    /// sensitive, so HTTP/2 encoders and `Debug` never show it.
    ///
    /// # Errors
    /// [`HeaderError`] naming the header, never its value.
    pub fn parse(text: &str) -> Result<ExtraHeader, HeaderError> {
        let (name, value) = text.split_once(':').ok_or(HeaderError::NoColon)?;
        let name = name.trim();
        let parsed = HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| HeaderError::Name(name.to_owned()))?;
        if matches!(
            parsed.as_str(),
            "host" | "content-length" | "transfer-encoding" | "connection"
        ) || parsed.as_str().starts_with("x-gauntlet-")
        {
            return Err(HeaderError::Reserved(parsed.as_str().to_owned()));
        }
        let mut value = HeaderValue::from_str(value.trim())
            .map_err(|_| HeaderError::Value(parsed.as_str().to_owned()))?;
        value.set_sensitive(true);
        Ok(ExtraHeader {
            name: parsed,
            value,
        })
    }

    /// The header's name.
    pub fn name(&self) -> &HeaderName {
        &self.name
    }

    /// The header's value (sensitive).
    pub fn value(&self) -> &HeaderValue {
        &self.value
    }
}

/// Why admin credentials could not be read. Never quotes a secret.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CredentialsFileError {
    /// A credentials file.
    #[error("failed to read admin credentials from `{}`", path.display())]
    File {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: CredentialsError,
    },
    /// The environment variables.
    #[error(transparent)]
    Env(CredentialsError),
}

/// Admin credentials from files (`key-id`, `secret`, optional `role`; mode 0600), or, when no
/// file is given and `GAUNTLET_ADMIN_KEY_ID` is set, from `GAUNTLET_ADMIN_KEY_ID`,
/// `GAUNTLET_ADMIN_SECRET` and `GAUNTLET_ADMIN_ROLE`.
///
/// # Errors
/// [`CredentialsFileError`] naming the file or the variable.
pub fn load_credentials(files: &[PathBuf]) -> Result<Vec<Credentials>, CredentialsFileError> {
    if files.is_empty() {
        if std::env::var_os(sign::ENV_KEY_ID).is_none() {
            return Ok(Vec::new());
        }
        return Credentials::from_env()
            .map(|c| vec![c])
            .map_err(CredentialsFileError::Env);
    }
    files
        .iter()
        .map(|path| {
            Credentials::from_file(path).map_err(|source| CredentialsFileError::File {
                path: path.clone(),
                source,
            })
        })
        .collect()
}

/// Why an artifact keyring given for a URL target was refused. Never quotes key material.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyringFileError {
    /// The file could not be read or parsed, or group or others may read it.
    #[error("failed to read {flag} `{}`", path.display())]
    File {
        /// The flag that named the file.
        flag: &'static str,
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: KeyringError,
    },
    /// A keyring without a primary key seals nothing.
    #[error("{flag} `{}`: the keyring has no primary key", path.display())]
    NoPrimary {
        /// The flag that named the file.
        flag: &'static str,
        /// The file.
        path: PathBuf,
    },
    /// `--retired-keyring` without `--artifact-keyring`.
    #[error(
        "--retired-keyring needs --artifact-keyring (the target's keyring, which lists the key \
         as retired)"
    )]
    RetiredAlone,
    /// The retired keyring's primary is not a key the target's keyring lists as retired.
    #[error(
        "--retired-keyring: its primary key {id:?} is not retired in the --artifact-keyring \
         (run `gauntlet-engine keys retire --id {id}` on the target's keyring first)"
    )]
    NotRetired {
        /// The key id.
        id: String,
    },
}

/// The target's artifact keyring (`--artifact-keyring`) and a keyring whose primary key the
/// target has since retired (`--retired-keyring`: a copy of the target's keyring from before
/// `gauntlet-engine keys retire`). Each file must be mode 0600, as the engine requires.
///
/// # Errors
/// [`KeyringFileError`] naming the flag and the file or the key id.
pub fn load_keyrings(
    artifact: Option<&Path>,
    retired: Option<&Path>,
) -> Result<(Option<Keyring>, Option<Keyring>), KeyringFileError> {
    let load = |flag: &'static str, path: &Path| -> Result<Keyring, KeyringFileError> {
        let ring = Keyring::load(path).map_err(|source| KeyringFileError::File {
            flag,
            path: path.to_owned(),
            source,
        })?;
        if ring.primary().is_none() {
            return Err(KeyringFileError::NoPrimary {
                flag,
                path: path.to_owned(),
            });
        }
        Ok(ring)
    };
    let artifact = artifact
        .map(|p| load("--artifact-keyring", p))
        .transpose()?;
    let retired = retired.map(|p| load("--retired-keyring", p)).transpose()?;
    if let Some(old) = &retired {
        let ring = artifact.as_ref().ok_or(KeyringFileError::RetiredAlone)?;
        let id = old.primary().unwrap_or_default();
        if !ring
            .list()
            .iter()
            .any(|k| k.id == id && k.state == KeyState::Retired)
        {
            return Err(KeyringFileError::NotRetired { id: id.to_owned() });
        }
    }
    Ok((artifact, retired))
}

/// The material of every key of `ring` that still has some: secrets the target must never
/// show.
pub(crate) fn key_material(ring: &Keyring) -> Vec<Vec<u8>> {
    use base64::Engine as _;
    ring.to_toml_string()
        .lines()
        .filter_map(|l| {
            l.trim()
                .strip_prefix("key = \"")?
                .strip_suffix('"')
                .map(str::to_owned)
        })
        .filter_map(|b64| base64::engine::general_purpose::STANDARD.decode(b64).ok())
        .collect()
}

/// What an [`HttpTarget`](super::HttpTarget) adds for a secured server.
#[derive(Debug, Clone, Default)]
pub struct ClientSecurity {
    /// PEM file of the CA certificates trusted for an `https://` target; without it, the
    /// system's roots.
    pub ca_file: Option<PathBuf>,
    /// Headers added to every request.
    pub headers: Vec<ExtraHeader>,
    /// Admin signing credentials: admin calls ([`gauntlet_engine::security::ADMIN_ROUTES`]) are
    /// signed with the first whose role may make the call (or whose role is unknown).
    pub admin: Vec<Credentials>,
    /// The target's artifact keyring ([`load_keyrings`]): the `security` suite seals its
    /// envelopes under its primary key.
    pub keyring: Option<Keyring>,
    /// A keyring whose primary key the target has retired ([`load_keyrings`]).
    pub retired: Option<Keyring>,
}

/// A raw address of the target, for attacks below HTTP (slowloris, TLS probes).
#[derive(Clone)]
pub struct RawEndpoint {
    /// The socket address.
    pub addr: SocketAddr,
    /// The TLS client config and server name when the address speaks TLS.
    pub tls: Option<(Arc<rustls::ClientConfig>, String)>,
}

impl std::fmt::Debug for RawEndpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RawEndpoint")
            .field("addr", &self.addr)
            .field("tls", &self.tls.as_ref().map(|(_, name)| name))
            .finish()
    }
}

/// A byte stream to a [`RawEndpoint`], plain or TLS.
pub trait RawStream: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin> RawStream for T {}

impl RawEndpoint {
    /// Connects (and, for TLS, completes the handshake).
    ///
    /// # Errors
    /// The I/O or handshake error.
    pub async fn connect(&self) -> std::io::Result<Box<dyn RawStream>> {
        let tcp = tokio::net::TcpStream::connect(self.addr).await?;
        match &self.tls {
            None => Ok(Box::new(tcp)),
            Some((config, name)) => {
                let name = rustls::pki_types::ServerName::try_from(name.clone())
                    .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
                let stream = tokio_rustls::TlsConnector::from(Arc::clone(config))
                    .connect(name, tcp)
                    .await?;
                Ok(Box::new(stream))
            }
        }
    }
}

/// What the `security` suite may use against a target. `Debug` shows no secret.
#[derive(Clone, Default)]
pub struct SecurityAccess {
    /// Admin signing credentials the target accepts, with their roles when known.
    pub admin: Vec<Credentials>,
    /// The KEK keyring the target decrypts artifacts with (its primary seals what it opens),
    /// when the harness made the target or the user gave it (`--artifact-keyring`).
    pub keyring: Option<Keyring>,
    /// A keyring whose primary key the target knows but has retired.
    pub retired: Option<Keyring>,
    /// The raw address, when the target has one.
    pub raw: Option<RawEndpoint>,
    /// Whether `raw` is the target's TLS port (so plain HTTP there must be refused).
    pub tls: bool,
    /// Every secret the run uses (admin secrets, header values, keys), at least 8 bytes each:
    /// none may appear in what the target says, raw, hex or base64.
    pub secrets: Vec<Vec<u8>>,
}

impl std::fmt::Debug for SecurityAccess {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecurityAccess")
            .field("admin", &self.admin)
            .field("keyring", &self.keyring.as_ref().map(Keyring::primary))
            .field("raw", &self.raw)
            .field("tls", &self.tls)
            .field("secrets", &self.secrets.len())
            .finish()
    }
}

impl SecurityAccess {
    /// The credentials to sign `method path` with: the first whose role may make the call,
    /// else the first whose role is unknown.
    pub fn signer(&self, method: &str, path: &str) -> Option<&Credentials> {
        signer(&self.admin, method, path)
    }
}

fn signer<'a>(admin: &'a [Credentials], method: &str, path: &str) -> Option<&'a Credentials> {
    admin
        .iter()
        .find(|c| c.role().and_then(|r| r.may_call(method, path)) == Some(true))
        .or_else(|| admin.iter().find(|c| c.role().is_none()))
}

/// Adds the extra headers and, for an admin call with credentials at hand, the signature
/// headers to `request` (unless it is marked [`Unsigned`] or already carries a key id).
pub(crate) fn prepare(
    request: &mut Request<Bytes>,
    headers: &[ExtraHeader],
    admin: &[Credentials],
) {
    for h in headers {
        request
            .headers_mut()
            .insert(h.name.clone(), h.value.clone());
    }
    if admin.is_empty()
        || request.extensions().get::<Unsigned>().is_some()
        || request.headers().contains_key(sign::HEADER_KEY_ID)
    {
        return;
    }
    let method = request.method().as_str().to_owned();
    let path = request.uri().path_and_query().map_or_else(
        || request.uri().path().to_owned(),
        |pq| pq.as_str().to_owned(),
    );
    if gauntlet_engine::security::admin_route(&method, &path).is_none() {
        return;
    }
    let Some(credentials) = signer(admin, &method, &path) else {
        return;
    };
    let content_type = request
        .headers()
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    for (name, value) in
        credentials.sign_now(&method, &path, content_type.as_deref(), request.body())
    {
        if let Ok(value) = HeaderValue::from_str(&value) {
            request.headers_mut().insert(name, value);
        }
    }
}

/// Reads the PEM certificates of a CA file.
///
/// # Errors
/// A message naming the file.
pub(crate) fn read_ca_file(
    path: &Path,
) -> Result<Vec<rustls::pki_types::CertificateDer<'static>>, String> {
    use rustls::pki_types::pem::PemObject as _;
    let certs = rustls::pki_types::CertificateDer::pem_file_iter(path)
        .and_then(|iter| iter.collect::<Result<Vec<_>, _>>())
        .map_err(|e| format!("failed to read CA file `{}`: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!(
            "failed to read CA file `{}`: no CERTIFICATE block",
            path.display()
        ));
    }
    Ok(certs)
}

/// A TLS client config (TLS 1.2 and 1.3, ring) trusting `roots`.
///
/// # Errors
/// A message when a root is refused.
pub(crate) fn client_config(
    roots: Vec<rustls::pki_types::CertificateDer<'static>>,
) -> Result<Arc<rustls::ClientConfig>, String> {
    let mut store = rustls::RootCertStore::empty();
    for cert in roots {
        store
            .add(cert)
            .map_err(|e| format!("failed to trust a CA certificate: {e}"))?;
    }
    let config =
        rustls::ClientConfig::builder_with_provider(gauntlet_engine::security::tls::provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .with_root_certificates(store)
            .with_no_client_auth();
    Ok(Arc::new(config))
}

#[cfg(test)]
mod tests {
    use super::*;
    use gauntlet_engine::security::Role;

    #[test]
    fn headers_parse_without_ever_showing_their_value() {
        let h = ExtraHeader::parse("Authorization:  Bearer tok-123456789 ").unwrap();
        assert_eq!(h.name().as_str(), "authorization");
        assert_eq!(h.value().to_str().unwrap(), "Bearer tok-123456789");
        assert!(h.value().is_sensitive());
        assert!(!format!("{h:?}").contains("tok-123"));
        for (text, error) in [
            ("Authorization Bearer tok-123456789", HeaderError::NoColon),
            (
                "Bad Name: tok-123456789",
                HeaderError::Name("Bad Name".into()),
            ),
            (
                "x-api-key: tok-123456789\u{7}",
                HeaderError::Value("x-api-key".into()),
            ),
            ("Host: tok-123456789", HeaderError::Reserved("host".into())),
            (
                "X-Gauntlet-Signature: tok-123456789",
                HeaderError::Reserved("x-gauntlet-signature".into()),
            ),
        ] {
            let err = ExtraHeader::parse(text).unwrap_err();
            assert_eq!(err, error, "{text}");
            assert!(!err.to_string().contains("tok-123"), "{err}");
        }
    }

    #[test]
    fn admin_calls_are_signed_by_a_role_that_may_make_them() {
        let viewer = Credentials::from_secret("view-1", &[3; 32])
            .unwrap()
            .with_role(Role::Viewer);
        let operator = Credentials::from_secret("ops-1", &[1; 32])
            .unwrap()
            .with_role(Role::Operator);
        let admin = [viewer, operator];
        let key_of = |method: &str, path: &str, marked: bool| {
            let mut r = Request::builder()
                .method(method)
                .uri(path)
                .header("content-type", "application/json")
                .body(Bytes::from_static(b"{}"))
                .unwrap();
            if marked {
                r.extensions_mut().insert(Unsigned);
            }
            let bearer = ExtraHeader::parse("authorization: Bearer t0k3n-abcdefgh").unwrap();
            prepare(&mut r, &[bearer], &admin);
            assert_eq!(r.headers()["authorization"], "Bearer t0k3n-abcdefgh");
            r.headers()
                .get(sign::HEADER_KEY_ID)
                .map(|v| v.to_str().unwrap().to_owned())
        };
        assert_eq!(
            key_of("POST", "/v2/repository/models/m/load", false).as_deref(),
            Some("ops-1")
        );
        assert_eq!(
            key_of("POST", "/v2/repository/index", false).as_deref(),
            Some("view-1")
        );
        assert_eq!(
            key_of("POST", "/v2/repository/models/m/promote", false),
            None
        );
        assert_eq!(key_of("POST", "/v2/repository/models/m/load", true), None);
        assert_eq!(key_of("POST", "/v2/models/m/infer", false), None);
    }
}
