//! The compliance suite against the reference engine with its controls on — in process and
//! by URL — and against proxies that each break one control, which the matching case must
//! fail, saying what differed.
#![expect(clippy::unwrap_used, reason = "tests fail loudly")]

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use http::{Request, Response};
use serde_json::{Value, json};

use gauntlet_compliance::{Compliance, all_cases};
use gauntlet_engine::audit::AuditConfig;
use gauntlet_engine::{AppState, EngineConfig};
use gauntlet_harness::config::Settings;
use gauntlet_harness::runner::{RunOptions, run, run_one};
use gauntlet_harness::suite::{Suite as _, SuiteCtx};
use gauntlet_harness::{
    Capabilities, CaseCtx, HttpOptions, HttpTarget, InProcess, References, ServedEngine, Target,
    TargetError,
};
use gauntlet_reports::{ClauseStatus, Outcome, RunReport};

/// An engine with the audit log (four eyes on) in `tmp`.
fn audited_state(tmp: &Path) -> AppState {
    let mut audit = AuditConfig::new(tmp.join("log"), tmp.join("keys"));
    audit.four_eyes = true;
    AppState::open(EngineConfig {
        audit: Some(audit),
        ..EngineConfig::default()
    })
    .unwrap()
}

fn options() -> RunOptions {
    RunOptions {
        concurrency: 4,
        case_timeout: Duration::from_secs(60),
        ..RunOptions::default()
    }
}

async fn run_all(target: Arc<dyn Target>) -> Vec<gauntlet_reports::CaseResult> {
    run(
        &all_cases(),
        target,
        &References::all_served(Vec::new()),
        &options(),
        |_| {},
    )
    .await
}

fn assert_all_pass(results: &[gauntlet_reports::CaseResult]) {
    assert_eq!(results.len(), all_cases().len());
    for r in results {
        assert_eq!(r.outcome, Outcome::Pass, "{}: {:?}", r.id, r.message);
    }
}

/// The settings of a profile whose `[compliance]` table is `table`.
fn settings(table: &str) -> Settings {
    let text = format!("[profile.default.compliance]\n{table}\n");
    let file: gauntlet_harness::config::ConfigFile = toml::from_str(&text).unwrap();
    Settings::resolve(
        Some((&file, Path::new("gauntlet.toml"))),
        "default",
        &gauntlet_harness::config::Profile::default(),
    )
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_case_and_gate_passes_in_process_and_the_matrix_traces_every_clause() {
    let tmp = tempfile::tempdir().unwrap();
    let state = audited_state(tmp.path());
    let target: Arc<dyn Target> = Arc::new(InProcess::new(state.clone()));
    let results = run_all(Arc::clone(&target)).await;
    assert_all_pass(&results);

    let dir = tmp.path().join("log");
    let settings = settings(&format!("audit-dir = {:?}", dir.to_str().unwrap()));
    let planned = Compliance.gates(&settings).unwrap();
    let output = Compliance
        .run(SuiteCtx {
            target,
            settings,
            planned,
            progress: false,
        })
        .await
        .unwrap();
    for gate in &output.cases {
        assert_eq!(
            gate.outcome,
            Outcome::Pass,
            "{}: {:?}",
            gate.id,
            gate.message
        );
    }
    let reopens = gate(&output.cases, "audit_log_reopens")
        .message
        .clone()
        .unwrap();
    assert!(
        reopens.contains("a half-written frame at offset")
            && reopens.contains("rewritten with a valid CRC")
            && reopens.contains("written twice refused")
            && reopens.contains("pruned past the retention period"),
        "{reopens}"
    );
    let tamper = output.cases[1].message.clone().unwrap();
    assert!(
        tamper.contains("a flipped byte: record")
            && tamper.contains("a rewrite with a valid CRC: record")
            && tamper.contains("a forged checkpoint: checkpoint"),
        "{tamper}"
    );
    let mut cases = results;
    cases.extend(output.cases.clone());
    let meta: gauntlet_reports::RunMeta = serde_json::from_value(json!({
        "tool": "gauntlet", "tool_version": "0", "crate_versions": {}, "seed": "0x1",
        "target": "in-process", "profile": "default",
        "started_at": "2026-12-05T00:00:00Z", "finished_at": "2026-12-05T00:00:01Z"
    }))
    .unwrap();
    let report = RunReport::new(meta, cases).with_sections(output.sections);
    let matrix = report.traceability.as_ref().expect("the matrix");
    assert_eq!(matrix.clauses.len(), 10);
    for row in &matrix.clauses {
        let expected = if row.clause == "RTS 6 Art. 10" {
            // CMP-STRESS is the load suite's: not part of this run.
            ClauseStatus::Uncovered
        } else {
            ClauseStatus::Passed
        };
        assert_eq!(row.status, expected, "{row:?}");
    }
    let evidence = matrix.evidence.as_ref().expect("checkpoint evidence");
    assert_eq!(
        evidence.size,
        state.audit().unwrap().latest_checkpoint().unwrap().size
    );
    // Every format shows it.
    let out = tempfile::tempdir().unwrap();
    gauntlet_reports::write_all(&report, out.path()).unwrap();
    let md = std::fs::read_to_string(out.path().join("summary.md")).unwrap();
    assert!(
        md.contains("## Compliance traceability") && md.contains("| uncovered |"),
        "{md}"
    );
    assert!(md.contains(&evidence.root));
    let html = std::fs::read_to_string(out.path().join("report.html")).unwrap();
    assert!(html.contains("Compliance traceability") && html.contains("RTS 6 Art. 28"));
    let json: Value =
        serde_json::from_str(&std::fs::read_to_string(out.path().join("report.json")).unwrap())
            .unwrap();
    assert_eq!(json["traceability"]["clauses"][2]["status"], "uncovered");
    assert_eq!(
        json["traceability"]["evidence"]["root"],
        evidence.root.as_str()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plain_in_process_engine_is_checked_through_its_audited_twin_whose_log_stays() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("audit-log");
    // A former run's log in the same place is replaced, not appended to (its key is gone).
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(gauntlet_engine::audit::PUBLIC_KEY_FILE), "00\n").unwrap();
    let plain = InProcess::new(AppState::new(EngineConfig::default())).audit_log_in(&dir);
    assert!(plain.state().audit().is_none());
    let target: Arc<dyn Target> = Arc::new(plain);
    assert_all_pass(&run_all(Arc::clone(&target)).await);
    // No audit-dir setting: the tamper gate finds the twin's log.
    for gate in &gates(&target, "").await {
        assert_eq!(
            gate.outcome,
            Outcome::Pass,
            "{}: {:?}",
            gate.id,
            gate.message
        );
    }
    // The log is a real directory, verified offline after the run with the key it holds.
    let twin = target.audited().unwrap().unwrap();
    assert_eq!(twin.dir, dir);
    let report = gauntlet_engine::audit::verify_dir(&dir, &Default::default()).unwrap();
    assert!(report.records > 50 && report.checkpoints >= 2, "{report:?}");
    // The keys are not beside it.
    for entry in std::fs::read_dir(&dir).unwrap() {
        let name = entry.unwrap().file_name();
        assert!(
            !name.to_string_lossy().ends_with(".key"),
            "{name:?} in the log directory"
        );
    }
}

/// A twin that cannot start (here: its log directory holds someone else's file) leaves the
/// file alone, and every case and gate that needed it errs, naming why: none passes or skips
/// on the plain engine, whose controls are off.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_directory_that_holds_something_else_is_not_replaced_and_the_cases_err() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("notes.txt"), "mine").unwrap();
    let plain = InProcess::new(AppState::new(EngineConfig::default())).audit_log_in(tmp.path());
    let Err(TargetError::Twin { twin, reason, .. }) = plain.audited() else {
        panic!("the audited twin started in a directory that holds notes.txt");
    };
    assert_eq!(twin, "audited");
    assert!(reason.contains("holds no audit log"), "{reason}");
    assert_eq!(
        std::fs::read_to_string(tmp.path().join("notes.txt")).unwrap(),
        "mine"
    );

    let target: Arc<dyn Target> = Arc::new(plain);
    let results = run_all(Arc::clone(&target)).await;
    assert_eq!(results.len(), all_cases().len());
    for r in &results {
        let message = r.message.clone().unwrap_or_default();
        assert!(
            r.outcome == Outcome::Error && message.contains("holds no audit log"),
            "{}: {:?} {message}",
            r.id,
            r.outcome
        );
    }
    let settings = settings("");
    let planned = Compliance.gates(&settings).unwrap();
    let Err(e) = Compliance
        .run(SuiteCtx {
            target,
            settings,
            planned,
            progress: false,
        })
        .await
    else {
        panic!("the gates ran without their audited twin");
    };
    assert!(e.to_string().contains("holds no audit log"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_case_passes_against_the_engine_by_url() {
    let tmp = tempfile::tempdir().unwrap();
    let (_served, target) = by_url(audited_state(tmp.path())).await;
    assert_all_pass(&run_all(target).await);
}

/// `state` served on loopback, and a target that reaches it by URL.
async fn by_url(state: AppState) -> (ServedEngine, Arc<dyn Target>) {
    let served = ServedEngine::start(state, 1).unwrap();
    let target = HttpTarget::connect(&served.url(), HttpOptions::default())
        .await
        .unwrap();
    (served, Arc::new(target))
}

/// The compliance gates of a run against `target` with the `[compliance]` table `table`.
async fn gates(target: &Arc<dyn Target>, table: &str) -> Vec<gauntlet_reports::CaseResult> {
    let settings = settings(table);
    let planned = Compliance.gates(&settings).unwrap();
    Compliance
        .run(SuiteCtx {
            target: Arc::clone(target),
            settings,
            planned,
            progress: false,
        })
        .await
        .unwrap()
        .cases
}

fn gate<'a>(
    gates: &'a [gauntlet_reports::CaseResult],
    name: &str,
) -> &'a gauntlet_reports::CaseResult {
    gates.iter().find(|g| g.name == name).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_key_gates_check_the_files_named_and_fail_on_a_key_group_may_read() {
    use std::os::unix::fs::PermissionsExt as _;
    let tmp = tempfile::tempdir().unwrap();
    let (_served, target) = by_url(audited_state(tmp.path())).await;
    // By URL with no key files named, both key gates skip, saying which settings they need.
    let none = gates(&target, "").await;
    for name in ["audit_keys_private", "audit_log_reopens"] {
        let g = gate(&none, name);
        assert!(
            matches!(&g.outcome, Outcome::Skip { reason } if reason.contains("signing-key-file")),
            "{name}: {:?}",
            g.outcome
        );
    }
    let keys = tmp.path().join("keys");
    let signing = keys.join("audit-signing.key");
    let table = format!(
        "audit-dir = {:?}\nsigning-key-file = {:?}\npseudonym-key-file = {:?}",
        tmp.path().join("log"),
        signing,
        keys.join("audit-pseudonym.key")
    );
    let named = gates(&target, &table).await;
    for name in ["audit_keys_private", "audit_log_reopens"] {
        let g = gate(&named, name);
        assert_eq!(g.outcome, Outcome::Pass, "{name}: {:?}", g.message);
    }
    let reopens = gate(&named, "audit_log_reopens").message.clone().unwrap();
    assert!(
        reopens.contains("upper-case hex")
            && reopens.contains("a half-written frame at offset")
            && reopens.contains("a new segment without its magic dropped")
            && reopens.contains("a new segment holding only its magic kept"),
        "{reopens}"
    );
    // The control removed: a signing key file that group may read fails the key gate, which
    // names the mode and not the key.
    let key = std::fs::read_to_string(&signing).unwrap();
    std::fs::set_permissions(&signing, std::fs::Permissions::from_mode(0o640)).unwrap();
    let wide = gates(&target, &table).await;
    let g = gate(&wide, "audit_keys_private");
    let message = g.message.clone().unwrap();
    assert_eq!(g.outcome, Outcome::Fail, "{message}");
    assert!(message.contains("mode 640"), "{message}");
    assert!(!message.contains(key.trim()), "the key in {message}");
    // One key file without the other is a setting error naming both.
    let half = settings(&format!("signing-key-file = {signing:?}"));
    let err = Compliance.gates(&half).unwrap_err().to_string();
    assert!(err.contains("pseudonym-key-file"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_extensions_the_cases_skip_with_the_reason() {
    // By URL: the in-process engine would give its audited twin.
    let (_served, target) = by_url(AppState::new(EngineConfig::default())).await;
    for r in run_all(target).await {
        let needs_audit_or_four_eyes = !matches!(
            r.name.as_str(),
            "kill_switch_stops_every_intent"
                | "pretrade_controls_name_the_control"
                | "derived_orders_round_to_the_passive_tick"
        );
        if needs_audit_or_four_eyes {
            match &r.outcome {
                Outcome::Skip { reason } => assert!(
                    reason.contains("does not advertise the gauntlet_"),
                    "{}: {reason}",
                    r.id
                ),
                other => panic!("{}: {other:?} {:?}", r.id, r.message),
            }
        } else {
            // The trading controls work without the audit log.
            assert_eq!(r.outcome, Outcome::Pass, "{}: {:?}", r.id, r.message);
        }
    }
}

/// The control a [`Defective`] target breaks.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Defect {
    /// A kill call is answered 200 and never reaches the engine: intents go through.
    KillLetsIntentsThrough,
    /// Signals reach the engine with their limit one tick nearer the reference (the answer
    /// shows the limit sent): a collar one tick wider than configured.
    CollarOffByOneTick,
    /// Approvals reach the engine as another principal: the loader approves its own model.
    SelfApprovalAccepted,
    /// A kill engages the switch without the audit record.
    AuditRecordMissing,
    /// Signals without a limit are priced with the raw limit rounded towards the aggressive
    /// side (up for a buy, down for a sell; the answer shows that price).
    DerivedLimitRoundedAggressively,
}

struct Defective {
    inner: InProcess,
    defect: Defect,
    _tmp: tempfile::TempDir,
}

impl Defective {
    fn new(defect: Defect) -> Self {
        let tmp = tempfile::tempdir().unwrap();
        Defective {
            inner: InProcess::new(audited_state(tmp.path())),
            defect,
            _tmp: tmp,
        }
    }
}

fn json_response(body: &Value) -> Response<Bytes> {
    Response::builder()
        .status(200)
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(Bytes::from(body.to_string()))
        .unwrap()
}

#[async_trait]
impl Target for Defective {
    fn describe(&self) -> String {
        format!("{:?} proxy", self.defect)
    }
    fn capabilities(&self) -> &Capabilities {
        self.inner.capabilities()
    }
    async fn send(&self, mut request: Request<Bytes>) -> Result<Response<Bytes>, TargetError> {
        let path = request.uri().path().to_owned();
        let body: Value = serde_json::from_slice(request.body()).unwrap_or(Value::Null);
        match self.defect {
            Defect::KillLetsIntentsThrough
                if path.starts_with("/v2/trading/kill")
                    && request.method() == http::Method::POST
                    && request.headers()["x-gauntlet-principal"] == "risk-officer" =>
            {
                return Ok(json_response(&json!({"changed": true, "state": {}})));
            }
            Defect::AuditRecordMissing
                if path == "/v2/trading/kill"
                    && request.method() == http::Method::POST
                    && request.headers()["x-gauntlet-principal"] == "risk-officer" =>
            {
                let scope: gauntlet_engine::trading::KillScope =
                    serde_json::from_value(body["scope"].clone()).unwrap();
                self.inner.state().trading().kill.engage(&scope);
                return Ok(json_response(&json!({"changed": true, "state": {}})));
            }
            Defect::SelfApprovalAccepted if path.ends_with("/approve") => {
                request
                    .headers_mut()
                    .insert("x-gauntlet-principal", "proxy-approver".parse().unwrap());
            }
            Defect::CollarOffByOneTick if path == "/v2/trading/signal" => {
                let (limit, reference) = (
                    body["limit_price"].as_f64(),
                    body["reference_price"].as_f64(),
                );
                if let (Some(limit), Some(reference)) = (limit, reference)
                    && limit > reference
                {
                    let mut nudged = body.clone();
                    nudged["limit_price"] = json!(limit - 0.01);
                    *request.body_mut() = Bytes::from(nudged.to_string());
                    let mut response = self.inner.send(request).await?;
                    if let Ok(mut answer) = serde_json::from_slice::<Value>(response.body())
                        && answer["intent"].is_object()
                    {
                        answer["intent"]["limit_price"] = json!(limit);
                        *response.body_mut() = Bytes::from(answer.to_string());
                        response.headers_mut().remove(http::header::CONTENT_LENGTH);
                    }
                    return Ok(response);
                }
            }
            Defect::DerivedLimitRoundedAggressively
                if path == "/v2/trading/signal" && body["limit_price"].is_null() =>
            {
                let mut response = self.inner.send(request).await?;
                if let Ok(mut answer) = serde_json::from_slice::<Value>(response.body())
                    && answer["intent"].is_object()
                {
                    let sign = if answer["intent"]["side"] == "buy" {
                        1.0
                    } else {
                        -1.0
                    };
                    let reference = body["reference_price"].as_f64().unwrap();
                    let raw = reference * (1.0 + sign * 5.0 / 10_000.0);
                    let ticks = if sign > 0.0 {
                        (raw / 0.01).ceil()
                    } else {
                        (raw / 0.01).floor()
                    };
                    answer["intent"]["limit_price"] = json!(ticks * 0.01);
                    *response.body_mut() = Bytes::from(answer.to_string());
                    response.headers_mut().remove(http::header::CONTENT_LENGTH);
                }
                return Ok(response);
            }
            _ => {}
        }
        self.inner.send(request).await
    }
}

/// The case `name` against a target with `defect` fails, its message holding `needle`.
async fn caught(defect: Defect, name: &str, needle: &str) {
    let target: Arc<dyn Target> = Arc::new(Defective::new(defect));
    let case = all_cases()
        .into_iter()
        .find(|c| c.name == name)
        .unwrap_or_else(|| panic!("no case {name}"));
    let ctx = CaseCtx::for_case(
        &case,
        target,
        &options(),
        &References::all_served(Vec::new()),
    );
    let result = run_one(case, ctx, Duration::from_secs(60)).await;
    let message = result.message.clone().unwrap_or_default();
    eprintln!("--- {name} against {defect:?}:\n{message}\n");
    assert_eq!(
        result.outcome,
        Outcome::Fail,
        "{name} against {defect:?}: {message}"
    );
    assert!(
        message.contains(needle),
        "{name} against {defect:?}: {message}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kill_switch_that_lets_intents_through_is_caught() {
    caught(
        Defect::KillLetsIntentsThrough,
        "kill_switch_stops_every_intent",
        "after the kill switch was engaged: expected 403 refused by control \"kill_switch\", got 200",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_collar_off_by_one_tick_is_caught() {
    caught(
        Defect::CollarOffByOneTick,
        "pretrade_controls_name_the_control",
        "one tick beyond the collar",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_derived_limit_rounded_aggressively_is_caught() {
    caught(
        Defect::DerivedLimitRoundedAggressively,
        "derived_orders_round_to_the_passive_tick",
        "rounded towards the passive side",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_accepted_self_approval_is_caught() {
    caught(
        Defect::SelfApprovalAccepted,
        "self_approval_is_refused",
        "by cmp-alice, who loaded it: expected 403 refused by control \"four_eyes\", got 200",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_audit_record_is_caught() {
    caught(
        Defect::AuditRecordMissing,
        "kill_switch_stops_every_intent",
        "no audit record kill_engage by risk-officer",
    )
    .await;
}
