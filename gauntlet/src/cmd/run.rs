//! `gauntlet run`: every selected case and gate of the registered suites against one
//! target, then the reports.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::SystemTime;

use clap::Args;

use gauntlet_harness::config::{Profile, Settings};
use gauntlet_harness::references::served_references;
use gauntlet_harness::registry::Planned;
use gauntlet_harness::runner::{self, RunEvent, RunOptions, Selection};
use gauntlet_harness::skips::SkipLimit;
use gauntlet_harness::{Catalogue, HttpOptions, References, Registry, SuiteCtx};
use gauntlet_reports::ExitCode;

use crate::plumbing::{self, Failure, Meta, resolve_settings};

/// Which cases and gates a run or a listing takes.
#[derive(Debug, Args)]
pub struct SelectArgs {
    /// Only these suites (repeatable or comma-separated); the help lists the registered ones.
    #[arg(
        long = "suite",
        value_name = "SUITE",
        env = "GAUNTLET_SUITE",
        value_delimiter = ','
    )]
    suites: Vec<String>,
    /// Only cases whose id (`suite::name`) contains this text.
    #[arg(long, env = "GAUNTLET_FILTER")]
    filter: Option<String>,
    /// Only cases that check one of these requirement ids (repeatable).
    #[arg(
        long = "requirement",
        value_name = "ID",
        env = "GAUNTLET_REQUIREMENT",
        value_delimiter = ','
    )]
    requirements: Vec<String>,
}

/// Flags of `gauntlet run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    #[command(flatten)]
    select: SelectArgs,
    /// Base URL of an Open Inference Protocol server, `grpc://host:port` for its gRPC service
    /// (cases over HTTP are then skipped), or `container:IMAGE[:TAG]` to start that image with
    /// Docker for the run (`container:gauntlet-engine:dev`, built by ci/image/build; its logs
    /// go to container.log in the report directory; `…?network=host` skips Docker's port
    /// proxy); default: the in-process reference engine.
    #[arg(long, env = "GAUNTLET_TARGET", value_name = "URL")]
    target: Option<String>,
    /// Config profile from gauntlet.toml.
    #[arg(long, env = "GAUNTLET_PROFILE", default_value = "default")]
    profile: String,
    /// Config file; default: ./gauntlet.toml when it exists.
    #[arg(long, env = "GAUNTLET_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,
    /// Where to write junit.xml, report.json, summary.md and report.html.
    #[arg(long, env = "GAUNTLET_REPORT_DIR", value_name = "DIR")]
    report_dir: Option<PathBuf>,
    /// Run seed (decimal or 0x-hex); every generated input derives from it.
    #[arg(long, env = "GAUNTLET_SEED", value_parser = gauntlet_reports::parse_seed_arg)]
    seed: Option<u64>,
    /// Cases running at once.
    #[arg(long, env = "GAUNTLET_CONCURRENCY")]
    concurrency: Option<usize>,
    /// Generated inputs per property case.
    #[arg(long, env = "GAUNTLET_PROPERTY_CASES")]
    property_cases: Option<u32>,
    /// Deadline of one case, e.g. `60s`.
    #[arg(long, env = "GAUNTLET_CASE_TIMEOUT", value_parser = humantime::parse_duration)]
    case_timeout: Option<std::time::Duration>,
    /// Deadline to reach an HTTP target, e.g. `3s` (at most 5s).
    #[arg(long, env = "GAUNTLET_CONNECT_TIMEOUT", value_parser = humantime::parse_duration)]
    connect_timeout: Option<std::time::Duration>,
    /// Deadline of one HTTP request, e.g. `10s`.
    #[arg(long, env = "GAUNTLET_REQUEST_TIMEOUT", value_parser = humantime::parse_duration)]
    request_timeout: Option<std::time::Duration>,
    /// The request-body limit the target is expected to enforce (bodies above it
    /// must get 413); default 1 MiB, the reference engine's.
    #[arg(long, env = "GAUNTLET_MAX_BODY_BYTES", value_name = "BYTES")]
    max_body_bytes: Option<usize>,
    /// Skipped cases the run may have and still pass: a count (`0`) or a share of the run's
    /// cases (`10%`); past it the gate `gauntlet::max_skipped` fails. Default: any number.
    #[arg(long, env = "GAUNTLET_MAX_SKIPPED", value_name = "N|P%")]
    max_skipped: Option<SkipLimit>,
    /// Run even when the target does not serve the reference models: the cases that
    /// need them are skipped. Without it such a target is a setup error (exit 3).
    #[arg(
        long,
        env = "GAUNTLET_SKIP_MISSING_MODELS",
        action = clap::ArgAction::SetTrue,
        value_parser = clap::builder::BoolishValueParser::new()
    )]
    skip_missing_models: bool,
    /// A model the protocol cases run on, read from its metadata (repeatable); default: the
    /// reference models when served, otherwise every ready model of the repository index.
    /// Implies --skip-missing-models for the cases that compare with the reference models.
    /// One --model is also the model the load suite loads (its `payload` setting gives the
    /// request body).
    #[arg(
        long = "model",
        value_name = "NAME",
        env = "GAUNTLET_MODEL",
        value_delimiter = ','
    )]
    models: Vec<String>,
    /// Whether the reference engine's own policies (body limit and 413, exact 400/404, feature
    /// names, the `prediction` output, the sanitiser report, gauntlet_* metrics) are checked:
    /// `auto` when GET /v2 lists the "gauntlet" extension, `reference` always, `spec` never.
    #[arg(
        long,
        env = "GAUNTLET_POLICY",
        default_value = "auto",
        value_name = "auto|reference|spec"
    )]
    policy: gauntlet_harness::Policy,
    /// Where the target serves Prometheus metrics when not at `{target}/metrics` (another port
    /// or path, e.g. MLServer's `http://127.0.0.1:8082/metrics`); same scheme as --target.
    #[arg(long, env = "GAUNTLET_METRICS_URL", value_name = "URL")]
    metrics_url: Option<String>,
    #[command(flatten)]
    secure: SecureArgs,
}

/// How to reach a secured URL target. No value given here is ever printed or reported.
#[derive(Debug, Args)]
struct SecureArgs {
    /// A header for every request to the target, `'Name: value'` (repeatable; the variable
    /// takes one per line), e.g. `--header 'Authorization: Bearer …'`.
    #[arg(
        long = "header",
        value_name = "'NAME: VALUE'",
        env = "GAUNTLET_HEADER",
        hide_env_values = true,
        value_delimiter = '\n'
    )]
    headers: Vec<String>,
    #[command(flatten)]
    connect: super::connect::ConnectArgs,
    /// The target's artifact keyring file (mode 0600, as `gauntlet-engine keys` writes it):
    /// the security suite seals tampered and wrong-key envelopes for it.
    #[arg(long, env = "GAUNTLET_ARTIFACT_KEYRING", value_name = "FILE")]
    artifact_keyring: Option<PathBuf>,
    /// A copy of the target's keyring from before its primary key was retired (mode 0600):
    /// the security suite checks that envelopes under that key are refused.
    #[arg(long, env = "GAUNTLET_RETIRED_KEYRING", value_name = "FILE")]
    retired_keyring: Option<PathBuf>,
}

impl SecureArgs {
    /// The client settings these flags ask for, checked; `None` when none is given.
    fn client(&self) -> Result<Option<gauntlet_harness::ClientSecurity>, Failure> {
        let headers = self
            .headers
            .iter()
            .filter(|h| !h.trim().is_empty())
            .map(|h| gauntlet_harness::ExtraHeader::parse(h))
            .collect::<Result<Vec<_>, _>>()
            .map_err(Failure::usage_err)?;
        let admin = self.connect.admin()?;
        let (keyring, retired) = gauntlet_harness::target::security::load_keyrings(
            self.artifact_keyring.as_deref(),
            self.retired_keyring.as_deref(),
        )
        .map_err(|e| Failure::usage(gauntlet_harness::error_chain(&e)))?;
        if headers.is_empty()
            && admin.is_empty()
            && self.connect.ca_file.is_none()
            && keyring.is_none()
            && retired.is_none()
        {
            return Ok(None);
        }
        Ok(Some(gauntlet_harness::ClientSecurity {
            ca_file: self.connect.ca_file.clone(),
            headers,
            admin,
            keyring,
            retired,
        }))
    }
}

impl SelectArgs {
    /// The cases and gates of `registry` this selection takes under `settings` (the
    /// profile's `suites` when no `--suite` is given), every suite's settings validated
    /// and every requirement id checked against the catalogue.
    pub fn plan<'r>(
        &self,
        registry: &'r Registry,
        settings: &Settings,
    ) -> Result<Planned<'r>, Failure> {
        // A "" among comma-separated values (`--suite conformance,`) selects nothing: drop it.
        let given: Vec<String> = self
            .suites
            .iter()
            .filter(|s| !s.is_empty())
            .cloned()
            .collect();
        let given = if given.is_empty() {
            settings.suites.clone()
        } else {
            given
        };
        let (suites, aliases) = registry.canonical_suites(&given)?;
        let mut filter = self.filter.clone().filter(|f| !f.is_empty());
        let mut renamed: Vec<(&str, &str)> = aliases;
        // An old case id in --filter (`unit::health_live`) names the renamed suite's case.
        for suite in registry.suites() {
            for alias in suite.aliases() {
                let prefix = format!("{alias}::");
                let renamed_filter = filter
                    .as_deref()
                    .and_then(|f| f.strip_prefix(&prefix))
                    .map(|rest| format!("{}::{rest}", suite.name()));
                if renamed_filter.is_some() {
                    filter = renamed_filter;
                    renamed.push((alias, suite.name()));
                }
            }
        }
        renamed.dedup();
        for (alias, name) in renamed {
            let _ = writeln!(
                std::io::stderr(),
                "gauntlet: warning: suite `{alias}` is now `{name}`; `{alias}` is accepted \
                 until the next release"
            );
        }
        let selection = Selection {
            suites,
            filter,
            requirements: self
                .requirements
                .iter()
                .filter(|r| !r.is_empty())
                .cloned()
                .collect(),
        };
        let catalogue = Catalogue::builtin().map_err(Failure::usage_err)?;
        Ok(registry.plan(settings, &catalogue, &selection)?)
    }
}

/// A validated run: everything checked before any work starts.
struct Plan<'r> {
    settings: Settings,
    planned: Planned<'r>,
    target_url: Option<String>,
    skip_missing_models: bool,
    secure: Option<gauntlet_harness::ClientSecurity>,
    models: Vec<String>,
    policy: gauntlet_harness::Policy,
    metrics_url: Option<String>,
}

fn plan(registry: &Registry, args: RunArgs) -> Result<Plan<'_>, Failure> {
    let flags = Profile {
        seed: args.seed,
        concurrency: args.concurrency,
        case_timeout: args.case_timeout,
        property_cases: args.property_cases,
        report_dir: args.report_dir.clone(),
        connect_timeout: args.connect_timeout,
        request_timeout: args.request_timeout,
        max_body_bytes: args.max_body_bytes,
        max_skipped: args.max_skipped,
        ..Profile::default()
    };
    let mut settings = resolve_settings(registry, args.config.as_deref(), &args.profile, &flags)?;
    let planned = args.select.plan(registry, &settings)?;
    let secure = args.secure.client()?;
    if secure.is_some() && args.target.is_none() {
        return Err(Failure::usage(
            "--header, --ca-file, --admin-credentials and the keyrings are for a --target URL \
             (the in-process engine makes its own keys)",
        ));
    }
    let models: Vec<String> = args
        .models
        .iter()
        .map(|m| m.trim().to_owned())
        .filter(|m| !m.is_empty())
        .collect();
    if let Some(bad) = models
        .iter()
        .find(|m| m.contains(['/', '?', '#']) || m.chars().any(char::is_control))
    {
        return Err(Failure::usage(format!(
            "--model {bad:?}: a model name may not contain '/', '?', '#' or control characters"
        )));
    }
    // One --model is the load suite's model too (over its `model` setting): the run loads
    // the model it checks, with the profile's `payload` for its inputs.
    if let [model] = models.as_slice() {
        settings
            .sections
            .entry("load".to_owned())
            .or_default()
            .insert("model".to_owned(), model.clone().into());
    }
    let metrics_url = args.metrics_url.filter(|m| !m.trim().is_empty());
    if metrics_url.is_some()
        && !args
            .target
            .as_deref()
            .is_some_and(|t| t.starts_with("http://") || t.starts_with("https://"))
    {
        return Err(Failure::usage(
            "--metrics-url is for an http:// or https:// --target (the in-process engine and \
             containers serve /metrics themselves)",
        ));
    }
    Ok(Plan {
        settings,
        planned,
        metrics_url,
        target_url: args.target,
        skip_missing_models: args.skip_missing_models,
        secure,
        models,
        policy: args.policy,
    })
}

/// Runs `gauntlet run`.
pub fn run(registry: &Registry, args: RunArgs) -> Result<ExitCode, Failure> {
    let plan = plan(registry, args)?;
    plumbing::runtime(None)?.block_on(execute(registry, plan))
}

async fn execute(registry: &Registry, plan: Plan<'_>) -> Result<ExitCode, Failure> {
    let Plan {
        settings,
        planned,
        target_url,
        skip_missing_models,
        secure,
        models,
        policy,
        metrics_url,
    } = plan;
    // A run on the user's own models does not need the reference models to start.
    let skip_missing_models = skip_missing_models || !models.is_empty();
    let started_at = SystemTime::now();
    // Fail before the run, not after it, when the reports cannot be written.
    plumbing::check_report_dir(&settings.report_dir)?;
    let reference = gauntlet_fixtures::load_embedded().map_err(Failure::setup_err)?;
    let options = HttpOptions {
        connect_timeout: settings.connect_timeout,
        request_timeout: settings.request_timeout,
        ..HttpOptions::default()
    };
    let target = match (target_url.as_deref(), secure) {
        (Some(url), secure) if metrics_url.is_some() => {
            let secure = secure.unwrap_or_default();
            let connected =
                match gauntlet_harness::HttpTarget::connect_with(url, options, secure).await {
                    Ok(t) => t,
                    Err(e @ gauntlet_harness::TargetError::InvalidUrl { .. }) => {
                        return Err(Failure::usage(format!("--target: {e}")));
                    }
                    Err(e) => return Err(Failure::setup_err(e)),
                };
            let connected = match metrics_url.as_deref() {
                None => connected,
                Some(m) => connected
                    .with_metrics_url(m)
                    .await
                    .map_err(|e| Failure::usage(e.to_string()))?,
            };
            Arc::new(connected) as Arc<dyn gauntlet_harness::Target>
        }
        (url, secure) => {
            plumbing::connect(url, options, secure, Some(&settings.report_dir)).await?
        }
    };
    let check = served_references(target.as_ref(), reference).await;
    let mut err = std::io::stderr();
    if !check.missing.is_empty() && !skip_missing_models {
        let names: Vec<String> = check
            .missing
            .iter()
            .map(|(name, why)| format!("{name} ({why})"))
            .collect();
        return Err(Failure::setup(format!(
            "the target does not serve the reference models {}: serve fixtures/models, or pass \
             --skip-missing-models to run only the cases that do not need them",
            names.join(", ")
        )));
    }
    for (name, why) in &check.missing {
        // Ignore write errors: a closed stderr (`| head`) must not stop the run or its reports.
        let _ = writeln!(
            err,
            "gauntlet: warning: the target does not serve reference model {name} ({why}); \
             cases that need it are skipped"
        );
    }
    let references = References {
        all: Arc::new(check.all),
        served: Arc::new(check.served),
    };
    let options = RunOptions {
        concurrency: settings.concurrency,
        case_timeout: settings.case_timeout,
        seed: settings.seed,
        property_cases: settings.property_cases,
        max_body_bytes: settings.max_body_bytes,
        replay_args: replay_args(
            target_url.as_deref(),
            skip_missing_models,
            &settings,
            &models,
            policy,
            metrics_url.as_deref(),
        ),
        models,
        policy,
    };
    let color = plumbing::color();
    let _ = writeln!(
        err,
        "gauntlet: running {} cases against {} (profile {}, seed {:#x})",
        planned.total(),
        target.describe(),
        settings.profile,
        settings.seed
    );
    let print = |result: &gauntlet_reports::CaseResult| {
        let _ = writeln!(
            std::io::stderr(),
            "{}",
            gauntlet_reports::terminal::case_line(result, color)
        );
    };
    // The case suites run together (concurrently); measured suites after them, one at a
    // time, so a load test never shares the machine with other cases.
    let mut cases = runner::run(
        &planned.cases(),
        Arc::clone(&target),
        &references,
        &options,
        |event| {
            if let RunEvent::CaseFinished(result) = event {
                print(result);
            }
        },
    )
    .await;
    let mut sections = Vec::new();
    for s in planned.suites.into_iter().filter(|s| !s.gates.is_empty()) {
        let ctx = SuiteCtx {
            target: Arc::clone(&target),
            settings: settings.clone(),
            planned: s.gates,
            progress: std::io::stderr().is_terminal(),
        };
        let name = s.suite.name();
        let label = format!("{name} suite");
        let output = gauntlet_harness::target::with_case(label, s.suite.run(ctx))
            .await
            .map_err(|e| match e {
                gauntlet_harness::SuiteError::Setup(m) => {
                    Failure::setup(format!("{name} suite: {m}"))
                }
                other => Failure::usage(format!("[profile.{}.{name}] {other}", settings.profile)),
            })?;
        output.cases.iter().for_each(print);
        cases.extend(output.cases);
        sections.extend(output.sections);
    }
    // A run that skipped past its budget did not test the target: that is a failing gate.
    if let Some(limit) = settings.max_skipped {
        let budget = gauntlet_harness::skips::budget(limit, &cases);
        print(&budget);
        cases.push(budget);
    }
    // Every catalogue id with the cases that checked it; with require-traced, a gate too.
    let catalogue = Catalogue::builtin().map_err(Failure::usage_err)?;
    if settings.require_traced {
        let traced = gauntlet_harness::trace::gate(&catalogue, &cases);
        print(&traced);
        cases.push(traced);
    }
    sections.push(gauntlet_harness::trace::section(&catalogue, &cases));
    // A request that failed on a connection the server had dropped went again on a fresh one:
    // the report says so, with the exchange before it on that connection (the likely cause).
    let retries = target.connection_retries();
    for retry in &retries.listed {
        let _ = writeln!(err, "gauntlet: note: {}", retry.describe());
    }
    sections.extend(gauntlet_harness::target::retries::section(&retries));
    let meta = Meta {
        tool: "gauntlet",
        seed: settings.seed,
        target: target.describe(),
        profile: &settings.profile,
        started_at,
    };
    let report = plumbing::report(registry, meta, cases, sections);
    let code = plumbing::publish(&report, &settings.report_dir, true)?;
    if code != ExitCode::Success {
        let _ = writeln!(
            std::io::stderr(),
            "gauntlet: replay the same inputs with `{}`",
            runner::replay_command(
                &options.replay_args,
                options.seed,
                options.property_cases,
                "SUITE::CASE"
            )
        );
    }
    Ok(code)
}

/// The arguments a replay needs besides the seed: which target, and how it is judged.
/// The target URL is shown without credentials (they are the user's to add back).
fn replay_args(
    target: Option<&str>,
    skip_missing_models: bool,
    settings: &Settings,
    models: &[String],
    policy: gauntlet_harness::Policy,
    metrics_url: Option<&str>,
) -> String {
    let mut args = Vec::new();
    if let Some(url) = target {
        args.push(format!("--target {}", gauntlet_harness::redact_url(url)));
    }
    for model in models {
        args.push(format!("--model {model}"));
    }
    if let Some(url) = metrics_url {
        args.push(format!(
            "--metrics-url {}",
            gauntlet_harness::redact_url(url)
        ));
    }
    if policy != gauntlet_harness::Policy::Auto {
        args.push(format!("--policy {policy}"));
    }
    if skip_missing_models {
        args.push("--skip-missing-models".to_owned());
    }
    if settings.max_body_bytes != Settings::default().max_body_bytes {
        args.push(format!("--max-body-bytes {}", settings.max_body_bytes));
    }
    args.join(" ")
}
