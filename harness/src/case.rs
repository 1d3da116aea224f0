//! Cases: what a case suite registers, how a case body reports its verdict, and the
//! options of a run the case context derives from ([`RunOptions`]).

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures::future::BoxFuture;

use gauntlet_engine::artifact::ModelArtifact;

use crate::target::{Capability, Target, TargetError};

/// The verdict of a case body that did not pass.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CaseError {
    /// The target did not do what the requirement says; the message says what differed.
    Fail(String),
    /// The case cannot run against this target; the reason says why.
    Skip(String),
    /// No verdict could be reached (transport failure, harness problem).
    Error(String),
}

impl fmt::Display for CaseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CaseError::Fail(m) => write!(f, "failed: {m}"),
            CaseError::Skip(m) => write!(f, "skipped: {m}"),
            CaseError::Error(m) => write!(f, "error: {m}"),
        }
    }
}

impl std::error::Error for CaseError {}

impl From<TargetError> for CaseError {
    fn from(e: TargetError) -> Self {
        CaseError::Error(e.to_string())
    }
}

/// What a case body returns.
pub type CaseOutcome = Result<(), CaseError>;

/// A case body: an async function of its context.
pub type CaseBody = fn(CaseCtx) -> BoxFuture<'static, CaseOutcome>;

/// Everything a case body receives.
#[derive(Clone)]
pub struct CaseCtx {
    /// The system under test.
    pub target: Arc<dyn Target>,
    /// This case's seed: the run seed mixed with the case id, so each case has its own stream.
    pub seed: u64,
    /// The run seed the case seed derives from; `gauntlet run --seed RUN_SEED` replays it.
    pub run_seed: u64,
    /// Number of generated inputs each property case tries.
    pub property_cases: u32,
    /// The request-body limit the target is expected to enforce (413 above it).
    pub max_body_bytes: usize,
    /// The run's target-selecting arguments, for replay hints (see [`RunOptions::replay_args`]).
    pub replay_args: Arc<str>,
    /// The reference model artifacts the target serves (see [`crate::references`]).
    pub reference_models: Arc<Vec<ModelArtifact>>,
    /// Every reference artifact of the run, served or not: templates for cases
    /// that upload models of their own.
    pub templates: Arc<Vec<ModelArtifact>>,
    /// Set when the case has passed its deadline: work the runner cannot abort
    /// (blocking threads, spawned tasks) checks it and stops.
    pub cancelled: Arc<AtomicBool>,
    /// The models protocol cases run on (`gauntlet run --model`); empty: the reference
    /// models when served, otherwise every ready model the target lists.
    pub models: Arc<Vec<String>>,
    /// Whether cases of the reference engine's own policies run (see [`Policy`]).
    pub policy: Policy,
}

/// Whether the cases that check the reference engine's own policies (body limit, exact status
/// codes, feature names, sanitiser report, metric names), which the Open Inference Protocol
/// does not require, run against a target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Policy {
    /// When the target lists [`POLICY_EXTENSION`] among the `extensions` of `GET /v2`.
    #[default]
    Auto,
    /// Always: the target claims the reference engine's behaviour (`--policy reference`).
    Reference,
    /// Never: the protocol only (`--policy spec`).
    Spec,
}

/// The server-metadata extension by which a target claims the reference engine's policies.
pub const POLICY_EXTENSION: &str = gauntlet_engine::http::GAUNTLET_EXTENSION;

impl std::str::FromStr for Policy {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "auto" => Ok(Policy::Auto),
            "reference" => Ok(Policy::Reference),
            "spec" => Ok(Policy::Spec),
            other => Err(format!(
                "unknown policy {other:?}: expected auto, reference or spec"
            )),
        }
    }
}

impl fmt::Display for Policy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Policy::Auto => "auto",
            Policy::Reference => "reference",
            Policy::Spec => "spec",
        })
    }
}

/// The reference artifacts of a run: all of them, and those the target serves.
#[derive(Debug, Clone, Default)]
pub struct References {
    /// Every reference artifact of the run.
    pub all: Arc<Vec<ModelArtifact>>,
    /// The ones the target serves with the same version and features.
    pub served: Arc<Vec<ModelArtifact>>,
}

impl References {
    /// A run whose target serves every artifact (the in-process reference engine).
    pub fn all_served(models: Vec<ModelArtifact>) -> Self {
        let all = Arc::new(models);
        References {
            served: Arc::clone(&all),
            all,
        }
    }
}

impl CaseCtx {
    /// The context of `case` in a run with `options`.
    pub fn for_case(
        case: &Case,
        target: Arc<dyn Target>,
        options: &RunOptions,
        references: &References,
    ) -> Self {
        CaseCtx {
            target,
            seed: case.seed(options.seed),
            run_seed: options.seed,
            property_cases: options.property_cases,
            max_body_bytes: options.max_body_bytes,
            replay_args: Arc::from(options.replay_args.as_str()),
            reference_models: Arc::clone(&references.served),
            templates: Arc::clone(&references.all),
            cancelled: Arc::new(AtomicBool::new(false)),
            models: Arc::new(options.models.clone()),
            policy: options.policy,
        }
    }

    /// The command that replays `case_id` with the same generated inputs against the same target.
    pub fn replay_command(&self, case_id: &str) -> String {
        replay_command(
            &self.replay_args,
            self.run_seed,
            self.property_cases,
            case_id,
        )
    }

    /// Whether the case has passed its deadline and should stop.
    pub fn is_cancelled(&self) -> bool {
        self.cancelled.load(Ordering::Relaxed)
    }

    /// The reference artifact named `name` as a template for a model the case
    /// uploads itself, whether or not the target serves it.
    pub fn template(&self, name: &str) -> Result<&ModelArtifact, CaseError> {
        self.templates
            .iter()
            .find(|m| m.name == name)
            .ok_or_else(|| CaseError::Skip(format!("no reference artifact {name:?} in this run")))
    }

    /// The reference artifact named `name`, or a skip saying the run has none.
    pub fn reference(&self, name: &str) -> Result<&ModelArtifact, CaseError> {
        self.reference_models
            .iter()
            .find(|m| m.name == name)
            .ok_or_else(|| {
                CaseError::Skip(format!(
                    "the target does not serve reference model {name:?} \
                     (serve fixtures/models to run this case)"
                ))
            })
    }
}

/// How the selected cases run.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Cases running at once (≥ 1).
    pub concurrency: usize,
    /// Deadline for one case; past it the case is an error.
    pub case_timeout: Duration,
    /// The run seed; each case derives its own from it.
    pub seed: u64,
    /// Generated inputs per property case.
    pub property_cases: u32,
    /// The request-body limit the target is expected to enforce: bodies above it get 413.
    pub max_body_bytes: usize,
    /// The `gauntlet run` arguments that select this run's target and its treatment
    /// (`--target URL`, `--skip-missing-models`, `--max-body-bytes N`), for replay hints.
    pub replay_args: String,
    /// The models protocol cases run on (`--model`); empty: see [`CaseCtx::models`].
    pub models: Vec<String>,
    /// Whether the reference engine's policy cases run.
    pub policy: Policy,
}

impl Default for RunOptions {
    /// The compiled-in defaults of [`crate::config::Settings`].
    fn default() -> Self {
        let s = crate::config::Settings::default();
        RunOptions {
            concurrency: s.concurrency,
            case_timeout: s.case_timeout,
            seed: s.seed,
            property_cases: s.property_cases,
            max_body_bytes: s.max_body_bytes,
            replay_args: String::new(),
            models: Vec::new(),
            policy: Policy::Auto,
        }
    }
}

/// `gauntlet run [ARGS] --seed S --property-cases N --filter CASE`.
pub fn replay_command(args: &str, seed: u64, property_cases: u32, case_id: &str) -> String {
    let args = if args.is_empty() {
        String::new()
    } else {
        format!(" {args}")
    };
    format!(
        "gauntlet run{args} --seed {seed:#x} --property-cases {property_cases} --filter {case_id}"
    )
}

/// A registered case.
#[derive(Clone, Copy)]
pub struct Case {
    /// Suite name (`conformance`, `property`, ...).
    pub suite: &'static str,
    /// Case name, unique within its suite.
    pub name: &'static str,
    /// Requirement ids the case checks; at least one, each in the catalogue.
    pub requirements: &'static [&'static str],
    /// Capabilities the target must offer; otherwise the case is skipped.
    pub needs: &'static [Capability],
    /// Source file of the definition.
    pub file: &'static str,
    /// Source line of the definition.
    pub line: u32,
    /// The body.
    pub body: CaseBody,
}

impl Case {
    /// `suite::name`.
    pub fn id(&self) -> String {
        format!("{}::{}", self.suite, self.name)
    }

    /// The first capability the target lacks, if any: [`Capability::Http`] first for a case
    /// that does not need [`Capability::Grpc`] (so speaks HTTP) against a gRPC-only target.
    pub fn missing_capability(&self, target: &dyn Target) -> Option<Capability> {
        if !target.speaks_http() && !self.needs.contains(&Capability::Grpc) {
            return Some(Capability::Http);
        }
        self.needs
            .iter()
            .copied()
            .find(|c| !target.capabilities().contains(c))
    }

    /// Derives this case's seed from the run seed (FNV-1a of the id, mixed in),
    /// so that adding a case does not change the inputs of the others.
    pub fn seed(&self, run_seed: u64) -> u64 {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in self.id().bytes() {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        splitmix64(run_seed ^ h)
    }
}

impl fmt::Debug for Case {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Case")
            .field("id", &self.id())
            .field("requirements", &self.requirements)
            .field("needs", &self.needs)
            .finish_non_exhaustive()
    }
}

fn splitmix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Declares a [`Case`] from an `async fn(CaseCtx) -> CaseOutcome`.
///
/// ```
/// use gauntlet_harness::{Capability, CaseCtx, CaseOutcome, case};
///
/// async fn health_live(_ctx: CaseCtx) -> CaseOutcome {
///     Ok(())
/// }
/// async fn load_promote(_ctx: CaseCtx) -> CaseOutcome {
///     Ok(())
/// }
/// let a = case!("conformance", health_live, ["ENG-OIP"], []);
/// let b = case!("conformance", load_promote, ["ENG-SWAP", "ENG-BG"], [Capability::Repository]);
/// assert_eq!(a.id(), "conformance::health_live");
/// assert_eq!(b.requirements, ["ENG-SWAP", "ENG-BG"]);
/// ```
#[macro_export]
macro_rules! case {
    ($suite:literal, $name:ident, [$($req:literal),+ $(,)?], [$($cap:expr),* $(,)?]) => {
        $crate::Case {
            suite: $suite,
            name: stringify!($name),
            requirements: &[$($req),+],
            needs: &[$($cap),*],
            file: file!(),
            line: line!(),
            body: |ctx| ::std::boxed::Box::pin($name(ctx)),
        }
    };
}

/// Fails the case with a formatted message unless the condition holds.
#[macro_export]
macro_rules! ensure {
    ($cond:expr, $($msg:tt)+) => {
        if !$cond {
            return Err($crate::CaseError::Fail(format!($($msg)+)));
        }
    };
}

/// Fails the case unless `actual == expected`, saying what differed.
#[macro_export]
macro_rules! ensure_eq {
    ($actual:expr, $expected:expr, $($what:tt)+) => {{
        let actual = &$actual;
        let expected = &$expected;
        if actual != expected {
            return Err($crate::CaseError::Fail(format!(
                "{}: expected {:?}, got {:?}",
                format!($($what)+),
                expected,
                actual
            )));
        }
    }};
}
