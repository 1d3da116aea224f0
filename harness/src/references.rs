//! Which reference models a target serves.
//!
//! Cases that compare predictions with the model library need the target to
//! serve the very artifacts the run holds. Before a run the harness asks the
//! target for each one. The CLI refuses to run against a target that lacks one
//! unless told to skip the cases that need it (`--skip-missing-models`).

use gauntlet_engine::artifact::ModelArtifact;

use crate::target::{Target, TargetExt};

/// The outcome of [`served_references`].
#[derive(Debug, Clone, Default)]
pub struct ReferenceCheck {
    /// Every artifact asked about, in the order given.
    pub all: Vec<ModelArtifact>,
    /// The artifacts the target serves, live, with the same version and features.
    pub served: Vec<ModelArtifact>,
    /// For each artifact it does not serve: the model name and why.
    pub missing: Vec<(String, String)>,
}

/// Asks `target` for each artifact's metadata (`GET /v2/models/{name}`, or gRPC
/// `ModelMetadata` on a target that speaks only gRPC) and keeps the ones it serves with the
/// artifact's version and feature layout.
pub async fn served_references(target: &dyn Target, models: Vec<ModelArtifact>) -> ReferenceCheck {
    let mut check = ReferenceCheck::default();
    for artifact in &models {
        let served = if target.speaks_http() {
            serves(target, artifact).await
        } else {
            serves_grpc(target, artifact).await
        };
        match served {
            Ok(()) => check.served.push(artifact.clone()),
            Err(reason) => check.missing.push((artifact.name.clone(), reason)),
        }
    }
    check.all = models;
    check
}

/// `Err(reason)` only when the target clearly serves something else: a 404 for the name, or
/// metadata with another version or feature layout. A target that errs, times out or answers
/// garbage is kept, so the cases run and report the fault instead of skipping it.
async fn serves(target: &dyn Target, artifact: &ModelArtifact) -> Result<(), String> {
    let path = format!("/v2/models/{}", artifact.name);
    let Ok(reply) = target.get(&path).await else {
        return Ok(());
    };
    if reply.status == http::StatusCode::NOT_FOUND {
        return Err(format!("GET {path} answered {}", reply.status));
    }
    let Ok(meta) = reply.json::<serde_json::Value>() else {
        return Ok(());
    };
    if !reply.status.is_success() {
        return Ok(());
    }
    if let Some(versions) = meta["versions"].as_array()
        && !versions
            .iter()
            .any(|v| v.as_str() == Some(&artifact.version))
    {
        return Err(format!(
            "GET {path} lists versions {versions:?}, not the reference version {:?}",
            artifact.version
        ));
    }
    let expected: Vec<&str> = artifact.features.iter().map(|f| f.name.as_str()).collect();
    if let Some(names) = meta["parameters"]["feature_names"].as_array() {
        let names: Vec<&str> = names.iter().filter_map(|n| n.as_str()).collect();
        if names != expected {
            return Err(format!(
                "GET {path} declares features {names:?}, the reference has {expected:?}"
            ));
        }
    } else if let Some(width) = meta["inputs"][0]["shape"]
        .as_array()
        .and_then(|s| s.last())
        .and_then(serde_json::Value::as_i64)
        && usize::try_from(width).ok() != Some(expected.len())
    {
        return Err(format!(
            "GET {path} declares {width} input features, the reference has {}",
            expected.len()
        ));
    }
    Ok(())
}

/// [`serves`] over gRPC: `NOT_FOUND` from `ModelMetadata` is absent, and so are other
/// versions or another input width; an unreachable target or another status keeps the
/// artifact, so the cases report the fault.
async fn serves_grpc(target: &dyn Target, artifact: &ModelArtifact) -> Result<(), String> {
    let Ok(endpoint) = target.grpc_endpoint().await else {
        return Ok(());
    };
    let Ok(mut client) = endpoint.client().await else {
        return Ok(());
    };
    let what = format!("ModelMetadata {:?}", artifact.name);
    let meta = match client
        .model_metadata(gauntlet_oip_grpc::inference::ModelMetadataRequest {
            name: artifact.name.clone(),
            version: String::new(),
        })
        .await
    {
        Ok(reply) => reply.into_inner(),
        Err(status) if status.code() == tonic::Code::NotFound => {
            return Err(format!("{what} answered NOT_FOUND"));
        }
        Err(_) => return Ok(()),
    };
    if !meta.versions.is_empty() && !meta.versions.contains(&artifact.version) {
        return Err(format!(
            "{what} lists versions {:?}, not the reference version {:?}",
            meta.versions, artifact.version
        ));
    }
    if let [input] = meta.inputs.as_slice()
        && let Some(&width) = input.shape.last()
        && usize::try_from(width).ok() != Some(artifact.features.len())
    {
        return Err(format!(
            "{what} declares {width} input features, the reference has {}",
            artifact.features.len()
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::InProcess;
    use gauntlet_engine::EngineConfig;
    use gauntlet_engine::artifact::{
        ARTIFACT_FORMAT, ARTIFACT_FORMAT_VERSION, FeatureSpec, ImputePolicy, ModelParams,
    };

    fn linear(name: &str, version: &str, features: &[&str]) -> ModelArtifact {
        ModelArtifact {
            format: ARTIFACT_FORMAT.to_owned(),
            format_version: ARTIFACT_FORMAT_VERSION,
            name: name.to_owned(),
            version: version.to_owned(),
            features: features
                .iter()
                .map(|f| FeatureSpec {
                    name: (*f).to_owned(),
                    median: 0.0,
                    mad: 1.0,
                    min: -1.0,
                    max: 1.0,
                })
                .collect(),
            impute: ImputePolicy::Median,
            clip_mads: None,
            model: ModelParams::Linear {
                intercept: 0.0,
                weights: vec![1.0; features.len()],
            },
        }
    }

    #[tokio::test]
    async fn a_broken_target_is_not_excused_as_missing_models() {
        // Answers 500 to everything: broken, not absent.
        let broken = crate::target::Fixed {
            status: http::StatusCode::INTERNAL_SERVER_ERROR,
            capabilities: Default::default(),
        };
        let check = served_references(&broken, vec![linear("m", "1", &["a"])]).await;
        assert_eq!(check.served.len(), 1);
        assert!(check.missing.is_empty());
    }

    #[tokio::test]
    async fn keeps_served_models_and_says_why_others_are_missing() {
        let served = linear("m", "1", &["a", "b"]);
        let target = InProcess::with_models(EngineConfig::default(), vec![served.clone()]).unwrap();
        let check = served_references(
            &target,
            vec![
                served.clone(),
                linear("absent", "1", &["a"]),
                linear("m", "2", &["a", "b"]),
                linear("m", "1", &["a", "c"]),
            ],
        )
        .await;
        assert_eq!(check.served, vec![served]);
        let reasons: Vec<&str> = check.missing.iter().map(|(_, r)| r.as_str()).collect();
        assert!(reasons[0].contains("404"), "{reasons:?}");
        assert!(reasons[1].contains("\"2\""), "{reasons:?}");
        assert!(reasons[2].contains("features"), "{reasons:?}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_grpc_only_target_is_asked_over_grpc() {
        let served = linear("m", "1", &["a", "b"]);
        let engine = InProcess::with_models(EngineConfig::default(), vec![served.clone()]).unwrap();
        let server = crate::ServedEngine::start_grpc(engine.state().clone(), 1).unwrap();
        let target = crate::GrpcTarget::connect(
            &format!("grpc://{}", server.addr()),
            crate::HttpOptions::default(),
        )
        .await
        .unwrap();
        let check = served_references(
            &target,
            vec![
                served.clone(),
                linear("absent", "1", &["a"]),
                linear("m", "2", &["a", "b"]),
                linear("m", "1", &["a", "b", "c"]),
            ],
        )
        .await;
        assert_eq!(check.served, vec![served]);
        let reasons: Vec<&str> = check.missing.iter().map(|(_, r)| r.as_str()).collect();
        assert!(reasons[0].contains("NOT_FOUND"), "{reasons:?}");
        assert!(reasons[1].contains("\"2\""), "{reasons:?}");
        assert!(reasons[2].contains("2 input features"), "{reasons:?}");
    }
}
