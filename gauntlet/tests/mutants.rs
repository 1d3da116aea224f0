//! `gauntlet mutants` for real, on a small diff: cargo-mutants mutates the engine's lines the
//! diff names, runs the suites in process after each, and the report counts the outcomes.
//! Minutes long (a dev build of the workspace, then a build per mutant), so ignored in the
//! ordinary test run and not yet a CI lane: `cargo install cargo-mutants --locked`, then
//! `cargo test -p gauntlet --release --test mutants -- --ignored`.
#![allow(clippy::unwrap_used, reason = "tests fail loudly")]

use std::path::Path;
use std::process::Command;

use gauntlet_testkit::{code, text};

const BIN: &str = env!("CARGO_BIN_EXE_gauntlet");

#[test]
#[ignore = "minutes: a build and a suites run per mutant"]
fn mutants_of_a_diff_are_tested_by_the_suites_and_scored() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    // A diff that adds two lines of the engine's input sanitiser: one mutant each (`delete !`
    // rejects every valid batch; `!= with ==` reports the unclipped values as clipped), which
    // the conformance suite's sanitiser cases catch.
    let file = "engine/src/sanitise.rs";
    let source = std::fs::read_to_string(root.join(file)).unwrap();
    let mut diff = format!("--- a/{file}\n+++ b/{file}\n");
    for wanted in ["if !values.len().is_multiple_of(n) {", "if clipped != x {"] {
        let (i, line) = source
            .lines()
            .enumerate()
            .find(|(_, l)| l.trim() == wanted)
            .unwrap_or_else(|| panic!("{file} no longer has `{wanted}`"));
        let n = i + 1;
        diff.push_str(&format!("@@ -{n},0 +{n},1 @@\n+{line}\n"));
    }
    let tmp = tempfile::tempdir().unwrap();
    let diff_path = tmp.path().join("change.diff");
    std::fs::write(&diff_path, diff).unwrap();
    let report_dir = tmp.path().join("report");
    let out = Command::new(BIN)
        .args([
            "mutants",
            "--in-place",
            "--min-mutation-score",
            "100",
            "--workspace",
        ])
        .arg(root)
        .arg("--in-diff")
        .arg(&diff_path)
        .arg("--report-dir")
        .arg(&report_dir)
        .env("GAUNTLET_MUTANTS_SUITES", "conformance")
        .output()
        .unwrap();
    let stderr = text(&out.stderr);
    assert_eq!(code(&out), 0, "{stderr}");
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(report_dir.join("report.json")).unwrap())
            .unwrap();
    let section = report["sections"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["id"] == "mutants")
        .expect("a mutants section");
    let v = &section["values"];
    // The two lines' mutants, and the whole function's (cargo-mutants adds it when a diff
    // touches its body): caught, or unviable where the replacement does not build.
    let caught = v["caught"].as_f64().unwrap();
    let unviable = v["unviable"].as_f64().unwrap();
    assert!(caught >= 2.0 && caught + unviable == 3.0, "{section}");
    assert_eq!(v["missed"].as_f64(), Some(0.0), "{section}");
    assert_eq!(v["score"].as_f64(), Some(100.0), "{section}");
    assert!(report_dir.join("mutants.out/caught.txt").is_file());
    assert!(stderr.contains("mutation score 100.0 %"), "{stderr}");
}

/// The mutants `gauntlet mutants --list` prints, with `extra` flags.
fn listed(root: &Path, extra: &[&str]) -> Vec<String> {
    let out = Command::new(BIN)
        .args(["mutants", "--list", "--workspace"])
        .arg(root)
        .args(extra)
        .output()
        .unwrap();
    assert_eq!(code(&out), 0, "{}", text(&out.stderr));
    text(&out.stdout).lines().map(str::to_owned).collect()
}

/// `--sharding round-robin` makes a shard every Nth mutant of the whole engine (an even
/// sample), where the default `slice` makes it one consecutive stretch. Seconds: cargo-mutants
/// only lists; skipped with the reason where it is not installed.
#[test]
fn a_round_robin_shard_is_every_nth_mutant() {
    let installed = Command::new("cargo")
        .args(["mutants", "--version"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !installed {
        eprintln!("skipped: cargo-mutants is not installed (cargo install cargo-mutants --locked)");
        return;
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let all = listed(root, &[]);
    assert!(all.len() > 100, "{} mutants", all.len());
    let every_fourth: Vec<String> = all.iter().skip(1).step_by(4).cloned().collect();
    let round_robin = listed(root, &["--shard", "1/4", "--sharding", "round-robin"]);
    assert_eq!(round_robin, every_fourth);
    let slice = listed(root, &["--shard", "1/4"]);
    let start = all.iter().position(|m| *m == slice[0]).unwrap();
    assert_eq!(slice, all[start..start + slice.len()]);
    assert_ne!(slice, round_robin);
}
