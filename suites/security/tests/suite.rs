//! The security suite against the in-process engine (its secured twin) and against engines
//! by URL: open over plain HTTP, and keyed over HTTPS with a test CA.
#![expect(clippy::unwrap_used, reason = "a failed unwrap is a failed test")]

use std::sync::Arc;

use bytes::Bytes;
use http::Request;

use gauntlet_engine::security::keyring::Keyring;
use gauntlet_engine::security::sign::Credentials;
use gauntlet_engine::security::{AdminKeys, Role, Security, SecurityConfig};
use gauntlet_engine::{AppState, EngineConfig};
use gauntlet_harness::config::Settings;
use gauntlet_harness::{
    ClientSecurity, HttpOptions, HttpTarget, InProcess, Suite, SuiteCtx, Target,
};
use gauntlet_reports::{CaseResult, Outcome};
use gauntlet_security::SecuritySuite;

async fn run(target: Arc<dyn Target>) -> Vec<CaseResult> {
    run_selected(target, None).await
}

/// The cases `names` (all when `None`) against `target`.
async fn run_selected(target: Arc<dyn Target>, names: Option<&[&str]>) -> Vec<CaseResult> {
    let settings = Settings::default();
    let planned: Vec<_> = SecuritySuite
        .gates(&settings)
        .unwrap()
        .into_iter()
        .filter(|p| names.is_none_or(|n| n.contains(&p.name.as_str())))
        .collect();
    assert_eq!(planned.len(), names.map_or(planned.len(), <[&str]>::len));
    let ctx = SuiteCtx {
        target,
        settings,
        planned,
        progress: false,
    };
    let cases = SecuritySuite.run(ctx).await.unwrap().cases;
    for c in &cases {
        eprintln!(
            "{} {}: {}",
            c.outcome.label(),
            c.id,
            c.message.as_deref().unwrap_or("")
        );
    }
    cases
}

fn outcome<'a>(cases: &'a [CaseResult], name: &str) -> &'a CaseResult {
    cases
        .iter()
        .find(|c| c.name == name)
        .unwrap_or_else(|| panic!("no case {name}"))
}

/// Every attack runs for real against the in-process engine's secured twin, and passes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_attack_passes_against_the_secured_in_process_engine() {
    let models = gauntlet_fixtures::load_embedded().unwrap();
    let target: Arc<dyn Target> =
        Arc::new(InProcess::with_models(EngineConfig::default(), models).unwrap());
    let cases = run(target).await;
    assert_eq!(cases.len(), 25);
    for c in &cases {
        assert_eq!(c.outcome, Outcome::Pass, "{}: {:?}", c.id, c.message);
        let message = c.message.as_deref().unwrap();
        assert!(
            message.starts_with("sent")
                || message.starts_with("a good")
                || message.starts_with("the well-formed")
                || message.starts_with("the defaults")
                || message.starts_with("loads by name")
                || message.starts_with("scanned"),
            "{message}"
        );
    }
    // Each weak key file is refused by the engine's own loader, naming the file or field.
    let files = outcome(&cases, "weak_key_files_are_refused")
        .message
        .as_deref()
        .unwrap();
    for named in [
        "mode 0640 lets group or others read it",
        "keys[0].secret: must be at least 32 bytes",
        "tokens[0].sha256: must be 64 lowercase hex digits",
        "primary: names a retired key",
    ] {
        assert!(files.contains(named), "{files}");
    }
    assert!(files.contains("a keyring without max-uses too"), "{files}");
    // Each weakening `[security]` setting is refused by the engine's config loader, naming it.
    let settings = outcome(&cases, "weak_security_settings_are_refused")
        .message
        .as_deref()
        .unwrap();
    for named in [
        "a clock-skew window of 1h 1s: invalid config: security.max-clock-skew",
        "max-headers 1,000,000: invalid config: security.max-headers",
        "a TLS certificate without its key: invalid config: security.tls-cert",
    ] {
        assert!(settings.contains(named), "{settings}");
    }
    // The control's signed read of the staged version's review is answered.
    let control = outcome(&cases, "signed_admin_call_is_accepted")
        .message
        .as_deref()
        .unwrap();
    assert!(control.contains("/review signed by key"), "{control}");
    assert!(control.contains("(role operator): 200"), "{control}");
    // Loads by name from a model directory: only the sealed regular file of the name loads.
    let dir = outcome(&cases, "model_directory_serves_only_sealed_files")
        .message
        .as_deref()
        .unwrap();
    for named in [
        "exactly max-artifact-bytes, beside a directory of the plain file's name: 200",
        "a plain JSON file: 400",
        "require-encrypted-artifacts",
        "over max-artifact-bytes: 413",
        "(a symbolic link to itself): 500",
        "no file: 404",
    ] {
        assert!(dir.contains(named), "{dir}");
    }
    assert!(
        outcome(&cases, "forged_signature_is_refused")
            .message
            .as_deref()
            .unwrap()
            .contains("got 401")
    );
    assert!(
        outcome(&cases, "wrong_role_is_refused")
            .message
            .as_deref()
            .unwrap()
            .contains("got 403")
    );
    assert!(
        outcome(&cases, "tls_below_1_2_is_refused")
            .message
            .as_deref()
            .unwrap()
            .contains("alert")
    );
}

/// The engine's default: no admin keys. The unsigned load is accepted, and that case fails;
/// the cases that need credentials or keys are skipped with the reason.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_engine_by_url_fails_the_unsigned_load() {
    let state = AppState::new(EngineConfig::default());
    for m in gauntlet_fixtures::load_embedded().unwrap() {
        let name = m.name.clone();
        state.registry().load(m).unwrap();
        state.registry().promote(&name).unwrap();
    }
    let server = gauntlet_harness::ServedEngine::start(state, 1).unwrap();
    let target: Arc<dyn Target> = Arc::new(
        HttpTarget::connect(&server.url(), HttpOptions::default())
            .await
            .unwrap(),
    );
    let cases = run(target).await;
    let unsigned = outcome(&cases, "unsigned_admin_load_is_refused");
    assert_eq!(unsigned.outcome, Outcome::Fail);
    assert!(
        unsigned
            .message
            .as_deref()
            .unwrap()
            .contains("ACCEPTED an unsigned model load")
    );
    let forged = outcome(&cases, "forged_signature_is_refused");
    assert!(
        matches!(&forged.outcome, Outcome::Skip { reason } if reason.contains("--admin-credentials")),
        "{forged:?}"
    );
    // By URL the engine read its key files before the run: the loader case says so.
    let files = outcome(&cases, "weak_key_files_are_refused");
    assert!(
        matches!(&files.outcome, Outcome::Skip { reason } if reason.contains("before the run")),
        "{files:?}"
    );
    let settings = outcome(&cases, "weak_security_settings_are_refused");
    assert!(
        matches!(&settings.outcome, Outcome::Skip { reason } if reason.contains("before the run")),
        "{settings:?}"
    );
    let dir = outcome(&cases, "model_directory_serves_only_sealed_files");
    assert!(
        matches!(&dir.outcome, Outcome::Skip { reason } if reason.contains("model directory")),
        "{dir:?}"
    );
    for name in [
        "deep_json_is_refused",
        "header_flood_is_refused",
        "slowloris_is_cut_off",
        "early_answer_reaches_an_uploading_client",
        "no_secret_or_trace_leaks",
    ] {
        assert_eq!(outcome(&cases, name).outcome, Outcome::Pass, "{name}");
    }
}

/// A keyed engine by URL with the operator's and a viewer's credentials and its keyrings (as
/// `--artifact-keyring` and `--retired-keyring` give them): the signature, role and artifact
/// cases pass; the TLS cases are skipped (plain HTTP).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_keyed_engine_by_url_passes_the_signature_and_artifact_cases() {
    let config = EngineConfig {
        // Also the engine's keep-alive idle limit: above the client's 5 s pool idle timeout,
        // or a pooled connection the engine closed during the slowloris wait is reused.
        header_read_timeout: std::time::Duration::from_secs(6),
        security: SecurityConfig {
            admin_keys: Some("admin.toml".into()),
            keyring: Some("keyring.toml".into()),
            ..SecurityConfig::default()
        },
        ..EngineConfig::default()
    };
    // Rotated as an operator does: k1, then k2 made primary and k1 retired; `old` is the copy
    // of the keyring from before the retirement.
    let mut ring = Keyring::new();
    ring.add_random("k1").unwrap();
    let old = ring.clone();
    ring.add_random("k2").unwrap();
    ring.set_primary("k2").unwrap();
    ring.retire("k1").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (ring_file, old_file) = (dir.path().join("ring.toml"), dir.path().join("old.toml"));
    ring.save(&ring_file).unwrap();
    old.save(&old_file).unwrap();
    let (keyring, retired) =
        gauntlet_harness::target::security::load_keyrings(Some(&ring_file), Some(&old_file))
            .unwrap();
    assert!(
        gauntlet_harness::target::security::load_keyrings(Some(&ring_file), Some(&ring_file))
            .unwrap_err()
            .to_string()
            .contains("\"k2\" is not retired")
    );
    let mut keys = AdminKeys::default();
    keys.insert("ops-1".into(), vec![1; 32], "olga".into(), Role::Operator)
        .unwrap();
    keys.insert("view-1".into(), vec![3; 32], "vic".into(), Role::Viewer)
        .unwrap();
    keys.insert("appr-1".into(), vec![2; 32], "anna".into(), Role::Approver)
        .unwrap();
    let security = Security::from_parts(&config.security, Some(ring), Some(keys), None);
    let state = AppState::with_security(config, security);
    for m in gauntlet_fixtures::load_embedded().unwrap() {
        let name = m.name.clone();
        state.registry().load(m).unwrap();
        state.registry().promote(&name).unwrap();
    }
    let server = gauntlet_harness::ServedEngine::start(state, 1).unwrap();
    let client = ClientSecurity {
        admin: vec![
            Credentials::from_secret("ops-1", &[1; 32])
                .unwrap()
                .with_role(Role::Operator),
            Credentials::from_secret("view-1", &[3; 32])
                .unwrap()
                .with_role(Role::Viewer),
            Credentials::from_secret("appr-1", &[2; 32])
                .unwrap()
                .with_role(Role::Approver),
        ],
        keyring,
        retired,
        ..ClientSecurity::default()
    };
    let target: Arc<dyn Target> = Arc::new(
        HttpTarget::connect_with(&server.url(), HttpOptions::default(), client)
            .await
            .unwrap(),
    );
    let cases = run(target).await;
    for name in [
        "signed_admin_call_is_accepted",
        "forged_signature_is_refused",
        "expired_signature_is_refused",
        "future_dated_signature_is_refused",
        "replayed_call_is_refused",
        "swapped_body_is_refused",
        "unknown_key_is_refused",
        "wrong_role_is_refused",
        "unsigned_admin_load_is_refused",
        "audit_read_needs_a_role",
        "tampered_artifact_is_refused",
        "wrong_key_artifact_is_refused",
        "retired_key_artifact_is_refused",
        "no_secret_or_trace_leaks",
    ] {
        assert_eq!(outcome(&cases, name).outcome, Outcome::Pass, "{name}");
    }
    assert!(
        outcome(&cases, "retired_key_artifact_is_refused")
            .message
            .as_deref()
            .unwrap()
            .contains("under the retired key k1: 400")
    );
    assert!(matches!(
        outcome(&cases, "tls_port_refuses_plain_http").outcome,
        Outcome::Skip { .. }
    ));
}

fn assert_outcome(cases: &[CaseResult], name: &str, expected: &Outcome, needle: &str) {
    let case = outcome(cases, name);
    let message = case.message.as_deref().unwrap_or("");
    assert_eq!(&case.outcome, expected, "{name}: {message}");
    assert!(message.contains(needle), "{name}: {message}");
}

/// The audit log's reads without their control (the engine with no admin keys and an audit
/// log) fail the audit-read case.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_engine_with_open_audit_reads_fails_the_audit_read_case() {
    let tmp = tempfile::tempdir().unwrap();
    let config = EngineConfig {
        audit: Some(gauntlet_engine::audit::AuditConfig::new(
            tmp.path().join("log"),
            tmp.path().join("keys"),
        )),
        ..EngineConfig::default()
    };
    let state = AppState::open(config).unwrap();
    let server = gauntlet_harness::ServedEngine::start(state, 1).unwrap();
    let target: Arc<dyn Target> = Arc::new(
        HttpTarget::connect(&server.url(), HttpOptions::default())
            .await
            .unwrap(),
    );
    // A checkpoint to read (without admin keys the header names the caller).
    let request = Request::builder()
        .method("POST")
        .uri("/v2/audit/checkpoint")
        .header("x-gauntlet-principal", "tester")
        .body(Bytes::new())
        .unwrap();
    assert_eq!(target.send(request).await.unwrap().status(), 200);
    let cases = run_selected(target, Some(&["audit_read_needs_a_role"])).await;
    assert_outcome(
        &cases,
        "audit_read_needs_a_role",
        &Outcome::Fail,
        "can read the audit log",
    );
}
