//! A suite defined here, outside the framework, registered through the one seam: it shows
//! up in `gauntlet list`, `--suite` selection, every report file, report.json's crate
//! versions and the requirement catalogue check — and nothing in `harness/` names it.
#![allow(clippy::unwrap_used, reason = "tests fail loudly")]

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use clap::ArgMatches;
use serde_json::Value;

use gauntlet_harness::command::{CommandOutput, CommandReport, Host, SuiteCommand};
use gauntlet_harness::config::Settings;
use gauntlet_harness::gate::{Bound, threshold};
use gauntlet_harness::suite::{
    PlannedCase, Suite, SuiteCtx, SuiteError, SuiteOutput, gate_results,
};
use gauntlet_harness::{Case, CaseCtx, CaseOutcome, Registry, TargetExt, case, ensure_eq};

/// `[profile.X.toy]`: the toy suite's own settings.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct ToyConfig {
    /// Ceiling of one `GET /v2/health/live`, ms.
    ceiling_ms: f64,
}

/// One case and one gate; `requirement` is the gate's id (bad on purpose in one test).
struct Toy {
    requirement: &'static str,
}

async fn answers_health(ctx: CaseCtx) -> CaseOutcome {
    let reply = ctx.target.get("/v2/health/live").await?;
    ensure_eq!(reply.status.as_u16(), 200, "GET /v2/health/live status");
    Ok(())
}

fn config(settings: &Settings) -> Result<ToyConfig, SuiteError> {
    toml::Value::Table(settings.section("toy"))
        .try_into()
        .map_err(|e: toml::de::Error| SuiteError::Config(e.message().to_owned()))
}

#[async_trait]
impl Suite for Toy {
    fn name(&self) -> &'static str {
        "toy"
    }
    fn about(&self) -> &'static str {
        "a toy: health answers, quickly"
    }
    fn crate_version(&self) -> (&'static str, &'static str) {
        ("toy-suite", "9.9.9")
    }
    fn cases(&self) -> Vec<Case> {
        vec![case!("toy", answers_health, ["ENG-OIP"], [])]
    }
    fn gates(&self, settings: &Settings) -> Result<Vec<PlannedCase>, SuiteError> {
        config(settings)?;
        Ok(vec![PlannedCase::new(
            "health_ceiling",
            &[self.requirement],
        )])
    }
    async fn run(&self, ctx: SuiteCtx) -> Result<SuiteOutput, SuiteError> {
        let ceiling = config(&ctx.settings)?.ceiling_ms;
        let started = Instant::now();
        let reply = ctx
            .target
            .get("/v2/health/live")
            .await
            .map_err(|e| SuiteError::Setup(e.to_string()))?;
        let took = started.elapsed();
        let measured = reply
            .status
            .is_success()
            .then_some(took.as_secs_f64() * 1e3);
        let gate = threshold(
            "health_ceiling",
            "GET /v2/health/live",
            measured,
            Some(ceiling),
            Bound::AtMost,
            " ms",
        );
        Ok(SuiteOutput::from_gates(
            self.name(),
            &ctx.planned,
            &[gate],
            took,
        ))
    }
}

fn registry(requirement: &'static str) -> Registry {
    let mut suites = gauntlet::suites();
    suites.push(Box::new(Toy { requirement }));
    Registry::new(suites).unwrap()
}

fn gauntlet(registry: &Registry, args: &[&str]) -> (u8, String) {
    let mut out = Vec::new();
    let code = gauntlet::main_with(
        registry,
        std::iter::once("gauntlet").chain(args.iter().copied()),
        &mut out,
    );
    (code, String::from_utf8(out).unwrap())
}

fn write_config(dir: &Path, toy: &str) -> String {
    let path = dir.join("gauntlet.toml");
    std::fs::write(&path, format!("[profile.default.toy]\n{toy}\n")).unwrap();
    path.display().to_string()
}

#[test]
fn a_toy_suite_appears_in_list_selection_reports_and_the_catalogue_check() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), "ceiling-ms = 2000.0");
    let toy = registry("SLA-LAT");

    // `gauntlet list`: every suite, the toy's case and gate among them.
    let (code, listed) = gauntlet(&toy, &["list", "--config", &config]);
    assert_eq!(code, 0, "{listed}");
    assert!(listed.contains("conformance::health_live"), "{listed}");
    let toy_lines: Vec<&str> = listed.lines().filter(|l| l.starts_with("toy::")).collect();
    assert_eq!(toy_lines.len(), 2, "{listed}");
    assert!(toy_lines[0].starts_with("toy::answers_health") && toy_lines[0].ends_with("ENG-OIP"));
    assert!(toy_lines[1].starts_with("toy::health_ceiling") && toy_lines[1].ends_with("SLA-LAT"));

    // `--suite toy` selects only the toy's; another suite selects none of them.
    let (code, listed) = gauntlet(&toy, &["list", "--config", &config, "--suite", "toy"]);
    assert_eq!(code, 0);
    assert!(listed.lines().all(|l| l.starts_with("toy::")), "{listed}");
    let (_, listed) = gauntlet(&toy, &["list", "--config", &config, "--suite", "property"]);
    assert!(!listed.contains("toy::"), "{listed}");

    // `gauntlet run --suite toy`: both verdicts in every report file.
    let reports = dir.path().join("reports");
    let (code, _) = gauntlet(
        &toy,
        &[
            "run",
            "--config",
            &config,
            "--suite",
            "toy",
            "--report-dir",
            reports.to_str().unwrap(),
        ],
    );
    assert_eq!(code, 0);
    let json: Value =
        serde_json::from_slice(&std::fs::read(reports.join("report.json")).unwrap()).unwrap();
    let ids: Vec<&str> = json["cases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["toy::answers_health", "toy::health_ceiling"]);
    let gate = &json["cases"][1];
    assert_eq!(gate["outcome"]["status"], "pass", "{gate}");
    let message = gate["message"].as_str().unwrap();
    assert!(message.contains("<= ceiling 2000 ms"), "{message}");
    let versions = &json["meta"]["crate_versions"];
    assert_eq!(versions["toy-suite"], "9.9.9", "{versions}");
    assert!(
        versions.get("gauntlet-load").is_none(),
        "no load gate ran: {versions}"
    );
    for file in ["junit.xml", "summary.md", "report.html"] {
        let text = std::fs::read_to_string(reports.join(file)).unwrap();
        assert!(text.contains("health_ceiling"), "{file}");
        assert!(text.contains("answers_health"), "{file}");
    }
}

#[test]
fn the_toy_suite_validates_its_own_table_and_its_requirement_ids() {
    let dir = tempfile::tempdir().unwrap();
    // An unknown key of its table: exit 2, named (the suite's own check).
    let config = write_config(dir.path(), "ceiling-ms = 5.0\nceilin-ms = 5.0");
    let (code, _) = gauntlet(&registry("SLA-LAT"), &["list", "--config", &config]);
    assert_eq!(code, 2);
    let mut settings = Settings::default();
    settings
        .sections
        .insert("toy".into(), toml::from_str("ceilin-ms = 5.0").unwrap());
    let err = Toy {
        requirement: "SLA-LAT",
    }
    .gates(&settings)
    .unwrap_err()
    .to_string();
    assert!(err.contains("ceilin-ms"), "{err}");

    // A gate naming a requirement the catalogue lacks: the catalogue check refuses the run.
    let config = write_config(dir.path(), "ceiling-ms = 5.0");
    let bad = registry("NOPE-9");
    let err = bad
        .plan(
            &settings_with(&config),
            &gauntlet_harness::Catalogue::builtin().unwrap(),
            &Default::default(),
        )
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("toy::health_ceiling") && err.contains("NOPE-9"),
        "{err}"
    );
    let (code, _) = gauntlet(&registry("NOPE-9"), &["list", "--config", &config]);
    assert_eq!(code, 2);

    // The built-in registry has no `toy`: its table is refused, naming it.
    let (code, _) = gauntlet(&gauntlet::registry(), &["list", "--config", &config]);
    assert_eq!(code, 2);
    let (code, _) = gauntlet(&gauntlet::registry(), &["list", "--suite", "toy"]);
    assert_eq!(code, 2);
}

fn settings_with(config: &str) -> Settings {
    let path = Path::new(config);
    let file = gauntlet_harness::config::ConfigFile::read(path).unwrap();
    Settings::resolve(Some((&file, path)), "default", &Default::default()).unwrap()
}

/// A case suite's `run` is never called: the default measures nothing.
#[test]
fn suites_without_gates_plan_none_and_reject_any_key() {
    let mut settings = Settings::default();
    settings
        .sections
        .insert("property".into(), toml::from_str("cases = 5").unwrap());
    let err = gauntlet_suites::Property.gates(&settings).unwrap_err();
    assert!(err.to_string().contains("`cases`"), "{err}");
    assert!(
        gauntlet_suites::Property
            .gates(&Settings::default())
            .unwrap()
            .is_empty()
    );
}

/// `gauntlet toy-check [--fail]`: the toy suite's own subcommand. It judges one gate on the
/// target the root lends it and hands the report back; the root publishes it.
struct ToyCheck;

#[async_trait]
impl SuiteCommand for ToyCheck {
    fn command(&self) -> clap::Command {
        clap::Command::new("toy-check")
            .about("Check the target's health once")
            .arg(
                clap::Arg::new("report-dir")
                    .long("report-dir")
                    .required(true),
            )
            .arg(
                clap::Arg::new("fail")
                    .long("fail")
                    .action(clap::ArgAction::SetTrue),
            )
    }
    async fn run(&self, args: &ArgMatches, host: &dyn Host) -> Result<CommandOutput, SuiteError> {
        let dir = PathBuf::from(args.get_one::<String>("report-dir").unwrap());
        host.check_report_dir(&dir)?;
        let target = host.connect(None, &[]).await?;
        let status = target.get("/v2/health/live").await.unwrap().status.as_u16();
        let ceiling = if args.get_flag("fail") { 100.0 } else { 200.0 };
        let gate = threshold(
            "status",
            "health status",
            Some(f64::from(status)),
            Some(ceiling),
            Bound::AtMost,
            "",
        );
        let planned = [PlannedCase::new("status", &["ENG-OIP"])];
        Ok(CommandOutput {
            stdout: format!("status {status}\n"),
            summary: None,
            report: Some(CommandReport {
                dir,
                tool: "gauntlet toy-check".into(),
                seed: 7,
                target: target.describe(),
                profile: "none".into(),
                started_at: std::time::SystemTime::now(),
                cases: gate_results("toy", &planned, &[gate], Duration::ZERO),
                sections: Vec::new(),
                print_cases: true,
            }),
            failed: false,
        })
    }
}

/// The toy with a subcommand, named `command`.
struct ToyWithCommand;

#[async_trait]
impl Suite for ToyWithCommand {
    fn name(&self) -> &'static str {
        "toy"
    }
    fn about(&self) -> &'static str {
        "a toy with a subcommand"
    }
    fn crate_version(&self) -> (&'static str, &'static str) {
        ("toy-suite", "9.9.9")
    }
    fn commands(&self) -> Vec<Box<dyn SuiteCommand>> {
        vec![Box::new(ToyCheck)]
    }
}

#[test]
fn a_suite_subcommand_runs_through_the_root_which_publishes_its_report() {
    let mut suites = gauntlet::suites();
    suites.push(Box::new(ToyWithCommand));
    let registry = Registry::new(suites).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let reports = dir.path().join("r");
    let reports = reports.to_str().unwrap();
    let (code, out) = gauntlet(&registry, &["toy-check", "--report-dir", reports]);
    assert_eq!((code, out.as_str()), (0, "status 200\n"));
    let json: Value =
        serde_json::from_slice(&std::fs::read(Path::new(reports).join("report.json")).unwrap())
            .unwrap();
    assert_eq!(json["cases"][0]["id"], "toy::status");
    assert_eq!(json["meta"]["tool"], "gauntlet toy-check");
    assert!(json.to_string().contains("toy-suite"), "{json}");
    // The root turns the failed gate into exit 1, and a bad flag into exit 2.
    let (code, _) = gauntlet(&registry, &["toy-check", "--report-dir", reports, "--fail"]);
    assert_eq!(code, 1);
    let (code, _) = gauntlet(&registry, &["toy-check"]);
    assert_eq!(code, 2);
}

#[test]
fn a_subcommand_named_like_another_is_refused() {
    struct Clash(&'static str);
    #[async_trait]
    impl SuiteCommand for Clash {
        fn command(&self) -> clap::Command {
            clap::Command::new(self.0)
        }
        async fn run(&self, _: &ArgMatches, _: &dyn Host) -> Result<CommandOutput, SuiteError> {
            Ok(CommandOutput::default())
        }
    }
    struct Clashing(&'static str);
    #[async_trait]
    impl Suite for Clashing {
        fn name(&self) -> &'static str {
            "clashing"
        }
        fn about(&self) -> &'static str {
            "names a taken subcommand"
        }
        fn crate_version(&self) -> (&'static str, &'static str) {
            ("clashing", "0.0.0")
        }
        fn commands(&self) -> Vec<Box<dyn SuiteCommand>> {
            vec![Box::new(Clash(self.0))]
        }
    }
    for taken in ["run", "list", "load", "report"] {
        let mut suites = gauntlet::suites();
        suites.push(Box::new(Clashing(taken)));
        let err = Registry::new(suites).unwrap_err().to_string();
        assert!(err.contains(&format!("`{taken}`")), "{err}");
    }
}
