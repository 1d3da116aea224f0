//! [`LoadSuite`]: the load suite through the harness's [`Suite`] seam — one measurement per
//! [`Scenario`], its gates reported as `load::…` cases, its tables and charts as report
//! sections.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;

use gauntlet_harness::error_chain;
use gauntlet_harness::suite::{PlannedCase, Suite, SuiteCtx, SuiteError, SuiteOutput};
use gauntlet_reports::Outcome;

use crate::report;
use crate::sampler::TargetProcess;
use crate::scenario::{self, LabelledRun, ScenarioCtx, ScenarioError, ScenarioRun};
use crate::settings::LoadSettings;

/// The suite name.
pub const SUITE: &str = "load";

/// The load suite, as the `gauntlet` binary registers it.
#[derive(Debug, Clone, Copy, Default)]
pub struct LoadSuite;

/// Reads the `load` table of the run's settings.
///
/// # Errors
///
/// [`SuiteError::Config`] naming the key and the limit.
pub fn load_settings(
    settings: &gauntlet_harness::config::Settings,
) -> Result<LoadSettings, SuiteError> {
    LoadSettings::from_table(&settings.section(SUITE))
        .map_err(|e| SuiteError::Config(e.to_string()))
}

/// The load suite's scenarios, in run order. An enum, so a scenario that does not exist
/// cannot be asked for (and nothing runs the soak in its place).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scenario {
    /// The SLA rate for the SLA duration.
    Sustained,
    /// Promote/rollback under load.
    Swap,
    /// 2x the historical peak, then the knee search.
    Stress,
    /// A long run watching memory.
    Soak,
    /// Closed-model user journeys (goose).
    Goose,
}

impl Scenario {
    /// Every scenario, in run order.
    pub const ALL: [Scenario; 5] = [
        Scenario::Sustained,
        Scenario::Swap,
        Scenario::Stress,
        Scenario::Soak,
        Scenario::Goose,
    ];

    /// The id that prefixes its gate names (`sustained`).
    pub fn id(self) -> &'static str {
        match self {
            Scenario::Sustained => "sustained",
            Scenario::Swap => "swap",
            Scenario::Stress => "stress",
            Scenario::Soak => "soak",
            Scenario::Goose => "goose",
        }
    }

    /// Whether `settings` turn it on.
    pub fn enabled(self, s: &LoadSettings) -> bool {
        match self {
            Scenario::Sustained => s.sustained,
            Scenario::Swap => s.swap,
            Scenario::Stress => s.stress,
            Scenario::Soak => s.soak,
            Scenario::Goose => s.goose,
        }
    }

    /// Its gate cases, in report order.
    pub fn gates(self) -> Vec<PlannedCase> {
        match self {
            Scenario::Sustained => crate::gates::sla_cases("sustained"),
            Scenario::Swap => vec![
                PlannedCase::new("swap_availability", &["SLA-AVAIL"]),
                PlannedCase::new("swap_versions", &["ENG-SWAP"]),
            ],
            Scenario::Stress => vec![
                PlannedCase::new("stress_2x_peak", &["CMP-STRESS", "SLA-LAT"]),
                PlannedCase::new("stress_knee", &["CMP-STRESS"]),
            ],
            Scenario::Soak => vec![PlannedCase::new("soak_memory", &["SLA-MEM"])],
            Scenario::Goose => crate::goose_run::planned(),
        }
    }

    /// Runs it.
    ///
    /// # Errors
    ///
    /// [`ScenarioError`] when it could not be measured.
    pub async fn run(self, ctx: &ScenarioCtx) -> Result<ScenarioRun, ScenarioError> {
        match self {
            Scenario::Sustained => scenario::sustained(ctx).await,
            Scenario::Swap => scenario::swap(ctx).await,
            Scenario::Stress => scenario::stress(ctx).await,
            Scenario::Soak => scenario::soak(ctx).await,
            Scenario::Goose => crate::goose_run::goose(ctx).await,
        }
    }
}

/// The gate cases of the scenarios `settings` turn on, in report order.
pub fn planned(settings: &LoadSettings) -> Vec<PlannedCase> {
    Scenario::ALL
        .iter()
        .filter(|s| s.enabled(settings))
        .flat_map(|s| s.gates())
        .collect()
}

/// Runs `measure` again while its gates hold an invalid verdict, up to `retries` more times:
/// an invalid measurement (a saturated or late generator, a failed gate on a busy or stalled
/// host) says nothing of the target, and one more measurement may. The kept attempt's
/// verdicts stand; the discarded attempts' runs follow its own in the runs table, labelled,
/// and a note says why each was discarded. A pass or a failure is never measured again.
async fn measured_until_valid<F, Fut>(
    retries: u32,
    mut measure: F,
) -> Result<ScenarioRun, ScenarioError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<ScenarioRun, ScenarioError>>,
{
    let mut discarded: Vec<(u32, String, Vec<LabelledRun>)> = Vec::new();
    let mut attempt: u32 = 1;
    loop {
        let mut run = measure().await?;
        match scenario::invalid_reason(&run.gates) {
            Some(reason) if attempt <= retries => {
                discarded.push((attempt, reason.clone(), std::mem::take(&mut run.runs)));
                attempt += 1;
            }
            still => {
                if discarded.is_empty() {
                    return Ok(run);
                }
                let why: Vec<String> = discarded
                    .iter()
                    .map(|(n, reason, _)| format!("attempt {n}: {reason}"))
                    .collect();
                run.notes.insert(
                    0,
                    format!(
                        "Measured {attempt} times (invalid-retries = {retries}): {}. {} The \
                         discarded attempts' runs follow in the runs table, labelled.",
                        why.join("; "),
                        if still.is_some() {
                            format!("Attempt {attempt} was invalid too: the verdicts stay invalid.")
                        } else {
                            format!("The verdicts are attempt {attempt}'s.")
                        }
                    ),
                );
                for (n, _, runs) in discarded {
                    run.runs.extend(runs.into_iter().map(|mut r| {
                        r.label = format!("{} (attempt {n}, invalid, discarded)", r.label);
                        r
                    }));
                }
                return Ok(run);
            }
        }
    }
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
impl Suite for LoadSuite {
    fn name(&self) -> &'static str {
        SUITE
    }

    fn about(&self) -> &'static str {
        "open-model load: sustained SLA, swap under load, stress knee, soak, SLA gates"
    }

    fn crate_version(&self) -> (&'static str, &'static str) {
        ("gauntlet-load", crate::VERSION)
    }

    fn commands(&self) -> Vec<Box<dyn gauntlet_harness::SuiteCommand>> {
        vec![
            Box::new(crate::cli::LoadCommand),
            Box::new(crate::cli::ReportCommandGroup),
        ]
    }

    fn gates(
        &self,
        settings: &gauntlet_harness::config::Settings,
    ) -> Result<Vec<PlannedCase>, SuiteError> {
        Ok(planned(&load_settings(settings)?))
    }

    async fn run(&self, ctx: SuiteCtx) -> Result<SuiteOutput, SuiteError> {
        let settings = load_settings(&ctx.settings)?;
        let planned = planned(&settings);
        let (endpoint, grpc_endpoint) = crate::scenario::endpoint(ctx.target.as_ref())
            .await
            .map_err(|e| {
                SuiteError::Setup(format!(
                    "failed to get an endpoint of the target: {}",
                    error_chain(&e)
                ))
            })?;
        let mut scenario_ctx = ScenarioCtx::new(
            Arc::clone(&ctx.target),
            &endpoint,
            settings.clone(),
            ctx.settings.seed,
            ctx.progress,
        );
        let note = settings_note(&settings);
        let missing_model = missing_model(ctx.target.as_ref(), &settings.model).await;
        if missing_model.is_none() {
            // The user's payload, if any, and the check of the model's metadata: a payload
            // that cannot be used is a settings error, before any load is sent.
            let payload = crate::payload::for_settings(&settings, ctx.settings.seed)
                .map_err(|e| SuiteError::Config(e.to_string()))?;
            scenario_ctx
                .use_payload(payload)
                .await
                .map_err(|e| SuiteError::Setup(e.to_string()))?;
        }
        let mut output = SuiteOutput::default();
        for scenario in Scenario::ALL.into_iter().filter(|s| s.enabled(&settings)) {
            let names: Vec<String> = scenario.gates().into_iter().map(|p| p.name).collect();
            if !names.iter().any(|n| ctx.is_selected(n)) {
                continue;
            }
            let id = scenario.id();
            // Swap under load loads a model of its own; the others need the configured one.
            if let Some(reason) = missing_model
                .as_ref()
                .filter(|_| scenario != Scenario::Swap)
            {
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
            let result =
                measured_until_valid(settings.invalid_retries, || scenario.run(&scenario_ctx))
                    .await;
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
                    let mut section = report::scenario_section(&run, &note);
                    if let Some(local @ TargetProcess::Local { .. }) = &scenario_ctx.target_process
                    {
                        section.notes.push(format!(
                            "Target CPU is that of {}, found listening on the target's port: \
                             it is not counted among the host's other processes.",
                            local.describe()
                        ));
                    }
                    // Swap under load sends the fixture rows to its own model.
                    if let Some(w) = scenario_ctx
                        .workload
                        .as_ref()
                        .filter(|_| scenario != Scenario::Swap)
                    {
                        section.notes.insert(1, w.note.clone());
                    }
                    output.sections.push(section);
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
        drop((endpoint, grpc_endpoint));
        Ok(output)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gates::{GateResult, Verdict};

    fn run_with(verdict: Verdict) -> ScenarioRun {
        ScenarioRun {
            id: "sustained",
            title: "Sustained".to_owned(),
            gates: vec![GateResult {
                name: "sustained_p99".to_owned(),
                verdict,
                message: String::new(),
            }],
            runs: Vec::new(),
            notes: Vec::new(),
        }
    }

    /// The verdict kept and how many measurements it took, for verdicts given in turn.
    fn measure(retries: u32, verdicts: &[Verdict]) -> (ScenarioRun, usize) {
        let calls = std::cell::Cell::new(0);
        let run = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(measured_until_valid(retries, || {
                let verdict = verdicts[calls.get()].clone();
                calls.set(calls.get() + 1);
                async move { Ok(run_with(verdict)) }
            }))
            .unwrap();
        (run, calls.get())
    }

    #[test]
    fn an_invalid_measurement_is_taken_again_and_the_next_verdict_stands() {
        let busy = || Verdict::Invalid("host h busy".to_owned());
        let (run, calls) = measure(1, &[busy(), Verdict::Pass]);
        assert_eq!((run.gates[0].verdict.clone(), calls), (Verdict::Pass, 2));
        assert_eq!(
            run.notes[0],
            "Measured 2 times (invalid-retries = 1): attempt 1: host h busy. The verdicts are \
             attempt 2's. The discarded attempts' runs follow in the runs table, labelled."
        );
        // A failure after an invalid attempt is a failure: not measured until it passes.
        let (run, calls) = measure(3, &[busy(), Verdict::Fail, Verdict::Pass]);
        assert_eq!((run.gates[0].verdict.clone(), calls), (Verdict::Fail, 2));
        // Out of retries: the last invalid verdict stands, and the note says so.
        let (run, calls) = measure(1, &[busy(), busy(), Verdict::Pass]);
        assert_eq!((run.gates[0].verdict.clone(), calls), (busy(), 2));
        assert!(
            run.notes[0].contains("Attempt 2 was invalid too"),
            "{:?}",
            run.notes
        );
    }

    #[test]
    fn a_pass_or_a_failure_is_measured_once() {
        for verdict in [Verdict::Pass, Verdict::Fail] {
            let (run, calls) = measure(5, &[verdict.clone(), Verdict::Pass]);
            assert_eq!((run.gates[0].verdict.clone(), calls), (verdict, 1));
            assert!(run.notes.is_empty());
        }
    }
}
