//! Checks the Kubernetes manifests of `ci/k8s/` against the API's own types.
//!
//! Every YAML document is read into [`serde_json::Value`], then into its `k8s-openapi` type
//! (by `apiVersion` and `kind`), then written back: a field the type does not have — a
//! misspelt `readinessProbes`, a field from another kind — is dropped by the typed read, so
//! the round trip differs and [`check_text`] names its path. A wrong type (`replicas: two`)
//! fails the typed read itself. On top of the types, the checks the manifests exist for:
//! [`probe_problems`] (probes on the engine's health routes, resources),
//! [`selected`] (which Deployments a Service's selector picks, for the blue/green switch) and
//! [`indexed_job_problems`] (the sharded load Job's index, shard count and shared start).
//!
//! ```
//! let text = "apiVersion: v1\nkind: Service\nmetadata: { name: s }\nspec: { selectr: {} }\n";
//! let err = gauntlet_k8s_check::check_text("s.yaml", text).unwrap_err();
//! assert!(err.to_string().contains("spec.selectr"), "{err}");
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use k8s_openapi::Resource;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ConfigMap, Container, PersistentVolumeClaim, Probe, Service};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde::Serialize;
use serde::de::{Deserialize, DeserializeOwned};
use serde_json::Value;

/// One document of a manifest file, as its API type.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Object {
    /// `apps/v1` Deployment.
    Deployment(Box<Deployment>),
    /// `v1` Service.
    Service(Box<Service>),
    /// `batch/v1` Job.
    Job(Box<Job>),
    /// `v1` ConfigMap.
    ConfigMap(Box<ConfigMap>),
    /// `v1` PersistentVolumeClaim.
    PersistentVolumeClaim(Box<PersistentVolumeClaim>),
}

/// Why a manifest does not check.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CheckError {
    /// The file cannot be read.
    #[error("failed to read {file}: {reason}")]
    Read {
        /// The file.
        file: PathBuf,
        /// Why.
        reason: String,
    },
    /// Not YAML.
    #[error("{file}: document {index}: not YAML: {reason}")]
    Yaml {
        /// The file.
        file: String,
        /// The document, from 0.
        index: usize,
        /// The parser's message.
        reason: String,
    },
    /// An `apiVersion`/`kind` this check does not know.
    #[error(
        "{file}: document {index}: failed to check {api_version}/{kind}: not one of the known \
         kinds (apps/v1 Deployment, v1 Service, batch/v1 Job, v1 ConfigMap, v1 PersistentVolumeClaim)"
    )]
    Kind {
        /// The file.
        file: String,
        /// The document, from 0.
        index: usize,
        /// Its `apiVersion`.
        api_version: String,
        /// Its `kind`.
        kind: String,
    },
    /// A field of the wrong type or a required field missing.
    #[error("{file}: document {index} ({kind} {name}): {reason}")]
    Type {
        /// The file.
        file: String,
        /// The document, from 0.
        index: usize,
        /// Its kind.
        kind: String,
        /// Its `metadata.name`.
        name: String,
        /// The typed read's message.
        reason: String,
    },
    /// A field the API type does not have (misspelt or misplaced).
    #[error("{file}: document {index} ({kind} {name}): unknown field {path}")]
    Unknown {
        /// The file.
        file: String,
        /// The document, from 0.
        index: usize,
        /// Its kind.
        kind: String,
        /// Its `metadata.name`.
        name: String,
        /// The field's path, e.g. `spec.template.spec.containers[0].readinessProbes`.
        path: String,
    },
}

/// Reads `text` (one or more YAML documents) strictly into API objects; `file` names it in
/// errors.
///
/// # Errors
///
/// The first document that is not YAML, of an unknown kind, of a wrong type, or with a field
/// its type does not have.
pub fn check_text(file: &str, text: &str) -> Result<Vec<Object>, CheckError> {
    let mut objects = Vec::new();
    for (index, document) in yaml_serde::Deserializer::from_str(text).enumerate() {
        let value = Value::deserialize(document).map_err(|e| CheckError::Yaml {
            file: file.to_owned(),
            index,
            reason: e.to_string(),
        })?;
        if value.is_null() {
            continue; // an empty document (a trailing `---`)
        }
        objects.push(check_value(file, index, &value)?);
    }
    Ok(objects)
}

/// Every `*.yaml` file of `dir`, checked; sorted by file name.
///
/// # Errors
///
/// The directory or a file cannot be read, or a document does not check.
pub fn check_dir(dir: &Path) -> Result<Vec<(PathBuf, Vec<Object>)>, CheckError> {
    let read = |e: std::io::Error| CheckError::Read {
        file: dir.to_owned(),
        reason: e.to_string(),
    };
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(read)?
        .map(|e| e.map(|e| e.path()))
        .collect::<Result<_, _>>()
        .map_err(read)?;
    files.retain(|p| p.extension().is_some_and(|e| e == "yaml" || e == "yml"));
    files.sort();
    files
        .into_iter()
        .map(|path| {
            let text = std::fs::read_to_string(&path).map_err(|e| CheckError::Read {
                file: path.clone(),
                reason: e.to_string(),
            })?;
            let objects = check_text(&path.display().to_string(), &text)?;
            Ok((path, objects))
        })
        .collect()
}

fn check_value(file: &str, index: usize, value: &Value) -> Result<Object, CheckError> {
    let field = |k: &str| {
        value
            .get(k)
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned()
    };
    let (api_version, kind) = (field("apiVersion"), field("kind"));
    let is = |api: &str, k: &str| api_version == api && kind == k;
    macro_rules! strict {
        ($t:ty, $variant:ident) => {
            strict::<$t>(file, index, value).map(|o| Object::$variant(Box::new(o)))
        };
    }
    if is(Deployment::API_VERSION, Deployment::KIND) {
        strict!(Deployment, Deployment)
    } else if is(Service::API_VERSION, Service::KIND) {
        strict!(Service, Service)
    } else if is(Job::API_VERSION, Job::KIND) {
        strict!(Job, Job)
    } else if is(ConfigMap::API_VERSION, ConfigMap::KIND) {
        strict!(ConfigMap, ConfigMap)
    } else if is(
        PersistentVolumeClaim::API_VERSION,
        PersistentVolumeClaim::KIND,
    ) {
        strict!(PersistentVolumeClaim, PersistentVolumeClaim)
    } else {
        Err(CheckError::Kind {
            file: file.to_owned(),
            index,
            api_version,
            kind,
        })
    }
}

/// `value` as a `T`, and `T` written back equal to `value`: nothing dropped, nothing added.
fn strict<T: Resource + DeserializeOwned + Serialize>(
    file: &str,
    index: usize,
    value: &Value,
) -> Result<T, CheckError> {
    let name = value
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("(no name)")
        .to_owned();
    let typed = T::deserialize(value).map_err(|e| CheckError::Type {
        file: file.to_owned(),
        index,
        kind: T::KIND.to_owned(),
        name: name.clone(),
        reason: e.to_string(),
    })?;
    let back = serde_json::to_value(&typed).map_err(|e| CheckError::Type {
        file: file.to_owned(),
        index,
        kind: T::KIND.to_owned(),
        name: name.clone(),
        reason: format!("failed to write it back: {e}"),
    })?;
    match first_difference(value, &back, "") {
        None => Ok(typed),
        Some(path) => Err(CheckError::Unknown {
            file: file.to_owned(),
            index,
            kind: T::KIND.to_owned(),
            name,
            path,
        }),
    }
}

/// The path of the first place where `original` holds what `back` does not (or differs).
fn first_difference(original: &Value, back: &Value, path: &str) -> Option<String> {
    let join = |key: &str| {
        if path.is_empty() {
            key.to_owned()
        } else {
            format!("{path}.{key}")
        }
    };
    match (original, back) {
        (Value::Object(a), Value::Object(b)) => a.iter().find_map(|(k, v)| match b.get(k) {
            None => Some(join(k)),
            Some(w) => first_difference(v, w, &join(k)),
        }),
        (Value::Array(a), Value::Array(b)) if a.len() == b.len() => a
            .iter()
            .zip(b)
            .enumerate()
            .find_map(|(i, (v, w))| first_difference(v, w, &format!("{path}[{i}]"))),
        (a, b) if a == b => None,
        _ => Some(if path.is_empty() {
            "(the document)".to_owned()
        } else {
            path.to_owned()
        }),
    }
}

/// The engine's health routes: readiness (and startup) and liveness.
pub const READY: &str = "/v2/health/ready";
/// See [`READY`].
pub const LIVE: &str = "/v2/health/live";

/// What is missing for `deployment` to be run safely: each container needs a startup and a
/// readiness probe on [`READY`], a liveness probe on [`LIVE`], on a port it declares, and CPU
/// and memory requests and limits. Empty when nothing is missing.
pub fn probe_problems(deployment: &Deployment) -> Vec<String> {
    let name = deployment.metadata.name.as_deref().unwrap_or("(no name)");
    let containers = deployment
        .spec
        .as_ref()
        .and_then(|s| s.template.spec.as_ref())
        .map(|p| p.containers.as_slice())
        .unwrap_or_default();
    if containers.is_empty() {
        return vec![format!("{name}: no containers")];
    }
    let mut problems = Vec::new();
    for c in containers {
        let at = |what: &str| format!("{name}/{}: {what}", c.name);
        for (probe, which, route) in [
            (&c.startup_probe, "startupProbe", READY),
            (&c.readiness_probe, "readinessProbe", READY),
            (&c.liveness_probe, "livenessProbe", LIVE),
        ] {
            if let Some(p) = probe_problem(c, probe.as_ref(), route) {
                problems.push(at(&format!("{which} {p}")));
            }
        }
        let resources = c.resources.as_ref();
        for (kind, map) in [
            ("requests", resources.and_then(|r| r.requests.as_ref())),
            ("limits", resources.and_then(|r| r.limits.as_ref())),
        ] {
            for resource in ["cpu", "memory"] {
                if !map.is_some_and(|m| m.contains_key(resource)) {
                    problems.push(at(&format!("no {resource} in resources.{kind}")));
                }
            }
        }
    }
    problems
}

fn probe_problem(c: &Container, probe: Option<&Probe>, route: &str) -> Option<String> {
    let Some(probe) = probe else {
        return Some("missing".to_owned());
    };
    let Some(get) = &probe.http_get else {
        return Some(format!("is not an HTTP GET of {route}"));
    };
    if get.path.as_deref() != Some(route) {
        return Some(format!("GETs {:?}, not {route}", get.path));
    }
    let ports = c.ports.as_deref().unwrap_or_default();
    let declared = match &get.port {
        IntOrString::Int(n) => ports.iter().any(|p| p.container_port == *n),
        IntOrString::String(s) => ports.iter().any(|p| p.name.as_deref() == Some(s)),
    };
    (!declared).then(|| format!("port {:?} is not a port of the container", get.port))
}

/// The names of the Deployments among `deployments` whose pods `service` selects (every
/// selector label on the pod template). A Service without a selector selects none.
pub fn selected<'a>(service: &Service, deployments: &'a [Deployment]) -> Vec<&'a str> {
    let Some(selector) = service.spec.as_ref().and_then(|s| s.selector.as_ref()) else {
        return Vec::new();
    };
    if selector.is_empty() {
        return Vec::new();
    }
    deployments
        .iter()
        .filter(|d| {
            let labels = d
                .spec
                .as_ref()
                .and_then(|s| s.template.metadata.as_ref())
                .and_then(|m| m.labels.as_ref());
            labels.is_some_and(|l| selector.iter().all(|(k, v)| l.get(k) == Some(v)))
        })
        .filter_map(|d| d.metadata.name.as_deref())
        .collect()
}

/// `service` with `label` of its selector set to `value`: the blue/green switch
/// (`kubectl patch service … -p '{"spec":{"selector":{label: value}}}'`).
pub fn switched(service: &Service, label: &str, value: &str) -> Service {
    let mut s = service.clone();
    let spec = s.spec.get_or_insert_with(Default::default);
    spec.selector
        .get_or_insert_with(BTreeMap::new)
        .insert(label.to_owned(), value.to_owned());
    s
}

/// What keeps `job` from being the sharded load run of `ci/k8s/load-shards.yaml`: an Indexed
/// Job whose pods all run at once (parallelism = completions = the `SHARDS` its containers
/// are told), never retried (a retried shard would start late), each with `--shard` from its
/// index, one shared `--start-at` and its own `--out` file. Empty when nothing is missing.
pub fn indexed_job_problems(job: &Job) -> Vec<String> {
    let mut problems = Vec::new();
    let Some(spec) = &job.spec else {
        return vec!["no spec".to_owned()];
    };
    if spec.completion_mode.as_deref() != Some("Indexed") {
        problems.push("completionMode is not Indexed".to_owned());
    }
    if spec.parallelism != spec.completions {
        problems.push(format!(
            "parallelism {:?} is not completions {:?}: shards share one schedule",
            spec.parallelism, spec.completions
        ));
    }
    if spec.backoff_limit != Some(0) {
        problems.push("backoffLimit is not 0".to_owned());
    }
    let containers = spec
        .template
        .spec
        .as_ref()
        .map(|p| p.containers.as_slice())
        .unwrap_or_default();
    for c in containers {
        let env = |name: &str| {
            c.env
                .as_deref()
                .unwrap_or_default()
                .iter()
                .find(|e| e.name == name)
                .and_then(|e| e.value.clone())
        };
        let shards: Option<i32> = env("SHARDS").and_then(|s| s.parse().ok());
        if shards != spec.completions {
            problems.push(format!(
                "{}: SHARDS {shards:?} is not completions {:?}",
                c.name, spec.completions
            ));
        }
        let args = c.args.as_deref().unwrap_or_default();
        let has = |prefix: &str, needle: &str| {
            args.iter()
                .any(|a| a.starts_with(prefix) && a.contains(needle))
        };
        for (prefix, needle) in [
            ("--shard=", "$(JOB_COMPLETION_INDEX)/$(SHARDS)"),
            ("--start-at=", "$(START_AT)"),
            ("--out=", "$(JOB_COMPLETION_INDEX)"),
        ] {
            if !has(prefix, needle) {
                problems.push(format!("{}: no {prefix}…{needle}… argument", c.name));
            }
        }
        if env("START_AT").is_none() {
            problems.push(format!("{}: no START_AT", c.name));
        }
    }
    if containers.is_empty() {
        problems.push("no containers".to_owned());
    }
    problems
}
