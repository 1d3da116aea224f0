//! `gauntlet load` and `gauntlet report merge`: the clap arguments and what they run.
//!
//! The `gauntlet` binary only adds these as subcommands; everything else lives here.
//! Exit codes as `gauntlet run`: 0 gates passed (or a valid shard written), 1 a gate failed or
//! the run (or shard) is invalid, 2 usage or config error, 3 setup error (target unreachable, unwritable
//! output).

use std::io::{IsTerminal, Write as _};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use clap::{Args, Subcommand};

use gauntlet_engine::EngineConfig;
use gauntlet_harness::config::{ConfigFile, Profile, Settings};
use gauntlet_harness::{ENGINE_THREAD_PREFIX, redact_url};
use gauntlet_harness::{HttpOptions, HttpTarget, InProcess, Target, TargetError, error_chain};
use gauntlet_reports::{ExitCode, RunMeta, RunReport, Section};

use crate::gates::{self, ms};
use crate::report;
use crate::scenario::{LabelledRun, ScenarioCtx, ScenarioRun};
use crate::schedule::{Schedule, Shard};
use crate::settings::LoadSettings;
use crate::shard::{self, ShardFile};
use crate::workload::{self, NamesModel};

/// `gauntlet load`: one open-model run (optionally one shard of a run) of the sustained
/// scenario.
#[derive(Debug, Args)]
pub struct LoadArgs {
    /// Base URL of the server, or `in-process` for the embedded reference engine served on
    /// a loopback port.
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
    #[arg(long, env = "GAUNTLET_SEED", value_parser = parse_seed)]
    pub seed: Option<u64>,
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
    /// Shard files written by `gauntlet load --out`.
    #[arg(required = true, value_name = "SHARD.json")]
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

fn parse_seed(s: &str) -> Result<u64, String> {
    gauntlet_reports::parse_seed(s)
        .map_err(|e| format!("seed must be an unsigned 64-bit integer (decimal or 0x-hex): {e}"))
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

/// An error with its exit code.
#[derive(Debug)]
struct Failure {
    code: ExitCode,
    message: String,
}

fn usage(message: impl std::fmt::Display) -> Failure {
    Failure {
        code: ExitCode::Usage,
        message: message.to_string(),
    }
}

fn setup(message: impl std::fmt::Display) -> Failure {
    Failure {
        code: ExitCode::Setup,
        message: message.to_string(),
    }
}

fn finish(result: Result<ExitCode, Failure>) -> ExitCode {
    match result {
        Ok(code) => code,
        Err(f) => {
            let _ = writeln!(std::io::stderr(), "gauntlet: error: {}", f.message);
            f.code
        }
    }
}

/// Resolves the `load` table of `profile` in `config` (or ./gauntlet.toml).
fn resolve_settings(
    config: Option<&Path>,
    profile: &str,
) -> Result<(Settings, LoadSettings), Failure> {
    let path = config.map(Path::to_path_buf).or_else(|| {
        let default = PathBuf::from("gauntlet.toml");
        default.exists().then_some(default)
    });
    let file = match &path {
        Some(p) => Some(ConfigFile::read(p).map_err(|e| usage(error_chain(&e)))?),
        None => None,
    };
    let settings = Settings::resolve(
        file.as_ref().zip(path.as_deref()),
        profile,
        &Profile::default(),
    )
    .map_err(|e| usage(error_chain(&e)))?;
    let load = LoadSettings::from_table(&settings.section(crate::SUITE))
        .map_err(|e| usage(format!("[profile.{profile}.load] {e}")))?;
    Ok((settings, load))
}

/// Runs `gauntlet load`; returns the exit code.
pub fn run_load(args: LoadArgs) -> ExitCode {
    finish(load(args))
}

fn load(args: LoadArgs) -> Result<ExitCode, Failure> {
    let (settings, mut s) = resolve_settings(args.config.as_deref(), &args.profile)?;
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
    // One constant-rate run: the profile's other scenarios do not run here, so their
    // settings must not stop it (a 2 s warm-up is fine beside a 2 s stress-duration).
    s.swap = false;
    s.stress = false;
    s.soak = false;
    s.goose = false;
    s.validate()
        .map_err(|e| usage(format!("{e} (flag or config)")))?;
    let seed = args.seed.unwrap_or(settings.seed);
    let shard = args.shard.unwrap_or(Shard::WHOLE);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("gx-cli")
        .enable_all()
        .build()
        .map_err(|e| setup(format!("failed to start the async runtime: {e}")))?;
    runtime.block_on(async {
        let target = connect(&args.target).await?;
        let endpoint = target
            .http_endpoint()
            .await
            .map_err(|e| setup(error_chain(&e)))?;
        let ctx = ScenarioCtx {
            target: Arc::clone(&target),
            url: endpoint.url.clone(),
            authorization: endpoint.authorization.clone(),
            target_threads: endpoint
                .server
                .as_ref()
                .map(|_| ENGINE_THREAD_PREFIX.to_owned()),
            settings: s.clone(),
            seed,
            progress: std::io::stderr()
                .is_terminal()
                .then(crate::progress::terminal),
        };
        let body = workload::infer_body(s.rows, seed).map_err(|e| setup(e.to_string()))?;
        let mut config = ctx.driver_config(
            "load",
            workload::infer_path(&s.model),
            body,
            Schedule::constant(f64::from(s.rate), s.duration),
            Arc::new(NamesModel::new(&s.model)),
        );
        config.shard = shard;
        config.start_at = args.start_at;
        config.raw_latencies = args.raw_latencies.clone();
        let started = SystemTime::now();
        let run = ctx
            .drive(&format!("shard {shard}"), config)
            .await
            .map_err(|e| setup(e.to_string()))?;
        drop(endpoint);
        let described = redact_url(&target.describe());
        print_summary(&run);
        if let Some(out) = &args.out {
            ShardFile::from_run(&run.stats, &run.validity, &s, &described, seed)
                .write(out)
                .map_err(|e| setup(e.to_string()))?;
        }
        let Some(dir) = &args.report_dir else {
            // No gates to judge here (the merge applies them), but a measurement that
            // cannot be trusted is never a success: the shard file says why.
            return Ok(if run.validity.invalid.is_some() {
                ExitCode::Failed
            } else {
                ExitCode::Success
            });
        };
        let scenario =
            crate::scenario::sustained_judged(run, &s, &format!("gauntlet load (shard {shard})"));
        let section = report::scenario_section(&scenario, "gauntlet load");
        write_report(
            &scenario,
            section,
            &described,
            &args.profile,
            seed,
            started,
            dir,
        )
    })
}

async fn connect(target: &str) -> Result<Arc<dyn Target>, Failure> {
    if target == "in-process" {
        let models = gauntlet_fixtures::load_embedded().map_err(|e| setup(error_chain(&e)))?;
        let engine = InProcess::with_models(EngineConfig::default(), models)
            .map_err(|e| setup(error_chain(&e)))?;
        return Ok(Arc::new(engine));
    }
    match HttpTarget::connect(target, HttpOptions::default()).await {
        Ok(t) => Ok(Arc::new(t)),
        Err(e @ TargetError::InvalidUrl { .. }) => Err(usage(format!("--target: {e}"))),
        Err(e) => Err(setup(error_chain(&e))),
    }
}

fn print_summary(run: &LabelledRun) {
    let s = &run.stats;
    let l = &s.latencies;
    let _ = writeln!(
        std::io::stderr(),
        "gauntlet load: {}: scheduled {:.0} req/s, achieved {:.0} req/s; p50 {} p99 {} p99.9 {} max {}; \
         {} ok, {} failed ({}), {} late; generator busiest thread {:.0} %{}",
        run.label,
        s.target_rate,
        s.achieved_rate(),
        ms(l.quantile(0.5)),
        ms(l.quantile(0.99)),
        ms(l.quantile(0.999)),
        ms(if l.is_empty() { 0 } else { l.max() }),
        s.counters.ok,
        s.counters.failed(),
        gates::error_breakdown(&s.counters),
        s.counters.late,
        run.validity.generator_busiest * 100.0,
        run.validity
            .invalid
            .as_ref()
            .map_or(String::new(), |r| format!("; INVALID: {r}")),
    );
}

fn write_report(
    scenario: &ScenarioRun,
    section: Section,
    target: &str,
    profile: &str,
    seed: u64,
    started_at: SystemTime,
    dir: &Path,
) -> Result<ExitCode, Failure> {
    let planned = gates::sla_cases(scenario.id);
    let took = SystemTime::now()
        .duration_since(started_at)
        .unwrap_or_default();
    let cases = crate::gate_results(&planned, &scenario.gates, took);
    let meta = RunMeta {
        tool: "gauntlet".to_owned(),
        tool_version: crate::VERSION.to_owned(),
        git_commit: None,
        crate_versions: [
            ("gauntlet-load", crate::VERSION),
            ("gauntlet-harness", gauntlet_harness::VERSION),
            ("gauntlet-reports", gauntlet_reports::VERSION),
            ("gauntlet-engine", gauntlet_engine::VERSION),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect(),
        seed,
        target: target.to_owned(),
        profile: profile.to_owned(),
        started_at,
        finished_at: SystemTime::now(),
    };
    let report = RunReport::new(meta, cases).with_sections([section]);
    let color = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    let _ = gauntlet_reports::terminal::write(&report, &mut std::io::stderr().lock(), color);
    gauntlet_reports::write_all(&report, dir).map_err(|e| setup(error_chain(&e)))?;
    let _ = writeln!(std::io::stderr(), "gauntlet: reports in {}", dir.display());
    Ok(report.exit_code())
}

/// Runs `gauntlet report …`; returns the exit code.
pub fn run_report(command: ReportCommand) -> ExitCode {
    match command {
        ReportCommand::Merge(args) => finish(merge(&args)),
    }
}

fn merge(args: &MergeArgs) -> Result<ExitCode, Failure> {
    let started = SystemTime::now();
    let mut files = Vec::with_capacity(args.files.len());
    for path in &args.files {
        let file = ShardFile::read(path).map_err(|e| usage(e.to_string()))?;
        files.push((path.clone(), file));
    }
    let merged = shard::merge(&files).map_err(|e| usage(e.to_string()))?;
    std::fs::create_dir_all(&args.report_dir).map_err(|e| {
        setup(format!(
            "failed to create {}: {e}",
            args.report_dir.display()
        ))
    })?;
    merged
        .write(&args.report_dir.join("merged.json"))
        .map_err(|e| setup(e.to_string()))?;
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
    ));
    section.charts.push(report::percentile_chart(
        "Latency percentiles (merged histogram)",
        &[("merged", &merged.latencies)],
    ));
    write_report(
        &scenario,
        section,
        &merged.target,
        "merge",
        merged.seed,
        started,
        &args.report_dir,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

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
