//! Shared application state: configuration, registry, readiness and metrics.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::sync::Semaphore;
use tracing::info;

use crate::artifact::ArtifactError;
use crate::config::EngineConfig;
use crate::metrics::Metrics;
use crate::model::Model;
use crate::registry::{Registry, RegistryError};
use crate::security::{OpenError, Security};

/// Errors of engine setup (loading the model directory, serving).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EngineError {
    /// The model directory could not be listed.
    #[error("failed to read model directory `{}`", dir.display())]
    ModelDir {
        /// The directory.
        dir: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A model file could not be read.
    #[error("failed to read model file `{}`", file.display())]
    ReadModelFile {
        /// The file.
        file: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A model file is larger than `max-artifact-bytes`.
    #[error("model file `{}` is {size} bytes, over the max-artifact-bytes limit of {limit}", file.display())]
    ModelFileTooLarge {
        /// The file.
        file: PathBuf,
        /// Its size.
        size: u64,
        /// The limit.
        limit: usize,
    },
    /// A model file is not a valid artifact.
    #[error("invalid model file `{}`", file.display())]
    InvalidModelFile {
        /// The file.
        file: PathBuf,
        /// What is wrong with it.
        #[source]
        source: ArtifactError,
    },
    /// Two files of the model directory carry one model's version label with different content.
    #[error(
        "model files `{}` and `{}` both hold version {version} of {name} with different content",
        first.display(),
        second.display()
    )]
    DuplicateVersion {
        /// The file read first (in file-name order).
        first: PathBuf,
        /// The file that reuses its label.
        second: PathBuf,
        /// The model name.
        name: String,
        /// The version label.
        version: String,
    },
    /// A model file conflicts with a version already in the registry.
    #[error("failed to stage model file `{}`", file.display())]
    StageModelFile {
        /// The file.
        file: PathBuf,
        /// Why the registry refused it.
        #[source]
        source: RegistryError,
    },
    /// An encrypted model file could not be opened, or a plain one was refused.
    #[error("failed to open model file `{}`", file.display())]
    OpenModelFile {
        /// The file.
        file: PathBuf,
        /// Why.
        #[source]
        source: OpenError,
    },
    /// The audit log could not be opened.
    #[error("failed to open the audit log")]
    Audit(#[from] crate::audit::AuditError),
    /// Binding or serving failed.
    #[error("server I/O error")]
    Io(#[from] std::io::Error),
}

impl EngineError {
    /// True when the model directory does not exist (the binary exits 3 for it).
    pub fn is_missing_model_dir(&self) -> bool {
        matches!(self, EngineError::ModelDir { source, .. } if source.kind() == std::io::ErrorKind::NotFound)
    }
}

/// Everything a request handler needs; cheap to clone (one `Arc`).
#[derive(Clone)]
pub struct AppState {
    inner: Arc<Inner>,
}

struct Inner {
    config: EngineConfig,
    registry: Registry,
    ready: AtomicBool,
    metrics: Metrics,
    /// One artifact parse-and-compile at a time: each can take several times its document's
    /// size in memory, so concurrent loads would multiply the peak.
    loads: Arc<Semaphore>,
    /// Heavy inference batches run on the blocking pool, at most one per core at a time.
    compute: Arc<Semaphore>,
    /// Keyring, admin keys, read tokens and the nonce cache.
    security: Security,
    /// The audit log, when `[audit]` is configured and the state was built by
    /// [`AppState::open`].
    audit: Option<crate::audit::AuditLog>,
    /// Kill switch, message rates and throttles.
    trading: crate::trading::Trading,
    /// `[[remote-model]]` backends, their breakers and clients.
    backends: crate::backend::Backends,
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState")
            .field("config", &self.inner.config)
            .field("registry", &self.inner.registry)
            .field("ready", &self.is_ready())
            .finish_non_exhaustive()
    }
}

impl AppState {
    /// A ready state with an empty registry. Loads nothing: see [`AppState::load_model_dir`].
    ///
    /// Reads none of the files the `[security]` table names: a keyring, admin keys or read
    /// tokens configured there fail closed (nothing decrypts, no admin call or read is
    /// accepted). [`AppState::with_security`] takes them loaded. Opens no audit log even if
    /// `[audit]` is set: [`AppState::open`] does.
    pub fn new(config: EngineConfig) -> AppState {
        let security = Security::from_parts(&config.security, None, None, None);
        AppState::with_security(config, security)
    }

    /// A ready state with an empty registry and loaded security settings
    /// ([`Security::load`]); no audit log.
    pub fn with_security(config: EngineConfig, security: Security) -> AppState {
        AppState::build(config, security, None)
    }

    /// Like [`AppState::new`], and opens the audit log when `[audit]` is configured (its
    /// recovery report is in [`crate::audit::AuditLog::recovery`]).
    ///
    /// # Errors
    /// [`EngineError::Audit`].
    pub fn open(config: EngineConfig) -> Result<AppState, EngineError> {
        let security = Security::from_parts(&config.security, None, None, None);
        AppState::open_with_security(config, security)
    }

    /// Like [`AppState::with_security`], and opens the audit log when `[audit]` is
    /// configured: what the `gauntlet-engine` binary serves.
    ///
    /// # Errors
    /// [`EngineError::Audit`].
    pub fn open_with_security(
        config: EngineConfig,
        security: Security,
    ) -> Result<AppState, EngineError> {
        let audit = match &config.audit {
            Some(c) => Some(crate::audit::AuditLog::open(c)?),
            None => None,
        };
        Ok(AppState::build(config, security, audit))
    }

    fn build(
        config: EngineConfig,
        security: Security,
        audit: Option<crate::audit::AuditLog>,
    ) -> AppState {
        // Metric names and labels are compile-time constants: a failure here is a bug that
        // every test would catch, not something a user can cause.
        let metrics = Metrics::new().expect("metric definitions are valid");
        // A validated config's backend URLs all parse; an unvalidated one serves no remote
        // model rather than a half-built one.
        let backends = crate::backend::Backends::new(&config.remote_models).unwrap_or_else(|e| {
            tracing::error!(error = %e, "remote models not served: invalid backend");
            crate::backend::Backends::default()
        });
        AppState {
            inner: Arc::new(Inner {
                config,
                registry: Registry::new(),
                ready: AtomicBool::new(true),
                metrics,
                loads: Arc::new(Semaphore::new(1)),
                compute: Arc::new(Semaphore::new(
                    std::thread::available_parallelism().map_or(1, usize::from),
                )),
                security,
                audit,
                trading: crate::trading::Trading::default(),
                backends,
            }),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &EngineConfig {
        &self.inner.config
    }

    /// The model registry.
    pub fn registry(&self) -> &Registry {
        &self.inner.registry
    }

    /// The loaded security settings.
    pub fn security(&self) -> &Security {
        &self.inner.security
    }

    /// The audit log, if enabled.
    pub fn audit(&self) -> Option<&crate::audit::AuditLog> {
        self.inner.audit.as_ref()
    }

    /// Whether promotion needs four eyes and a passing run (`audit.four-eyes`, with the log
    /// open: the approvals and runs are audit records).
    pub fn four_eyes(&self) -> bool {
        self.inner.audit.is_some() && self.config().audit.as_ref().is_some_and(|a| a.four_eyes)
    }

    /// The trading controls' state (kill switch, throttles).
    pub fn trading(&self) -> &crate::trading::Trading {
        &self.inner.trading
    }

    /// The remote models (`[[remote-model]]`) and their breakers.
    pub fn backends(&self) -> &crate::backend::Backends {
        &self.inner.backends
    }

    pub(crate) fn metrics(&self) -> &Metrics {
        &self.inner.metrics
    }

    /// The permit every artifact load holds while it parses and compiles.
    pub(crate) fn load_permits(&self) -> &Arc<Semaphore> {
        &self.inner.loads
    }

    /// The permits heavy inference batches hold while they run on the blocking pool.
    pub(crate) fn compute_permits(&self) -> &Arc<Semaphore> {
        &self.inner.compute
    }

    /// Whether `/v2/health/ready` answers 200.
    pub fn is_ready(&self) -> bool {
        self.inner.ready.load(Ordering::Acquire)
    }

    /// Sets readiness. The binary clears it on a shutdown signal and keeps serving for the
    /// `shutdown-delay`, so that load balancers see the server not ready while it still
    /// answers, before it stops accepting connections.
    pub fn set_ready(&self, ready: bool) {
        self.inner.ready.store(ready, Ordering::Release);
    }

    /// Loads every `*.json` (plain) and `*.enc` (envelope-encrypted) file of `dir`, in
    /// file-name order, and promotes each. All files are
    /// read and validated before any is loaded, so a bad file, or two files with one version
    /// label and different content, leaves the registry untouched. (A file that conflicts with
    /// a version the registry already held stops the load part-way.)
    /// Several files of one model (`m-1.json`, `m-2.json`) leave the last live and the one
    /// before it as the rollback target.
    ///
    /// # Errors
    /// [`EngineError`] naming the directory or the file.
    pub fn load_model_dir(&self, dir: &Path) -> Result<usize, EngineError> {
        let dir_err = |source| EngineError::ModelDir {
            dir: dir.to_owned(),
            source,
        };
        let mut files = Vec::new();
        for entry in std::fs::read_dir(dir).map_err(dir_err)? {
            let path = entry.map_err(dir_err)?.path();
            if path.extension().is_some_and(|e| e == "json" || e == "enc") && path.is_file() {
                files.push(path);
            }
        }
        files.sort();
        let limit = self.config().max_artifact_bytes;
        let mut models = Vec::with_capacity(files.len());
        for file in files {
            let read_err = |source| EngineError::ReadModelFile {
                file: file.clone(),
                source,
            };
            let size = std::fs::metadata(&file).map_err(read_err)?.len();
            if size > limit as u64 {
                return Err(EngineError::ModelFileTooLarge { file, size, limit });
            }
            let bytes = std::fs::read(&file).map_err(read_err)?;
            let artifact = match self.security().open_artifact(&bytes, None) {
                Ok(artifact) => artifact,
                Err(OpenError::Artifact(source)) => {
                    return Err(EngineError::InvalidModelFile { file, source });
                }
                Err(source) => return Err(EngineError::OpenModelFile { file, source }),
            };
            let model =
                Model::from_artifact(artifact).map_err(|source| EngineError::InvalidModelFile {
                    file: file.clone(),
                    source,
                })?;
            if let Some((first, _)) = models.iter().find(|(_, m): &&(PathBuf, Arc<Model>)| {
                m.name() == model.name()
                    && m.version() == model.version()
                    && m.artifact() != model.artifact()
            }) {
                return Err(EngineError::DuplicateVersion {
                    first: first.clone(),
                    name: model.name().to_owned(),
                    version: model.version().to_owned(),
                    second: file,
                });
            }
            models.push((file, Arc::new(model)));
        }
        let count = models.len();
        for (file, model) in models {
            // Only a registry that already held versions of these models can refuse one here.
            let (name, _) = self
                .registry()
                .stage(model)
                .map_err(|source| EngineError::StageModelFile { file, source })?;
            // Fails only if another writer promoted or unloaded it in between; nothing to undo.
            if let Err(err) = self.registry().promote(&name) {
                tracing::warn!(model = %name, error = %err, "promotion after load failed");
            }
        }
        info!(dir = %dir.display(), models = count, "model directory loaded");
        Ok(count)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::artifact::ModelArtifact;
    use crate::model::tests::{artifact, linear};

    fn write(dir: &Path, file: &str, a: &ModelArtifact) {
        std::fs::write(dir.join(file), a.to_json_pretty()).unwrap();
    }

    #[test]
    fn loads_and_promotes_in_name_order() {
        let tmp = tempfile::tempdir().unwrap();
        write(
            tmp.path(),
            "m-1.json",
            &artifact("m", "1", 1, linear(0.0, vec![1.0])),
        );
        write(
            tmp.path(),
            "m-2.json",
            &artifact("m", "2", 1, linear(0.0, vec![1.0])),
        );
        write(
            tmp.path(),
            "z.json",
            &artifact("z", "1", 1, linear(0.0, vec![1.0])),
        );
        std::fs::write(tmp.path().join("notes.txt"), "ignored").unwrap();
        let state = AppState::new(EngineConfig::default());
        assert_eq!(state.load_model_dir(tmp.path()).unwrap(), 3);
        let versions = state.registry().versions("m").unwrap();
        assert_eq!(versions.live.as_ref().unwrap().version(), "2");
        assert_eq!(versions.previous.as_ref().unwrap().version(), "1");
        assert!(state.registry().live("z").is_some());
    }

    #[test]
    fn bad_file_is_named_and_nothing_loads() {
        let tmp = tempfile::tempdir().unwrap();
        write(
            tmp.path(),
            "a.json",
            &artifact("a", "1", 1, linear(0.0, vec![1.0])),
        );
        std::fs::write(tmp.path().join("b.json"), "{ not json").unwrap();
        let state = AppState::new(EngineConfig::default());
        let err = state.load_model_dir(tmp.path()).unwrap_err();
        assert!(err.to_string().contains("b.json"), "{err}");
        assert!(state.registry().is_empty());
    }

    #[test]
    fn one_label_with_two_contents_is_refused_before_anything_loads() {
        let tmp = tempfile::tempdir().unwrap();
        write(
            tmp.path(),
            "a.json",
            &artifact("a", "1", 1, linear(0.0, vec![1.0])),
        );
        write(
            tmp.path(),
            "m-a.json",
            &artifact("m", "1", 1, linear(0.0, vec![1.0])),
        );
        write(
            tmp.path(),
            "m-b.json",
            &artifact("m", "1", 1, linear(5.0, vec![1.0])),
        );
        let state = AppState::new(EngineConfig::default());
        let err = state.load_model_dir(tmp.path()).unwrap_err();
        assert!(matches!(err, EngineError::DuplicateVersion { .. }), "{err}");
        let msg = err.to_string();
        assert!(
            msg.contains("m-a.json") && msg.contains("m-b.json"),
            "{msg}"
        );
        assert!(msg.contains("version 1 of m"), "{msg}");
        assert!(state.registry().is_empty());
        // The identical artifact twice is harmless.
        std::fs::remove_file(tmp.path().join("m-b.json")).unwrap();
        write(
            tmp.path(),
            "m-c.json",
            &artifact("m", "1", 1, linear(0.0, vec![1.0])),
        );
        assert_eq!(state.load_model_dir(tmp.path()).unwrap(), 3);
    }

    #[test]
    fn missing_dir_is_reported() {
        let state = AppState::new(EngineConfig::default());
        let err = state
            .load_model_dir(Path::new("/nonexistent/models"))
            .unwrap_err();
        assert!(err.is_missing_model_dir());
    }

    #[test]
    fn too_large_file_is_rejected() {
        let tmp = tempfile::tempdir().unwrap();
        write(
            tmp.path(),
            "a.json",
            &artifact("a", "1", 1, linear(0.0, vec![1.0])),
        );
        let config = EngineConfig {
            max_artifact_bytes: 10,
            ..EngineConfig::default()
        };
        let err = AppState::new(config)
            .load_model_dir(tmp.path())
            .unwrap_err();
        assert!(
            matches!(err, EngineError::ModelFileTooLarge { limit: 10, .. }),
            "{err}"
        );
    }

    #[test]
    fn readiness_toggles() {
        let state = AppState::new(EngineConfig::default());
        assert!(state.is_ready());
        state.clone().set_ready(false);
        assert!(!state.is_ready());
        assert!(format!("{state:?}").contains("ready: false"));
    }
}
