//! `gauntlet load` and `gauntlet report merge`, the load suite's subcommands
//! ([`LoadCommand`], [`ReportCommandGroup`]): the clap arguments and the typed runs they
//! become. The `gauntlet` binary owns the rest (config discovery, the target, the report
//! directory, exit codes, printing), lent through [`Host`]; the commands return a
//! [`CommandOutput`] or a [`SuiteError`].

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use clap::{Args, FromArgMatches, Subcommand};

use gauntlet_harness::command::{CommandOutput, CommandReport, Host, SuiteCommand};
use gauntlet_harness::config::{Profile, Settings};
use gauntlet_harness::suite::{SuiteError, gate_results};
use gauntlet_harness::{ExtraHeader, Target, error_chain, redact_url};
use gauntlet_reports::{CaseResult, Section};

use crate::gates::{self, ms};
use crate::report;
use crate::scenario::{LabelledRun, ScenarioCtx, ScenarioRun};
use crate::schedule::{Schedule, Shard};
use crate::settings::LoadSettings;
use crate::shard::{self, ShardFile};
use crate::workload;

/// `gauntlet load`: one open-model run (optionally one shard of a run) of the sustained
/// scenario.
#[derive(Debug, Args)]
pub struct LoadArgs {
    /// Base URL of the server, `grpc://host:port` for `ModelInfer` calls to its gRPC service,
    /// `container:IMAGE[:TAG]` to start that image with Docker (`container:IMAGE?network=host`
    /// on the host's network, without Docker's port proxy), or `in-process` for the embedded
    /// reference engine served on a loopback port.
    #[arg(long, env = "GAUNTLET_TARGET", default_value = "in-process")]
    pub target: String,
    /// Config profile from gauntlet.toml (its `[profile.X.load]` table).
    #[arg(long, env = "GAUNTLET_PROFILE", default_value = "default")]
    pub profile: String,
    /// Config file; default: ./gauntlet.toml when it exists.
    #[arg(long, env = "GAUNTLET_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Requests per second of the whole run (all shards together).
    #[arg(long, env = "GAUNTLET_LOAD_RATE")]
    pub rate: Option<u32>,
    /// Length of the run, warm-up included, e.g. `30s`.
    #[arg(long, env = "GAUNTLET_LOAD_DURATION", value_parser = humantime::parse_duration)]
    pub duration: Option<Duration>,
    /// Ungated start of the run, e.g. `3s`.
    #[arg(long, env = "GAUNTLET_LOAD_WARM_UP", value_parser = humantime::parse_duration)]
    pub warm_up: Option<Duration>,
    /// Connections in the pool.
    #[arg(long, env = "GAUNTLET_LOAD_CONNECTIONS")]
    pub connections: Option<usize>,
    /// Worker threads of the driver.
    #[arg(long, env = "GAUNTLET_LOAD_THREADS")]
    pub threads: Option<usize>,
    /// Pacing resolution, e.g. `100us` (default) or `0s` for every request at its own time.
    #[arg(long, env = "GAUNTLET_LOAD_PACING", value_parser = humantime::parse_duration)]
    pub pacing: Option<Duration>,
    /// This process's shard `i/n`: it sends requests k ≡ i (mod n) of the whole schedule.
    #[arg(long, env = "GAUNTLET_LOAD_SHARD", value_name = "I/N")]
    pub shard: Option<Shard>,
    /// Shared start of the schedule: RFC 3339 (`2026-11-28T07:30:00Z`) or Unix seconds.
    #[arg(long, env = "GAUNTLET_LOAD_START_AT", value_name = "TIME", value_parser = parse_start)]
    pub start_at: Option<SystemTime>,
    /// Write the shard file (counters and serialised HDR histogram) here.
    #[arg(long, env = "GAUNTLET_LOAD_OUT", value_name = "FILE")]
    pub out: Option<PathBuf>,
    /// Write every measured latency (µs, one per line) here.
    #[arg(long, value_name = "FILE")]
    pub raw_latencies: Option<PathBuf>,
    /// Judge the run by the SLA gates and write the reports here.
    #[arg(long, env = "GAUNTLET_REPORT_DIR", value_name = "DIR")]
    pub report_dir: Option<PathBuf>,
    /// Run seed (decimal or 0x-hex): the request rows derive from it.
    #[arg(long, env = "GAUNTLET_SEED", value_parser = gauntlet_reports::parse_seed_arg)]
    pub seed: Option<u64>,
    /// The model every request goes to (default: the `model` setting, `ref-linear`).
    #[arg(long, env = "GAUNTLET_LOAD_MODEL", value_name = "NAME")]
    pub model: Option<String>,
    /// The request body: a JSON infer request, or a template with `{{rand:LO:HI}}`,
    /// `{{randint:LO:HI}}`, `{{row}}`, `{{variant}}` and `{{repeat:N}}…{{end}}` placeholders
    /// filled from the seed (see the README). Default: seeded rows of the reference models'
    /// eight features.
    #[arg(long, env = "GAUNTLET_LOAD_PAYLOAD", value_name = "FILE")]
    pub payload: Option<PathBuf>,
    /// Bodies rendered from a payload template, sent in turn (1 to 1024; default 16).
    #[arg(long, env = "GAUNTLET_LOAD_PAYLOAD_VARIANTS", value_name = "N")]
    pub payload_variants: Option<usize>,
    /// A header for the target, `'Name: value'` (repeatable; the variable takes one per
    /// line): the metadata read sends them all, the load's own requests the `Authorization`
    /// one (over gRPC as metadata). Never printed or reported.
    #[arg(
        long = "header",
        value_name = "'NAME: VALUE'",
        env = "GAUNTLET_HEADER",
        hide_env_values = true,
        value_delimiter = '\n'
    )]
    pub headers: Vec<String>,
}

/// `gauntlet report …`.
#[derive(Debug, Subcommand)]
pub enum ReportCommand {
    /// Merge shard files exactly (histograms added, never percentiles averaged), apply the
    /// SLA gates to the merged run and write the reports.
    Merge(MergeArgs),
}

/// `gauntlet report merge`.
#[derive(Debug, Args)]
pub struct MergeArgs {
    /// Shard files written by `gauntlet load --out`, or directories: a directory stands for
    /// every `*.json` file directly in it (what a Kubernetes Job, which has no shell to expand
    /// a glob, passes: `report merge /results`).
    #[arg(required = true, value_name = "SHARD.json|DIR")]
    pub files: Vec<PathBuf>,
    /// Where the reports (and merged.json) go.
    #[arg(
        long,
        env = "GAUNTLET_REPORT_DIR",
        value_name = "DIR",
        default_value = "gauntlet-report"
    )]
    pub report_dir: PathBuf,
}

/// RFC 3339 or Unix seconds (fractions allowed).
pub fn parse_start(s: &str) -> Result<SystemTime, String> {
    if let Ok(secs) = s.parse::<f64>() {
        if (0.0..1e11).contains(&secs) {
            return Ok(SystemTime::UNIX_EPOCH + Duration::from_secs_f64(secs));
        }
        return Err(format!("{s:?} is not a Unix time in seconds"));
    }
    humantime::parse_rfc3339_weak(s)
        .map_err(|e| format!("{s:?} is neither RFC 3339 nor Unix seconds: {e}"))
}

/// What `gauntlet load` measured.
#[derive(Debug)]
struct LoadOutcome {
    /// One line: rates, percentiles, failures, the generator's load, validity.
    pub summary: String,
    /// Why the measurement cannot be trusted, if it cannot.
    pub invalid: Option<String>,
    /// The target, credentials redacted.
    pub target: String,
    /// The run seed.
    pub seed: u64,
    /// Whether no request succeeded.
    all_failed: bool,
    /// With `--report-dir`, or for a whole (unsharded) run: the SLA gates judged on this
    /// run, and its report section. A shard's gates are judged by the merge.
    judged: Option<(Vec<CaseResult>, Section)>,
}

/// The merged shards, judged.
#[derive(Debug)]
struct MergeOutcome {
    /// The SLA gates of the merged run.
    pub cases: Vec<CaseResult>,
    /// Its report section.
    pub section: Section,
    /// The target the shards measured.
    pub target: String,
    /// Their seed.
    pub seed: u64,
}

/// The load settings of `settings` with the flags over them: one constant-rate run.
fn load_settings(args: &LoadArgs, settings: &Settings) -> Result<LoadSettings, SuiteError> {
    let mut s = LoadSettings::from_table(&settings.section(crate::SUITE))
        .map_err(|e| SuiteError::Config(format!("[profile.{}.load] {e}", settings.profile)))?;
    if let Some(v) = args.rate {
        s.rate = v;
    }
    if let Some(v) = args.duration {
        s.duration = v;
    }
    if let Some(v) = args.warm_up {
        s.warm_up = v;
    }
    if let Some(v) = args.connections {
        s.connections = v;
    }
    if let Some(v) = args.threads {
        s.threads = v;
    }
    if let Some(v) = args.pacing {
        s.pacing = v;
    }
    if let Some(v) = &args.model {
        s.model.clone_from(v);
    }
    if let Some(v) = &args.payload {
        s.payload = Some(v.clone());
    }
    if let Some(v) = args.payload_variants {
        s.payload_variants = v;
    }
    // One constant-rate run: the profile's other scenarios do not run here, so their
    // settings must not stop it (a 2 s warm-up is fine beside a 2 s stress-duration).
    s.swap = false;
    s.stress = false;
    s.soak = false;
    s.goose = false;
    s.validate()
        .map_err(|e| SuiteError::Config(format!("{e} (flag or config)")))?;
    Ok(s)
}

/// `gauntlet load`: validates the flags over `settings` (before anything runs).
///
/// # Errors
///
/// [`SuiteError::Config`] naming the key or flag.
fn check(args: &LoadArgs, settings: &Settings) -> Result<(), SuiteError> {
    load_settings(args, settings).map(|_| ())
}

/// `gauntlet load` against `target`: one run (or shard), its shard file written with
/// `--out`, and with `--report-dir` its SLA gates judged.
///
/// # Errors
///
/// [`SuiteError::Config`] for bad settings, [`SuiteError::Setup`] when the run or the shard
/// file fails.
async fn load(
    args: &LoadArgs,
    settings: &Settings,
    target: Arc<dyn Target>,
    progress: bool,
) -> Result<LoadOutcome, SuiteError> {
    let s = load_settings(args, settings)?;
    let setup = |e: &dyn std::fmt::Display| SuiteError::Setup(e.to_string());
    let seed = args.seed.unwrap_or(settings.seed);
    let shard = args.shard.unwrap_or(Shard::WHOLE);
    let (endpoint, grpc_endpoint) = crate::scenario::endpoint(target.as_ref())
        .await
        .map_err(|e| SuiteError::Setup(error_chain(&e)))?;
    let payload =
        crate::payload::for_settings(&s, seed).map_err(|e| SuiteError::Config(e.to_string()))?;
    let mut ctx = ScenarioCtx::new(Arc::clone(&target), &endpoint, s.clone(), seed, progress);
    ctx.use_payload(payload).await.map_err(|e| setup(&e))?;
    let (bodies, check) = ctx.workload().map_err(|e| setup(&e))?;
    let mut config = ctx.driver_config(
        "load",
        workload::infer_path(&s.model),
        bodies,
        Schedule::constant(f64::from(s.rate), s.duration),
        check,
    );
    config.shard = shard;
    config.start_at = args.start_at;
    config.raw_latencies = args.raw_latencies.clone();
    let started = std::time::Instant::now();
    let run = ctx
        .drive(&format!("shard {shard}"), config)
        .await
        .map_err(|e| setup(&e))?;
    drop((endpoint, grpc_endpoint));
    let described = redact_url(&target.describe());
    if let Some(out) = &args.out {
        ShardFile::from_run(&run.stats, &run.validity, &s, &described, seed)
            .write(out)
            .map_err(|e| setup(&e))?;
    }
    let summary = summary(&run);
    let invalid = run.validity.invalid.clone();
    let all_failed = run.stats.counters.ok == 0;
    let judged = (args.report_dir.is_some() || shard == Shard::WHOLE).then(|| {
        let scenario =
            crate::scenario::sustained_judged(run, &s, &format!("gauntlet load (shard {shard})"));
        let mut section = report::scenario_section(&scenario, "gauntlet load");
        if let Some(w) = &ctx.workload {
            section.notes.push(w.note.clone());
        }
        let planned = gates::sla_cases(scenario.id);
        let cases = gate_results(crate::SUITE, &planned, &scenario.gates, started.elapsed());
        (cases, section)
    });
    Ok(LoadOutcome {
        summary,
        invalid,
        all_failed,
        target: described,
        seed,
        judged,
    })
}

fn summary(run: &LabelledRun) -> String {
    let s = &run.stats;
    let l = &s.latencies;
    // With no successful response there is no latency to report: undefined, not 0 ms.
    let latency = if l.is_empty() {
        "latency undefined (no successful response)".to_owned()
    } else {
        format!(
            "p50 {} p99 {} p99.9 {} max {}",
            ms(l.quantile(0.5)),
            ms(l.quantile(0.99)),
            ms(l.quantile(0.999)),
            ms(l.max())
        )
    };
    // The failures' status codes and first body, so a user sees what the server said.
    let breakdown = if s.counters.failures.is_empty() {
        gates::error_breakdown(&s.counters)
    } else {
        let mut text = s.counters.failures.summary();
        if s.counters.dropped > 0 {
            text.push_str(&format!("; dropped {}", s.counters.dropped));
        }
        text
    };
    format!(
        "gauntlet load: {}: scheduled {:.0} req/s, achieved {:.0} req/s; {latency}; \
         {} ok, {} failed ({breakdown}), {} late; generator busiest thread {:.0} %{}",
        run.label,
        s.target_rate,
        s.achieved_rate(),
        s.counters.ok,
        s.counters.failed(),
        s.counters.late,
        run.validity.generator_busiest * 100.0,
        run.validity
            .invalid
            .as_ref()
            .map_or(String::new(), |r| format!("; INVALID: {r}")),
    )
}

/// The shard files `args` name: a file as given, a directory as every `*.json` file directly
/// in it, in name order. A directory with none is an error naming it, so that a Job whose
/// workers wrote elsewhere fails instead of judging nothing.
fn shard_paths(args: &[PathBuf]) -> Result<Vec<PathBuf>, String> {
    let mut paths = Vec::new();
    for arg in args {
        if !arg.is_dir() {
            paths.push(arg.clone());
            continue;
        }
        let entries = std::fs::read_dir(arg)
            .map_err(|e| format!("shard directory {}: {e}", arg.display()))?;
        let mut found = Vec::new();
        for entry in entries {
            let path = entry
                .map_err(|e| format!("shard directory {}: {e}", arg.display()))?
                .path();
            if path.is_file() && path.extension().is_some_and(|x| x == "json") {
                found.push(path);
            }
        }
        if found.is_empty() {
            return Err(format!(
                "shard directory {}: no *.json shard file in it",
                arg.display()
            ));
        }
        found.sort();
        paths.extend(found);
    }
    Ok(paths)
}

/// `gauntlet report merge`: reads the shard files, merges them exactly, writes
/// `merged.json` into `args.report_dir` (which the caller has created) and judges the SLA
/// gates on the merged run.
///
/// # Errors
///
/// [`SuiteError::Config`] for an unreadable or inconsistent shard file,
/// [`SuiteError::Setup`] when merged.json cannot be written.
fn merge(args: &MergeArgs) -> Result<MergeOutcome, SuiteError> {
    let usage = |e: &dyn std::fmt::Display| SuiteError::Config(e.to_string());
    let setup = |e: &dyn std::fmt::Display| SuiteError::Setup(e.to_string());
    let started = std::time::Instant::now();
    let mut files = Vec::with_capacity(args.files.len());
    for path in shard_paths(&args.files).map_err(|e| usage(&e))? {
        let file = ShardFile::read(&path).map_err(|e| usage(&e))?;
        files.push((path, file));
    }
    let merged = shard::merge(&files).map_err(|e| usage(&e))?;
    merged
        .write(&args.report_dir.join("merged.json"))
        .map_err(|e| setup(&e))?;
    let s = &merged.settings;
    let m = merged.measurement();
    let gates = gates::sla_gates("sustained", &m, s);
    let scenario = ScenarioRun {
        id: "sustained",
        title: format!(
            "Merged: {} shards, {:.0} req/s scheduled",
            files.len(),
            merged.target_rate
        ),
        gates,
        runs: Vec::new(),
        notes: Vec::new(),
    };
    let mut section = report::scenario_section(
        &scenario,
        "Shards merged exactly: HDR histograms added bucket by bucket and counters summed; \
         percentiles are read from the merged histogram, never averaged. Each second's \
         percentiles likewise come from the sum of the shards' histograms of that second \
         (shard files from before gauntlet-load kept them give the worst shard's instead).",
    );
    section.tables.push(gauntlet_reports::Table {
        title: "Shards".to_owned(),
        columns: [
            "file",
            "shard",
            "scheduled req/s",
            "ok",
            "failed",
            "p50",
            "p99",
            "validity",
        ]
        .map(str::to_owned)
        .to_vec(),
        rows: files
            .iter()
            .map(|(path, f)| {
                vec![
                    path.display().to_string(),
                    format!("{}/{}", f.shard.index, f.shard.count),
                    format!("{:.0}", f.target_rate),
                    f.counters.ok.to_string(),
                    f.counters.failed().to_string(),
                    ms(f.latencies.quantile(0.5)),
                    ms(f.latencies.quantile(0.99)),
                    f.validity
                        .invalid
                        .clone()
                        .unwrap_or_else(|| "valid".to_owned()),
                ]
            })
            .collect(),
    });
    let exact = merged
        .seconds
        .iter()
        .all(|s| s.ok == 0 || s.histogram.is_some());
    section.charts.push(report::latency_chart(
        if exact {
            "Latency over time (all shards, merged each second)"
        } else {
            "Latency over time (worst shard each second: some shard files kept no per-second histograms)"
        },
        &merged.seconds,
        &[],
    ));
    section.charts.push(report::throughput_chart(
        "Throughput over time (all shards)",
        &merged.seconds,
        merged.target_rate,
    ));
    section.charts.push(report::percentile_chart(
        "Latency percentiles (merged histogram)",
        &[("merged", &merged.latencies)],
    ));
    let planned = gates::sla_cases(scenario.id);
    Ok(MergeOutcome {
        cases: gate_results(crate::SUITE, &planned, &scenario.gates, started.elapsed()),
        section,
        target: merged.target.clone(),
        seed: merged.seed,
    })
}

/// Clap's own error for arguments clap already parsed: only a mismatch between a command's
/// definition and its argument struct gets here.
fn bad_args(e: &clap::Error) -> SuiteError {
    SuiteError::Config(e.to_string())
}

/// `gauntlet load`: one open-model run, or one shard of it.
#[derive(Debug, Clone, Copy)]
pub struct LoadCommand;

#[async_trait]
impl SuiteCommand for LoadCommand {
    fn command(&self) -> clap::Command {
        LoadArgs::augment_args(clap::Command::new("load"))
            .about(
                "One open-model load run (or one shard of it) against a target; see `gauntlet run \
             --suite load` for the whole load suite",
            )
            .long_about(None)
    }

    /// One worker: the driver runs its own threads; the runtime only waits for them.
    fn worker_threads(&self) -> Option<usize> {
        Some(1)
    }

    /// 0 gates passed (or a valid shard written), 1 a gate failed or the run is invalid.
    async fn run(
        &self,
        matches: &clap::ArgMatches,
        host: &dyn Host,
    ) -> Result<CommandOutput, SuiteError> {
        let args = LoadArgs::from_arg_matches(matches).map_err(|e| bad_args(&e))?;
        let settings = host.settings(args.config.as_deref(), &args.profile, &Profile::default())?;
        check(&args, &settings)?;
        if let Some(dir) = &args.report_dir {
            host.check_report_dir(dir)?;
        }
        let started_at = SystemTime::now();
        let url = Some(args.target.as_str()).filter(|t| *t != "in-process");
        let headers = args
            .headers
            .iter()
            .filter(|h| !h.trim().is_empty())
            .map(|h| ExtraHeader::parse(h))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| SuiteError::Config(e.to_string()))?;
        let target = host.connect(url, &headers).await?;
        let outcome = load(&args, &settings, target, host.progress()).await?;
        let mut summary = outcome.summary;
        if outcome.all_failed {
            summary.push_str("; FAILED: no request succeeded");
        }
        let failed_gates: Vec<String> = outcome
            .judged
            .iter()
            .flat_map(|(cases, _)| cases)
            .filter(|c| c.outcome.is_problem())
            .map(|c| format!("{} ({})", c.id, c.message.as_deref().unwrap_or("failed")))
            .collect();
        let report = match (&args.report_dir, outcome.judged) {
            (Some(dir), Some((cases, section))) => Some(CommandReport {
                dir: dir.clone(),
                tool: "gauntlet".to_owned(),
                seed: outcome.seed,
                target: outcome.target,
                profile: args.profile.clone(),
                started_at,
                cases,
                sections: vec![section],
                print_cases: true,
            }),
            _ => None,
        };
        if report.is_none() && !failed_gates.is_empty() {
            summary.push_str(&format!("; gates failed: {}", failed_gates.join("; ")));
        }
        Ok(CommandOutput {
            stdout: String::new(),
            summary: Some(summary),
            report,
            // Without a report the exit code still tells: a failed gate (a whole run's; a
            // shard's gates are the merge's), a run where every request failed, or a
            // measurement that cannot be trusted (the shard file says why) is never a success.
            failed: outcome.invalid.is_some() || outcome.all_failed || !failed_gates.is_empty(),
        })
    }
}

/// `gauntlet report …`: work on reports (`merge` load shard files).
#[derive(Debug, Clone, Copy)]
pub struct ReportCommandGroup;

#[async_trait]
impl SuiteCommand for ReportCommandGroup {
    fn command(&self) -> clap::Command {
        ReportCommand::augment_subcommands(clap::Command::new("report"))
            .about("Work on reports: `merge` load shard files")
            .subcommand_required(true)
            .arg_required_else_help(true)
    }

    async fn run(
        &self,
        matches: &clap::ArgMatches,
        host: &dyn Host,
    ) -> Result<CommandOutput, SuiteError> {
        let ReportCommand::Merge(args) =
            ReportCommand::from_arg_matches(matches).map_err(|e| bad_args(&e))?;
        let started_at = SystemTime::now();
        host.check_report_dir(&args.report_dir)?;
        let merged = merge(&args)?;
        Ok(CommandOutput {
            report: Some(CommandReport {
                dir: args.report_dir.clone(),
                tool: "gauntlet".to_owned(),
                seed: merged.seed,
                target: merged.target,
                profile: "merge".to_owned(),
                started_at,
                cases: merged.cases,
                sections: vec![merged.section],
                print_cases: true,
            }),
            ..CommandOutput::default()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_directory_stands_for_its_json_files_in_name_order() {
        let dir = tempfile::tempdir().unwrap();
        let results = dir.path().join("results");
        std::fs::create_dir_all(results.join("report")).unwrap();
        for name in ["shard-1.json", "shard-0.json", "gauntlet.toml", "raw-0.txt"] {
            std::fs::write(results.join(name), "{}").unwrap();
        }
        // The report directory inside it (where the merge writes merged.json) is not a shard.
        std::fs::write(results.join("report").join("merged.json"), "{}").unwrap();
        let single = dir.path().join("extra.json");
        let paths = shard_paths(&[results.clone(), single.clone()]).unwrap();
        assert_eq!(
            paths,
            [
                results.join("shard-0.json"),
                results.join("shard-1.json"),
                single
            ]
        );
        let empty = dir.path().join("empty");
        std::fs::create_dir(&empty).unwrap();
        let err = shard_paths(std::slice::from_ref(&empty)).unwrap_err();
        assert!(
            err.contains(&empty.display().to_string()) && err.contains("no *.json"),
            "{err}"
        );
    }

    #[test]
    fn start_times_parse_as_rfc3339_or_unix_seconds() {
        let unix = parse_start("1700000000.5").unwrap();
        assert_eq!(
            unix.duration_since(SystemTime::UNIX_EPOCH).unwrap(),
            Duration::from_millis(1_700_000_000_500)
        );
        let rfc = parse_start("2023-11-14T22:13:20Z").unwrap();
        assert_eq!(
            rfc.duration_since(SystemTime::UNIX_EPOCH).unwrap(),
            Duration::from_secs(1_700_000_000)
        );
        assert!(parse_start("tomorrow").unwrap_err().contains("tomorrow"));
        assert!(parse_start("-5").is_err());
    }
}
