//! `gauntlet mutants`: the mutation score of `gauntlet-engine` under Gauntlet's suites.
//! cargo-mutants changes the engine's code one mutant at a time and runs the suites against
//! the in-process engine (`gauntlet/tests/mutation_suites.rs`) after each; a mutant they pass
//! with is a fault they would not catch. Sharded (`--shard K/N`) and diff-limited
//! (`--in-diff FILE`) like cargo-mutants; exclusions reviewed in `.cargo/mutants.toml`.
//! The report gets a mutation section and, with `min-mutation-score`, the gate
//! `mutants::score`. Each run records what it mutated (`mutants-run.json`); `--merge DIR...`
//! adds the shards of one run up to the whole engine's score, and the case
//! `mutants::complete` fails while a shard is missing.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use clap::{Args, ValueEnum as _};

use gauntlet_harness::Registry;
use gauntlet_harness::config::Profile;
use gauntlet_reports::{CaseResult, ExitCode};

use crate::mutants::{self, Outcomes, Part, RUN_RECORD, RunRecord};
use crate::plumbing::{self, Failure, Meta, resolve_settings};

const SUITE: &str = "mutants";
const REQUIREMENT: &str = "GATE-MUT";

/// `K/N`: shard K (from 0) of N.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    k: u32,
    n: u32,
}

impl std::str::FromStr for Shard {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let (k, n) = s
            .split_once('/')
            .ok_or_else(|| format!("--shard {s:?}: expected K/N, e.g. 0/8"))?;
        let (k, n): (u32, u32) = match (k.trim().parse(), n.trim().parse()) {
            (Ok(k), Ok(n)) => (k, n),
            _ => {
                return Err(format!(
                    "--shard {s:?}: K and N are whole numbers, e.g. 0/8"
                ));
            }
        };
        if n == 0 || k >= n {
            return Err(format!(
                "--shard {s:?}: K counts from 0 and must be below N (N ≥ 1)"
            ));
        }
        Ok(Shard { k, n })
    }
}

impl std::fmt::Display for Shard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.k, self.n)
    }
}

/// cargo-mutants' `--sharding`; the variants' flag names are its values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Sharding {
    /// Consecutive ranges of mutants on each shard.
    Slice,
    /// Mutant `i` on shard `i % N`.
    RoundRobin,
}

/// Flags of `gauntlet mutants`.
#[derive(Debug, Args)]
pub struct MutantsArgs {
    /// Run shard K of N (K from 0): one Nth of the mutants, for parallel CI jobs.
    #[arg(long, value_name = "K/N")]
    shard: Option<Shard>,
    /// How --shard splits the mutants: `slice` (consecutive ranges, cargo-mutants'
    /// default: builds share the most) or `round-robin` (every Nth mutant: a shard is an
    /// even sample of the whole engine, to estimate its score from one shard).
    #[arg(long, value_enum, default_value_t = Sharding::Slice, requires = "shard")]
    sharding: Sharding,
    /// Only mutants on lines this unified diff adds or changes (`git diff > d.diff`).
    #[arg(long, value_name = "FILE")]
    in_diff: Option<PathBuf>,
    /// The least mutation score in percent (0 to 100) for the gate `mutants::score`;
    /// default: the profile's `min-mutation-score`, else no gate.
    #[arg(long, value_name = "PERCENT")]
    min_mutation_score: Option<f64>,
    /// Config profile from gauntlet.toml.
    #[arg(long, env = "GAUNTLET_PROFILE", default_value = "default")]
    profile: String,
    /// Config file; default: ./gauntlet.toml when it exists.
    #[arg(long, env = "GAUNTLET_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,
    /// Where to write the reports and cargo-mutants' `mutants.out/`.
    #[arg(long, env = "GAUNTLET_REPORT_DIR", value_name = "DIR")]
    report_dir: Option<PathBuf>,
    /// The Gauntlet workspace; default: the one around the current directory.
    #[arg(long, value_name = "DIR")]
    workspace: Option<PathBuf>,
    /// Mutate the workspace's files in place (each restored after its test) and build in its
    /// own target directory, instead of in a scratch copy that builds from cold: much faster
    /// on a clean checkout, but do not edit the tree while it runs.
    #[arg(long)]
    in_place: bool,
    /// Mutants built and tested at once (cargo-mutants' -j); each needs its own build.
    #[arg(long, default_value_t = 1)]
    jobs: u32,
    /// Only list the mutants the selection holds, without testing them.
    #[arg(long)]
    list: bool,
    /// Test nothing: merge the report directories of shards of one run (the same commit,
    /// N, sharding and suites) into the score of all of them; `mutants::complete` fails
    /// while a shard of N is missing.
    #[arg(
        long,
        value_name = "DIR",
        num_args = 1..,
        conflicts_with_all = ["shard", "in_diff", "list", "in_place", "jobs", "workspace"]
    )]
    merge: Vec<PathBuf>,
}

/// Runs `gauntlet mutants`.
pub fn mutants(
    registry: &Registry,
    args: MutantsArgs,
    out: &mut dyn Write,
) -> Result<ExitCode, Failure> {
    let started_at = SystemTime::now();
    let flags = Profile {
        report_dir: args.report_dir.clone(),
        ..Profile::default()
    };
    let settings = resolve_settings(registry, args.config.as_deref(), &args.profile, &flags)?;
    let threshold = super::coverage::percent(
        "--min-mutation-score",
        args.min_mutation_score.or(settings.min_mutation_score),
    )?;
    if !args.merge.is_empty() {
        return merge(registry, &args.merge, &settings, threshold, started_at);
    }
    if let Some(diff) = &args.in_diff
        && !diff.is_file()
    {
        return Err(Failure::usage(format!(
            "--in-diff {}: no such file",
            diff.display()
        )));
    }
    let root = super::coverage::workspace_root(args.workspace.as_deref())?;
    let version = Command::new("cargo")
        .args(["mutants", "--version"])
        .stderr(Stdio::null())
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .ok_or_else(|| {
            Failure::setup(
                "cargo-mutants not found: install it with `cargo install cargo-mutants --locked`",
            )
        })?;
    let mut cmd = Command::new("cargo");
    cmd.current_dir(&root)
        .args(["mutants", "--package", "gauntlet-engine", "--no-shuffle"])
        .args(["--test-package", "gauntlet"]);
    if let Some(shard) = args.shard {
        cmd.args(["--shard", &shard.to_string()]);
        // clap's names of the variants are cargo-mutants' own (`slice`, `round-robin`).
        if let Some(name) = args.sharding.to_possible_value() {
            cmd.args(["--sharding", name.get_name()]);
        }
    }
    if let Some(diff) = &args.in_diff {
        let diff = diff
            .canonicalize()
            .map_err(|e| Failure::usage(format!("--in-diff {}: {e}", diff.display())))?;
        cmd.arg("--in-diff").arg(diff);
    }
    if args.list {
        cmd.arg("--list");
        let status = cmd
            .stdout(Stdio::piped())
            .output()
            .map_err(|e| Failure::setup(format!("cargo mutants: {e}")))?;
        let _ = out.write_all(&status.stdout);
        return if status.status.success() {
            Ok(ExitCode::Success)
        } else {
            Err(Failure::setup(format!(
                "cargo mutants --list failed ({})",
                status.status
            )))
        };
    }
    if args.in_place {
        cmd.arg("--in-place");
    }
    std::fs::create_dir_all(&settings.report_dir)
        .map_err(|e| Failure::setup(format!("{}: {e}", settings.report_dir.display())))?;
    let report_dir = settings
        .report_dir
        .canonicalize()
        .map_err(|e| Failure::setup(format!("{}: {e}", settings.report_dir.display())))?;
    cmd.arg("--output").arg(&report_dir);
    if args.in_place && args.jobs > 1 {
        return Err(Failure::usage(
            "--in-place mutates the one tree: it takes --jobs 1 only",
        ));
    }
    if args.jobs > 1 {
        cmd.args(["--jobs", &args.jobs.to_string()]);
    }
    // A previous run's outcomes must not be read as this one's.
    let out_dir = report_dir.join("mutants.out");
    if out_dir.exists() {
        std::fs::remove_dir_all(&out_dir)
            .map_err(|e| Failure::setup(format!("{}: {e}", out_dir.display())))?;
    }
    // Before any mutant touches the tree (--in-place): which commit this run mutates.
    let (commit, clean) = git_state(&root);
    // The baseline is ours: cargo-mutants' own runs the mutated package's tests (the
    // engine's), not --test-package's. The suites must pass on the unmutated engine, and their
    // time sets the per-mutant test timeout.
    let baseline = baseline(&root)?;
    let timeout = (baseline.as_secs_f64() * 5.0).max(60.0).ceil();
    cmd.args(["--baseline", "skip", "--timeout", &format!("{timeout}")]);
    // The suites' test target, for the build and the test phase alike: as a test argument
    // only, cargo-mutants' build phase (`cargo test --no-run -p gauntlet`) would build and link
    // every test binary of the package for every mutant (26 s of build a mutant instead of
    // 14-15 s, 7 Dec 2026). Then the test binary's own argument: the test is ignored by default
    // so the ordinary test run does not repeat the main job.
    cmd.arg("--cargo-arg=--test=mutation_suites");
    cmd.args(["--", "--", "--ignored"]);
    let shard_text = args
        .shard
        .map(|s| match args.sharding {
            Sharding::Slice => format!(", shard {s}"),
            Sharding::RoundRobin => format!(", shard {s} (round-robin: every {}th mutant)", s.n),
        })
        .unwrap_or_default();
    let _ = writeln!(
        std::io::stderr(),
        "gauntlet: {version}: mutants of gauntlet-engine{}{} with the suites in process",
        shard_text,
        args.in_diff
            .as_ref()
            .map(|d| format!(", lines changed in {}", d.display()))
            .unwrap_or_default()
    );
    let t = Instant::now();
    let status = cmd
        .status()
        .map_err(|e| Failure::setup(format!("cargo mutants: {e}")))?;
    let wall = t.elapsed();
    // cargo-mutants: 0 all caught, 2 some missed (or a usage error: clap's code), 3 some timed
    // out. outcomes.json is written at the end of every run that tested.
    match status.code() {
        Some(0..=3) if out_dir.join("outcomes.json").is_file() => {}
        _ => {
            return Err(Failure::setup(format!("cargo mutants failed ({status})")));
        }
    }
    let outcomes =
        Outcomes::read(&out_dir).map_err(|e| Failure::setup(format!("mutants.out: {e}")))?;
    let suites = std::env::var("GAUNTLET_MUTANTS_SUITES")
        .unwrap_or_else(|_| "conformance, property, security, compliance, resilience".to_owned());
    let record = RunRecord {
        commit,
        clean,
        shard: args.shard.map_or(0, |s| s.k),
        shards: args.shard.map_or(1, |s| s.n),
        sharding: args
            .sharding
            .to_possible_value()
            .map(|v| v.get_name().to_owned())
            .unwrap_or_default(),
        in_diff: args.in_diff.is_some(),
        suites: suites.clone(),
        cargo_mutants: version.clone(),
        selected: selected(&out_dir)?,
        wall_seconds: wall.as_secs_f64(),
    };
    let record_path = report_dir.join(RUN_RECORD);
    let json = serde_json::to_string_pretty(&record).map_err(Failure::setup_err)?;
    std::fs::write(&record_path, json + "\n")
        .map_err(|e| Failure::setup(format!("{}: {e}", record_path.display())))?;
    let notes = vec![format!(
        "{version}; gauntlet-engine{}{}; the suites ({}) in process as the test command; \
         wall time {:.0} s with {} job(s). Timeouts count as caught; unviable mutants (that do \
         not build) are not counted. Exclusions, each with its reason: .cargo/mutants.toml.",
        shard_text,
        args.in_diff
            .as_ref()
            .map(|d| format!(", lines changed in {}", d.display()))
            .unwrap_or_default(),
        suites,
        wall.as_secs_f64(),
        args.jobs
    )];
    let _ = writeln!(
        std::io::stderr(),
        "gauntlet: mutation score {} ({} caught, {} missed, {} timeout, {} unviable)",
        outcomes
            .score()
            .map_or_else(|| "undefined".to_owned(), |p| format!("{p:.1} %")),
        outcomes.caught.len(),
        outcomes.missed.len(),
        outcomes.timeout.len(),
        outcomes.unviable.len()
    );
    let mut cases = Vec::new();
    if let Some(t) = threshold {
        cases.push(score_gate(&outcomes, t));
    }
    let section = mutants::section(&outcomes, notes);
    let meta = Meta {
        tool: "gauntlet mutants",
        seed: settings.seed,
        target: format!("gauntlet-engine mutants in {}", root.display()),
        profile: &settings.profile,
        started_at,
    };
    let report = plumbing::report(registry, meta, cases, vec![section]);
    plumbing::publish(&report, &report_dir, true)
}

/// `git rev-parse HEAD` of `root` (`None` outside git) and whether its tracked files are
/// those of that commit.
fn git_state(root: &Path) -> (Option<String>, bool) {
    let git = |args: &[&str]| {
        Command::new("git")
            .current_dir(root)
            .args(args)
            .stderr(Stdio::null())
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
    };
    let commit = git(&["rev-parse", "HEAD"]);
    let clean = commit.is_some()
        && git(&["status", "--porcelain", "--untracked-files=no"]).is_some_and(|s| s.is_empty());
    (commit, clean)
}

/// How many mutants the run selected: the length of cargo-mutants' `mutants.json`.
fn selected(out_dir: &Path) -> Result<usize, Failure> {
    let path = out_dir.join("mutants.json");
    let text = std::fs::read_to_string(&path)
        .map_err(|e| Failure::setup(format!("{}: {e}", path.display())))?;
    let list: Vec<serde_json::Value> = serde_json::from_str(&text)
        .map_err(|e| Failure::setup(format!("{}: {e}", path.display())))?;
    Ok(list.len())
}

/// `gauntlet mutants --merge`: the shards' outcomes together, with `mutants::complete` (every
/// shard of N present) and, with a threshold, `mutants::score` over all of them.
fn merge(
    registry: &Registry,
    dirs: &[PathBuf],
    settings: &gauntlet_harness::config::Settings,
    threshold: Option<f64>,
    started_at: SystemTime,
) -> Result<ExitCode, Failure> {
    let parts = dirs
        .iter()
        .map(|d| Part::read(d))
        .collect::<Result<Vec<_>, _>>()
        .map_err(Failure::usage)?;
    let merged = mutants::merge(&parts).map_err(Failure::usage)?;
    let complete = merged.missing.is_empty();
    let mut cases = vec![super::coverage::gate_case(
        SUITE,
        "complete",
        REQUIREMENT,
        complete,
        if complete {
            format!(
                "all {} shards of the run ({}) merged: every mutant of gauntlet-engine at {} tested",
                merged.shards, merged.sharding, merged.commit
            )
        } else {
            format!(
                "{} of {} shards merged; missing: {}: the score is of a part of the engine's \
                 mutants, not of all",
                merged.present.len(),
                merged.shards,
                ranges(&merged.missing)
            )
        },
    )];
    if let Some(t) = threshold {
        cases.push(score_gate(&merged.outcomes, t));
    }
    let notes = vec![format!(
        "{}; gauntlet-engine at {}; shards {} of {} ({}); the suites ({}) in process as the \
         test command; wall time {:.0} s in all, {:.0} s for the longest shard. Timeouts count \
         as caught; unviable mutants (that do not build) are not counted. Exclusions, each \
         with its reason: .cargo/mutants.toml.",
        merged.cargo_mutants.join(", "),
        merged.commit,
        ranges(&merged.present),
        merged.shards,
        merged.sharding,
        merged.suites,
        merged.wall_total,
        merged.wall_max
    )];
    let _ = writeln!(
        std::io::stderr(),
        "gauntlet: {} of {} shards: mutation score {} ({} caught, {} missed, {} timeout, {} unviable)",
        merged.present.len(),
        merged.shards,
        merged
            .outcomes
            .score()
            .map_or_else(|| "undefined".to_owned(), |p| format!("{p:.1} %")),
        merged.outcomes.caught.len(),
        merged.outcomes.missed.len(),
        merged.outcomes.timeout.len(),
        merged.outcomes.unviable.len()
    );
    let section = mutants::section(&merged.outcomes, notes);
    let meta = Meta {
        tool: "gauntlet mutants --merge",
        seed: settings.seed,
        target: format!("gauntlet-engine mutants at {}", merged.commit),
        profile: &settings.profile,
        started_at,
    };
    let report = plumbing::report(registry, meta, cases, vec![section]);
    plumbing::publish(&report, &settings.report_dir, true)
}

/// Shard numbers (sorted) as ranges, written as the coverage report writes line ranges:
/// `0, 2-5, 9`.
fn ranges(v: &[u32]) -> String {
    let mut runs: Vec<(u32, u32)> = Vec::new();
    for &n in v {
        match runs.last_mut() {
            Some((_, end)) if *end + 1 == n => *end = n,
            _ => runs.push((n, n)),
        }
    }
    crate::coverage::format_ranges(&runs, usize::MAX)
}

/// `cargo test -p gauntlet --test mutation_suites -- --ignored` on the unmutated tree: built,
/// then run and timed. A failure is a setup error: no mutant can be judged by failing suites.
fn baseline(root: &std::path::Path) -> Result<Duration, Failure> {
    let test = |extra: &[&str]| {
        Command::new("cargo")
            .current_dir(root)
            .args(["test", "-p", "gauntlet", "--test", "mutation_suites"])
            .args(extra)
            .status()
            .map_err(|e| Failure::setup(format!("cargo test: {e}")))
    };
    let built = test(&["--no-run"])?;
    if !built.success() {
        return Err(Failure::setup(format!(
            "the suites' test (gauntlet/tests/mutation_suites.rs) does not build ({built})"
        )));
    }
    let t = Instant::now();
    let ran = test(&["--", "--ignored"])?;
    if !ran.success() {
        return Err(Failure::setup(
            "the suites fail on the unmutated engine (baseline): fix that first",
        ));
    }
    let took = t.elapsed();
    let _ = writeln!(
        std::io::stderr(),
        "gauntlet: baseline: the suites pass on the unmutated engine in {:.1} s",
        took.as_secs_f64()
    );
    Ok(took)
}

/// `mutants::score`: caught share of the viable mutants against the threshold; no viable
/// mutant is a pass only when nothing was asked of the run (an empty diff), said so.
fn score_gate(outcomes: &Outcomes, threshold: f64) -> CaseResult {
    let (pass, message) = match outcomes.score() {
        Some(p) => (
            p >= threshold,
            format!(
                "mutation score {p:.2} % ({} of {} viable caught) {} min-mutation-score {threshold} %",
                outcomes.caught.len() + outcomes.timeout.len(),
                outcomes.viable(),
                if p >= threshold { ">=" } else { "<" }
            ),
        ),
        None => (
            true,
            "no viable mutant in the selection: the score is undefined, nothing to judge"
                .to_owned(),
        ),
    };
    super::coverage::gate_case(SUITE, "score", REQUIREMENT, pass, message)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mutants::Mutant;
    use gauntlet_reports::Outcome;

    #[test]
    fn shard_lists_read_as_ranges() {
        assert_eq!(ranges(&[0, 2, 3, 4, 5, 9, 11, 12]), "0, 2-5, 9, 11-12");
        assert_eq!(ranges(&[]), "");
        assert_eq!(ranges(&[7]), "7");
    }

    #[test]
    fn shards_are_checked() {
        assert_eq!("0/8".parse::<Shard>(), Ok(Shard { k: 0, n: 8 }));
        assert!("8/8".parse::<Shard>().unwrap_err().contains("below N"));
        assert!("1/0".parse::<Shard>().is_err());
        assert!("x".parse::<Shard>().unwrap_err().contains("K/N"));
    }

    #[test]
    fn the_gate_compares_the_score() {
        let m = |n: u32| Mutant {
            file: "engine/src/a.rs".into(),
            line: n,
            mutation: "m".into(),
        };
        let o = Outcomes {
            caught: (0..9).map(m).collect(),
            missed: vec![m(10)],
            timeout: vec![],
            unviable: vec![m(11)],
        };
        let g = score_gate(&o, 90.0);
        assert_eq!(g.outcome, Outcome::Pass);
        assert!(
            g.message
                .unwrap()
                .contains("90.00 % (9 of 10 viable caught)")
        );
        assert_eq!(score_gate(&o, 95.0).outcome, Outcome::Fail);
    }
}
