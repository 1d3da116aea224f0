//! `gauntlet coverage`: which code of the reference engine the suites exercised. It builds
//! the engine with LLVM's source-based instrumentation through cargo-llvm-cov (its
//! `show-env` wrapper instruments the workspace's crates only), runs the selected suites
//! against it — by URL, an instrumented `gauntlet-engine` that writes its profile when it
//! shuts down on SIGTERM; in process, an instrumented `gauntlet run` — and has cargo-llvm-cov
//! write `coverage/lcov.info`, `coverage/cobertura.xml` and `coverage/summary.json`. The
//! report (report.json, summary.md, report.html, junit.xml) gets a coverage section and,
//! with `min-line-coverage`, the gate `coverage::engine_lines`.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use clap::{Args, ValueEnum};

use gauntlet_harness::Registry;
use gauntlet_harness::config::Profile;
use gauntlet_reports::{CaseResult, ExitCode, Outcome};

use crate::coverage;
use crate::plumbing::{self, Failure, Meta, resolve_settings};

/// The suite name of the coverage gates.
const SUITE: &str = "coverage";
/// The requirement the line-coverage gate checks.
const REQUIREMENT: &str = "GATE-COV";
/// The crate whose coverage the gate judges.
const ENGINE: &str = "gauntlet-engine";

/// Where the instrumented engine runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Mode {
    /// An instrumented `gauntlet-engine` on loopback, the suites by URL.
    Url,
    /// An instrumented `gauntlet run` with the engine in its process.
    InProcess,
    /// Both, one profile merged from the two.
    Both,
}

/// Flags of `gauntlet coverage`.
#[derive(Debug, Args)]
pub struct CoverageArgs {
    /// Only these suites (repeatable or comma-separated); default: the profile's.
    #[arg(long = "suite", value_name = "SUITE", value_delimiter = ',')]
    suites: Vec<String>,
    /// Config profile from gauntlet.toml.
    #[arg(long, env = "GAUNTLET_PROFILE", default_value = "default")]
    profile: String,
    /// Config file; default: ./gauntlet.toml when it exists.
    #[arg(long, env = "GAUNTLET_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,
    /// Where to write the reports and `coverage/`; the suites' own reports go to `url/`
    /// and `in-process/` under it.
    #[arg(long, env = "GAUNTLET_REPORT_DIR", value_name = "DIR")]
    report_dir: Option<PathBuf>,
    /// Run seed (decimal or 0x-hex), passed to the suites.
    #[arg(long, env = "GAUNTLET_SEED", value_parser = gauntlet_reports::parse_seed_arg)]
    seed: Option<u64>,
    /// Where the engine under the suites runs.
    #[arg(long, value_enum, default_value = "both")]
    mode: Mode,
    /// The engine's least line coverage in percent (0 to 100) for the gate
    /// `coverage::engine_lines`; default: the profile's `min-line-coverage`, else no gate.
    #[arg(long, value_name = "PERCENT")]
    min_line_coverage: Option<f64>,
    /// The Gauntlet workspace to build the engine from; default: the one around the
    /// current directory.
    #[arg(long, value_name = "DIR")]
    workspace: Option<PathBuf>,
    /// Build in the dev profile instead of release (faster to build; the load suite's
    /// rates then measure an unoptimised engine).
    #[arg(long)]
    dev: bool,
}

/// Runs `gauntlet coverage`.
pub fn coverage(
    registry: &Registry,
    args: CoverageArgs,
    out: &mut dyn Write,
) -> Result<ExitCode, Failure> {
    let started_at = SystemTime::now();
    let flags = Profile {
        seed: args.seed,
        report_dir: args.report_dir.clone(),
        ..Profile::default()
    };
    let settings = resolve_settings(registry, args.config.as_deref(), &args.profile, &flags)?;
    let threshold = percent(
        "--min-line-coverage",
        args.min_line_coverage.or(settings.min_line_coverage),
    )?;
    plumbing::check_report_dir(&settings.report_dir)?;
    let root = workspace_root(args.workspace.as_deref())?;
    let tool = LlvmCov::find(&root)?;
    let mut err = std::io::stderr();
    let profile_dir = if args.dev { "debug" } else { "release" };
    let mut packages = vec!["gauntlet-engine"];
    if matches!(args.mode, Mode::InProcess | Mode::Both) {
        packages.push("gauntlet");
    }
    tool.run(
        &["clean", "--profraw-only"],
        "cargo llvm-cov clean --profraw-only",
    )?;
    let _ = writeln!(
        err,
        "gauntlet: building {} instrumented ({profile_dir}) in {}",
        packages.join(" and "),
        tool.target_dir.display()
    );
    let build_started = Instant::now();
    let mut build = tool.cargo();
    build.arg("build").arg("--locked");
    if !args.dev {
        build.arg("--release");
    }
    for p in &packages {
        build.args(["-p", p]);
    }
    let status = build
        .status()
        .map_err(|e| Failure::setup(format!("cargo build: {e}")))?;
    if !status.success() {
        return Err(Failure::setup(format!(
            "the instrumented build failed ({status}); see cargo's output above"
        )));
    }
    let build_time = build_started.elapsed();
    let bin_dir = tool.target_dir.join(profile_dir);
    let mut run_args: Vec<String> = vec!["--profile".into(), args.profile.clone()];
    if let Some(c) = &args.config {
        run_args.extend(["--config".into(), c.display().to_string()]);
    }
    if !args.suites.is_empty() {
        run_args.extend(["--suite".into(), args.suites.join(",")]);
    }
    run_args.extend(["--seed".into(), format!("{:#x}", settings.seed)]);
    let mut cases = Vec::new();
    let mut timings = Vec::new();
    if matches!(args.mode, Mode::Url | Mode::Both) {
        let dir = settings.report_dir.join("url");
        let t = Instant::now();
        let code = by_url(
            registry,
            &bin_dir.join("gauntlet-engine"),
            &root,
            &tool,
            &run_args,
            &dir,
            out,
        )?;
        timings.push(format!("by URL: {:.1} s", t.elapsed().as_secs_f64()));
        cases.push(suites_case("suites_by_url", code, &dir));
    }
    if matches!(args.mode, Mode::InProcess | Mode::Both) {
        let dir = settings.report_dir.join("in-process");
        let t = Instant::now();
        let code = in_process(&bin_dir.join("gauntlet"), &tool, &run_args, &dir)?;
        timings.push(format!("in process: {:.1} s", t.elapsed().as_secs_f64()));
        cases.push(suites_case("suites_in_process", code, &dir));
    }
    let cov_dir = settings.report_dir.join("coverage");
    std::fs::create_dir_all(&cov_dir)
        .map_err(|e| Failure::setup(format!("{}: {e}", cov_dir.display())))?;
    let release = if args.dev { None } else { Some("--release") };
    for (format, file) in [
        ("--lcov", "lcov.info"),
        ("--cobertura", "cobertura.xml"),
        ("--json", "summary.json"),
    ] {
        let path = cov_dir.join(file);
        let path_text = path.display().to_string();
        let mut report = vec!["report", format];
        if format == "--json" {
            report.push("--summary-only");
        }
        report.extend(release);
        report.extend(["--output-path", &path_text]);
        tool.run(&report, &format!("cargo llvm-cov report {format}"))?;
    }
    let read = |name: &str| {
        let path = cov_dir.join(name);
        std::fs::read_to_string(&path)
            .map_err(|e| Failure::setup(format!("{}: {e}", path.display())))
    };
    let crates = workspace_crates(&root)?;
    let files = coverage::read_summary(&read("summary.json")?, "summary.json", &root, &crates)
        .map_err(Failure::setup_err)?;
    let uncovered = coverage::uncovered_ranges(&read("lcov.info")?);
    let notes = vec![
        format!(
            "Mode: {}; build {:.0} s ({profile_dir}, instrumented by cargo-llvm-cov {}); \
             suites {}.",
            match args.mode {
                Mode::Url => "by URL",
                Mode::InProcess => "in process",
                Mode::Both => "by URL and in process, one merged profile",
            },
            build_time.as_secs_f64(),
            tool.version,
            timings.join(", ")
        ),
        "Files: coverage/lcov.info, coverage/cobertura.xml, coverage/summary.json \
         (llvm-cov's export)."
            .to_owned(),
    ];
    let section = coverage::section(&files, &uncovered, &root, ENGINE, 10, notes);
    let engine = coverage::by_crate(&files)
        .get(ENGINE)
        .map(|c| c.lines)
        .unwrap_or_default();
    if let Some(t) = threshold {
        cases.push(line_gate(engine, t));
    }
    let _ = writeln!(
        err,
        "gauntlet: {ENGINE} line coverage {}",
        engine.percent().map_or_else(
            || "undefined (no line counted)".to_owned(),
            |p| format!("{p:.1} % ({}/{})", engine.covered, engine.count)
        )
    );
    let meta = Meta {
        tool: "gauntlet coverage",
        seed: settings.seed,
        target: format!(
            "instrumented gauntlet-engine ({})",
            match args.mode {
                Mode::Url => "by URL",
                Mode::InProcess => "in process",
                Mode::Both => "by URL and in process",
            }
        ),
        profile: &settings.profile,
        started_at,
    };
    let report = plumbing::report(registry, meta, cases, vec![section]);
    plumbing::publish(&report, &settings.report_dir, true)
}

/// `coverage::engine_lines`: the engine's line coverage against the threshold; an engine
/// with no line counted fails (its coverage is undefined, not 0 % or 100 %).
fn line_gate(lines: coverage::Count, threshold: f64) -> CaseResult {
    let (pass, message) = match lines.percent() {
        Some(p) => (
            p >= threshold,
            format!(
                "{ENGINE} lines {p:.2} % ({}/{}) {} min-line-coverage {threshold} %",
                lines.covered,
                lines.count,
                if p >= threshold { ">=" } else { "<" }
            ),
        ),
        None => (
            false,
            format!("{ENGINE} line coverage undefined: no line of it was in the profile"),
        ),
    };
    gate_case(SUITE, "engine_lines", REQUIREMENT, pass, message)
}

/// The suites' own verdict as a case: coverage of a failing run is still reported, but the
/// run does not pass.
fn suites_case(name: &str, code: u8, dir: &Path) -> CaseResult {
    let message = format!(
        "the suites' run exited {code}; its reports are in {}",
        dir.display()
    );
    gate_case(SUITE, name, REQUIREMENT, code == 0, message)
}

/// A threshold in percent given by `flag` (or its profile key), checked to be 0 to 100.
pub(crate) fn percent(flag: &str, value: Option<f64>) -> Result<Option<f64>, Failure> {
    match value {
        Some(t) if !(0.0..=100.0).contains(&t) => Err(Failure::usage(format!(
            "{flag} {t}: a percentage must be 0 to 100"
        ))),
        v => Ok(v),
    }
}

/// A gate of `gauntlet coverage` or `gauntlet mutants` as a case: `suite::name`, pass or
/// fail, `message` saying measured against threshold.
pub(crate) fn gate_case(
    suite: &str,
    name: &str,
    requirement: &str,
    pass: bool,
    message: String,
) -> CaseResult {
    CaseResult {
        id: format!("{suite}::{name}"),
        suite: suite.to_owned(),
        name: name.to_owned(),
        requirements: vec![requirement.to_owned()],
        outcome: if pass { Outcome::Pass } else { Outcome::Fail },
        duration: Duration::ZERO,
        message: Some(message),
        location: None,
    }
}

/// The workspace root: `dir`, else the one `cargo locate-project` finds from here. It must
/// hold the engine's sources (`engine/Cargo.toml`).
pub(crate) fn workspace_root(dir: Option<&Path>) -> Result<PathBuf, Failure> {
    let root = match dir {
        Some(d) => d.to_path_buf(),
        None => {
            let output = Command::new("cargo")
                .args(["locate-project", "--workspace", "--message-format", "plain"])
                .stderr(Stdio::null())
                .output()
                .map_err(|e| Failure::setup(format!("cargo locate-project: {e}")))?;
            if !output.status.success() {
                return Err(Failure::usage(
                    "gauntlet coverage builds the engine from source: run it in the Gauntlet \
                     workspace or pass --workspace DIR",
                ));
            }
            let manifest = PathBuf::from(String::from_utf8_lossy(&output.stdout).trim());
            manifest.parent().map(Path::to_path_buf).unwrap_or_default()
        }
    };
    let root = root
        .canonicalize()
        .map_err(|e| Failure::usage(format!("--workspace {}: {e}", root.display())))?;
    if !root.join("engine/Cargo.toml").is_file() {
        return Err(Failure::usage(format!(
            "{} is not the Gauntlet workspace (no engine/Cargo.toml); pass --workspace DIR",
            root.display()
        )));
    }
    Ok(root)
}

/// Workspace crate name → its directory relative to `root`, from `cargo metadata`.
fn workspace_crates(root: &Path) -> Result<BTreeMap<String, String>, Failure> {
    let output = Command::new("cargo")
        .args(["metadata", "--no-deps", "--format-version", "1", "--locked"])
        .current_dir(root)
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| Failure::setup(format!("cargo metadata: {e}")))?;
    if !output.status.success() {
        return Err(Failure::setup("cargo metadata failed"));
    }
    let meta: serde_json::Value = serde_json::from_slice(&output.stdout)
        .map_err(|e| Failure::setup(format!("cargo metadata: {e}")))?;
    let mut out = BTreeMap::new();
    for p in meta["packages"].as_array().into_iter().flatten() {
        if let (Some(name), Some(manifest)) = (p["name"].as_str(), p["manifest_path"].as_str())
            && let Some(dir) = Path::new(manifest).parent()
            && let Ok(rel) = dir.strip_prefix(root)
        {
            out.insert(name.to_owned(), rel.to_string_lossy().into_owned());
        }
    }
    Ok(out)
}

/// cargo-llvm-cov, and the build environment its `show-env` prints.
struct LlvmCov {
    root: PathBuf,
    env: Vec<(String, String)>,
    target_dir: PathBuf,
    version: String,
}

impl LlvmCov {
    /// Finds cargo-llvm-cov and reads its environment; missing is a setup error saying how to
    /// install it.
    fn find(root: &Path) -> Result<LlvmCov, Failure> {
        const INSTALL: &str = "install it with `rustup component add llvm-tools && cargo install \
                               cargo-llvm-cov --locked` (.ci/run does)";
        let version = Command::new("cargo")
            .args(["llvm-cov", "--version"])
            .stderr(Stdio::null())
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
            .ok_or_else(|| Failure::setup(format!("cargo-llvm-cov not found: {INSTALL}")))?;
        let version = version.rsplit(' ').next().unwrap_or(&version).to_owned();
        // The instrumented build has a target directory of its own (under the plain one, as
        // cargo-llvm-cov's own): sharing it would replace its workspace artifacts with
        // instrumented ones.
        let target_dir = std::env::var_os("CARGO_TARGET_DIR")
            .filter(|d| !d.is_empty())
            .map_or_else(|| root.join("target"), PathBuf::from)
            .join("llvm-cov-target");
        let output = Command::new("cargo")
            .args(["llvm-cov", "show-env"])
            .current_dir(root)
            .env("CARGO_TARGET_DIR", &target_dir)
            .stderr(Stdio::piped())
            .output()
            .map_err(|e| Failure::setup(format!("cargo llvm-cov show-env: {e}")))?;
        if !output.status.success() {
            return Err(Failure::setup(format!(
                "cargo llvm-cov show-env failed: {}; {INSTALL}",
                String::from_utf8_lossy(&output.stderr).trim()
            )));
        }
        let env = parse_env(&String::from_utf8_lossy(&output.stdout));
        Ok(LlvmCov {
            root: root.to_path_buf(),
            env,
            target_dir,
            version,
        })
    }

    /// `cargo` in the workspace with the instrumentation environment.
    fn cargo(&self) -> Command {
        let mut c = Command::new("cargo");
        c.current_dir(&self.root)
            .env("CARGO_TARGET_DIR", &self.target_dir)
            .envs(self.env.iter().map(|(k, v)| (k, v)));
        c
    }

    /// `cargo llvm-cov ARGS` with the same environment; a failure is a setup error.
    fn run(&self, args: &[&str], what: &str) -> Result<(), Failure> {
        let status = self
            .cargo()
            .arg("llvm-cov")
            .args(args)
            .status()
            .map_err(|e| Failure::setup(format!("{what}: {e}")))?;
        if status.success() {
            Ok(())
        } else {
            Err(Failure::setup(format!("{what} failed ({status})")))
        }
    }
}

/// `KEY=VALUE` lines, values optionally in single quotes (`show-env`'s output).
fn parse_env(text: &str) -> Vec<(String, String)> {
    text.lines()
        .filter_map(|line| line.split_once('='))
        .map(|(k, v)| {
            let v = v
                .strip_prefix('\'')
                .and_then(|v| v.strip_suffix('\''))
                .unwrap_or(v);
            (k.trim().to_owned(), v.to_owned())
        })
        .filter(|(k, _)| !k.is_empty() && !k.contains(' '))
        .collect()
}

/// Starts the instrumented engine on a free loopback port, runs the suites against it from
/// this process, and stops it with SIGTERM so it writes its profile.
fn by_url(
    registry: &Registry,
    engine: &Path,
    root: &Path,
    tool: &LlvmCov,
    run_args: &[String],
    dir: &Path,
    out: &mut dyn Write,
) -> Result<u8, Failure> {
    let mut child = Command::new(engine)
        .args(["--listen", "127.0.0.1:0", "--model-dir"])
        .arg(root.join("fixtures/models"))
        .envs(
            tool.env
                .iter()
                .filter(|(k, _)| k == "LLVM_PROFILE_FILE")
                .map(|(k, v)| (k, v)),
        )
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| Failure::setup(format!("{}: {e}", engine.display())))?;
    let mut guard = Engine(Some(child.id()));
    let stdout = child.stdout.take().expect("stdout is piped");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(addr) = line.trim().strip_prefix("listening on ") {
                let _ = tx.send(addr.to_owned());
            }
        }
    });
    let addr = rx.recv_timeout(Duration::from_secs(30)).map_err(|_| {
        Failure::setup("the instrumented gauntlet-engine did not say `listening on ADDR` in 30 s")
    })?;
    let mut argv: Vec<String> = vec![
        "gauntlet".into(),
        "run".into(),
        "--target".into(),
        format!("http://{addr}"),
        "--report-dir".into(),
        dir.display().to_string(),
        "--skip-missing-models".into(),
    ];
    argv.extend(run_args.iter().cloned());
    let code = crate::main_with(registry, argv, out);
    guard.stop(&mut child)?;
    Ok(code)
}

/// Runs the instrumented `gauntlet run` (the engine in its process) to its end.
fn in_process(
    gauntlet: &Path,
    tool: &LlvmCov,
    run_args: &[String],
    dir: &Path,
) -> Result<u8, Failure> {
    let status = Command::new(gauntlet)
        .arg("run")
        .args(["--report-dir", &dir.display().to_string()])
        .args(run_args)
        .envs(
            tool.env
                .iter()
                .filter(|(k, _)| k == "LLVM_PROFILE_FILE")
                .map(|(k, v)| (k, v)),
        )
        .status()
        .map_err(|e| Failure::setup(format!("{}: {e}", gauntlet.display())))?;
    status
        .code()
        .and_then(|c| u8::try_from(c).ok())
        .ok_or_else(|| Failure::setup(format!("the instrumented gauntlet run ended by {status}")))
}

/// The engine process: SIGTERM then wait (it writes its profile on the way out); killed if
/// this function's caller returns early.
struct Engine(Option<u32>);

impl Engine {
    fn stop(&mut self, child: &mut std::process::Child) -> Result<(), Failure> {
        let Some(pid) = self.0.take() else {
            return Ok(());
        };
        let _ = Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            match child.try_wait() {
                Ok(Some(status)) if status.success() => return Ok(()),
                Ok(Some(status)) => {
                    return Err(Failure::setup(format!(
                        "the instrumented engine exited {status} on SIGTERM; its profile may be \
                         incomplete"
                    )));
                }
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(50));
                }
                _ => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(Failure::setup(
                        "the instrumented engine did not stop within 30 s of SIGTERM",
                    ));
                }
            }
        }
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        if let Some(pid) = self.0.take() {
            let _ = Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn show_env_lines_are_read_with_or_without_quotes() {
        let env = parse_env(
            "LLVM_PROFILE_FILE='/w/target/main-%p-%2m.profraw'\nRUSTC_WRAPPER=/bin/x\n\
             info: something\n",
        );
        assert_eq!(
            env,
            [
                (
                    "LLVM_PROFILE_FILE".to_owned(),
                    "/w/target/main-%p-%2m.profraw".to_owned()
                ),
                ("RUSTC_WRAPPER".to_owned(), "/bin/x".to_owned()),
            ]
        );
    }

    #[test]
    fn the_gate_compares_and_undefined_fails() {
        let c = coverage::Count {
            count: 200,
            covered: 181,
        };
        let pass = line_gate(c, 90.0);
        assert_eq!(pass.outcome, Outcome::Pass);
        assert!(
            pass.message
                .unwrap()
                .contains("90.50 % (181/200) >= min-line-coverage 90")
        );
        assert_eq!(line_gate(c, 91.0).outcome, Outcome::Fail);
        let none = line_gate(coverage::Count::default(), 0.0);
        assert_eq!(none.outcome, Outcome::Fail);
        assert!(none.message.unwrap().contains("undefined"));
    }
}
