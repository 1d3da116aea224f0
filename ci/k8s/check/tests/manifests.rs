//! The manifests of `ci/k8s/` as the Kubernetes API types read them, and the checks failing
//! on manifests broken on purpose (a misspelt field, a wrong type, a missing probe, a
//! selector that picks both slots, a shard count that disagrees).
#![allow(clippy::unwrap_used, reason = "tests fail loudly")]

use std::path::{Path, PathBuf};

use gauntlet_k8s_check::{
    CheckError, Object, check_dir, check_text, indexed_job_problems, probe_problems, selected,
    switched,
};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Service;

fn k8s_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn read(name: &str) -> String {
    std::fs::read_to_string(k8s_dir().join(name)).unwrap()
}

/// The Deployments and Services of `text`.
fn engine_objects(text: &str) -> (Vec<Deployment>, Vec<Service>) {
    let mut deployments = Vec::new();
    let mut services = Vec::new();
    for o in check_text("engine.yaml", text).unwrap() {
        match o {
            Object::Deployment(d) => deployments.push(*d),
            Object::Service(s) => services.push(*s),
            other => panic!("unexpected {other:?}"),
        }
    }
    (deployments, services)
}

fn job(text: &str) -> Job {
    check_text("load-shards.yaml", text)
        .unwrap()
        .into_iter()
        .find_map(|o| match o {
            Object::Job(j) => Some(*j),
            _ => None,
        })
        .unwrap()
}

#[test]
fn every_manifest_reads_strictly_as_its_api_type() {
    let files = check_dir(&k8s_dir()).unwrap();
    let names: Vec<String> = files
        .iter()
        .map(|(p, _)| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        names,
        ["engine.yaml", "load-merge.yaml", "load-shards.yaml"],
        "every manifest is checked"
    );
    let kinds: Vec<&str> = files
        .iter()
        .flat_map(|(_, objects)| objects)
        .map(|o| match o {
            Object::Deployment(_) => "Deployment",
            Object::Service(_) => "Service",
            Object::Job(_) => "Job",
            Object::ConfigMap(_) => "ConfigMap",
            Object::PersistentVolumeClaim(_) => "PersistentVolumeClaim",
            _ => "other",
        })
        .collect();
    assert_eq!(
        kinds,
        [
            "Deployment",
            "Deployment",
            "Service",
            "Job",
            "ConfigMap",
            "Job",
            "PersistentVolumeClaim"
        ]
    );
}

#[test]
fn a_misspelt_field_fails_naming_its_path() {
    let text = read("engine.yaml");
    // A probe's field, deep in the pod template of the first Deployment.
    let misspelt = text.replacen("failureThreshold: 30", "failureTreshold: 30", 1);
    let err = check_text("engine.yaml", &misspelt).unwrap_err();
    assert!(matches!(err, CheckError::Unknown { .. }), "{err}");
    assert_eq!(
        err.to_string(),
        "engine.yaml: document 0 (Deployment gauntlet-engine-blue): unknown field \
         spec.template.spec.containers[0].startupProbe.failureTreshold"
    );
    // A whole probe under a wrong name: the engine would run without readiness.
    let misspelt = text.replacen("readinessProbe:", "readinesProbe:", 1);
    let err = check_text("engine.yaml", &misspelt).unwrap_err();
    assert!(
        err.to_string()
            .ends_with("spec.template.spec.containers[0].readinesProbe"),
        "{err}"
    );
    // In the Service (the third document), and in a flow mapping.
    let misspelt = text.replacen("targetPort: http", "targetport: http", 1);
    let err = check_text("engine.yaml", &misspelt).unwrap_err();
    assert!(
        err.to_string().contains(
            "document 2 (Service gauntlet-engine): unknown field spec.ports[0].targetport"
        ),
        "{err}"
    );
    // And in the Indexed Job.
    let misspelt = read("load-shards.yaml").replacen("completionMode:", "completionsMode:", 1);
    let err = check_text("load-shards.yaml", &misspelt).unwrap_err();
    assert!(err.to_string().ends_with("spec.completionsMode"), "{err}");
}

#[test]
fn a_wrong_type_or_an_unknown_kind_fails() {
    let text = read("engine.yaml");
    let err = check_text(
        "engine.yaml",
        &text.replacen("replicas: 2", "replicas: two", 1),
    )
    .unwrap_err();
    assert!(matches!(err, CheckError::Type { .. }), "{err}");
    assert!(err.to_string().contains("gauntlet-engine-blue"), "{err}");
    let err = check_text(
        "engine.yaml",
        &text.replacen("kind: Deployment", "kind: Deploymnet", 1),
    )
    .unwrap_err();
    assert!(matches!(err, CheckError::Kind { .. }), "{err}");
    assert!(err.to_string().contains("apps/v1/Deploymnet"), "{err}");
    let err = check_text("x.yaml", "apiVersion: v1\nkind: Service\n  : [").unwrap_err();
    assert!(matches!(err, CheckError::Yaml { .. }), "{err}");
}

#[test]
fn engine_deployments_probe_the_health_routes_and_set_resources() {
    let (deployments, _) = engine_objects(&read("engine.yaml"));
    assert_eq!(deployments.len(), 2);
    for d in &deployments {
        assert_eq!(probe_problems(d), Vec::<String>::new());
    }
    // Broken on purpose, each alone: the check names what is missing.
    let text = read("engine.yaml");
    for (from, to, says) in [
        (
            "          livenessProbe:\n            httpGet: { path: /v2/health/live, port: http }\n            periodSeconds: 10\n            timeoutSeconds: 2\n            failureThreshold: 3\n",
            "",
            "gauntlet-engine-blue/engine: livenessProbe missing",
        ),
        (
            "httpGet: { path: /v2/health/ready, port: http }\n            periodSeconds: 2",
            "httpGet: { path: /v2/models, port: http }\n            periodSeconds: 2",
            "readinessProbe GETs Some(\"/v2/models\"), not /v2/health/ready",
        ),
        (
            "httpGet: { path: /v2/health/ready, port: http }\n            periodSeconds: 1",
            "httpGet: { path: /v2/health/ready, port: web }\n            periodSeconds: 1",
            "startupProbe port String(\"web\") is not a port of the container",
        ),
        (
            "limits: { cpu: \"2\", memory: \"512Mi\" }",
            "limits: { cpu: \"2\" }",
            "no memory in resources.limits",
        ),
    ] {
        let broken = text.replacen(from, to, 1);
        assert_ne!(broken, text, "{from:?} is in engine.yaml");
        let (deployments, _) = engine_objects(&broken);
        let problems = probe_problems(&deployments[0]);
        assert!(
            problems.iter().any(|p| p.contains(says)),
            "{says}: {problems:?}"
        );
        assert_eq!(probe_problems(&deployments[1]), Vec::<String>::new());
    }
}

#[test]
fn the_service_selects_one_slot_and_the_switch_selects_the_other() {
    let (deployments, services) = engine_objects(&read("engine.yaml"));
    let service = &services[0];
    assert_eq!(selected(service, &deployments), ["gauntlet-engine-blue"]);
    let green = switched(service, "slot", "green");
    assert_eq!(selected(&green, &deployments), ["gauntlet-engine-green"]);
    assert_eq!(
        selected(&switched(&green, "slot", "blue"), &deployments),
        ["gauntlet-engine-blue"],
        "and back: the rollback"
    );
    // A selector without the slot label would send traffic to both slots at once.
    let text = read("engine.yaml").replacen(
        "selector: { app: gauntlet-engine, slot: blue }\n  ports",
        "selector: { app: gauntlet-engine }\n  ports",
        1,
    );
    let (deployments, services) = engine_objects(&text);
    assert_eq!(
        selected(&services[0], &deployments),
        ["gauntlet-engine-blue", "gauntlet-engine-green"]
    );
    // The two slots are the same but for the slot: the switch changes nothing else.
    let mut blue = serde_json::to_value(&deployments[0]).unwrap();
    let green = serde_json::to_value(&deployments[1]).unwrap();
    let text = blue.to_string().replace("blue", "green");
    blue = serde_json::from_str(&text).unwrap();
    assert_eq!(blue, green);
}

#[test]
fn the_indexed_job_shards_one_schedule() {
    let text = read("load-shards.yaml");
    assert_eq!(indexed_job_problems(&job(&text)), Vec::<String>::new());
    for (from, to, says) in [
        (
            "value: \"4\"",
            "value: \"3\"",
            "SHARDS Some(3) is not completions Some(4)",
        ),
        (
            "parallelism: 4",
            "parallelism: 2",
            "parallelism Some(2) is not completions Some(4)",
        ),
        (
            "backoffLimit: 0",
            "backoffLimit: 3",
            "backoffLimit is not 0",
        ),
        (
            "--out=/results/shard-$(JOB_COMPLETION_INDEX).json",
            "--out=/results/shard.json",
            "no --out=…$(JOB_COMPLETION_INDEX)",
        ),
        (
            "completionMode: Indexed",
            "completionMode: NonIndexed",
            "not Indexed",
        ),
    ] {
        let broken = text.replacen(from, to, 1);
        assert_ne!(broken, text, "{from:?} is in load-shards.yaml");
        let problems = indexed_job_problems(&job(&broken));
        assert!(
            problems.iter().any(|p| p.contains(says)),
            "{says}: {problems:?}"
        );
    }
}
