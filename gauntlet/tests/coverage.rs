//! `gauntlet coverage` for real: cargo-llvm-cov builds `gauntlet-engine` instrumented, the
//! suites run against it by URL, and the three coverage files and the report's section come
//! out. Minutes long, so ignored in the ordinary test run; the `coverage` CI lane installs
//! cargo-llvm-cov and runs it with `--ignored` and `GAUNTLET_REQUIRE_COVERAGE=1` (without that
//! variable a machine lacking cargo-llvm-cov skips it with the reason).
#![allow(clippy::unwrap_used, reason = "tests fail loudly")]

use std::path::{Path, PathBuf};
use std::process::Command;

use gauntlet_testkit::{code, text};

const BIN: &str = env!("CARGO_BIN_EXE_gauntlet");

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// Whether cargo-llvm-cov runs here; when it does not, why (and the test is skipped).
fn llvm_cov() -> bool {
    let ok = Command::new("cargo")
        .args(["llvm-cov", "--version"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        assert!(
            std::env::var_os("GAUNTLET_REQUIRE_COVERAGE").is_none(),
            "GAUNTLET_REQUIRE_COVERAGE is set but `cargo llvm-cov` does not run"
        );
        eprintln!("skipped: cargo-llvm-cov is not installed (cargo install cargo-llvm-cov)");
    }
    ok
}

/// `gauntlet coverage --mode url --dev --suite SUITE` into `dir`; its report.json.
fn coverage(dir: &Path, suite: &str, min: &str) -> (i32, serde_json::Value, String) {
    let out = Command::new(BIN)
        .args(["coverage", "--mode", "url", "--dev", "--suite", suite])
        .args(["--min-line-coverage", min, "--workspace"])
        .arg(workspace())
        .arg("--report-dir")
        .arg(dir)
        .output()
        .unwrap();
    let stderr = text(&out.stderr);
    let report = std::fs::read_to_string(dir.join("report.json"))
        .unwrap_or_else(|e| panic!("report.json: {e}; stderr:\n{stderr}"));
    (code(&out), serde_json::from_str(&report).unwrap(), stderr)
}

fn engine_file_lines(report: &serde_json::Value, file: &str) -> String {
    let section = report["sections"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["id"] == "coverage")
        .expect("a coverage section");
    let per_file = section["tables"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["title"] == "Per file of gauntlet-engine")
        .expect("the per-file table");
    per_file["rows"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r[0] == file)
        .map(|r| r[1].as_str().unwrap().to_owned())
        .unwrap_or_else(|| panic!("{file} not in the per-file table"))
}

#[test]
#[ignore = "minutes: an instrumented build of the engine (the coverage lane runs it)"]
fn coverage_writes_lcov_cobertura_and_json_and_shows_what_the_suites_skipped() {
    if !llvm_cov() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    // Conformance drives the repository extension (load, unload, promote, rollback).
    let full = tmp.path().join("conformance");
    let (status, report, stderr) = coverage(&full, "conformance", "1");
    assert_eq!(status, 0, "{stderr}");
    for file in ["lcov.info", "cobertura.xml", "summary.json"] {
        let path = full.join("coverage").join(file);
        let body = std::fs::read_to_string(&path).unwrap();
        assert!(body.len() > 100, "{} is nearly empty", path.display());
    }
    let lcov = std::fs::read_to_string(full.join("coverage/lcov.info")).unwrap();
    assert!(
        lcov.contains("engine/src/server.rs"),
        "lcov names engine files"
    );
    let cobertura = std::fs::read_to_string(full.join("coverage/cobertura.xml")).unwrap();
    assert!(cobertura.contains("<coverage") && cobertura.contains("line-rate="));
    let lines = report["sections"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["id"] == "coverage")
        .unwrap()["values"]["lines.gauntlet-engine"]
        .as_f64()
        .expect("the engine's line coverage is defined");
    assert!(lines > 20.0 && lines <= 100.0, "{lines}");
    let gate = report["cases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == "coverage::engine_lines")
        .expect("the gate");
    assert_eq!(gate["outcome"]["status"], "pass", "{gate}");
    let summary = std::fs::read_to_string(full.join("summary.md")).unwrap();
    assert!(
        summary.contains("Least-covered files of gauntlet-engine"),
        "{summary}"
    );
    let html = std::fs::read_to_string(full.join("report.html")).unwrap();
    assert!(html.contains("Code coverage"));

    // The backtest suite never calls the engine's repository routes: that module shows
    // uncovered, and a threshold above what the run reached fails the gate (exit 1).
    let narrow = tmp.path().join("backtest");
    let (status, narrow_report, stderr) = coverage(&narrow, "backtest", "99.5");
    assert_eq!(status, 1, "{stderr}");
    let file = "engine/src/http/repository.rs";
    let with = engine_file_lines(&report, file);
    let without = engine_file_lines(&narrow_report, file);
    assert!(
        with.starts_with(|c: char| c != '0'),
        "{file} under conformance: {with}"
    );
    assert!(
        without.starts_with("0.0 %"),
        "{file} under backtest: {without}"
    );
}
