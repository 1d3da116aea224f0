//! `gauntlet`: the composition root. It registers the suites in one list ([`registry()`]),
//! turns flags into validated plans, runs them, and owns what libraries must not: exit
//! codes, terminal output, config discovery, the report directory and the run metadata.
//!
//! Exit codes: 0 every case passed, 1 a case or gate failed (or a measurement is
//! invalid), 2 usage or config error, 3 setup error (target unreachable, fixture missing,
//! reports unwritable).
//!
//! One file per subcommand of its own under `cmd/`, and `cmd/suite.rs` for the ones the
//! suites add; [`main_with`] runs any registry, so a test can
//! add a suite of its own and see it everywhere the built-in ones appear:
//!
//! ```
//! let registry = gauntlet::registry();
//! let mut out = Vec::new();
//! let code = gauntlet::main_with(&registry, ["gauntlet", "list", "--suite", "property"], &mut out);
//! assert_eq!(code, 0);
//! let listed = String::from_utf8(out).unwrap();
//! assert!(listed.lines().all(|l| l.starts_with("property::")), "{listed}");
//! ```

use std::ffi::OsString;
use std::io::Write;

use clap::{Parser, Subcommand};

use gauntlet_harness::{Registry, Suite};
use gauntlet_reports::ExitCode;

mod cmd;
mod coverage;
mod mutants;
mod plumbing;

/// `suites/README.md`, whose example suite runs as a doctest here.
#[doc = include_str!("../../suites/README.md")]
#[cfg(doctest)]
pub struct WriteASuite;

pub use plumbing::Failure;

const EXIT_CODES: &str = "Exit codes:
  0  every case passed (skips allowed)
  1  a case failed or errored
  2  usage or config error (bad flag, unknown profile or suite, bad gauntlet.toml)
  3  setup error: target unreachable (within 5 s), reference models not served
     (see --skip-missing-models), report directory not writable";

/// The registry of [`suites`]: the one list everything else derives from (`--suite`,
/// `gauntlet list`, the suites' subcommands, the catalogue check, crate versions in
/// report.json).
///
/// # Panics
///
/// Never: the names below are distinct (a test checks it).
pub fn registry() -> Registry {
    Registry::new(suites()).expect("suite names are distinct")
}

/// The built-in suites, in run order, for a registry of one's own (a binary with an extra
/// suite, a test): `let mut s = gauntlet::suites(); s.push(Box::new(Mine));`.
pub fn suites() -> Vec<Box<dyn Suite>> {
    vec![
        Box::new(gauntlet_suites::Conformance),
        Box::new(gauntlet_suites::Property),
        Box::new(gauntlet_backtest::BacktestSuite),
        Box::new(gauntlet_load::LoadSuite),
        Box::new(gauntlet_security::SecuritySuite),
        Box::new(gauntlet_compliance::Compliance),
        Box::new(gauntlet_resilience::ResilienceSuite),
    ]
}

#[derive(Debug, Parser)]
#[command(
    name = "gauntlet",
    version,
    about = "Release gate for ML model-serving systems",
    after_help = EXIT_CODES
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// `gauntlet`'s own subcommands; the suites add theirs ([`Suite::commands`]).
#[derive(Debug, Subcommand)]
enum Command {
    /// Run the suites against a target and write the reports.
    #[command(after_help = EXIT_CODES)]
    Run(Box<cmd::run::RunArgs>),
    /// List the cases and gates with their requirement ids.
    List(cmd::list::ListArgs),
    /// Code coverage of the reference engine under the suites (cargo-llvm-cov): lcov,
    /// cobertura and JSON under coverage/, and a coverage section in the reports.
    #[command(after_help = EXIT_CODES)]
    Coverage(Box<cmd::coverage::CoverageArgs>),
    /// Mutation score of the reference engine under the suites (cargo-mutants), sharded
    /// or diff-limited; missed mutants in the reports.
    #[command(after_help = EXIT_CODES)]
    Mutants(Box<cmd::mutants::MutantsArgs>),
    /// Work on audit logs: `verify DIR|URL` (exit 0 verified, 1 tampered, 2 usage, 3 unreachable).
    Audit {
        #[command(subcommand)]
        command: cmd::audit::AuditCommand,
    },
}

/// The full command line: `gauntlet`'s own subcommands, then every suite's in registry
/// order; the `--suite` help names the registered suites.
fn command_line(registry: &Registry) -> clap::Command {
    use clap::CommandFactory;
    let suites = registry
        .suites()
        .map(|s| format!("{} ({})", s.name(), s.about()))
        .collect::<Vec<_>>()
        .join("; ");
    let help = format!("Only these suites (repeatable or comma-separated): {suites}");
    let cli = Cli::command()
        .mut_subcommand("run", |c| c.mut_arg("suites", |a| a.help(help.clone())))
        .mut_subcommand("list", |c| c.mut_arg("suites", |a| a.help(help.clone())));
    registry.commands().fold(cli, |cli, c| {
        let sub = c.command();
        // Exit codes are the root's: a command that does not say its own gets these.
        let sub = if sub.get_after_help().is_none() {
            sub.after_help(EXIT_CODES)
        } else {
            sub
        };
        cli.subcommand(sub)
    })
}

/// A parsed command line: one of `gauntlet`'s own subcommands, or a suite's with its
/// arguments.
enum Parsed<'r> {
    Own(Command),
    Suite(&'r dyn gauntlet_harness::SuiteCommand, clap::ArgMatches),
}

/// Where an environment twin set to "" (as CI matrices do) counts as unset.
fn unset_empty_env(cmd: clap::Command) -> clap::Command {
    let empty: Vec<clap::Id> = cmd
        .get_arguments()
        .filter(|a| {
            a.get_env()
                .and_then(std::env::var_os)
                .is_some_and(|v| v.is_empty())
        })
        .map(|a| a.get_id().clone())
        .collect();
    let cmd = empty.into_iter().fold(cmd, |cmd, id| {
        cmd.mut_arg(id, |a| a.env(clap::builder::Resettable::Reset))
    });
    cmd.mut_subcommands(unset_empty_env)
}

/// Runs the `gauntlet` command line `args` (program name first) with the suites of
/// `registry`; `out` receives what goes to stdout (`list`, the backtest table), stderr
/// the rest. Returns the process exit code.
pub fn main_with<I, T>(registry: &Registry, args: I, out: &mut dyn Write) -> u8
where
    I: IntoIterator<Item = T>,
    T: Into<OsString>,
{
    use clap::FromArgMatches;
    let args: Vec<OsString> = args.into_iter().map(Into::into).collect();
    let parsed = unset_empty_env(command_line(registry))
        .try_get_matches_from(args)
        .and_then(|m| {
            let suite_command = m
                .subcommand()
                .and_then(|(name, sub)| registry.command(name).map(|c| (c, sub.clone())));
            match suite_command {
                Some((command, matches)) => Ok(Parsed::Suite(command, matches)),
                None => Cli::from_arg_matches(&m).map(|cli| Parsed::Own(cli.command)),
            }
        });
    let parsed = match parsed {
        Ok(parsed) => parsed,
        Err(e) => {
            let code = if e.use_stderr() {
                ExitCode::Usage.code()
            } else {
                0
            };
            // clap prints help and version to stdout, errors to stderr.
            let _ = e.print();
            return code;
        }
    };
    let result = match parsed {
        Parsed::Own(Command::List(args)) => cmd::list::list(registry, &args, out),
        Parsed::Own(Command::Run(args)) => cmd::run::run(registry, *args),
        Parsed::Own(Command::Coverage(args)) => cmd::coverage::coverage(registry, *args, out),
        Parsed::Own(Command::Mutants(args)) => cmd::mutants::mutants(registry, *args, out),
        Parsed::Own(Command::Audit { command }) => cmd::audit::audit(command, out),
        Parsed::Suite(command, matches) => cmd::suite::run(registry, command, &matches, out),
    };
    match result {
        Ok(code) => code.code(),
        Err(f) => {
            let _ = writeln!(std::io::stderr(), "gauntlet: error: {}", f.message);
            f.code.code()
        }
    }
}

#[cfg(test)]
mod tests {
    /// Regression: `rust-version = "1.85"` while the workspace uses let-chains
    /// (`if let … && …`), stable from Rust 1.88.
    #[test]
    fn rust_version_declares_the_let_chains_minimum() {
        let declared: Vec<u32> = env!("CARGO_PKG_RUST_VERSION")
            .split('.')
            .map(|p| p.parse().unwrap())
            .collect();
        assert!(declared[..2] >= [1, 88][..], "rust-version {declared:?}");
    }

    #[test]
    fn the_registry_builds_and_lists_the_suites_in_run_order() {
        assert_eq!(
            super::registry().names(),
            [
                "conformance",
                "property",
                "backtest",
                "load",
                "security",
                "compliance",
                "resilience"
            ]
        );
    }
}
