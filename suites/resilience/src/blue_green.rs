//! `container_blue_green_switch`: two backend containers, blue and green; the frontend (in
//! process, served on a loopback port) calls blue while the project's open-model load driver
//! (`gauntlet-load`) sends `blue-green-rate` req/s to it; at a third of the run the frontend's
//! remote model is switched to green (`POST /v2/repository/models/{m}/backend`), at two
//! thirds blue is paused, so a call still sent there would time out and fall back. Zero
//! failed requests, zero degraded answers, blue served nothing after the switch, green
//! served, and the achieved rate at least [`MIN_ACHIEVED`] of the planned one.

use std::sync::Arc;
use std::time::{Duration, Instant};

use gauntlet_engine::backend::BreakerConfig;
use gauntlet_harness::{ServedEngine, TargetExt as _};
use gauntlet_load::driver::{
    self, AnyBody, DriverConfig, ModelInferResponse, RequestSpec, ResponseCheck,
};
use gauntlet_load::schedule::{Schedule, Shard};

use crate::Setup;
use crate::cases::{Verdict, fail, ms, pass};
use crate::container::EngineContainer;
use crate::pair::{fixture, frontend_state};

/// Smallest achieved rate, as a share of the planned one, for the switch to count as tested
/// under that load.
pub(crate) const MIN_ACHIEVED: f64 = 0.95;
/// The frontend's deadline of one backend call in this case.
const BACKEND_TIMEOUT: Duration = Duration::from_secs(2);
/// Seed of the load's request body (one row of the fixture generator).
const SEED: u64 = 14;
/// Time after the switch's answer before blue's request count is read: calls already on
/// their way to blue finish meanwhile.
const SETTLE: Duration = Duration::from_millis(300);

/// A response is good when it is 2xx (the driver's own check) and not flagged `degraded`: a
/// fallback answer would hide a failed backend call.
struct NotDegraded;

impl ResponseCheck for NotDegraded {
    fn check(&self, body: &[u8]) -> Result<Option<String>, String> {
        if body.windows(10).any(|w| w == b"\"degraded\"") {
            return Err("a degraded (fallback) answer".to_owned());
        }
        AnyBody.check(body)
    }

    fn check_grpc(&self, response: &ModelInferResponse) -> Result<Option<String>, String> {
        if response.parameters.contains_key("degraded") {
            return Err("a degraded (fallback) answer".to_owned());
        }
        AnyBody.check_grpc(response)
    }
}

/// The case.
pub(crate) async fn run(setup: &Setup) -> Result<Verdict, String> {
    let config = &setup.config;
    let model = fixture(&config.model)?;
    let blue = EngineContainer::start(&config.image, "blue", &model.name).await?;
    let green = EngineContainer::start(&config.image, "green", &model.name).await?;
    // The breaker's settings, with a deadline for the load's latency on a shared 2-core host
    // rather than for fault detection: a call counts as slow only when it times out, so a
    // stall of the host does not open the breaker, while a call sent to blue once it is
    // paused still fails (and falls back, which the check counts as a failure).
    let breaker = BreakerConfig {
        slow_call_duration_threshold: BACKEND_TIMEOUT,
        ..config.breaker.clone()
    };
    let state = frontend_state(&model, &blue.url(), BACKEND_TIMEOUT, breaker)?;
    let frontend = setup.frontend(state.clone());
    let served = ServedEngine::start(state, 2).map_err(|e| e.to_string())?;
    let series = format!(
        "gauntlet_requests_total{{model=\"{}\",status=\"200\"}}",
        model.name
    );

    let rate = f64::from(config.blue_green_rate);
    let duration = config.blue_green_duration;
    let body = gauntlet_load::workload::infer_body(1, SEED).map_err(|e| e.to_string())?;
    let driver_config = DriverConfig {
        request: RequestSpec {
            base_url: format!("http://{}", served.addr()),
            method: http::Method::POST,
            path: gauntlet_load::workload::infer_path(&model.name),
            body,
            variants: Vec::new(),
            headers: Vec::new(),
        },
        schedule: Schedule::constant(rate, duration),
        shard: Shard::WHOLE,
        start_at: None,
        warm_up: Duration::ZERO,
        // Enough connections, and patience, that a stall of the shared host (a second or so)
        // delays requests rather than dropping them: a late answer is not a failed one.
        connections: 256,
        connect_timeout: Duration::from_secs(3),
        request_timeout: Duration::from_secs(5),
        late_after: Duration::from_millis(10),
        queue_timeout: Duration::from_secs(5),
        pacing: driver::DEFAULT_PACING,
        threads: 1,
        check: Arc::new(NotDegraded),
        target_process: None,
        progress: None,
        raw_latencies: None,
    };
    let started = Instant::now();
    let load = tokio::task::spawn_blocking(move || driver::run(driver_config));

    tokio::time::sleep(duration / 3).await;
    let switch_at = started.elapsed();
    let path = format!("/v2/repository/models/{}/backend", model.name);
    let reply = frontend
        .post_json(&path, &serde_json::json!({ "backend": green.url() }))
        .await
        .map_err(|e| e.to_string())?;
    let switch_took = started.elapsed() - switch_at;
    tokio::time::sleep(SETTLE).await;
    let blue_at_switch = blue.counter(&series).await?;
    tokio::time::sleep((duration * 2 / 3).saturating_sub(started.elapsed())).await;
    blue.pause().await?;
    let paused_at = started.elapsed();

    let stats = load
        .await
        .map_err(|e| format!("load driver panicked: {e}"))?
        .map_err(|e| e.to_string())?;
    blue.unpause().await?;
    let blue_total = blue.counter(&series).await?;
    let green_total = green.counter(&series).await?;
    drop(served);

    let c = &stats.counters;
    let achieved = stats.achieved_rate();
    let seconds: Vec<String> = stats
        .seconds
        .iter()
        .map(|s| {
            format!(
                "s{} {} ok {} failed p99 {:.1} ms",
                s.second,
                s.ok,
                s.errors + s.dropped,
                s.p99 as f64 / 1e3
            )
        })
        .collect();
    let figures = format!(
        "planned {rate:.0} req/s for {}, achieved {achieved:.0} req/s (the driver's rate: answers over the planned window); {} requests, {} failed, {} sent late (over 10 ms after their time), the last answer {} after the start ({:.0} answers/s over that), p99 {:.1} ms; switch at {} took {}; blue paused at {}; blue served {blue_at_switch} ({} after the switch), green {green_total}; per second: {}",
        humantime::format_duration(duration),
        c.sent,
        c.failed(),
        c.late,
        ms(stats.wall),
        driver::per_second(c.ok, stats.wall),
        stats.latencies.quantile(0.99) as f64 / 1e3,
        ms(switch_at),
        ms(switch_took),
        ms(paused_at),
        blue_total.saturating_sub(blue_at_switch),
        seconds.join(", "),
    );
    if !reply.status.is_success() {
        return fail(format!(
            "the switch to green answered {}: {}; {figures}",
            reply.status,
            reply.text()
        ));
    }
    if c.failed() > 0 {
        return fail(format!(
            "{} requests failed across the switch ({}; first: {:?}); {figures}",
            c.failed(),
            gauntlet_load::gates::error_breakdown(c),
            stats.samples.first()
        ));
    }
    if blue_total != blue_at_switch {
        return fail(format!(
            "blue still got calls after the switch had answered; {figures}"
        ));
    }
    if green_total == 0 {
        return fail(format!("green served nothing; {figures}"));
    }
    if achieved < MIN_ACHIEVED * rate {
        return fail(format!(
            "the host did not sustain the load (under {:.0} % of planned), so the switch was not shown hitless at that rate; {figures}",
            MIN_ACHIEVED * 100.0
        ));
    }
    pass(format!("zero failed, zero degraded: {figures}"))
}
