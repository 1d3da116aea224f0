//! The `gauntlet-load` worker binary (the load worker of the `gauntlet-load:dev` image): the
//! arguments of `gauntlet load`, the same shard file, `report merge` of a directory of shard
//! files (what the merge Job of `ci/k8s/load-merge.yaml` runs), and a usage error (exit 2,
//! nothing written) for what only `gauntlet` does.
#![allow(clippy::unwrap_used, reason = "tests fail loudly")]

use std::process::{Command, Stdio};
use std::time::{SystemTime, UNIX_EPOCH};

use gauntlet_load::histogram::Latencies;
use gauntlet_load::shard::ShardFile;
use gauntlet_testkit::{code, text};

mod common;

const BIN: &str = env!("CARGO_BIN_EXE_gauntlet-load");

#[test]
fn a_worker_shard_is_the_file_gauntlet_load_writes() {
    let server = common::served();
    let dir = tempfile::tempdir().unwrap();
    let url = server.url();
    let out = gauntlet_testkit::run_cli(
        BIN,
        &[
            "load",
            "--target",
            &url,
            "--rate",
            "400",
            "--duration",
            "2s",
            "--warm-up",
            "500ms",
            "--shard",
            "1/2",
            "--seed",
            "7",
            "--out",
            "shard-1.json",
        ],
        dir.path(),
    )
    .unwrap();
    assert_eq!(code(&out), 0, "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("achieved"),
        "the summary line: {}",
        text(&out.stderr)
    );
    let shard = ShardFile::read(&dir.path().join("shard-1.json")).unwrap();
    assert_eq!((shard.shard.index, shard.shard.count), (1, 2));
    assert_eq!(shard.seed, 7);
    assert_eq!(
        shard.counters.scheduled, 300,
        "half of 400 req/s over 1.5 s"
    );
    assert_eq!(shard.counters.ok, shard.latencies.len());
    assert!(
        (shard.target_rate - 200.0).abs() < 1.0,
        "{}",
        shard.target_rate
    );
}

#[test]
fn the_worker_merges_a_directory_of_shards_into_reports_as_the_merge_job_does() {
    let server = common::served();
    let dir = tempfile::tempdir().unwrap();
    let results = dir.path().join("results");
    std::fs::create_dir(&results).unwrap();
    // Both shards of one schedule at once, from one shared start, as the Indexed Job runs them.
    let start_at = (SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 2)
    .to_string();
    let url = server.url();
    let workers: Vec<_> = (0..2)
        .map(|i| {
            Command::new(BIN)
                .args([
                    "load",
                    "--target",
                    &url,
                    "--rate",
                    "400",
                    "--duration",
                    "2s",
                ])
                .args(["--warm-up", "500ms", "--seed", "7", "--start-at", &start_at])
                .args(["--shard", &format!("{i}/2")])
                .args(["--out", &format!("shard-{i}.json")])
                .current_dir(&results)
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for worker in workers {
        let out = worker.wait_with_output().unwrap();
        assert_eq!(code(&out), 0, "{}", text(&out.stderr));
    }
    // Not shards: the directory also holds other files, and the report directory itself.
    std::fs::write(results.join("gauntlet.toml"), "").unwrap();

    let out = gauntlet_testkit::run_cli(
        BIN,
        &[
            "report",
            "merge",
            "results",
            "--report-dir",
            "results/report",
        ],
        dir.path(),
    )
    .unwrap();
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(results.join("report/report.json")).unwrap())
            .unwrap();
    let summary = &report["summary"];
    let problems = ["failed", "errored", "invalid"]
        .iter()
        .map(|k| summary[k].as_u64().unwrap())
        .sum::<u64>();
    assert!(summary["passed"].as_u64().unwrap() > 0, "{summary}");
    assert_eq!(
        code(&out),
        i32::from(problems > 0),
        "exit code is the report's: {summary}; {}",
        text(&out.stderr)
    );
    assert_eq!(
        report["meta"]["tool"], "gauntlet-load",
        "{}",
        report["meta"]
    );
    for name in ["junit.xml", "summary.md", "report.html"] {
        assert!(results.join("report").join(name).is_file(), "{name}");
    }
    let merged = ShardFile::read(&results.join("report/merged.json")).unwrap();
    let mut union = Latencies::new();
    for i in 0..2 {
        let shard = ShardFile::read(&results.join(format!("shard-{i}.json"))).unwrap();
        union.add(&shard.latencies).unwrap();
    }
    assert_eq!(
        merged.latencies, union,
        "the merge of the directory's two shards"
    );
    assert_eq!(merged.counters.scheduled, 600, "400 req/s over 1.5 s");

    // A directory missing a shard is not one run (exit 2); one with no shard file names itself.
    std::fs::remove_file(results.join("shard-1.json")).unwrap();
    let out = gauntlet_testkit::run_cli(
        BIN,
        &["report", "merge", "results", "--report-dir", "partial"],
        dir.path(),
    )
    .unwrap();
    assert_eq!(code(&out), 2, "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("missing shards 1/2"),
        "{}",
        text(&out.stderr)
    );
    std::fs::create_dir(dir.path().join("empty")).unwrap();
    let out = gauntlet_testkit::run_cli(
        BIN,
        &["report", "merge", "empty", "--report-dir", "none"],
        dir.path(),
    )
    .unwrap();
    assert_eq!(code(&out), 2, "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("no *.json shard file"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn the_worker_refuses_what_only_gauntlet_does_with_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    for (args, says) in [
        (
            vec!["load", "--target", "container:gauntlet-engine:dev"],
            "--target container:gauntlet-engine:dev",
        ),
        (vec!["load"], "--target in-process"),
        (
            vec![
                "load",
                "--target",
                "http://127.0.0.1:9",
                "--report-dir",
                "r",
            ],
            "--report-dir r",
        ),
        (vec!["load", "--shard", "3/2"], "--shard"),
        (
            vec!["load", "--rate", "0", "--target", "http://127.0.0.1:9"],
            "rate",
        ),
    ] {
        let out = gauntlet_testkit::run_cli(BIN, &args, dir.path()).unwrap();
        assert_eq!(code(&out), 2, "{args:?}: {}", text(&out.stderr));
        assert!(
            text(&out.stderr).contains(says),
            "{args:?}: {}",
            text(&out.stderr)
        );
    }
    assert!(!dir.path().join("r").exists(), "nothing written");
    let out =
        gauntlet_testkit::run_cli(BIN, &["load", "--target", "http://127.0.0.1:9"], dir.path())
            .unwrap();
    assert_eq!(
        code(&out),
        3,
        "nothing listens on port 9: {}",
        text(&out.stderr)
    );
}
