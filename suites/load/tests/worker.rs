//! The `gauntlet-load` worker binary (the load worker of the `gauntlet-load:dev` image): the
//! arguments of `gauntlet load`, the same shard file, and a usage error (exit 2, nothing
//! written) for what only `gauntlet` does.
#![allow(clippy::unwrap_used, reason = "tests fail loudly")]

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
