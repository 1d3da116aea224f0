//! The cases, each on a [`Pair`] of its own.

use std::future::Future;
use std::pin::Pin;
use std::time::{Duration, Instant};

use gauntlet_faultproxy::Toxics;
use gauntlet_harness::TargetExt as _;
use gauntlet_reports::Outcome;

use crate::pair::{Pair, Progress};
use crate::{ResilienceConfig, Setup};

/// A case's verdict and what it measured.
pub(crate) struct Verdict {
    pub(crate) outcome: Outcome,
    pub(crate) message: String,
}

pub(crate) fn pass(message: String) -> Result<Verdict, String> {
    Ok(Verdict {
        outcome: Outcome::Pass,
        message,
    })
}

pub(crate) fn fail(message: String) -> Result<Verdict, String> {
    Ok(Verdict {
        outcome: Outcome::Fail,
        message,
    })
}

type CaseFuture<'a> = Pin<Box<dyn Future<Output = Result<Verdict, String>> + Send + 'a>>;

/// One case: its name, requirement ids, whether its backend is a container (skipped where
/// Docker or the image is absent) and body (`Err`: it could not run).
pub(crate) struct CaseDef {
    pub(crate) name: &'static str,
    pub(crate) requirements: &'static [&'static str],
    pub(crate) container: bool,
    pub(crate) run: for<'a> fn(&'a Setup) -> CaseFuture<'a>,
}

/// Every case, in run order.
pub(crate) const CASES: &[CaseDef] = &[
    CaseDef {
        name: "blackhole_opens_breaker",
        requirements: &["ENG-CB", "ENG-FB", "SLA-AVAIL"],
        container: false,
        run: |s| Box::pin(blackhole_opens_breaker(s)),
    },
    CaseDef {
        name: "stopped_backend_falls_back",
        requirements: &["ENG-CB", "ENG-FB", "SLA-AVAIL"],
        container: false,
        run: |s| Box::pin(stopped_backend_falls_back(s)),
    },
    CaseDef {
        name: "recovery_closes_breaker",
        requirements: &["ENG-CB"],
        container: false,
        run: |s| Box::pin(recovery_closes_breaker(s)),
    },
    CaseDef {
        name: "latency_opens_breaker",
        requirements: &["ENG-CB", "ENG-FB"],
        container: false,
        run: |s| Box::pin(latency_opens_breaker(s)),
    },
    CaseDef {
        name: "failed_load_keeps_live_model",
        requirements: &["ENG-FB", "SLA-AVAIL"],
        container: false,
        run: |s| Box::pin(failed_load_keeps_live_model(s)),
    },
    CaseDef {
        name: "neutral_fallback_answers_every_row",
        requirements: &["ENG-FB", "ENG-VAL"],
        container: false,
        run: |s| Box::pin(crate::neutral::neutral_fallback_answers_every_row(s)),
    },
    CaseDef {
        name: "time_window_forgets_old_calls",
        requirements: &["ENG-CB", "ENG-OBS"],
        container: false,
        run: |s| Box::pin(crate::window::time_window_forgets_old_calls(s)),
    },
    CaseDef {
        name: "container_pause_opens_breaker",
        requirements: &["ENG-CB", "ENG-FB", "SLA-AVAIL"],
        container: true,
        run: |s| Box::pin(container_pause_opens_breaker(s)),
    },
    CaseDef {
        name: "container_unpause_closes_breaker",
        requirements: &["ENG-CB"],
        container: true,
        run: |s| Box::pin(container_unpause_closes_breaker(s)),
    },
    CaseDef {
        name: "container_kill_falls_back_and_recovers",
        requirements: &["ENG-CB", "ENG-FB", "SLA-AVAIL"],
        container: true,
        run: |s| Box::pin(container_kill_falls_back_and_recovers(s)),
    },
    CaseDef {
        name: "container_latency_opens_breaker",
        requirements: &["ENG-CB", "ENG-FB"],
        container: true,
        run: |s| Box::pin(container_latency_opens_breaker(s)),
    },
    CaseDef {
        name: "container_blue_green_switch",
        requirements: &["ENG-BG", "SLA-AVAIL"],
        container: true,
        run: |s| Box::pin(crate::blue_green::run(s)),
    },
    CaseDef {
        name: "container_failed_load_keeps_live_model",
        requirements: &["ENG-FB", "SLA-AVAIL"],
        container: true,
        run: |s| Box::pin(container_failed_load_keeps_live_model(s)),
    },
];

/// Answers after the breaker opened that must all be 200 and flagged degraded.
const AFTER_OPEN: u32 = 3;

pub(crate) fn ms(d: Duration) -> String {
    format!("{:.0} ms", d.as_secs_f64() * 1e3)
}

/// Longest a run of `calls` calls may take when each can wait out the timeout.
fn budget(config: &ResilienceConfig, calls: u32) -> Duration {
    (config.timeout + Duration::from_millis(200)) * calls
}

/// A pair, its backend in process, that answered one call before any fault.
async fn healthy_pair(setup: &Setup) -> Result<Pair, String> {
    healthy(Pair::start(setup).await?).await
}

/// A pair, its backend a container, that answered one call before any fault.
async fn healthy_container_pair(setup: &Setup) -> Result<Pair, String> {
    healthy(Pair::start_container(setup).await?).await
}

async fn healthy(pair: Pair) -> Result<Pair, String> {
    pair.answered_by_backend().await?;
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

async fn blackhole_opens_breaker(setup: &Setup) -> Result<Verdict, String> {
    let pair = healthy_pair(setup).await?;
    pair.toxics(Toxics {
        blackhole: true,
        ..Toxics::default()
    })?;
    opens_and_falls_back(&pair, &setup.config, "backend blackholed").await
}

async fn stopped_backend_falls_back(setup: &Setup) -> Result<Verdict, String> {
    let mut pair = healthy_pair(setup).await?;
    pair.stop_backend().await?;
    opens_and_falls_back(&pair, &setup.config, "backend stopped").await
}

async fn container_pause_opens_breaker(setup: &Setup) -> Result<Verdict, String> {
    let pair = healthy_container_pair(setup).await?;
    pair.container()?.pause().await?;
    opens_and_falls_back(&pair, &setup.config, "backend container paused").await
}

async fn recovery_closes_breaker(setup: &Setup) -> Result<Verdict, String> {
    let pair = healthy_pair(setup).await?;
    pair.toxics(Toxics {
        blackhole: true,
        ..Toxics::default()
    })?;
    let opened = opens(&pair, &setup.config, "backend blackholed").await?;
    if let Err(verdict) = opened {
        return Ok(verdict);
    }
    pair.toxics(Toxics::default())?;
    let recovered = Instant::now();
    let refused = match refused_trial(&pair, &setup.config).await? {
        Ok(note) => note,
        Err(verdict) => return Ok(verdict),
    };
    let mut verdict = closes(&pair, &setup.config, "fault lifted", recovered).await?;
    verdict.message = format!("{refused}; {}", verdict.message);
    Ok(verdict)
}

/// Once the open wait is over, the first call is a trial of the half-open breaker; made
/// malformed, the backend refuses it (400, passed on) as the request's fault, which says
/// nothing of the backend: the breaker must give its permit back (counted `ignored`), or
/// the trials it still permits can never add up to a verdict and it stays half-open.
async fn refused_trial(
    pair: &Pair,
    config: &ResilienceConfig,
) -> Result<Result<String, Verdict>, String> {
    tokio::time::sleep(config.breaker.wait_duration_in_open_state + Duration::from_millis(50))
        .await;
    let ignored = format!(
        "gauntlet_breaker_calls_total{{model=\"{}\",outcome=\"ignored\"}}",
        pair.model.name
    );
    let before = pair.counter(&ignored).await?;
    let answer = pair
        .infer_with(&crate::pair::short_request(&pair.model))
        .await?;
    let after = pair.counter(&ignored).await?;
    let state = pair.breaker_state().await?;
    if answer.status != 400 || after != before + 1 || state != "half-open" {
        return Ok(Err(fail(format!(
            "a malformed call once the open wait was over: expected the backend's 400 passed on, \
             counted as an ignored trial, the breaker half-open; got status {}, {ignored} \
             {before} → {after}, breaker {state}",
            answer.status
        ))?));
    }
    Ok(Ok(format!(
        "a malformed trial call half-open: the backend's 400 passed on, its permit given back \
         ({ignored} {before} → {after})"
    )))
}

async fn container_unpause_closes_breaker(setup: &Setup) -> Result<Verdict, String> {
    let pair = healthy_container_pair(setup).await?;
    let container = pair.container()?;
    container.pause().await?;
    let to_open = match opens(&pair, &setup.config, "backend container paused").await? {
        Ok(took) => took,
        Err(verdict) => return Ok(verdict),
    };
    let unpaused = Instant::now();
    container.unpause().await?;
    let mut verdict = closes(&pair, &setup.config, "container unpaused", unpaused).await?;
    verdict.message = format!(
        "paused: breaker open {} after the pause; {}",
        ms(to_open),
        verdict.message
    );
    Ok(verdict)
}

async fn container_kill_falls_back_and_recovers(setup: &Setup) -> Result<Verdict, String> {
    let pair = healthy_container_pair(setup).await?;
    let container = pair.container()?;
    container.kill().await?;
    // From `docker kill` returning: the engine is dead and its port closed by then.
    let killed = Instant::now();
    let first = pair.infer().await?;
    let to_fallback = killed.elapsed();
    if first.status != 200 || first.degraded.is_none() {
        return fail(format!(
            "backend container killed: the first answer after it was status {} degraded {:?}, not a fallback",
            first.status, first.degraded
        ));
    }
    let fell_back = opens_and_falls_back(&pair, &setup.config, "backend container killed").await?;
    if fell_back.outcome != Outcome::Pass {
        return Ok(fell_back);
    }
    let restarting = Instant::now();
    container.start_again(&pair.model.name).await?;
    let restarted = restarting.elapsed();
    let mut verdict = closes(
        &pair,
        &setup.config,
        "container started again",
        Instant::now(),
    )
    .await?;
    verdict.message = format!(
        "killed (SIGKILL): first answer a fallback {} after docker kill returned; {}; docker start to ready {}; {}",
        ms(to_fallback),
        fell_back.message,
        ms(restarted),
        verdict.message
    );
    Ok(verdict)
}

/// Calls until the breaker opens after `fault`: `Ok(Ok(time))` from the first call to open,
/// `Ok(Err(verdict))` the failing verdict when it did not open in time.
async fn opens(
    pair: &Pair,
    config: &ResilienceConfig,
    fault: &str,
) -> Result<Result<Duration, Verdict>, String> {
    let max = config.max_calls_to_open;
    let opening = pair
        .call_until("open", max, budget(config, max), Duration::ZERO)
        .await?;
    if !opening.non_2xx.is_empty() {
        return Ok(Err(fail(format!(
            "{fault}: clients got non-2xx answers {:?} while the breaker opened",
            opening.non_2xx
        ))?));
    }
    match opening.reached {
        Some(took) => Ok(Ok(took)),
        None => Ok(Err(fail(format!(
            "{fault}: breaker never opened in {} calls, so it cannot close again",
            opening.calls
        ))?)),
    }
}

/// Calls every 10 ms, from `recovered`, until the breaker is closed again, all answers 2xx,
/// and the next answer the backend's own.
async fn closes(
    pair: &Pair,
    config: &ResilienceConfig,
    what: &str,
    recovered: Instant,
) -> Result<Verdict, String> {
    let limit = config.breaker.wait_duration_in_open_state + config.max_time_to_close;
    // Traffic keeps flowing, a call every 10 ms, while the breaker waits out its open state.
    let closing = pair
        .call_until("closed", u32::MAX, limit, Duration::from_millis(10))
        .await?;
    let Some(_) = closing.reached else {
        let state = pair.breaker_state().await?;
        return fail(format!(
            "{what}: breaker still {state} {} later (wait-duration-in-open-state {} + max-time-to-close {}); {}",
            ms(recovered.elapsed()),
            humantime::format_duration(config.breaker.wait_duration_in_open_state),
            humantime::format_duration(config.max_time_to_close),
            answers(&closing)
        ));
    };
    let to_closed = recovered.elapsed();
    if !closing.non_2xx.is_empty() {
        return fail(format!(
            "{what}: breaker closed {} later, but clients got non-2xx answers {:?}",
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
        "{what}: {} from recovery to closed (open wait {}), through {}; {}",
        ms(to_closed),
        humantime::format_duration(config.breaker.wait_duration_in_open_state),
        closing.states.join(" → "),
        answers(&closing)
    ))
}

async fn latency_opens_breaker(setup: &Setup) -> Result<Verdict, String> {
    slow_calls_open(&healthy_pair(setup).await?, &setup.config).await
}

async fn container_latency_opens_breaker(setup: &Setup) -> Result<Verdict, String> {
    slow_calls_open(&healthy_container_pair(setup).await?, &setup.config).await
}

/// A latency toxic on the proxy in front of the backend opens the breaker on slow calls.
async fn slow_calls_open(pair: &Pair, config: &ResilienceConfig) -> Result<Verdict, String> {
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

async fn failed_load_keeps_live_model(setup: &Setup) -> Result<Verdict, String> {
    keeps_live_model(healthy_pair(setup).await?).await
}

async fn container_failed_load_keeps_live_model(setup: &Setup) -> Result<Verdict, String> {
    keeps_live_model(healthy_container_pair(setup).await?).await
}

/// A load of an invalid artifact over the frontend's live model is refused, and the live
/// model answers (as last-good) once the backend is gone.
async fn keeps_live_model(mut pair: Pair) -> Result<Verdict, String> {
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
    pair.stop_backend().await?;
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
