//! The reference engine driven in process, through its router, with no socket.
//!
//! [`InProcess::secured_with_models`] (and so [`Target::secured`]) makes the same engine with
//! every security control on (admin keys, a keyring with a retired key, a read token, TLS on a
//! loopback port), from keys generated for the run, for the `security` suite.
//! [`Target::audited`] makes it with an audit log and four-eyes promotion, for the
//! `compliance` suite: its log in [`InProcess::audit_log_in`] (`gauntlet run`: the report
//! directory's `audit-log/`), its keys in a temporary directory removed with it.

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use async_trait::async_trait;
use axum::Router;
use bytes::Bytes;
use http::{Request, Response};
use http_body_util::BodyExt;
use tower::ServiceExt;

use gauntlet_engine::artifact::ModelArtifact;
use gauntlet_engine::{AppState, EngineConfig};

use super::security::{ExtraHeader, RawEndpoint, SecurityAccess, prepare};
use super::{
    Audited, Capabilities, Capability, GrpcEndpoint, HttpEndpoint, ServedEngine, Target,
    TargetError,
};

/// The reference engine's `app()` driven with `oneshot`: no socket, no port.
#[derive(Clone)]
pub struct InProcess {
    state: AppState,
    router: Router,
    capabilities: Capabilities,
    /// The artifacts it was started with, for its secured twin.
    models: Arc<Vec<ModelArtifact>>,
    /// The secured twin, made on first use, or why it could not be made.
    twin: Arc<OnceLock<Result<Arc<InProcess>, String>>>,
    /// Set on a secured engine: its keys, token and TLS server.
    secured: Option<Arc<Secured>>,
    /// Where the audited twin writes its log; `None`: a temporary directory.
    audit_home: Option<PathBuf>,
    /// The audited twin, made on first use, or why it could not be made.
    audited: Arc<OnceLock<Result<Audited, String>>>,
    /// The temporary directory of this engine's audit keys or admin key files, removed with
    /// the last clone.
    _scratch: Option<Arc<tempfile::TempDir>>,
}

/// What a secured in-process engine holds beside its state.
struct Secured {
    access: SecurityAccess,
    headers: Vec<ExtraHeader>,
    /// The engine served over TLS on 127.0.0.1 (stops on drop).
    _tls: ServedEngine,
}

/// A model the in-process engine could not load or promote at start-up.
#[derive(Debug, thiserror::Error)]
#[error("failed to set up in-process engine with model {model:?}: {reason}")]
pub struct InProcessError {
    /// The model name.
    pub model: String,
    /// The engine's error.
    pub reason: String,
}

impl InProcess {
    /// Wraps an engine state (its models already loaded or not).
    pub fn new(state: AppState) -> Self {
        let router = gauntlet_engine::app(state.clone());
        let capabilities = [
            Capability::Repository,
            Capability::ArtifactUpload,
            Capability::Metrics,
            Capability::Grpc,
        ]
        .into_iter()
        .collect();
        InProcess {
            state,
            router,
            capabilities,
            models: Arc::new(Vec::new()),
            twin: Arc::new(OnceLock::new()),
            secured: None,
            audit_home: None,
            audited: Arc::new(OnceLock::new()),
            _scratch: None,
        }
    }

    /// Has the audited twin ([`Target::audited`]) write its log to `dir`, so that it can be
    /// verified after the run (`gauntlet audit verify DIR`). A log a former run left there is
    /// replaced; a non-empty `dir` that holds no audit log is refused when the twin starts.
    #[must_use]
    pub fn audit_log_in(mut self, dir: impl Into<PathBuf>) -> Self {
        self.audit_home = Some(dir.into());
        self
    }

    /// Starts an engine with `config`, loads every artifact and makes it live.
    pub fn with_models(
        config: EngineConfig,
        models: Vec<ModelArtifact>,
    ) -> Result<Self, InProcessError> {
        let state = AppState::new(config);
        let mut target = Self::new(state.clone());
        target.models = Arc::new(models.clone());
        load_all(&state, models)?;
        Ok(target)
    }

    /// An engine of this build with every security control on and the same models live:
    /// admin keys for an operator, an approver and a viewer; a keyring whose primary `k-live`
    /// opens artifacts and whose `k-old` is retired; a read token every request must carry
    /// (this target adds it); TLS with a CA made for the run, on `127.0.0.1:0`. Every key is
    /// generated here and handed to the `security` suite through [`Target::security`].
    ///
    /// # Errors
    /// [`InProcessError`] when a model does not load or the TLS server cannot start.
    pub fn secured_with_models(
        config: EngineConfig,
        models: Vec<ModelArtifact>,
    ) -> Result<Self, InProcessError> {
        make_secured(config, models)
    }
}

fn load_all(state: &AppState, models: Vec<ModelArtifact>) -> Result<(), InProcessError> {
    {
        for artifact in models {
            let name = artifact.name.clone();
            let fail = |e: &dyn std::fmt::Display| InProcessError {
                model: name.clone(),
                reason: e.to_string(),
            };
            state.registry().load(artifact).map_err(|e| fail(&e))?;
            state.registry().promote(&name).map_err(|e| fail(&e))?;
        }
        Ok(())
    }
}

impl InProcess {
    /// The engine state, for cases that inspect the engine directly.
    pub fn state(&self) -> &AppState {
        &self.state
    }

    fn twin_failed(&self, twin: &'static str, reason: &str) -> TargetError {
        TargetError::Twin {
            twin,
            target: self.describe(),
            reason: reason.to_owned(),
        }
    }
}

/// Why a twin did not start, logged once (when it is made): the engine's reason, with the
/// model's name when a model failed to load.
fn twin_reason(twin: &'static str, e: InProcessError) -> String {
    let reason = if e.model.starts_with('(') {
        e.reason
    } else {
        e.to_string()
    };
    tracing::error!(twin, %reason, "failed to start a twin of the in-process engine");
    reason
}

/// See [`Target::audited`]: this engine when it already has four-eyes promotion and an audit
/// log, else an engine of the same config and models with both.
fn make_audited(engine: &InProcess) -> Result<Audited, InProcessError> {
    use gauntlet_engine::audit::{AuditConfig, PUBLIC_KEY_FILE};
    let setup = |reason: String| InProcessError {
        model: "(audited engine)".to_owned(),
        reason,
    };
    if let Some(log) = engine.state.audit()
        && engine.state.four_eyes()
    {
        // A clone with a lock of its own: the twin must not hold the lock it is kept in.
        let mut same = engine.clone();
        same.audited = Arc::new(OnceLock::new());
        let keys = engine.state.config().audit.as_ref().map(key_files);
        return Ok(Audited {
            target: Arc::new(same),
            dir: log.dir().to_owned(),
            keys,
        });
    }
    let scratch = crate::private_temp_dir("gauntlet-audit-")
        .map_err(|e| setup(format!("failed to create a temporary directory: {e}")))?;
    let dir = match &engine.audit_home {
        Some(dir) => {
            replace_log(dir, PUBLIC_KEY_FILE).map_err(setup)?;
            dir.clone()
        }
        None => scratch.path().join("log"),
    };
    let mut audit = AuditConfig::new(&dir, scratch.path().join("keys"));
    audit.four_eyes = true;
    let keys = Some(key_files(&audit));
    let config = EngineConfig {
        audit: Some(audit),
        ..engine.state.config().clone()
    };
    let state = AppState::open(config).map_err(|e| setup(crate::error_chain(&e)))?;
    load_all(&state, engine.models.to_vec())?;
    let mut target = InProcess::new(state);
    target.models = Arc::clone(&engine.models);
    target._scratch = Some(Arc::new(scratch));
    Ok(Audited {
        target: Arc::new(target),
        dir,
        keys,
    })
}

fn key_files(audit: &gauntlet_engine::audit::AuditConfig) -> super::AuditKeyFiles {
    super::AuditKeyFiles {
        signing: audit.signing_key_file.clone(),
        pseudonym: audit.pseudonym_key_file.clone(),
    }
}

/// Empties `dir` for a new log: removes it when it holds a former run's log (its public key
/// file `marker` is there); refuses any other non-empty directory.
fn replace_log(dir: &Path, marker: &str) -> Result<(), String> {
    match std::fs::read_dir(dir) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(format!("failed to read `{}`: {e}", dir.display())),
        Ok(mut entries) => {
            if entries.next().is_none() {
                return Ok(());
            }
            if !dir.join(marker).is_file() {
                return Err(format!(
                    "`{}` is not empty and holds no audit log: not replacing it",
                    dir.display()
                ));
            }
            std::fs::remove_dir_all(dir)
                .map_err(|e| format!("failed to remove the former run's `{}`: {e}", dir.display()))
        }
    }
}

#[async_trait]
impl Target for InProcess {
    fn describe(&self) -> String {
        format!("in-process gauntlet-engine {}", gauntlet_engine::VERSION)
    }

    fn capabilities(&self) -> &Capabilities {
        &self.capabilities
    }

    fn security(&self) -> Option<&SecurityAccess> {
        self.secured.as_ref().map(|s| &s.access)
    }

    /// This engine when it is the secured one, else its secured twin, made once: a twin that
    /// failed to start is an error every time it is asked for, never the plain engine (whose
    /// controls are off, so the security cases would pass or skip for the wrong reason).
    fn secured(&self) -> Result<Option<Arc<dyn Target>>, TargetError> {
        if self.secured.is_some() {
            return Ok(Some(Arc::new(self.clone())));
        }
        let twin = self.twin.get_or_init(|| {
            make_secured(self.state.config().clone(), self.models.to_vec())
                .map(Arc::new)
                .map_err(|e| twin_reason("secured", e))
        });
        match twin {
            Ok(t) => Ok(Some(Arc::clone(t) as Arc<dyn Target>)),
            Err(reason) => Err(self.twin_failed("secured", reason)),
        }
    }

    /// This engine's audited twin, made once; a twin that failed to start is an error every
    /// time (see [`Target::secured`] above).
    fn audited(&self) -> Result<Option<Audited>, TargetError> {
        match self
            .audited
            .get_or_init(|| make_audited(self).map_err(|e| twin_reason("audited", e)))
        {
            Ok(a) => Ok(Some(a.clone())),
            Err(reason) => Err(self.twin_failed("audited", reason)),
        }
    }

    /// Serves this engine's state (same registry, same models) on `127.0.0.1:0` with its own
    /// runtime: all cores but one, so a load generator on the same machine keeps a core.
    async fn http_endpoint(&self) -> Result<HttpEndpoint, TargetError> {
        let cores = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
        let server = ServedEngine::start(self.state.clone(), cores.saturating_sub(1).max(1))?;
        Ok(HttpEndpoint {
            url: server.url(),
            headers: Vec::new(),
            server: Some(server),
        })
    }

    /// Serves this engine's state over gRPC on `127.0.0.1:0` with its own runtime (cores as
    /// [`Target::http_endpoint`]), until the last clone of the endpoint drops.
    async fn grpc_endpoint(&self) -> Result<GrpcEndpoint, TargetError> {
        let cores = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
        let server = ServedEngine::start_grpc(self.state.clone(), cores.saturating_sub(1).max(1))?;
        let defaults = super::HttpOptions::default();
        Ok(GrpcEndpoint {
            authority: server.addr().to_string(),
            timeout: defaults.request_timeout,
            connect_timeout: defaults.connect_timeout,
            server: Some(Arc::new(server)),
            headers: super::CallHeaders::default(),
        })
    }

    async fn send(&self, mut request: Request<Bytes>) -> Result<Response<Bytes>, TargetError> {
        if let Some(s) = &self.secured {
            prepare(&mut request, &s.headers, &s.access.admin);
        }
        let method = request.method().clone();
        let path = request.uri().path().to_owned();
        let request = request.map(axum::body::Body::from);
        let response = match self.router.clone().oneshot(request).await {
            Ok(r) => r,
            Err(never) => match never {},
        };
        let (parts, body) = response.into_parts();
        let bytes = body
            .collect()
            .await
            .map_err(|e| TargetError::Transport {
                method,
                path,
                reason: e.to_string(),
            })?
            .to_bytes();
        Ok(Response::from_parts(parts, bytes))
    }
}

/// See [`InProcess::secured_with_models`].
fn make_secured(
    config: EngineConfig,
    models: Vec<ModelArtifact>,
) -> Result<InProcess, InProcessError> {
    use gauntlet_engine::security::keyring::Keyring;
    use gauntlet_engine::security::sign::{Credentials, random_nonce, random_secret};
    use gauntlet_engine::security::{AdminKeys, ReadTokens, Role, Security, SecurityConfig};

    let setup = |reason: String| InProcessError {
        model: "(secured engine)".to_owned(),
        reason,
    };
    use base64::Engine as _;
    // The twin reads its admin keys and keyring as the engine binary does: from owner-only
    // files in the formats `gauntlet-engine admin-key` and `keys add` write, in a directory
    // of the run (mode 0700) removed with the twin.
    let files = crate::private_temp_dir("gauntlet-secured-")
        .map_err(|e| setup(format!("failed to create a temporary directory: {e}")))?;
    let mut keys_toml = String::new();
    let mut admin = Vec::new();
    let mut secrets: Vec<Vec<u8>> = Vec::new();
    for (id, principal, role) in [
        ("gx-operator", "gauntlet-operator", Role::Operator),
        ("gx-approver", "gauntlet-approver", Role::Approver),
        ("gx-viewer", "gauntlet-viewer", Role::Viewer),
    ] {
        let secret = random_secret();
        keys_toml.push_str(&format!(
            "[[keys]]\nid = \"{id}\"\nsecret = \"{}\"\nprincipal = \"{principal}\"\nrole = \"{}\"\n\n",
            base64::engine::general_purpose::STANDARD.encode(secret),
            role.as_str()
        ));
        admin.push(
            Credentials::from_secret(id, &secret)
                .map_err(|e| setup(e.to_string()))?
                .with_role(role),
        );
        secrets.push(secret.to_vec());
    }
    let mut old = Keyring::new();
    old.add_random("k-old").map_err(|e| setup(e.to_string()))?;
    let mut ring = old.clone();
    ring.add_random("k-live")
        .map_err(|e| setup(e.to_string()))?;
    ring.set_primary("k-live")
        .map_err(|e| setup(e.to_string()))?;
    secrets.extend(super::security::key_material(&ring));
    ring.retire("k-old").map_err(|e| setup(e.to_string()))?;
    let token = format!("gx-read-{}{}", random_nonce(), random_nonce());
    let mut tokens = ReadTokens::default();
    tokens.insert_token(&token, "gauntlet");
    secrets.push(token.clone().into_bytes());
    let bearer = ExtraHeader::parse(&format!("authorization: Bearer {token}"))
        .map_err(|e| setup(e.to_string()))?;

    let admin_keys = files.path().join("admin-keys.toml");
    let keyring = files.path().join("keyring.toml");
    gauntlet_engine::security::keyring::write_private(&admin_keys, keys_toml.as_bytes())
        .map_err(|e| setup(format!("failed to write `{}`: {e}", admin_keys.display())))?;
    ring.save(&keyring).map_err(|e| setup(e.to_string()))?;
    let config = EngineConfig {
        // The slowloris attack waits for this cut-off: short, so the run stays quick.
        header_read_timeout: std::time::Duration::from_secs(3),
        security: SecurityConfig {
            admin_keys: Some(admin_keys.clone()),
            keyring: Some(keyring.clone()),
            read_tokens: Some("generated-read-tokens.toml".into()),
            ..config.security
        },
        ..config
    };
    let security = Security::from_parts(
        &config.security,
        Some(Keyring::load(&keyring).map_err(|e| setup(e.to_string()))?),
        Some(AdminKeys::load(&admin_keys).map_err(|e| setup(e.to_string()))?),
        Some(tokens),
    );
    let state = AppState::with_security(config, security);
    load_all(&state, models.clone())?;
    let (acceptor, ca) = test_ca().map_err(setup)?;
    let tls =
        ServedEngine::start_tls(state.clone(), 1, acceptor).map_err(|e| setup(e.to_string()))?;
    let client = super::security::client_config(vec![ca]).map_err(setup)?;
    let access = SecurityAccess {
        admin,
        keyring: Some(ring),
        retired: Some(old),
        raw: Some(RawEndpoint {
            addr: tls.addr(),
            tls: Some((client, "localhost".to_owned())),
        }),
        tls: true,
        secrets,
    };
    let mut target = InProcess::new(state);
    target.models = Arc::new(models);
    target._scratch = Some(Arc::new(files));
    target.secured = Some(Arc::new(Secured {
        access,
        headers: vec![bearer],
        _tls: tls,
    }));
    Ok(target)
}

/// A CA and a `localhost`/`127.0.0.1` server certificate made now: the acceptor serving it
/// and the CA certificate a client trusts.
fn test_ca() -> Result<
    (
        gauntlet_engine::security::tls::TlsAcceptor,
        rustls::pki_types::CertificateDer<'static>,
    ),
    String,
> {
    let fail = |e: rcgen::Error| format!("failed to make the run's TLS certificate: {e}");
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).map_err(fail)?;
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "gauntlet run CA");
    let ca_key = rcgen::KeyPair::generate().map_err(fail)?;
    let ca = ca_params.self_signed(&ca_key).map_err(fail)?;
    let params =
        rcgen::CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
            .map_err(fail)?;
    let key = rcgen::KeyPair::generate().map_err(fail)?;
    let cert = params.signed_by(&key, &ca, &ca_key).map_err(fail)?;
    let private = rustls::pki_types::PrivateKeyDer::try_from(key.serialize_der())
        .map_err(|e| format!("failed to use the run's TLS key: {e}"))?;
    let mut config =
        rustls::ServerConfig::builder_with_provider(gauntlet_engine::security::tls::provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .with_no_client_auth()
            .with_single_cert(vec![cert.der().clone()], private)
            .map_err(|e| e.to_string())?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok((
        gauntlet_engine::security::tls::TlsAcceptor::from(Arc::new(config)),
        ca.der().clone(),
    ))
}
