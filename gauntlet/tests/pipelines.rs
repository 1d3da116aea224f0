//! The CI pipeline examples under `ci/` (GitHub Actions, GitLab CI): they parse as YAML, have
//! the shape each CI reads (jobs and steps; stages, scripts and artifact reports), upload
//! JUnit and cobertura where each CI looks for them, and every `gauntlet` command they run is
//! accepted by this build's command line.
#![allow(clippy::unwrap_used, reason = "tests fail loudly")]

use std::path::Path;
use std::process::Command;

use gauntlet_testkit::{code, text};
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_gauntlet");

fn load(name: &str) -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../ci")
        .join(name);
    let text = std::fs::read_to_string(&path).unwrap();
    yaml_serde::from_str(&text).unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// The `gauntlet` argument lists in `script`, CI expressions replaced by sample values.
fn gauntlet_commands(script: &str) -> Vec<Vec<String>> {
    let script = script
        .replace("${{ matrix.shard }}", "3")
        .replace("$((CI_NODE_INDEX - 1))/$CI_NODE_TOTAL", "3/8");
    let mut out = Vec::new();
    for line in script.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        let start = if let Some(i) = words.iter().position(|w| w.ends_with("/gauntlet")) {
            i + 1
        } else if line.contains("-p gauntlet --") {
            words.iter().position(|w| *w == "--").unwrap() + 1
        } else {
            continue;
        };
        let mut args: Vec<String> = words[start..]
            .iter()
            .take_while(|w| !matches!(**w, ">" | "&" | "|" | "&&" | ">>" | "2>&1"))
            .map(|w| (*w).to_owned())
            .collect();
        if !args.is_empty() {
            args.retain(|a| !a.is_empty());
            out.push(args);
        }
    }
    out
}

/// This build's command line accepts `args`: clap checks every flag and value up to the
/// trailing `--help`, which then stops it before anything runs.
fn assert_accepted(args: &[String]) {
    let out = Command::new(BIN).args(args).arg("--help").output().unwrap();
    assert_eq!(
        code(&out),
        0,
        "`gauntlet {}` is not accepted: {}",
        args.join(" "),
        text(&out.stderr)
    );
}

fn strings<'a>(v: &'a Value, out: &mut Vec<&'a str>) {
    match v {
        Value::String(s) => out.push(s),
        Value::Array(a) => a.iter().for_each(|x| strings(x, out)),
        Value::Object(o) => o.values().for_each(|x| strings(x, out)),
        _ => {}
    }
}

#[test]
fn the_github_actions_example_parses_and_its_commands_exist() {
    let wf = load("github-actions.yml");
    let jobs = wf["jobs"].as_object().expect("jobs");
    assert!(
        ["gate", "coverage", "mutants", "mutants-score"]
            .iter()
            .all(|j| jobs.contains_key(*j))
    );
    let mut commands = Vec::new();
    for (name, job) in jobs {
        let steps = job["steps"]
            .as_array()
            .unwrap_or_else(|| panic!("{name}: steps"));
        for step in steps {
            assert!(
                step.get("run").is_some() || step.get("uses").is_some(),
                "{name}: a step runs or uses something: {step}"
            );
            if let Some(run) = step["run"].as_str() {
                commands.extend(gauntlet_commands(run));
            }
        }
    }
    let subcommands: Vec<&str> = commands.iter().map(|c| c[0].as_str()).collect();
    for expected in ["run", "coverage", "mutants"] {
        assert!(subcommands.contains(&expected), "{subcommands:?}");
    }
    assert!(
        commands.iter().any(|c| c.contains(&"--merge".to_owned())
            && c.contains(&"shards/mutants-shard-*".to_owned())),
        "the score job merges every shard's artifact: {commands:?}"
    );
    assert_eq!(wf["jobs"]["mutants-score"]["needs"], "mutants");
    commands.iter().for_each(|c| assert_accepted(c));
    assert_eq!(
        wf["jobs"]["mutants"]["strategy"]["matrix"]["shard"]
            .as_array()
            .unwrap()
            .len(),
        8,
        "eight shards for --shard K/8"
    );
    let mut all = Vec::new();
    strings(&wf, &mut all);
    assert!(all.contains(&"gauntlet-report/junit.xml"), "JUnit uploaded");
    assert!(
        all.contains(&"coverage-report/coverage/cobertura.xml"),
        "cobertura read"
    );
}

#[test]
fn the_gitlab_example_parses_and_its_commands_exist() {
    let ci = load("gitlab-ci.yml");
    let mut commands = Vec::new();
    for job in ["gauntlet", "coverage", "mutants", "mutants-score"] {
        let script = ci[job]["script"]
            .as_array()
            .unwrap_or_else(|| panic!("{job}: script"));
        for line in script {
            commands.extend(gauntlet_commands(line.as_str().unwrap()));
        }
        assert!(
            ci[job]["artifacts"]["reports"]["junit"].is_string(),
            "{job}: GitLab reads JUnit from artifacts:reports:junit"
        );
        let stage = ci[job]["stage"].as_str().unwrap();
        assert!(
            ci["stages"].as_array().unwrap().iter().any(|s| s == stage),
            "{job}: stage {stage} is declared"
        );
    }
    let report = &ci["coverage"]["artifacts"]["reports"]["coverage_report"];
    assert_eq!(report["coverage_format"], "cobertura");
    assert_eq!(report["path"], "coverage-report/coverage/cobertura.xml");
    // GitLab's coverage pattern must match the line gauntlet coverage prints.
    let pattern = ci["coverage"]["coverage"].as_str().unwrap();
    assert!(
        pattern.contains("gauntlet-engine line coverage"),
        "{pattern}"
    );
    assert_eq!(ci["mutants"]["parallel"], 8);
    let subcommands: Vec<&str> = commands.iter().map(|c| c[0].as_str()).collect();
    assert_eq!(subcommands, ["run", "coverage", "mutants", "mutants"]);
    let merge = &commands[3];
    assert!(
        merge.contains(&"--merge".to_owned())
            && merge.contains(&"mutants-report/shard-*".to_owned()),
        "the score job merges every shard's directory: {merge:?}"
    );
    assert_eq!(ci["mutants-score"]["needs"][0], "mutants");
    commands.iter().for_each(|c| assert_accepted(c));
}

#[test]
fn a_command_the_cli_lacks_is_refused() {
    // The check above can fail: a flag this build does not have is not accepted.
    let out = Command::new(BIN)
        .args(["coverage", "--no-such-flag", "--help"])
        .output()
        .unwrap();
    assert_eq!(code(&out), 2, "{}", text(&out.stderr));
    assert_eq!(
        gauntlet_commands(
            "cargo run --release -p gauntlet -- mutants --shard ${{ matrix.shard }}/8 --report-dir r"
        ),
        [["mutants", "--shard", "3/8", "--report-dir", "r"]]
    );
}
