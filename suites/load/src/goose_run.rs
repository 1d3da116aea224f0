//! Goose scenarios: closed-model user journeys (goose 0.19), folded into the same model.
//!
//! Each goose user checks readiness once, then infers batches back to back: a closed model,
//! where a slow response delays the user's next request, so its latencies do not show the
//! queueing an open model would. The gates therefore read the *achieved* rate (successful
//! requests per second), never the throttle setting, and its p99 is labelled closed-model.
//! Goose runs on a runtime of its own whose threads carry the generator's name prefix, so
//! the validity guard measures goose's CPU as the generator's.

use crate::gates::{GateResult, Verdict};
use crate::scenario::{ScenarioCtx, ScenarioError, ScenarioRun};

/// The goose gate cases.
pub fn planned() -> Vec<gauntlet_harness::suite::PlannedCase> {
    use gauntlet_harness::suite::PlannedCase;
    vec![
        PlannedCase::new("goose_achieved_rate", &["SLA-TPUT"]),
        PlannedCase::new("goose_p99", &["SLA-LAT"]),
        PlannedCase::new("goose_error_rate", &["SLA-ERR"]),
    ]
}

fn title(ctx: &ScenarioCtx) -> String {
    let s = &ctx.settings;
    format!(
        "Goose (closed model): {} users, health then {}-row infer batches, for {}",
        s.goose_users,
        s.goose_batch_rows,
        humantime::format_duration(s.goose_duration)
    )
}

/// Runs the goose journey and judges it.
#[cfg(not(feature = "goose"))]
pub async fn goose(ctx: &ScenarioCtx) -> Result<ScenarioRun, ScenarioError> {
    let reason = "gauntlet-load was built without its `goose` feature \
                  (cargo build -p gauntlet --features gauntlet-load/goose)";
    Ok(ScenarioRun {
        id: "goose",
        title: title(ctx),
        gates: planned()
            .into_iter()
            .map(|p| GateResult {
                name: p.name,
                verdict: Verdict::Skip(reason.to_owned()),
                message: reason.to_owned(),
            })
            .collect(),
        runs: Vec::new(),
        notes: vec![reason.to_owned()],
    })
}

/// Runs the goose journey and judges it.
#[cfg(feature = "goose")]
pub async fn goose(ctx: &ScenarioCtx) -> Result<ScenarioRun, ScenarioError> {
    imp::goose(ctx, title(ctx)).await
}

#[cfg(feature = "goose")]
mod imp {
    use std::sync::Arc;
    use std::time::{Duration, Instant, SystemTime};

    use goose::config::{GooseConfiguration, GooseDefault, GooseDefaultType};
    use goose::metrics::GooseMetrics;
    use goose::prelude::*;

    use super::{GateResult, ScenarioCtx, ScenarioError, ScenarioRun, Verdict};
    use crate::driver::{DRIVER_THREAD_PREFIX, RunStats};
    use crate::gates::{self, ms};
    use crate::histogram::Latencies;
    use crate::recorder::Counters;
    use crate::sampler::Sampler;
    use crate::scenario::LabelledRun;
    use crate::schedule::Shard;
    use crate::validity::{self, Tolerance};
    use crate::workload;

    fn setup(e: impl std::fmt::Display) -> ScenarioError {
        ScenarioError::Setup(format!("goose: {e}"))
    }

    /// The journey: readiness once per user, then infer batches back to back.
    fn scenario(model: &str, body: serde_json::Value) -> Result<Scenario, GooseError> {
        let path = workload::infer_path(model);
        let body = Arc::new(body);
        let health: TransactionFunction = Arc::new(|user| {
            Box::pin(async move {
                let _ = user.get("/v2/health/ready").await?;
                Ok(())
            })
        });
        let infer: TransactionFunction = Arc::new(move |user| {
            let path = path.clone();
            let body = Arc::clone(&body);
            Box::pin(async move {
                let _ = user.post_json(&path, body.as_ref()).await?;
                Ok(())
            })
        });
        Ok(scenario!("InferUser")
            .register_transaction(Transaction::new(health).set_name("health").set_on_start())
            .register_transaction(Transaction::new(infer).set_name("infer batch")))
    }

    fn attack(ctx: &ScenarioCtx, body: serde_json::Value) -> Result<GooseAttack, GooseError> {
        let s = &ctx.settings;
        let users = s.goose_users;
        let mut attack = GooseAttack::initialize_with_config(GooseConfiguration::default())?
            .register_scenario(scenario(&s.model, body)?)
            .set_default(GooseDefault::Host, ctx.url.as_str())?
            .set_default(GooseDefault::Users, users)?
            .set_default(GooseDefault::IncreaseRate, users.to_string().as_str())?
            .set_default(
                GooseDefault::RunTime,
                usize::try_from(s.goose_duration.as_secs()).unwrap_or(usize::MAX),
            )?
            .set_default(GooseDefault::Quiet, 1)?
            .set_default(GooseDefault::NoPrintMetrics, true)?
            .set_default(GooseDefault::NoTelnet, true)?;
        if s.goose_throttle > 0 {
            attack = attack.set_default(
                GooseDefault::ThrottleRequests,
                usize::try_from(s.goose_throttle).unwrap_or(usize::MAX),
            )?;
        }
        Ok(*attack)
    }

    /// Runs goose on a runtime whose threads are named as the generator's.
    fn execute(attack: GooseAttack) -> Result<GooseMetrics, String> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name(format!("{DRIVER_THREAD_PREFIX}-goose"))
            .enable_all()
            .build()
            .map_err(|e| e.to_string())?;
        runtime
            .block_on(attack.execute())
            .map_err(|e| format!("{e:?}"))
    }

    /// Goose's figures in the run-result model: counters by class, and its latency buckets
    /// (goose's resolution) recorded into an HDR histogram.
    fn fold(metrics: &GooseMetrics) -> (Counters, Latencies) {
        let mut counters = Counters::default();
        let mut latencies = Latencies::new();
        for aggregate in metrics.requests.values() {
            let ok = aggregate.success_count as u64;
            let failed = aggregate.fail_count as u64;
            counters.ok += ok;
            counters.sent += ok + failed;
            counters.scheduled += ok + failed;
            let mut classified = 0u64;
            for (status, count) in &aggregate.status_code_counts {
                let count = *count as u64;
                match status {
                    400..=499 => counters.errors.status_4xx += count,
                    500..=599 => counters.errors.status_5xx += count,
                    _ => continue,
                }
                classified += count;
            }
            counters.errors.transport += failed.saturating_sub(classified);
            for (bucket_us, count) in aggregate.raw_data.times_us.iter() {
                for _ in 0..*count {
                    latencies.record(*bucket_us);
                }
            }
        }
        (counters, latencies)
    }

    pub(super) async fn goose(
        ctx: &ScenarioCtx,
        title: String,
    ) -> Result<ScenarioRun, ScenarioError> {
        let s = ctx.settings.clone();
        let body: serde_json::Value = serde_json::from_slice(
            &workload::infer_body(s.goose_batch_rows, ctx.seed).map_err(setup)?,
        )
        .map_err(setup)?;
        let attack = attack(ctx, body).map_err(|e| setup(format!("{e:?}")))?;
        let started_at = SystemTime::now();
        let start = Instant::now();
        let sampler = Sampler::start(DRIVER_THREAD_PREFIX, ctx.target_process.clone(), start)
            .map_err(setup)?;
        let metrics = tokio::task::spawn_blocking(move || execute(attack))
            .await
            .map_err(setup)?
            .map_err(setup)?;
        let wall = start.elapsed();
        let cpu = sampler.stop();
        let (counters, latencies) = fold(&metrics);
        let measured = Duration::from_secs(metrics.duration.max(1) as u64);
        let stats = RunStats {
            started_at,
            shard: Shard::WHOLE,
            measured,
            warm_up: Duration::ZERO,
            // A closed model has no schedule: its "scheduled" rate is what it achieved.
            target_rate: crate::driver::per_second(counters.sent, measured),
            counters,
            warm_up_counters: Counters::default(),
            latencies,
            seconds: Vec::new(),
            cpu,
            max_schedule_lag_us: 0,
            samples: Vec::new(),
            wall,
        };
        let validity = validity::judge(
            &stats,
            Tolerance {
                max_generator_cpu: s.max_generator_cpu,
                max_behind_fraction: 1.0,
                max_other_cpu: s.max_host_other_cpu,
            },
        );
        let run = LabelledRun {
            label: "goose".to_owned(),
            stats,
            validity,
        };
        let judged = |pass: bool| Verdict::judged(pass, run.validity.invalid.as_deref());
        let achieved = run.stats.achieved_rate();
        let floor = f64::from(s.goose_min_rate);
        let throttle = if s.goose_throttle > 0 {
            format!(
                "; throttle {} req/s is a cap, not a measurement",
                s.goose_throttle
            )
        } else {
            String::new()
        };
        let rate_gate = GateResult {
            name: "goose_achieved_rate".to_owned(),
            verdict: judged(achieved >= floor),
            message: format!(
                "achieved {achieved:.0} req/s {} floor {floor:.0} req/s (closed model, {} users{throttle})",
                if achieved >= floor { ">=" } else { "<" },
                s.goose_users
            ),
        };
        let l = &run.stats.latencies;
        let limit = u64::try_from(s.p99.as_micros()).unwrap_or(u64::MAX);
        let p99 = l.quantile(0.99);
        let p99_pass = !l.is_empty() && p99 <= limit;
        let p99_gate = GateResult {
            name: "goose_p99".to_owned(),
            verdict: judged(p99_pass),
            message: if l.is_empty() {
                format!(
                    "p99: no successful response to measure (ceiling {})",
                    ms(limit)
                )
            } else {
                format!(
                    "p99 {} {} ceiling {} ({} responses; closed model: no coordinated-omission \
                     correction)",
                    ms(p99),
                    if p99_pass { "<=" } else { ">" },
                    ms(limit),
                    l.len()
                )
            },
        };
        let err_gate = gates::error_rate_gate("goose", &run.measurement(), s.max_error_rate);
        Ok(ScenarioRun {
            id: "goose",
            title,
            gates: vec![rate_gate, p99_gate, err_gate],
            runs: vec![run],
            notes: vec![
                "Closed model: each goose user waits for its response before its next request, \
                 so a slow target slows the load instead of queueing it; latencies are goose's \
                 (bucketed at its resolution) and are not corrected for coordinated omission. \
                 Gates read the achieved rate, never the throttle setting."
                    .to_owned(),
            ],
        })
    }
}
