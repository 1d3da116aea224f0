//! A suite's own subcommand: [`SuiteCommand`].
//!
//! A suite may add subcommands to `gauntlet` (`gauntlet load`, `gauntlet backtest`,
//! `gauntlet report merge`) by returning them from [`crate::Suite::commands`]. A command
//! declares its clap definition and runs from its parsed arguments; what every subcommand
//! shares — config discovery, the target, the report directory — it asks of the
//! composition root through [`Host`], and it returns a typed [`CommandOutput`]: the root
//! prints it, publishes its report and chooses the exit code. A command never prints or
//! exits.
//!
//! ```
//! use async_trait::async_trait;
//! use gauntlet_harness::command::{CommandOutput, Host, SuiteCommand};
//! use gauntlet_harness::{SuiteError, Target};
//!
//! /// `gauntlet ping`: says whether the target answers.
//! struct Ping;
//!
//! #[async_trait]
//! impl SuiteCommand for Ping {
//!     fn command(&self) -> clap::Command {
//!         clap::Command::new("ping")
//!             .about("Say whether the target answers")
//!             .arg(clap::Arg::new("target").long("target"))
//!     }
//!     async fn run(&self, args: &clap::ArgMatches, host: &dyn Host) -> Result<CommandOutput, SuiteError> {
//!         let url = args.get_one::<String>("target").map(String::as_str);
//!         let target = host.connect(url, &[]).await?;
//!         Ok(CommandOutput::stdout(format!("{} answers\n", target.describe())))
//!     }
//! }
//! assert_eq!(Ping.command().get_name(), "ping");
//! ```

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use async_trait::async_trait;

use gauntlet_reports::{CaseResult, Section};

use crate::config::{Profile, Settings};
use crate::suite::SuiteError;
use crate::target::{ExtraHeader, Target};

/// Names `gauntlet` itself takes; a suite's command may not use them.
pub const BUILT_IN_COMMANDS: &[&str] = &["run", "list", "help"];

/// A subcommand a suite adds to `gauntlet`: see the [module docs](self).
#[async_trait]
pub trait SuiteCommand: Send + Sync {
    /// Its clap definition: name, help and arguments (for derived arguments,
    /// `MyArgs::augment_args(clap::Command::new("name"))`).
    fn command(&self) -> clap::Command;

    /// Tokio worker threads the command wants; `None` takes one per core.
    fn worker_threads(&self) -> Option<usize> {
        None
    }

    /// Runs the command with its own parsed arguments.
    ///
    /// # Errors
    ///
    /// [`SuiteError::Config`] for a bad flag or input (exit 2, nothing written),
    /// [`SuiteError::Setup`] when it cannot run (exit 3).
    async fn run(
        &self,
        args: &clap::ArgMatches,
        host: &dyn Host,
    ) -> Result<CommandOutput, SuiteError>;
}

/// What the composition root lends a suite's command, so that each of these exists once.
#[async_trait]
pub trait Host: Send + Sync {
    /// Settings from the config file (`config`, else ./gauntlet.toml when it exists), its
    /// `profile`, then `flags` over them, with every suite table checked.
    ///
    /// # Errors
    ///
    /// [`SuiteError::Config`] naming the file, the profile or the key.
    fn settings(
        &self,
        config: Option<&Path>,
        profile: &str,
        flags: &Profile,
    ) -> Result<Settings, SuiteError>;

    /// Creates `dir` and proves a file can be written there, before any work.
    ///
    /// # Errors
    ///
    /// [`SuiteError::Setup`] naming the directory.
    fn check_report_dir(&self, dir: &Path) -> Result<(), SuiteError>;

    /// The target at `url`, or the in-process reference engine when `url` is `None`; a URL
    /// target (`http(s)://`, `grpc://`) adds `headers` to every request (as metadata over
    /// gRPC), never showing their values.
    ///
    /// # Errors
    ///
    /// [`SuiteError::Config`] for a malformed URL, or headers given for a target that is not
    /// a URL; [`SuiteError::Setup`] when unreachable.
    async fn connect(
        &self,
        url: Option<&str>,
        headers: &[ExtraHeader],
    ) -> Result<Arc<dyn Target>, SuiteError>;

    /// Whether a live progress line may be drawn (stderr is a terminal).
    fn progress(&self) -> bool;
}

/// What a command gives back for the composition root to print and publish.
#[derive(Debug, Default)]
pub struct CommandOutput {
    /// Printed to stdout (a table, a listing).
    pub stdout: String,
    /// Printed to stderr first (a one-line summary of a measurement).
    pub summary: Option<String>,
    /// The report the root publishes, with its exit code; `None` when nothing was judged.
    pub report: Option<CommandReport>,
    /// With no report: the run failed (exit 1), e.g. its measurement cannot be trusted.
    pub failed: bool,
}

impl CommandOutput {
    /// Output that is only text on stdout.
    pub fn stdout(text: impl Into<String>) -> Self {
        CommandOutput {
            stdout: text.into(),
            ..CommandOutput::default()
        }
    }
}

/// A judged run the root publishes: report files in `dir`, the exit code from its cases.
#[derive(Debug)]
pub struct CommandReport {
    /// Where the report files go (checked with [`Host::check_report_dir`] first).
    pub dir: PathBuf,
    /// The tool named in report.json (`gauntlet`, `gauntlet backtest`).
    pub tool: String,
    /// The run seed.
    pub seed: u64,
    /// The target, credentials redacted.
    pub target: String,
    /// The profile (or what stands for one, e.g. `merge`).
    pub profile: String,
    /// When the run started.
    pub started_at: SystemTime,
    /// One result per gate or case.
    pub cases: Vec<CaseResult>,
    /// Tables and charts.
    pub sections: Vec<Section>,
    /// Whether the root prints the case list to stderr; `false` when [`CommandOutput::stdout`]
    /// already shows every verdict.
    pub print_cases: bool,
}
