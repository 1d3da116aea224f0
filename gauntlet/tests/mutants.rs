//! `gauntlet mutants` for real, on a small diff: cargo-mutants mutates the engine's lines the
//! diff names, runs the suites in process after each, and the report counts the outcomes.
//! Minutes long (a dev build of the workspace, then a build per mutant), so ignored in the
//! ordinary test run and not yet a CI lane: `cargo install cargo-mutants --locked`, then
//! `cargo test -p gauntlet --release --test mutants -- --ignored`.
#![allow(clippy::unwrap_used, reason = "tests fail loudly")]

use std::path::Path;
use std::process::Command;

use gauntlet_testkit::{code, text};
use serde_json::Value;

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

/// A report directory of `gauntlet mutants` as a shard of `n` leaves it: the record, and the
/// outcome files of cargo-mutants' `mutants.out/`.
fn shard_dir(root: &Path, k: u32, n: u32, caught: &[u32], missed: &[u32]) -> std::path::PathBuf {
    let dir = root.join(format!("shard-{k}"));
    std::fs::create_dir_all(dir.join("mutants.out")).unwrap();
    let record = serde_json::json!({
        "commit": "0123abcd", "clean": true, "shard": k, "shards": n,
        "sharding": "round-robin", "in-diff": false, "suites": "conformance",
        "cargo-mutants": "cargo-mutants 27.1.0", "selected": caught.len() + missed.len(),
        "wall-seconds": 60.0,
    });
    std::fs::write(dir.join("mutants-run.json"), record.to_string()).unwrap();
    let lines = |v: &[u32]| {
        v.iter()
            .map(|l| format!("engine/src/a.rs:{l}:5: replace f -> bool with true\n"))
            .collect::<String>()
    };
    std::fs::write(dir.join("mutants.out/caught.txt"), lines(caught)).unwrap();
    std::fs::write(dir.join("mutants.out/missed.txt"), lines(missed)).unwrap();
    dir
}

/// The `mutants` section's values and the cases of a merged report.
fn merged(dir: &Path) -> (Value, Vec<(String, String)>) {
    let report: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("report.json")).unwrap()).unwrap();
    let section = report["sections"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["id"] == "mutants")
        .expect("a mutants section")["values"]
        .clone();
    let cases = report["cases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["id"].as_str().unwrap().to_owned(),
                c["outcome"]["status"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    (section, cases)
}

/// `--merge` adds shards' outcomes up, fails `mutants::complete` while a shard is missing and
/// passes it when all are there, and refuses shards of another commit with a usage error.
/// Seconds: nothing is built; the shards are report directories on disk.
#[test]
fn merged_shards_give_the_score_of_all_and_name_the_missing_ones() {
    let tmp = tempfile::tempdir().unwrap();
    let s0 = shard_dir(tmp.path(), 0, 3, &[1, 2, 3], &[4]);
    let s2 = shard_dir(tmp.path(), 2, 3, &[5, 6, 7, 8], &[]);
    let merge = |dirs: &[&Path], report: &str| {
        let out = Command::new(BIN)
            .current_dir(tmp.path())
            .args([
                "mutants",
                "--min-mutation-score",
                "85",
                "--report-dir",
                report,
                "--merge",
            ])
            .args(dirs)
            .output()
            .unwrap();
        (code(&out), text(&out.stderr))
    };
    let (status, stderr) = merge(&[&s0, &s2], "partial");
    assert_eq!(status, 1, "{stderr}");
    assert!(stderr.contains("missing: 1:"), "{stderr}");
    let (values, cases) = merged(&tmp.path().join("partial"));
    assert_eq!(
        (values["caught"].as_f64(), values["missed"].as_f64()),
        (Some(7.0), Some(1.0))
    );
    assert_eq!(values["score"].as_f64(), Some(87.5));
    assert_eq!(
        cases,
        [
            ("mutants::complete".to_owned(), "fail".to_owned()),
            ("mutants::score".to_owned(), "pass".to_owned())
        ]
    );

    let s1 = shard_dir(tmp.path(), 1, 3, &[9], &[10, 11]);
    let (status, stderr) = merge(&[&s0, &s1, &s2], "all");
    assert_eq!(status, 1, "the score of all is 8 of 11: {stderr}");
    let (values, cases) = merged(&tmp.path().join("all"));
    assert_eq!(values["missed"].as_f64(), Some(3.0));
    assert_eq!(
        cases[0],
        ("mutants::complete".to_owned(), "pass".to_owned())
    );
    assert_eq!(cases[1], ("mutants::score".to_owned(), "fail".to_owned()));

    let mut record: Value =
        serde_json::from_str(&std::fs::read_to_string(s1.join("mutants-run.json")).unwrap())
            .unwrap();
    record["commit"] = "fedc3210".into();
    std::fs::write(s1.join("mutants-run.json"), record.to_string()).unwrap();
    let (status, stderr) = merge(&[&s0, &s1], "mixed");
    assert_eq!(status, 2, "{stderr}");
    assert!(stderr.contains("commit \"fedc3210\""), "{stderr}");
}

/// Two real shards of a round-robin split into 1000 (two or three mutants each), each
/// recording the commit it mutated, then merged: the merge counts what both tested and
/// `mutants::complete` names the 998 shards not run. Minutes (a build and a suites run per
/// mutant), so ignored like the diff run above, and for the same reason in-place: run it on a
/// clean checkout (`cargo test -p gauntlet --release --test mutants -- --ignored`).
#[test]
#[ignore = "minutes: a build and a suites run per mutant"]
fn real_shards_merge_into_one_report() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let mut tested = 0.0;
    for k in 0..2 {
        let dir = tmp.path().join(format!("shard-{k}"));
        let out = Command::new(BIN)
            .args([
                "mutants",
                "--in-place",
                "--sharding",
                "round-robin",
                "--workspace",
            ])
            .arg(root)
            .args(["--shard", &format!("{k}/1000"), "--report-dir"])
            .arg(&dir)
            .output()
            .unwrap();
        let stderr = text(&out.stderr);
        assert!(matches!(code(&out), 0 | 1), "{stderr}");
        let record: Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join("mutants-run.json")).unwrap())
                .unwrap();
        assert_eq!(record["shard"], k);
        assert_eq!(record["shards"], 1000);
        let (values, _) = merged(&dir);
        let n = ["caught", "missed", "timeout", "unviable"]
            .iter()
            .map(|k| values[k].as_f64().unwrap())
            .sum::<f64>();
        assert_eq!(Some(n), record["selected"].as_f64(), "{record}");
        tested += n;
    }
    let out = Command::new(BIN)
        .current_dir(tmp.path())
        .args([
            "mutants",
            "--report-dir",
            "merged",
            "--merge",
            "shard-0",
            "shard-1",
        ])
        .output()
        .unwrap();
    let stderr = text(&out.stderr);
    assert_eq!(code(&out), 1, "998 shards are missing: {stderr}");
    assert!(stderr.contains("2 of 1000 shards"), "{stderr}");
    let (values, cases) = merged(&tmp.path().join("merged"));
    let n = ["caught", "missed", "timeout", "unviable"]
        .iter()
        .map(|k| values[k].as_f64().unwrap())
        .sum::<f64>();
    assert_eq!(n, tested);
    assert_eq!(
        cases[0],
        ("mutants::complete".to_owned(), "fail".to_owned())
    );
}

/// The shards of the full run kept in `ci/mutants/<commit>/` (README, mutation testing) merge:
/// each commit's records parse, agree with one another and are whole shards, so a later
/// session can add its shards to them. Seconds: nothing is built.
#[test]
fn the_kept_shards_of_the_full_run_merge() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let kept = root.join("ci/mutants");
    let mut commits: Vec<_> = std::fs::read_dir(&kept)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .collect();
    commits.sort();
    assert!(!commits.is_empty(), "no run kept in {}", kept.display());
    for commit in commits {
        let mut shards: Vec<_> = std::fs::read_dir(&commit)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        shards.sort();
        let tmp = tempfile::tempdir().unwrap();
        let out = Command::new(BIN)
            .current_dir(tmp.path())
            .args(["mutants", "--report-dir", "merged", "--merge"])
            .args(&shards)
            .output()
            .unwrap();
        let stderr = text(&out.stderr);
        assert!(
            matches!(code(&out), 0 | 1),
            "{}: {stderr}",
            commit.display()
        );
        let name = commit.file_name().unwrap().to_str().unwrap();
        for shard in &shards {
            let record: Value = serde_json::from_str(
                &std::fs::read_to_string(shard.join("mutants-run.json")).unwrap(),
            )
            .unwrap();
            assert!(
                record["commit"].as_str().unwrap().starts_with(name),
                "{}: {record}",
                shard.display()
            );
        }
        let (values, cases) = merged(&tmp.path().join("merged"));
        assert_eq!(cases[0].0, "mutants::complete", "{cases:?}");
        assert!(values["score"].as_f64().is_some(), "{values}");
        assert!(
            stderr.contains(&format!("{} of 48 shards", shards.len())),
            "{name}: {stderr}"
        );
    }
}
