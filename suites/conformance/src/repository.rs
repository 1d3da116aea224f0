//! Calls of the repository extension (load, promote, rollback, unload, index) and the scratch
//! models that cases create under their own names.

use std::future::Future;
use std::sync::Arc;

use bytes::Bytes;
use http::{Method, StatusCode};
use serde_json::{Value, json};

use gauntlet_engine::artifact::{ModelArtifact, ModelParams};
use gauntlet_harness::{CaseError, CaseOutcome, Reply, Target, TargetError, TargetExt};

use crate::support::{describe, excerpt};

/// `POST /v2/repository/models/{name}/load` with the artifact in the body.
pub(crate) async fn load(
    target: &dyn Target,
    name: &str,
    artifact: &ModelArtifact,
) -> Result<Reply, CaseError> {
    let artifact = serde_json::to_value(artifact)
        .map_err(|e| CaseError::Error(format!("failed to serialise an artifact: {e}")))?;
    Ok(load_raw(target, name, artifact).await?)
}

/// `POST /v2/repository/models/{name}/load` with any JSON as the artifact.
pub(crate) async fn load_raw(
    target: &dyn Target,
    name: &str,
    artifact: Value,
) -> Result<Reply, TargetError> {
    let body = json!({ "parameters": { "artifact": artifact } });
    target
        .post_json(&format!("/v2/repository/models/{name}/load"), &body)
        .await
}

/// A repository action without arguments: `promote`, `rollback` or `unload`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Action {
    Promote,
    Rollback,
    Unload,
}

impl Action {
    fn verb(self) -> &'static str {
        match self {
            Action::Promote => "promote",
            Action::Rollback => "rollback",
            Action::Unload => "unload",
        }
    }
}

/// The request line of an action, for messages.
pub(crate) fn action_line(name: &str, action: Action) -> String {
    format!("POST /v2/repository/models/{name}/{}", action.verb())
}

/// `POST /v2/repository/models/{name}/{action}` with an empty JSON object.
pub(crate) async fn act(
    target: &dyn Target,
    name: &str,
    action: Action,
) -> Result<Reply, TargetError> {
    target
        .call(
            Method::POST,
            &format!("/v2/repository/models/{name}/{}", action.verb()),
            Bytes::from_static(b"{}"),
            Some("application/json"),
        )
        .await
}

/// `POST /v2/repository/index`.
pub(crate) async fn index(target: &dyn Target) -> Result<Reply, TargetError> {
    target
        .call(
            Method::POST,
            "/v2/repository/index",
            Bytes::from_static(b"{}"),
            Some("application/json"),
        )
        .await
}

/// The JSON body of a 200 reply, or a failure naming the request.
fn ok_json(reply: &Reply, request: &str) -> Result<Value, CaseError> {
    if reply.status != StatusCode::OK {
        return Err(CaseError::Fail(format!(
            "{request}: expected status 200 OK, got {}",
            describe(reply)
        )));
    }
    reply.json().map_err(|e| {
        CaseError::Fail(format!(
            "{request}: the 200 body is not JSON ({e}): {:?}",
            excerpt(&reply.text())
        ))
    })
}

/// Checks that `body[field]` is the string `expected` (or null/absent for `None`).
fn expect_field(body: &Value, field: &str, expected: Option<&str>, request: &str) -> CaseOutcome {
    let got = body.get(field).unwrap_or(&Value::Null);
    let matches = match expected {
        Some(e) => got.as_str() == Some(e),
        None => got.is_null(),
    };
    if matches {
        Ok(())
    } else {
        Err(CaseError::Fail(format!(
            "{request}: `{field}` expected {}, got {got} in {}",
            expected.map_or_else(|| "null".to_owned(), |e| format!("{e:?}")),
            excerpt(&body.to_string())
        )))
    }
}

/// Loads `artifact` under its own name and checks the reply stages it.
pub(crate) async fn stage(target: &dyn Target, artifact: &ModelArtifact) -> CaseOutcome {
    let request = format!("POST /v2/repository/models/{}/load", artifact.name);
    let reply = load(target, &artifact.name, artifact).await?;
    let body = ok_json(&reply, &request)?;
    expect_field(&body, "name", Some(&artifact.name), &request)?;
    expect_field(&body, "version", Some(&artifact.version), &request)?;
    expect_field(&body, "state", Some("STAGED"), &request)
}

/// Promotes or rolls back `name` and checks the live and previous versions the reply reports.
pub(crate) async fn switch(
    target: &dyn Target,
    name: &str,
    action: Action,
    live: &str,
    previous: Option<&str>,
) -> CaseOutcome {
    let request = action_line(name, action);
    let reply = act(target, name, action).await?;
    let body = ok_json(&reply, &request)?;
    expect_field(&body, "name", Some(name), &request)?;
    expect_field(&body, "live_version", Some(live), &request)?;
    expect_field(&body, "previous_version", previous, &request)
}

/// Runs `body` with the scratch model `name`, unloading it before (leftovers of an interrupted
/// run with the same seed) and after (whatever the verdict). Both unloads are best effort: the
/// verdict is `body`'s; cases that check unloading do it inside `body`.
///
/// When the case is aborted (it passed its deadline) the unload after `body` cannot run in
/// line; a guard then spawns it, so a timed-out case leaves no model behind on the target.
pub(crate) async fn with_scratch<F, Fut>(
    target: &Arc<dyn Target>,
    name: &str,
    body: F,
) -> CaseOutcome
where
    F: FnOnce() -> Fut,
    Fut: Future<Output = CaseOutcome>,
{
    // Best effort: a 404 (nothing to unload) is the usual answer.
    let _before = act(target.as_ref(), name, Action::Unload).await;
    let mut guard = UnloadOnDrop {
        target: Some(Arc::clone(target)),
        name: name.to_owned(),
    };
    let verdict = body().await;
    guard.target = None;
    let _after = act(target.as_ref(), name, Action::Unload).await;
    verdict
}

/// Unloads a scratch model from a spawned task if dropped while still armed.
struct UnloadOnDrop {
    target: Option<Arc<dyn Target>>,
    name: String,
}

impl Drop for UnloadOnDrop {
    fn drop(&mut self) {
        if let Some(target) = self.target.take()
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            let name = std::mem::take(&mut self.name);
            runtime.spawn(async move {
                let _ = act(target.as_ref(), &name, Action::Unload).await;
            });
        }
    }
}

/// Stages version `1` of `template` under `name` and promotes it, checking both answers;
/// returns the artifact that is now live.
pub(crate) async fn live_version_1(
    target: &dyn Target,
    template: &ModelArtifact,
    name: &str,
) -> Result<ModelArtifact, CaseError> {
    let v1 = renamed(template, name, "1");
    stage(target, &v1).await?;
    switch(target, name, Action::Promote, "1", None).await?;
    Ok(v1)
}

/// `artifact` renamed to `name`, version `version`.
pub(crate) fn renamed(artifact: &ModelArtifact, name: &str, version: &str) -> ModelArtifact {
    let mut copy = artifact.clone();
    name.clone_into(&mut copy.name);
    version.clone_into(&mut copy.version);
    copy
}

/// `artifact` with different parameters, so that its predictions differ from the original's:
/// linear weights negated and the intercept (or an ensemble's base score) moved by 0.25.
pub(crate) fn altered(artifact: &ModelArtifact) -> ModelArtifact {
    let mut copy = artifact.clone();
    match &mut copy.model {
        ModelParams::Linear { intercept, weights }
        | ModelParams::Logistic { intercept, weights } => {
            *intercept += 0.25;
            for w in weights.iter_mut() {
                *w = -*w;
            }
        }
        ModelParams::TreeEnsemble { base_score, .. } => *base_score += 0.25,
    }
    copy
}
