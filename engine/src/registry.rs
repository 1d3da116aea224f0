//! The model registry: per model a live, a staged and a previous slot, swapped atomically.
//!
//! Readers never lock: the name → model map and each model's slots sit behind [`ArcSwap`], so a
//! lookup is a few atomic loads and an `Arc` clone. A request clones its `Arc<Model>` once and
//! serves the whole request with it, so it always sees one complete version, whatever swaps
//! happen meanwhile. Writers (load, promote, rollback, unload) are serialised by one `Mutex`
//! and replace immutable snapshots, so no reader can see a half-made change.
//!
//! Four-eyes promotion (CMP-4EYES, CMP-TEST; RTS 6 Art. 5–7): each staged version carries a
//! [`StagedReview`] — who loaded it, the SHA-256 digest of its artifact, who approved it and
//! the latest Gauntlet run recorded for that digest. [`Registry::promote_reviewed`] makes it
//! live only when a principal other than the loader approved that digest and the latest run
//! recorded for it passed.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use arc_swap::ArcSwap;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use tracing::info;

use crate::artifact::{ArtifactError, ModelArtifact};
use crate::model::Model;

/// Why a registry operation failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum RegistryError {
    /// No model of that name is loaded (HTTP 404).
    #[error("unknown model {name:?}")]
    UnknownModel {
        /// The model name.
        name: String,
    },
    /// `promote` with an empty staged slot (HTTP 409).
    #[error("model {name:?} has no staged version to promote; load one first")]
    NothingStaged {
        /// The model name.
        name: String,
    },
    /// `rollback` with no previous version (HTTP 409).
    #[error("model {name:?} has no previous version to roll back to")]
    NothingToRollBack {
        /// The model name.
        name: String,
    },
    /// The artifact failed validation (HTTP 400).
    #[error(transparent)]
    InvalidArtifact(#[from] ArtifactError),
    /// A load reuses the version label of the live or previous version with different content
    /// (HTTP 409): one label would name two models, and the index, versioned inference and
    /// promotion could not tell them apart.
    #[error(
        "version {version} of {name} is already {slot} with different content; give the new artifact a new version"
    )]
    VersionConflict {
        /// The model name.
        name: String,
        /// The reused version label.
        version: String,
        /// `live` or `the previous version`.
        slot: &'static str,
    },
    /// An approval or run names another artifact than the staged one (HTTP 409): the staged
    /// version changed since the caller looked, or the run tested something else.
    #[error(
        "digest: {given} is not the digest of the staged version {version} of {name} ({staged})"
    )]
    DigestMismatch {
        /// The model name.
        name: Box<str>,
        /// The staged version.
        version: Box<str>,
        /// The staged artifact's digest.
        staged: Box<str>,
        /// The digest given.
        given: Box<str>,
    },
    /// The loader tried to approve its own version (HTTP 403, control `four_eyes`).
    #[error(
        "four eyes: {principal} loaded version {version} of {name} and may not approve it; another principal must"
    )]
    SelfApproval {
        /// The model name.
        name: Box<str>,
        /// The staged version.
        version: Box<str>,
        /// The loader, who asked to approve.
        principal: Box<str>,
    },
    /// The staged version was loaded without a principal, so no approver can be told apart
    /// from its loader (HTTP 403, control `four_eyes`).
    #[error(
        "four eyes: version {version} of {name} was staged without a principal; load it again naming one"
    )]
    NoLoader {
        /// The model name.
        name: Box<str>,
        /// The staged version.
        version: Box<str>,
    },
    /// Promotion of a version nobody but its loader has approved (HTTP 403, control
    /// `four_eyes`).
    #[error(
        "four eyes: version {version} of {name} has not been approved by a principal other than its loader {loader}"
    )]
    NotApproved {
        /// The model name.
        name: Box<str>,
        /// The staged version.
        version: Box<str>,
        /// Who loaded it.
        loader: Box<str>,
    },
    /// Promotion of a version without a passing Gauntlet run for its digest (HTTP 403,
    /// control `tested_before_live`).
    #[error(
        "tested before live: no passing Gauntlet run is recorded for version {version} of {name} ({digest}){}",
        last.as_deref().map(|r| format!("; the latest run {r} failed")).unwrap_or_default()
    )]
    NotTested {
        /// The model name.
        name: Box<str>,
        /// The staged version.
        version: Box<str>,
        /// Its digest.
        digest: Box<str>,
        /// The id of the latest run, when it failed.
        last: Option<Box<str>>,
    },
}

impl RegistryError {
    /// The HTTP status this error maps to.
    pub fn http_status(&self) -> http::StatusCode {
        match self {
            RegistryError::UnknownModel { .. } => http::StatusCode::NOT_FOUND,
            RegistryError::NothingStaged { .. }
            | RegistryError::NothingToRollBack { .. }
            | RegistryError::VersionConflict { .. }
            | RegistryError::DigestMismatch { .. } => http::StatusCode::CONFLICT,
            RegistryError::InvalidArtifact(_) => http::StatusCode::BAD_REQUEST,
            RegistryError::SelfApproval { .. }
            | RegistryError::NoLoader { .. }
            | RegistryError::NotApproved { .. }
            | RegistryError::NotTested { .. } => http::StatusCode::FORBIDDEN,
        }
    }

    /// The control that refused, for the typed JSON error (`{"error", "control"}`):
    /// `four_eyes`, `tested_before_live` or `artifact_digest`.
    pub fn control(&self) -> Option<&'static str> {
        match self {
            RegistryError::SelfApproval { .. }
            | RegistryError::NoLoader { .. }
            | RegistryError::NotApproved { .. } => Some("four_eyes"),
            RegistryError::NotTested { .. } => Some("tested_before_live"),
            RegistryError::DigestMismatch { .. } => Some("artifact_digest"),
            _ => None,
        }
    }
}

/// `sha256:` and the hex SHA-256 of the artifact's canonical JSON: what a Gauntlet run and an
/// approval name, so both refer to exactly the bytes that will serve.
pub fn artifact_digest(artifact: &ModelArtifact) -> String {
    // An artifact of numbers and strings always serialises.
    let json = serde_json::to_vec(artifact).expect("artifacts serialise");
    let digest = Sha256::digest(&json);
    let mut out = String::with_capacity(71);
    out.push_str("sha256:");
    for b in digest {
        out.push_str(&format!("{b:02x}"));
    }
    out
}

/// A Gauntlet run recorded against a staged artifact digest (CMP-TEST).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GauntletRun {
    /// The run's id (its report's `run_id`, or any label the pipeline uses), 1 to 128 bytes.
    pub run_id: String,
    /// The artifact digest the run tested.
    pub digest: String,
    /// Whether every case passed.
    pub passed: bool,
    /// SHA-256 of the run's `report.json`, hex, when the pipeline kept it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub report_sha256: Option<String>,
}

/// The four-eyes state of a model's staged version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StagedReview {
    /// Model name.
    pub name: String,
    /// Staged version label.
    pub version: String,
    /// [`artifact_digest`] of the staged artifact.
    pub digest: String,
    /// Who loaded (staged) it; `None` when the load named no principal.
    pub loaded_by: Option<String>,
    /// Who approved this digest (never the loader).
    pub approved_by: Option<String>,
    /// The latest Gauntlet run recorded for this digest.
    pub last_run: Option<GauntletRun>,
}

/// The versions a model retains; an immutable snapshot.
#[derive(Debug, Clone, Default)]
pub struct ModelVersions {
    /// The version that serves unversioned requests.
    pub live: Option<Arc<Model>>,
    /// Loaded, awaiting promotion; servable by explicit version for staged testing.
    pub staged: Option<Arc<Model>>,
    /// The version live before the last promotion or rollback; the rollback target.
    pub previous: Option<Arc<Model>>,
}

impl ModelVersions {
    /// Retained models, live first, then staged, then previous, without repeated version labels.
    pub fn retained(&self) -> Vec<(&Arc<Model>, Slot)> {
        let mut out: Vec<(&Arc<Model>, Slot)> = Vec::with_capacity(3);
        for (model, slot) in [
            (&self.live, Slot::Live),
            (&self.staged, Slot::Staged),
            (&self.previous, Slot::Previous),
        ] {
            if let Some(m) = model
                && out.iter().all(|(o, _)| o.version() != m.version())
            {
                out.push((m, slot));
            }
        }
        out
    }

    /// The model to describe when no version is named: live, else staged, else previous.
    pub fn primary(&self) -> Option<&Arc<Model>> {
        self.live
            .as_ref()
            .or(self.staged.as_ref())
            .or(self.previous.as_ref())
    }

    /// The retained model with this version label (live wins over staged over previous).
    pub fn get(&self, version: &str) -> Option<&Arc<Model>> {
        [&self.live, &self.staged, &self.previous]
            .into_iter()
            .flatten()
            .find(|m| m.version() == version)
    }
}

/// Which slot a retained version sits in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Slot {
    /// Serving.
    Live,
    /// Loaded, not yet promoted.
    Staged,
    /// Live before the last swap.
    Previous,
}

/// Readiness of a version in the repository index (Triton's `state`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ModelState {
    /// The live version: serves unversioned requests.
    Ready,
    /// Retained but not live (staged or previous).
    Unavailable,
}

impl ModelState {
    /// The wire form, `READY` or `UNAVAILABLE`.
    pub fn as_str(self) -> &'static str {
        match self {
            ModelState::Ready => "READY",
            ModelState::Unavailable => "UNAVAILABLE",
        }
    }
}

impl fmt::Display for ModelState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl PartialEq<str> for ModelState {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for ModelState {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

/// One entry of the repository index (Triton shape): one per retained version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexEntry {
    /// Model name.
    pub name: String,
    /// Version label.
    pub version: String,
    /// `READY` for the live version, else `UNAVAILABLE`.
    pub state: ModelState,
    /// Empty when ready; `staged` or `previous` otherwise.
    #[serde(default)]
    pub reason: String,
}

/// The outcome of a promotion or rollback.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Promotion {
    /// Model name.
    pub name: String,
    /// The version now live.
    pub live: String,
    /// The version live before, now the rollback target.
    pub previous: Option<String>,
}

type Slots = Arc<ArcSwap<ModelVersions>>;

/// Models by name, each with live, staged and previous slots. See the module docs.
pub struct Registry {
    models: ArcSwap<HashMap<String, Slots>>,
    writer: Mutex<()>,
    /// The review of each model's staged version; changed only under `writer`.
    reviews: Mutex<HashMap<String, StagedReview>>,
}

impl Default for Registry {
    fn default() -> Self {
        Registry::new()
    }
}

impl fmt::Debug for Registry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Registry")
            .field("index", &self.index())
            .finish()
    }
}

impl Registry {
    /// An empty registry.
    pub fn new() -> Registry {
        Registry {
            models: ArcSwap::from_pointee(HashMap::new()),
            writer: Mutex::new(()),
            reviews: Mutex::new(HashMap::new()),
        }
    }

    fn reviews(&self) -> MutexGuard<'_, HashMap<String, StagedReview>> {
        // Each entry is replaced whole: a panic elsewhere cannot leave one half-written.
        self.reviews.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn write_lock(&self) -> MutexGuard<'_, ()> {
        // The guarded data is `()`: a panic in another writer leaves nothing inconsistent,
        // because every change is one atomic store of a complete snapshot.
        self.writer.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn slots(&self, name: &str) -> Option<Slots> {
        self.models.load().get(name).cloned()
    }

    /// Validates and compiles `artifact` and puts it in its model's staged slot (replacing
    /// any staged version). A failed load changes nothing.
    ///
    /// # Errors
    /// [`RegistryError::InvalidArtifact`], or [`RegistryError::VersionConflict`] when the
    /// version label is that of the live or previous version and the content differs.
    pub fn load(&self, artifact: ModelArtifact) -> Result<(String, String), RegistryError> {
        self.load_by(artifact, None)
    }

    /// [`Registry::load`], remembering who loaded it for four-eyes promotion.
    ///
    /// # Errors
    /// As [`Registry::load`].
    pub fn load_by(
        &self,
        artifact: ModelArtifact,
        loader: Option<&str>,
    ) -> Result<(String, String), RegistryError> {
        let model = Arc::new(Model::from_artifact(artifact)?);
        self.stage_by(model, loader)
    }

    /// Puts an already compiled model in its staged slot; returns `(name, version)`.
    ///
    /// Restaging the very artifact of the live or previous version is allowed (and changes
    /// nothing visible); reusing its label for different content is not.
    ///
    /// # Errors
    /// [`RegistryError::VersionConflict`].
    pub fn stage(&self, model: Arc<Model>) -> Result<(String, String), RegistryError> {
        self.stage_by(model, None)
    }

    /// [`Registry::stage`], remembering the loader. Staging resets the review: an approval
    /// or run of the version it replaces does not carry over.
    ///
    /// # Errors
    /// [`RegistryError::VersionConflict`].
    pub fn stage_by(
        &self,
        model: Arc<Model>,
        loader: Option<&str>,
    ) -> Result<(String, String), RegistryError> {
        let digest = artifact_digest(model.artifact());
        let name = model.name().to_owned();
        let version = model.version().to_owned();
        let _guard = self.write_lock();
        match self.slots(&name) {
            Some(slots) => {
                let old = slots.load();
                for (retained, slot) in
                    [(&old.live, "live"), (&old.previous, "the previous version")]
                {
                    if let Some(retained) = retained
                        && retained.version() == version
                        && !Arc::ptr_eq(retained, &model)
                        && retained.artifact() != model.artifact()
                    {
                        return Err(RegistryError::VersionConflict {
                            name,
                            version,
                            slot,
                        });
                    }
                }
                slots.store(Arc::new(ModelVersions {
                    staged: Some(model),
                    ..ModelVersions::clone(&old)
                }));
            }
            None => {
                let mut map = HashMap::clone(&self.models.load());
                let versions = ModelVersions {
                    staged: Some(model),
                    ..ModelVersions::default()
                };
                map.insert(name.clone(), Arc::new(ArcSwap::from_pointee(versions)));
                self.models.store(Arc::new(map));
            }
        }
        self.reviews().insert(
            name.clone(),
            StagedReview {
                name: name.clone(),
                version: version.clone(),
                digest,
                loaded_by: loader.map(str::to_owned),
                approved_by: None,
                last_run: None,
            },
        );
        info!(model = %name, version = %version, loader = ?loader, "model staged");
        Ok((name, version))
    }

    /// Makes the staged version live; the old live version becomes the previous one.
    ///
    /// # Errors
    /// [`RegistryError::UnknownModel`], [`RegistryError::NothingStaged`].
    pub fn promote(&self, name: &str) -> Result<Promotion, RegistryError> {
        let _guard = self.write_lock();
        self.promote_locked(name)
    }

    /// The review of a model's staged version.
    ///
    /// # Errors
    /// [`RegistryError::UnknownModel`], [`RegistryError::NothingStaged`].
    pub fn review(&self, name: &str) -> Result<StagedReview, RegistryError> {
        let _guard = self.write_lock();
        self.staged_review(name)
    }

    fn staged_review(&self, name: &str) -> Result<StagedReview, RegistryError> {
        let slots = self.slots(name).ok_or_else(|| unknown(name))?;
        let staged = slots.load().staged.clone();
        let review = self.reviews().get(name).cloned();
        match (staged, review) {
            (Some(m), Some(r)) if m.version() == r.version => Ok(r),
            _ => Err(RegistryError::NothingStaged {
                name: name.to_owned(),
            }),
        }
    }

    /// Records `approver`'s approval of the staged version whose digest is `digest`.
    ///
    /// # Errors
    /// [`RegistryError::DigestMismatch`] when another version is staged,
    /// [`RegistryError::NoLoader`] when it was loaded without a principal,
    /// [`RegistryError::SelfApproval`] when `approver` loaded it; unknown or nothing staged.
    pub fn approve(
        &self,
        name: &str,
        digest: &str,
        approver: &str,
    ) -> Result<StagedReview, RegistryError> {
        let _guard = self.write_lock();
        let mut review = self.staged_review(name)?;
        check_digest(&review, digest)?;
        match review.loaded_by.as_deref() {
            None => {
                return Err(RegistryError::NoLoader {
                    name: review.name.into(),
                    version: review.version.into(),
                });
            }
            Some(loader) if loader == approver => {
                return Err(RegistryError::SelfApproval {
                    name: review.name.into(),
                    version: review.version.into(),
                    principal: approver.into(),
                });
            }
            Some(_) => {}
        }
        review.approved_by = Some(approver.to_owned());
        self.reviews().insert(name.to_owned(), review.clone());
        info!(model = %name, version = %review.version, approver, "staged version approved");
        Ok(review)
    }

    /// Records a Gauntlet run of the staged version; the latest run counts.
    ///
    /// # Errors
    /// [`RegistryError::DigestMismatch`] when the run tested another artifact; unknown or
    /// nothing staged.
    pub fn record_run(&self, name: &str, run: GauntletRun) -> Result<StagedReview, RegistryError> {
        let _guard = self.write_lock();
        let mut review = self.staged_review(name)?;
        check_digest(&review, &run.digest)?;
        review.last_run = Some(run);
        self.reviews().insert(name.to_owned(), review.clone());
        Ok(review)
    }

    /// Makes the staged version live only when a principal other than its loader approved
    /// it and the latest Gauntlet run recorded for its digest passed; returns the promotion
    /// and the review it passed.
    ///
    /// # Errors
    /// [`RegistryError::NoLoader`], [`RegistryError::NotApproved`],
    /// [`RegistryError::NotTested`]; unknown or nothing staged.
    pub fn promote_reviewed(&self, name: &str) -> Result<(Promotion, StagedReview), RegistryError> {
        let _guard = self.write_lock();
        let review = self.staged_review(name)?;
        let Some(loader) = review.loaded_by.clone() else {
            return Err(RegistryError::NoLoader {
                name: review.name.into(),
                version: review.version.into(),
            });
        };
        if review.approved_by.is_none() {
            return Err(RegistryError::NotApproved {
                name: review.name.into(),
                version: review.version.into(),
                loader: loader.into(),
            });
        }
        match &review.last_run {
            Some(run) if run.passed => {}
            last => {
                return Err(RegistryError::NotTested {
                    name: review.name.as_str().into(),
                    version: review.version.as_str().into(),
                    digest: review.digest.as_str().into(),
                    last: last.as_ref().map(|r| r.run_id.as_str().into()),
                });
            }
        }
        let promotion = self.promote_locked(name)?;
        Ok((promotion, review))
    }

    fn promote_locked(&self, name: &str) -> Result<Promotion, RegistryError> {
        let slots = self.slots(name).ok_or_else(|| unknown(name))?;
        let old = slots.load_full();
        let Some(staged) = old.staged.clone() else {
            return Err(RegistryError::NothingStaged {
                name: name.to_owned(),
            });
        };
        let previous = old.live.clone().or_else(|| old.previous.clone());
        let promotion = Promotion {
            name: name.to_owned(),
            live: staged.version().to_owned(),
            previous: previous.as_ref().map(|m| m.version().to_owned()),
        };
        slots.store(Arc::new(ModelVersions {
            live: Some(staged),
            staged: None,
            previous,
        }));
        self.reviews().remove(name);
        info!(model = %name, version = %promotion.live, previous = ?promotion.previous, "model promoted");
        Ok(promotion)
    }

    /// Swaps the previous version back to live in O(1); the rolled-back version becomes the
    /// previous one, so a second rollback rolls forward again.
    ///
    /// # Errors
    /// [`RegistryError::UnknownModel`], [`RegistryError::NothingToRollBack`].
    pub fn rollback(&self, name: &str) -> Result<Promotion, RegistryError> {
        let _guard = self.write_lock();
        let slots = self.slots(name).ok_or_else(|| unknown(name))?;
        let old = slots.load_full();
        let Some(previous) = old.previous.clone() else {
            return Err(RegistryError::NothingToRollBack {
                name: name.to_owned(),
            });
        };
        let promotion = Promotion {
            name: name.to_owned(),
            live: previous.version().to_owned(),
            previous: old.live.as_ref().map(|m| m.version().to_owned()),
        };
        slots.store(Arc::new(ModelVersions {
            live: Some(previous),
            staged: old.staged.clone(),
            previous: old.live.clone(),
        }));
        info!(model = %name, version = %promotion.live, previous = ?promotion.previous, "model rolled back");
        Ok(promotion)
    }

    /// Removes a model and all its versions. Requests already holding it finish with it.
    ///
    /// # Errors
    /// [`RegistryError::UnknownModel`].
    pub fn unload(&self, name: &str) -> Result<(), RegistryError> {
        let _guard = self.write_lock();
        let current = self.models.load_full();
        if !current.contains_key(name) {
            return Err(unknown(name));
        }
        let mut map = HashMap::clone(&current);
        map.remove(name);
        self.models.store(Arc::new(map));
        self.reviews().remove(name);
        info!(model = %name, "model unloaded");
        Ok(())
    }

    /// The live version of a model.
    pub fn live(&self, name: &str) -> Option<Arc<Model>> {
        self.models.load().get(name)?.load().live.clone()
    }

    /// Any retained version (live, staged or previous) of a model by version label.
    pub fn version(&self, name: &str, version: &str) -> Option<Arc<Model>> {
        self.models.load().get(name)?.load().get(version).cloned()
    }

    /// A snapshot of a model's slots.
    pub fn versions(&self, name: &str) -> Option<Arc<ModelVersions>> {
        Some(self.models.load().get(name)?.load_full())
    }

    /// Whether a model of this name is loaded (in any slot).
    pub fn contains(&self, name: &str) -> bool {
        self.models.load().contains_key(name)
    }

    /// Number of models loaded.
    pub fn len(&self) -> usize {
        self.models.load().len()
    }

    /// Whether no model is loaded.
    pub fn is_empty(&self) -> bool {
        self.models.load().is_empty()
    }

    /// The repository index: one entry per retained version, sorted by model name, each
    /// model's live version first.
    pub fn index(&self) -> Vec<IndexEntry> {
        let map = self.models.load();
        let mut names: Vec<&String> = map.keys().collect();
        names.sort();
        let mut out = Vec::new();
        for name in names {
            let Some(slots) = map.get(name) else { continue };
            let versions = slots.load();
            for (model, slot) in versions.retained() {
                let (state, reason) = match slot {
                    Slot::Live => (ModelState::Ready, ""),
                    Slot::Staged => (ModelState::Unavailable, "staged"),
                    Slot::Previous => (ModelState::Unavailable, "previous"),
                };
                out.push(IndexEntry {
                    name: name.clone(),
                    version: model.version().to_owned(),
                    state,
                    reason: reason.to_owned(),
                });
            }
        }
        out
    }
}

fn check_digest(review: &StagedReview, digest: &str) -> Result<(), RegistryError> {
    if review.digest == digest {
        Ok(())
    } else {
        Err(RegistryError::DigestMismatch {
            name: review.name.as_str().into(),
            version: review.version.as_str().into(),
            staged: review.digest.as_str().into(),
            given: digest.into(),
        })
    }
}

fn unknown(name: &str) -> RegistryError {
    RegistryError::UnknownModel {
        name: name.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::tests::{artifact, linear};
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

    /// A model whose prediction is its version number, whatever the input.
    fn versioned(name: &str, v: u32) -> ModelArtifact {
        artifact(
            name,
            &v.to_string(),
            2,
            linear(f64::from(v), vec![0.0, 0.0]),
        )
    }

    fn live_version(r: &Registry, name: &str) -> Option<String> {
        r.live(name).map(|m| m.version().to_owned())
    }

    #[test]
    fn load_stages_and_promote_makes_live() {
        let r = Registry::new();
        assert!(r.is_empty());
        assert_eq!(r.load(versioned("m", 1)).unwrap(), ("m".into(), "1".into()));
        assert!(r.live("m").is_none(), "a load only stages");
        assert!(r.contains("m"));
        assert_eq!(r.version("m", "1").unwrap().version(), "1");
        let p = r.promote("m").unwrap();
        assert_eq!((p.live.as_str(), p.previous), ("1", None));
        assert_eq!(live_version(&r, "m").as_deref(), Some("1"));
        assert_eq!(
            r.promote("m").unwrap_err(),
            RegistryError::NothingStaged { name: "m".into() }
        );
    }

    #[test]
    fn promote_keeps_previous_and_rollback_twice_rolls_forward() {
        let r = Registry::new();
        r.load(versioned("m", 1)).unwrap();
        r.promote("m").unwrap();
        assert!(matches!(
            r.rollback("m"),
            Err(RegistryError::NothingToRollBack { .. })
        ));
        r.load(versioned("m", 2)).unwrap();
        let p = r.promote("m").unwrap();
        assert_eq!((p.live.as_str(), p.previous.as_deref()), ("2", Some("1")));
        let p = r.rollback("m").unwrap();
        assert_eq!((p.live.as_str(), p.previous.as_deref()), ("1", Some("2")));
        assert_eq!(live_version(&r, "m").as_deref(), Some("1"));
        let p = r.rollback("m").unwrap();
        assert_eq!((p.live.as_str(), p.previous.as_deref()), ("2", Some("1")));
    }

    #[test]
    fn failed_load_keeps_everything() {
        let r = Registry::new();
        r.load(versioned("m", 1)).unwrap();
        r.promote("m").unwrap();
        r.load(versioned("m", 2)).unwrap();
        let before = r.index();
        let mut bad = versioned("m", 3);
        bad.model = linear(0.0, vec![1.0]);
        let err = r.load(bad).unwrap_err();
        assert_eq!(err.http_status(), http::StatusCode::BAD_REQUEST);
        assert_eq!(r.index(), before);
        assert_eq!(
            r.versions("m").unwrap().staged.as_ref().unwrap().version(),
            "2"
        );
    }

    #[test]
    fn unknown_model_errors() {
        let r = Registry::new();
        for err in [r.promote("x"), r.rollback("x")].map(Result::unwrap_err) {
            assert_eq!(err, RegistryError::UnknownModel { name: "x".into() });
            assert_eq!(err.http_status(), http::StatusCode::NOT_FOUND);
        }
        assert!(r.unload("x").is_err());
        assert!(
            r.live("x").is_none() && r.version("x", "1").is_none() && r.versions("x").is_none()
        );
    }

    #[test]
    fn unload_removes_model_but_holders_keep_it() {
        let r = Registry::new();
        r.load(versioned("m", 1)).unwrap();
        r.promote("m").unwrap();
        let held = r.live("m").unwrap();
        r.unload("m").unwrap();
        assert!(!r.contains("m"));
        assert_eq!(held.predict(&[0.0, 0.0]), 1.0);
        assert_eq!(r.len(), 0);
    }

    #[test]
    fn index_lists_retained_versions() {
        let r = Registry::new();
        r.load(versioned("b", 1)).unwrap();
        r.load(versioned("a", 1)).unwrap();
        r.promote("a").unwrap();
        r.load(versioned("a", 2)).unwrap();
        r.promote("a").unwrap();
        r.load(versioned("a", 3)).unwrap();
        let idx = r.index();
        let rows: Vec<(&str, &str, ModelState, &str)> = idx
            .iter()
            .map(|e| {
                (
                    e.name.as_str(),
                    e.version.as_str(),
                    e.state,
                    e.reason.as_str(),
                )
            })
            .collect();
        assert_eq!(
            rows,
            vec![
                ("a", "2", ModelState::Ready, ""),
                ("a", "3", ModelState::Unavailable, "staged"),
                ("a", "1", ModelState::Unavailable, "previous"),
                ("b", "1", ModelState::Unavailable, "staged"),
            ]
        );
        assert!(idx[0].state == "READY");
        let json = serde_json::to_value(&idx[0]).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"name":"a","version":"2","state":"READY","reason":""})
        );
    }

    #[test]
    fn same_version_reloaded_is_listed_once() {
        let r = Registry::new();
        r.load(versioned("m", 1)).unwrap();
        r.promote("m").unwrap();
        r.load(versioned("m", 1)).unwrap();
        assert_eq!(r.index().len(), 1);
        assert_eq!(r.versions("m").unwrap().retained().len(), 1);
    }

    /// Regression: a different artifact under the live label was staged but hidden: the index
    /// listed one "1", `/versions/1` served the live one, and promote said live "1" previous "1".
    #[test]
    fn reused_label_with_different_content_is_a_conflict() {
        let r = Registry::new();
        r.load(versioned("m", 1)).unwrap();
        r.promote("m").unwrap();
        let mut other = versioned("m", 1);
        other.model = linear(9.0, vec![0.0, 0.0]);
        let err = r.load(other.clone()).unwrap_err();
        assert_eq!(err.http_status(), http::StatusCode::CONFLICT);
        assert_eq!(
            err.to_string(),
            "version 1 of m is already live with different content; give the new artifact a new version"
        );
        assert!(r.versions("m").unwrap().staged.is_none(), "nothing staged");
        r.load(versioned("m", 2)).unwrap();
        r.promote("m").unwrap();
        let err = r.load(other).unwrap_err();
        assert!(
            err.to_string().contains("already the previous version"),
            "{err}"
        );
        // The same label under another model name is a different model.
        r.load(versioned("n", 1)).unwrap();
    }

    fn run(digest: &str, passed: bool) -> GauntletRun {
        GauntletRun {
            run_id: format!("run-{passed}"),
            digest: digest.to_owned(),
            passed,
            report_sha256: None,
        }
    }

    #[test]
    fn four_eyes_refuses_self_approval_and_untested_promotion() {
        let r = Registry::new();
        r.load_by(versioned("m", 1), Some("alice")).unwrap();
        let review = r.review("m").unwrap();
        assert_eq!(review.loaded_by.as_deref(), Some("alice"));
        assert!(review.digest.starts_with("sha256:") && review.digest.len() == 71);
        assert_eq!(review.digest, artifact_digest(&versioned("m", 1)));
        let digest = review.digest.clone();
        let err = r.approve("m", &digest, "alice").unwrap_err();
        assert!(matches!(err, RegistryError::SelfApproval { .. }), "{err}");
        assert_eq!(
            (err.http_status(), err.control()),
            (http::StatusCode::FORBIDDEN, Some("four_eyes"))
        );
        let err = r.promote_reviewed("m").unwrap_err();
        assert!(matches!(err, RegistryError::NotApproved { .. }), "{err}");
        let err = r.approve("m", "sha256:00", "bob").unwrap_err();
        assert_eq!(err.control(), Some("artifact_digest"));
        assert_eq!(
            r.approve("m", &digest, "bob")
                .unwrap()
                .approved_by
                .as_deref(),
            Some("bob")
        );
        let err = r.promote_reviewed("m").unwrap_err();
        assert_eq!(err.control(), Some("tested_before_live"), "{err}");
        // A run of another artifact does not count; a failing latest run refuses.
        assert!(r.record_run("m", run("sha256:11", true)).is_err());
        r.record_run("m", run(&digest, false)).unwrap();
        let err = r.promote_reviewed("m").unwrap_err().to_string();
        assert!(err.contains("the latest run run-false failed"), "{err}");
        assert!(r.live("m").is_none(), "nothing went live");
        r.record_run("m", run(&digest, true)).unwrap();
        let (p, review) = r.promote_reviewed("m").unwrap();
        assert_eq!(p.live, "1");
        assert_eq!(review.approved_by.as_deref(), Some("bob"));
        assert!(matches!(
            r.review("m"),
            Err(RegistryError::NothingStaged { .. })
        ));
    }

    #[test]
    fn restaging_resets_the_review_and_anonymous_loads_cannot_be_approved() {
        let r = Registry::new();
        r.load_by(versioned("m", 1), Some("alice")).unwrap();
        let digest = r.review("m").unwrap().digest;
        r.approve("m", &digest, "bob").unwrap();
        r.record_run("m", run(&digest, true)).unwrap();
        r.load_by(versioned("m", 2), Some("alice")).unwrap();
        let review = r.review("m").unwrap();
        assert_eq!((review.approved_by, review.last_run), (None, None));
        assert!(r.approve("m", &digest, "bob").is_err(), "the old digest");
        r.load(versioned("m", 3)).unwrap();
        let digest = r.review("m").unwrap().digest;
        assert!(matches!(
            r.approve("m", &digest, "bob"),
            Err(RegistryError::NoLoader { .. })
        ));
        assert!(matches!(
            r.promote_reviewed("m"),
            Err(RegistryError::NoLoader { .. })
        ));
    }

    #[test]
    fn concurrent_readers_always_see_a_complete_version() {
        let r = Arc::new(Registry::new());
        r.load(versioned("m", 1)).unwrap();
        r.promote("m").unwrap();
        r.load(versioned("m", 2)).unwrap();
        r.promote("m").unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        // Per-reader read counts: the writer keeps swapping until every reader has read
        // during the swaps, however the two cores schedule the threads.
        let reads: Arc<Vec<AtomicU64>> = Arc::new((0..4).map(|_| AtomicU64::new(0)).collect());
        let readers: Vec<_> = (0..4)
            .map(|i| {
                let (r, stop, reads) = (Arc::clone(&r), Arc::clone(&stop), Arc::clone(&reads));
                std::thread::spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        let m = r.live("m").expect("a live version at every instant");
                        let v: f64 = m.version().parse().unwrap();
                        // Version label and weights come from the one Arc: they always agree.
                        assert_eq!(m.predict(&[1.0, 1.0]), v);
                        reads[i].fetch_add(1, Ordering::Relaxed);
                    }
                })
            })
            .collect();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        let mut swaps = 0u32;
        while swaps < 3000 || reads.iter().any(|n| n.load(Ordering::Relaxed) < 100) {
            assert!(
                std::time::Instant::now() < deadline,
                "readers made no progress in 20 s"
            );
            if swaps.is_multiple_of(3) {
                let next = if live_version(&r, "m").as_deref() == Some("1") {
                    2
                } else {
                    1
                };
                r.load(versioned("m", next)).unwrap();
                r.promote("m").unwrap();
            } else {
                r.rollback("m").unwrap();
            }
            swaps += 1;
        }
        stop.store(true, Ordering::Relaxed);
        for h in readers {
            h.join().unwrap();
        }
    }
}
