//! `gauntlet backtest` end to end through the composition root: the same numbers in process
//! and by URL, nothing written on bad input, exit codes 0/1/2.
#![allow(
    clippy::unwrap_used,
    reason = "helpers outside #[test] fail the test loudly"
)]

use std::path::Path;

fn cli(args: &[&str]) -> u8 {
    let mut all = vec!["gauntlet", "backtest"];
    all.extend_from_slice(args);
    gauntlet::main_with(&gauntlet::registry(), all, &mut Vec::new())
}

fn metrics_table(dir: &Path) -> serde_json::Value {
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("report.json")).unwrap()).unwrap();
    report["sections"][0]["tables"][0]["rows"].clone()
}

/// The sample with data row `row` (1-based) given field `field` = `value`.
fn broken(dir: &Path, row: usize, field: usize, value: &str) -> std::path::PathBuf {
    let text = std::fs::read_to_string(gauntlet_fixtures::ohlcv_sample_path()).unwrap();
    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
    let mut fields: Vec<&str> = lines[row].split(',').collect();
    fields[field] = value;
    lines[row] = fields.join(",");
    let path = dir.join("broken.csv");
    std::fs::write(&path, lines.join("\n") + "\n").unwrap();
    path
}

#[test]
fn cli_same_numbers_in_process_and_by_url_and_nothing_written_on_bad_input() {
    let dir = tempfile::tempdir().unwrap();
    let sample = gauntlet_fixtures::ohlcv_sample_path();
    let sample = sample.to_str().unwrap();
    let local = dir.path().join("local");
    let code = cli(&[
        "--config",
        "/dev/null/absent.toml",
        "--data",
        sample,
        "--model",
        "ref-ensemble",
        "--report-dir",
        local.to_str().unwrap(),
    ]);
    assert_eq!(code, 2, "a --config that does not exist is a usage error");
    let config = dir.path().join("gauntlet.toml");
    std::fs::write(&config, "[profile.default]\n").unwrap();
    let config = config.to_str().unwrap();
    let code = cli(&[
        "--config",
        config,
        "--data",
        sample,
        "--model",
        "ref-ensemble",
        "--report-dir",
        local.to_str().unwrap(),
    ]);
    assert_eq!(code, 0);
    for f in ["junit.xml", "report.json", "summary.md", "report.html"] {
        assert!(local.join(f).is_file(), "{f}");
    }
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(local.join("report.json")).unwrap()).unwrap();
    assert_eq!(report["meta"]["tool"], "gauntlet backtest");
    assert!(
        report["meta"]["crate_versions"]["gauntlet-backtest"].is_string(),
        "{}",
        report["meta"]
    );

    let runtime = tokio::runtime::Runtime::new().unwrap();
    let (url, stop) = runtime
        .block_on(gauntlet_testkit::serve_reference_engine())
        .expect("engine on loopback");
    let remote = dir.path().join("remote");
    let code = cli(&[
        "--config",
        config,
        "--data",
        sample,
        "--target",
        &url,
        "--model",
        "ref-ensemble",
        "--report-dir",
        remote.to_str().unwrap(),
    ]);
    let _ = stop.send(());
    assert_eq!(code, 0);
    let (a, b) = (metrics_table(&local), metrics_table(&remote));
    // Row 0 names the signal source, which differs; every figure after it is the same.
    assert_eq!(a.as_array().unwrap()[1..], b.as_array().unwrap()[1..]);

    // Bad data (a high below the low): exit 2, nothing written.
    let bad = broken(dir.path(), 9, 2, "0.5");
    let out = dir.path().join("bad");
    let code = cli(&[
        "--config",
        config,
        "--data",
        bad.to_str().unwrap(),
        "--report-dir",
        out.to_str().unwrap(),
    ]);
    assert_eq!(code, 2);
    assert!(!out.exists(), "nothing half-written");
    // Bad flag value: exit 2 naming the flag.
    let code = cli(&[
        "--config",
        config,
        "--data",
        sample,
        "--fees-bps=-1",
        "--report-dir",
        out.to_str().unwrap(),
    ]);
    assert_eq!(code, 2);
    assert!(!out.exists());
    // A failing gate: exit 1, reports written.
    let code = cli(&[
        "--config",
        config,
        "--data",
        sample,
        "--strategy",
        "ma-cross:10,50",
        "--sharpe-min",
        "9",
        "--report-dir",
        out.to_str().unwrap(),
    ]);
    assert_eq!(code, 1);
    assert!(out.join("report.json").is_file());
}
