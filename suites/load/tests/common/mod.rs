//! Helpers shared by the load test binaries.
#![allow(dead_code, reason = "each test binary uses a different subset")]
#![allow(clippy::unwrap_used, reason = "test helpers fail the test loudly")]

use std::sync::Arc;
use std::time::Duration;

use http::Method;

use gauntlet_engine::EngineConfig;
use gauntlet_harness::Target;
use gauntlet_harness::config::Settings;
use gauntlet_harness::suite::{Suite, SuiteCtx, SuiteOutput};
use gauntlet_harness::{ENGINE_THREAD_PREFIX, InProcess, ServedEngine};
use gauntlet_load::LoadSuite;
use gauntlet_load::driver::{self, DriverConfig, RequestSpec, ResponseCheck};
use gauntlet_load::sampler::TargetProcess;
use gauntlet_load::schedule::{Schedule, Shard};
use gauntlet_load::workload;

pub fn engine() -> InProcess {
    let models = gauntlet_fixtures::load_embedded().unwrap();
    InProcess::with_models(EngineConfig::default(), models).unwrap()
}

pub fn served() -> ServedEngine {
    ServedEngine::start(engine().state().clone(), 1).unwrap()
}

pub fn config(
    url: &str,
    path: &str,
    rate: f64,
    secs: f64,
    check: Arc<dyn ResponseCheck>,
) -> DriverConfig {
    DriverConfig {
        request: RequestSpec {
            base_url: url.to_owned(),
            method: Method::POST,
            path: path.to_owned(),
            body: workload::infer_body(1, 7).unwrap(),
            variants: Vec::new(),
            headers: Vec::new(),
        },
        schedule: Schedule::constant(rate, Duration::from_secs_f64(secs)),
        shard: Shard::WHOLE,
        start_at: None,
        warm_up: Duration::ZERO,
        connections: 8,
        connect_timeout: Duration::from_secs(1),
        request_timeout: Duration::from_secs(2),
        late_after: Duration::from_millis(5),
        queue_timeout: Duration::from_secs(1),
        pacing: driver::DEFAULT_PACING,
        threads: 1,
        check,
        target_process: Some(TargetProcess::InProcess(ENGINE_THREAD_PREFIX.to_owned())),
        progress: None,
        raw_latencies: None,
    }
}

/// Settings whose `[load]` table is `load` (TOML).
pub fn phase_settings(load: &str) -> Settings {
    let mut settings = Settings::default();
    settings
        .sections
        .insert("load".to_owned(), toml::from_str(load).unwrap());
    settings
}

/// Runs the load phase with every case it plans under `load`, against `target`.
pub fn run_phase(load: &str, target: Arc<dyn Target>) -> SuiteOutput {
    let settings = phase_settings(load);
    let planned = LoadSuite.gates(&settings).unwrap();
    let ctx = SuiteCtx {
        target,
        settings,
        planned,
        progress: false,
    };
    tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(LoadSuite.run(ctx))
        .unwrap()
}
