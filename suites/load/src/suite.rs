//! [`LoadPhase`]: the load suite as a harness phase — one measurement per scenario, its gates
//! reported as `load::…` cases, its tables and charts as report sections.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;

use gauntlet_harness::phase::{Phase, PhaseCtx, PhaseError, PhaseOutput, PlannedCase};
use gauntlet_harness::{ENGINE_THREAD_PREFIX, error_chain};
use gauntlet_reports::{CaseResult, Outcome};

use crate::progress;
use crate::report;
use crate::scenario::{self, ScenarioCtx, ScenarioError, ScenarioRun};
use crate::settings::LoadSettings;

/// The suite name.
pub const SUITE: &str = "load";

/// The load suite; add it to the CLI's list of phases.
#[derive(Debug, Clone, Copy, Default)]
pub struct LoadPhase;

/// Reads the `load` table of the run's settings.
pub fn load_settings(
    settings: &gauntlet_harness::config::Settings,
) -> Result<LoadSettings, PhaseError> {
    LoadSettings::from_table(&settings.section(SUITE))
        .map_err(|e| PhaseError::Config(e.to_string()))
}

/// The scenarios in run order, by id, with the case names each reports.
fn scenarios(settings: &LoadSettings) -> Vec<(&'static str, Vec<String>)> {
    let planned = scenario::planned(settings);
    let mut out: Vec<(&'static str, Vec<String>)> = Vec::new();
    for id in ["sustained", "swap", "stress", "soak", "goose"] {
        let names: Vec<String> = planned
            .iter()
            .filter(|p| p.name.starts_with(&format!("{id}_")))
            .map(|p| p.name.clone())
            .collect();
        if !names.is_empty() {
            out.push((id, names));
        }
    }
    out
}

/// One line of the settings in force, for each section.
fn settings_note(s: &LoadSettings) -> String {
    format!(
        "Open model: each request has an intended send time and its latency runs from that \
         time, so a stalled target cannot hide queueing (no coordinated omission). Settings: \
         {} connections, {} driver thread(s), warm-up {} (not gated), late after {}, request \
         timeout {}, queue timeout {}, pacing resolution {}; ceilings p50 {}, p95 {}, p99 {}, p99.9 {}; max error \
         rate {:.3} %; min achieved rate {:.0} % of scheduled. A run whose busiest generator \
         thread averaged >= {:.0} % of a core, or whose scheduler dispatched more than {:.2} % \
         of requests late, is invalid.",
        s.connections,
        s.threads,
        humantime::format_duration(s.warm_up),
        humantime::format_duration(s.late_after),
        humantime::format_duration(s.request_timeout),
        humantime::format_duration(s.queue_timeout),
        humantime::format_duration(s.pacing),
        humantime::format_duration(s.p50),
        humantime::format_duration(s.p95),
        humantime::format_duration(s.p99),
        humantime::format_duration(s.p999),
        s.max_error_rate * 100.0,
        s.min_achieved_rate * 100.0,
        s.max_generator_cpu * 100.0,
        s.max_late_fraction * 100.0,
    )
}

async fn run_scenario(id: &str, ctx: &ScenarioCtx) -> Result<ScenarioRun, ScenarioError> {
    match id {
        "sustained" => scenario::sustained(ctx).await,
        "swap" => scenario::swap(ctx).await,
        "stress" => scenario::stress(ctx).await,
        "goose" => crate::goose_run::goose(ctx).await,
        _ => scenario::soak(ctx).await,
    }
}

/// Why the target cannot serve the load model, if it cannot.
async fn missing_model(target: &dyn gauntlet_harness::Target, model: &str) -> Option<String> {
    use gauntlet_harness::TargetExt as _;
    let path = format!("/v2/models/{model}");
    let why = match target.get(&path).await {
        Ok(reply) if reply.status.is_success() => return None,
        Ok(reply) => format!("GET {path} answered {}", reply.status),
        Err(e) => format!("GET {path} failed: {}", error_chain(&e)),
    };
    Some(format!(
        "the target does not serve model {model} ({why}); the load suite's `model` setting \
         names the model it loads"
    ))
}

#[async_trait]
impl Phase for LoadPhase {
    fn suite(&self) -> &'static str {
        SUITE
    }

    fn cases(
        &self,
        settings: &gauntlet_harness::config::Settings,
    ) -> Result<Vec<PlannedCase>, PhaseError> {
        Ok(scenario::planned(&load_settings(settings)?))
    }

    async fn run(&self, ctx: PhaseCtx) -> Result<PhaseOutput, PhaseError> {
        let settings = load_settings(&ctx.settings)?;
        let planned = scenario::planned(&settings);
        let endpoint = ctx.target.http_endpoint().await.map_err(|e| {
            PhaseError::Setup(format!(
                "failed to get an HTTP endpoint of the target: {}",
                error_chain(&e)
            ))
        })?;
        let scenario_ctx = ScenarioCtx {
            target: Arc::clone(&ctx.target),
            url: endpoint.url.clone(),
            authorization: endpoint.authorization.clone(),
            target_threads: endpoint
                .server
                .as_ref()
                .map(|_| ENGINE_THREAD_PREFIX.to_owned()),
            settings: settings.clone(),
            seed: ctx.settings.seed,
            progress: ctx.progress.then(progress::terminal),
        };
        let note = settings_note(&settings);
        let missing_model = missing_model(ctx.target.as_ref(), &settings.model).await;
        let mut output = PhaseOutput::default();
        for (id, names) in scenarios(&settings) {
            if !names.iter().any(|n| ctx.is_selected(n)) {
                continue;
            }
            // Swap under load loads a model of its own; the others need the configured one.
            if let Some(reason) = missing_model.as_ref().filter(|_| id != "swap") {
                for p in planned
                    .iter()
                    .filter(|p| names.contains(&p.name) && ctx.is_selected(&p.name))
                {
                    output.cases.push(p.result(
                        SUITE,
                        Outcome::Skip {
                            reason: reason.clone(),
                        },
                        Some(reason.clone()),
                        Duration::ZERO,
                    ));
                }
                continue;
            }
            let started = Instant::now();
            let result = run_scenario(id, &scenario_ctx).await;
            let took = started.elapsed();
            let case = |name: &str| planned.iter().find(|p| p.name == name);
            match result {
                Ok(run) => {
                    for gate in &run.gates {
                        if let Some(p) = case(&gate.name).filter(|_| ctx.is_selected(&gate.name)) {
                            output.cases.push(p.result(
                                SUITE,
                                gate.verdict.outcome(),
                                Some(gate.message.clone()),
                                took,
                            ));
                        }
                    }
                    output.sections.push(report::scenario_section(&run, &note));
                }
                Err(e) => {
                    for name in names.iter().filter(|n| ctx.is_selected(n)) {
                        if let Some(p) = case(name) {
                            output.cases.push(p.result(
                                SUITE,
                                Outcome::Error,
                                Some(format!("{id} scenario could not run: {e}")),
                                took,
                            ));
                        }
                    }
                }
            }
        }
        drop(endpoint);
        Ok(output)
    }
}

/// Results of gate cases with a fixed duration, for callers outside a phase (merge).
pub fn gate_results(
    planned: &[PlannedCase],
    gates: &[crate::gates::GateResult],
    took: Duration,
) -> Vec<CaseResult> {
    gates
        .iter()
        .filter_map(|g| {
            planned
                .iter()
                .find(|p| p.name == g.name)
                .map(|p| p.result(SUITE, g.verdict.outcome(), Some(g.message.clone()), took))
        })
        .collect()
}
