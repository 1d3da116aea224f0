//! The cases, each on a [`Pair`] of its own.

use std::future::Future;
use std::pin::Pin;
use std::time::{Duration, Instant};

use gauntlet_faultproxy::Toxics;
use gauntlet_harness::TargetExt as _;
use gauntlet_reports::Outcome;

use crate::ResilienceConfig;
use crate::pair::{Pair, Progress};

/// A case's verdict and what it measured.
pub(crate) struct Verdict {
    pub(crate) outcome: Outcome,
    pub(crate) message: String,
}

fn pass(message: String) -> Result<Verdict, String> {
    Ok(Verdict {
        outcome: Outcome::Pass,
        message,
    })
}

fn fail(message: String) -> Result<Verdict, String> {
    Ok(Verdict {
        outcome: Outcome::Fail,
        message,
    })
}

type CaseFuture<'a> = Pin<Box<dyn Future<Output = Result<Verdict, String>> + Send + 'a>>;

/// One case: its name, requirement ids and body (`Err`: it could not run).
pub(crate) struct CaseDef {
    pub(crate) name: &'static str,
    pub(crate) requirements: &'static [&'static str],
    pub(crate) run: for<'a> fn(&'a ResilienceConfig) -> CaseFuture<'a>,
}

/// Every case, in run order.
pub(crate) const CASES: &[CaseDef] = &[
    CaseDef {
        name: "blackhole_opens_breaker",
        requirements: &["ENG-CB", "ENG-FB", "SLA-AVAIL"],
        run: |c| Box::pin(blackhole_opens_breaker(c)),
    },
    CaseDef {
        name: "stopped_backend_falls_back",
        requirements: &["ENG-CB", "ENG-FB", "SLA-AVAIL"],
        run: |c| Box::pin(stopped_backend_falls_back(c)),
    },
    CaseDef {
        name: "recovery_closes_breaker",
        requirements: &["ENG-CB"],
        run: |c| Box::pin(recovery_closes_breaker(c)),
    },
    CaseDef {
        name: "latency_opens_breaker",
        requirements: &["ENG-CB", "ENG-FB"],
        run: |c| Box::pin(latency_opens_breaker(c)),
    },
    CaseDef {
        name: "failed_load_keeps_live_model",
        requirements: &["ENG-FB", "SLA-AVAIL"],
        run: |c| Box::pin(failed_load_keeps_live_model(c)),
    },
];

/// Answers after the breaker opened that must all be 200 and flagged degraded.
const AFTER_OPEN: u32 = 3;

fn ms(d: Duration) -> String {
    format!("{:.0} ms", d.as_secs_f64() * 1e3)
}

/// Longest a run of `calls` calls may take when each can wait out the timeout.
fn budget(config: &ResilienceConfig, calls: u32) -> Duration {
    (config.timeout + Duration::from_millis(200)) * calls
}

/// A pair whose backend answered one call before any fault.
async fn healthy_pair(config: &ResilienceConfig) -> Result<Pair, String> {
    let pair = Pair::start(config).await?;
    let first = pair.infer().await?;
    if first.status != 200 || first.degraded.is_some() {
        return Err(format!(
            "the backend did not answer before any fault: status {}, degraded {:?}",
            first.status, first.degraded
        ));
    }
    Ok(pair)
}

/// Calls until open after a fault, then [`AFTER_OPEN`] more; the verdict on both.
async fn opens_and_falls_back(
    pair: &Pair,
    config: &ResilienceConfig,
    fault: &str,
) -> Result<Verdict, String> {
    let max = config.max_calls_to_open;
    let opening = pair
        .call_until("open", max, budget(config, max), Duration::ZERO)
        .await?;
    let Some(took) = opening.reached else {
        let state = pair.breaker_state().await?;
        return fail(format!(
            "{fault}: breaker still {state} after {} calls (max-calls-to-open {max}); {}",
            opening.calls,
            answers(&opening)
        ));
    };
    let mut after = Progress::default();
    for _ in 0..AFTER_OPEN {
        after.record(&pair.infer().await?);
        after.calls += 1;
    }
    let mut bad: Vec<u16> = opening.non_2xx.clone();
    bad.extend(&after.non_2xx);
    if !bad.is_empty() {
        return fail(format!(
            "{fault}: clients got {} non-2xx answers ({bad:?}); the breaker opened after {} calls",
            bad.len(),
            opening.calls
        ));
    }
    if after.degraded < AFTER_OPEN {
        return fail(format!(
            "{fault}: breaker open, but {} of {AFTER_OPEN} answers after it were not flagged parameters.degraded",
            AFTER_OPEN - after.degraded
        ));
    }
    pass(format!(
        "{fault}: breaker opened after {} calls (max {max}), {} from fault to open; {} answers, all 2xx; {} degraded (fallback served)",
        opening.calls,
        ms(took),
        opening.calls + after.calls,
        opening.degraded + after.degraded
    ))
}

fn answers(p: &Progress) -> String {
    format!(
        "{} answers, {} non-2xx, {} degraded",
        p.calls,
        p.non_2xx.len(),
        p.degraded
    )
}

async fn blackhole_opens_breaker(config: &ResilienceConfig) -> Result<Verdict, String> {
    let pair = healthy_pair(config).await?;
    pair.toxics(Toxics {
        blackhole: true,
        ..Toxics::default()
    })?;
    opens_and_falls_back(&pair, config, "backend blackholed").await
}

async fn stopped_backend_falls_back(config: &ResilienceConfig) -> Result<Verdict, String> {
    let mut pair = healthy_pair(config).await?;
    pair.stop_backend();
    opens_and_falls_back(&pair, config, "backend stopped").await
}

async fn recovery_closes_breaker(config: &ResilienceConfig) -> Result<Verdict, String> {
    let pair = healthy_pair(config).await?;
    pair.toxics(Toxics {
        blackhole: true,
        ..Toxics::default()
    })?;
    let max = config.max_calls_to_open;
    let opening = pair
        .call_until("open", max, budget(config, max), Duration::ZERO)
        .await?;
    if opening.reached.is_none() {
        return fail(format!(
            "backend blackholed: breaker never opened in {} calls, so it cannot close again",
            opening.calls
        ));
    }
    pair.toxics(Toxics::default())?;
    let recovered = Instant::now();
    let limit = config.breaker.wait_duration_in_open_state + config.max_time_to_close;
    // Traffic keeps flowing, a call every 10 ms, while the breaker waits out its open state.
    let closing = pair
        .call_until("closed", u32::MAX, limit, Duration::from_millis(10))
        .await?;
    let Some(_) = closing.reached else {
        let state = pair.breaker_state().await?;
        return fail(format!(
            "fault lifted: breaker still {state} {} later (wait-duration-in-open-state {} + max-time-to-close {}); {}",
            ms(recovered.elapsed()),
            humantime::format_duration(config.breaker.wait_duration_in_open_state),
            humantime::format_duration(config.max_time_to_close),
            answers(&closing)
        ));
    };
    let to_closed = recovered.elapsed();
    if !closing.non_2xx.is_empty() {
        return fail(format!(
            "fault lifted: breaker closed {} later, but clients got non-2xx answers {:?}",
            ms(to_closed),
            closing.non_2xx
        ));
    }
    let last = pair.infer().await?;
    if last.status != 200 || last.degraded.is_some() {
        return fail(format!(
            "breaker closed, but the next answer was status {} degraded {:?}, not the backend's",
            last.status, last.degraded
        ));
    }
    pass(format!(
        "fault lifted: {} from recovery to closed (open wait {}), through {}; {}",
        ms(to_closed),
        humantime::format_duration(config.breaker.wait_duration_in_open_state),
        closing.states.join(" → "),
        answers(&closing)
    ))
}

async fn latency_opens_breaker(config: &ResilienceConfig) -> Result<Verdict, String> {
    let pair = healthy_pair(config).await?;
    // Between the slow-call threshold and the timeout: slow calls that still succeed.
    let latency = (config.breaker.slow_call_duration_threshold + config.timeout) / 2;
    pair.toxics(Toxics {
        latency,
        ..Toxics::default()
    })?;
    let failures_series = format!(
        "gauntlet_breaker_calls_total{{model=\"{}\",outcome=\"failure\"}}",
        pair.model.name
    );
    let max = config.max_calls_to_open;
    let opening = pair
        .call_until("open", max, budget(config, max), Duration::ZERO)
        .await?;
    let failures = pair.counter(&failures_series).await?;
    let Some(took) = opening.reached else {
        let state = pair.breaker_state().await?;
        return fail(format!(
            "latency {} (slow-call threshold {}): breaker still {state} after {} calls; {}",
            ms(latency),
            humantime::format_duration(config.breaker.slow_call_duration_threshold),
            opening.calls,
            answers(&opening)
        ));
    };
    if failures >= u64::from(opening.calls) {
        return fail(format!(
            "latency {}: the breaker opened, but on {failures} failed calls (timeouts), not on slow successful ones",
            ms(latency)
        ));
    }
    if !opening.non_2xx.is_empty() {
        return fail(format!(
            "latency {}: clients got non-2xx answers {:?}",
            ms(latency),
            opening.non_2xx
        ));
    }
    pass(format!(
        "latency {} (slow-call threshold {}, timeout {}): breaker opened on the slow-call rate after {} calls, {} from fault to open; {failures} of them failed",
        ms(latency),
        humantime::format_duration(config.breaker.slow_call_duration_threshold),
        humantime::format_duration(config.timeout),
        opening.calls,
        ms(took)
    ))
}

async fn failed_load_keeps_live_model(config: &ResilienceConfig) -> Result<Verdict, String> {
    let mut pair = healthy_pair(config).await?;
    let name = pair.model.name.clone();
    let live = pair.model.version.clone();
    // A newer version whose artifact does not validate: no features for its weights.
    let mut bad = serde_json::to_value(&pair.model).map_err(|e| e.to_string())?;
    bad["version"] = serde_json::json!(format!("{live}-broken"));
    bad["features"] = serde_json::json!([]);
    let body = serde_json::json!({ "parameters": { "artifact": bad } });
    let path = format!("/v2/repository/models/{name}/load");
    let reply = pair
        .frontend
        .post_json(&path, &body)
        .await
        .map_err(|e| e.to_string())?;
    if reply.status.is_success() {
        return fail(format!(
            "POST {path} with an invalid artifact answered {}: a broken model was accepted",
            reply.status
        ));
    }
    let load_status = reply.status.as_u16();
    if reply.status.is_server_error() {
        return fail(format!(
            "POST {path} with an invalid artifact answered {load_status}, a server error"
        ));
    }
    let metadata = pair
        .frontend
        .get(&format!("/v2/models/{name}"))
        .await
        .map_err(|e| e.to_string())?;
    let versions: serde_json::Value = metadata
        .json()
        .map_err(|e| format!("GET /v2/models/{name}: {e}"))?;
    let listed = versions["versions"].to_string();
    if !listed.contains(&format!("\"{live}\"")) {
        return fail(format!(
            "after the refused load, GET /v2/models/{name} lists versions {listed}, without the live {live:?}"
        ));
    }
    // With the backend gone, the answer can only come from the kept live model.
    pair.stop_backend();
    let answer = pair.infer().await?;
    if answer.status != 200 || answer.degraded.as_deref() != Some("last-good") {
        return fail(format!(
            "after the refused load and with the backend stopped, infer answered status {} degraded {:?}, not the live model as last-good",
            answer.status, answer.degraded
        ));
    }
    pass(format!(
        "invalid artifact refused with {load_status}; version {live:?} still listed and still answers (as last-good with the backend stopped)"
    ))
}
