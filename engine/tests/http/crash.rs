//! Crash safety: the real engine binary killed with SIGKILL while admin calls are being
//! acknowledged loses none of them, and its log verifies after a restart.

use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use gauntlet_engine::artifact::ImputePolicy;
use gauntlet_engine::audit::{self, Action, Outcome, VerifyOptions};
use gauntlet_testkit::EngineProcess;
use serde_json::json;

use super::audit::try_call;
use super::{linear, wait_exit, write_model_dir};

fn engine(config: &Path, models: &Path) -> EngineProcess {
    let mut command = Command::new(env!("CARGO_BIN_EXE_gauntlet-engine"));
    command
        .args(["--listen", "127.0.0.1:0", "--config"])
        .arg(config)
        .arg("--model-dir")
        .arg(models);
    EngineProcess::start(command).unwrap()
}

#[test]
fn sigkill_loses_no_acknowledged_admin_record_and_the_chain_verifies() {
    let tmp = tempfile::tempdir().unwrap();
    let models = tmp.path().join("models");
    std::fs::create_dir(&models).unwrap();
    write_model_dir(&models);
    let log_dir = tmp.path().join("log");
    let config = tmp.path().join("engine.toml");
    std::fs::write(
        &config,
        format!(
            "[audit]\ndir = {:?}\nsigning-key-file = {:?}\npseudonym-key-file = {:?}\n\
             flush-interval = \"250ms\"\ncheckpoint-interval = \"300ms\"\nsegment-bytes = 16384\n",
            log_dir,
            tmp.path().join("keys/sign.key"),
            tmp.path().join("keys/pseudo.key"),
        ),
    )
    .unwrap();

    let mut first = engine(&config, &models);
    let addr = first.addr();
    let stop = Arc::new(AtomicBool::new(false));
    let acked = Arc::new(Mutex::new(Vec::<String>::new()));
    // A long flush interval: an admin record acknowledged before its write would sit in
    // memory for up to 250 ms, so a kill -9 would lose it (this test then fails).
    // Two admin writers (load then promote, a new version each time) and one predictor.
    let mut workers = Vec::new();
    for writer in 0..2 {
        let (stop, acked) = (Arc::clone(&stop), Arc::clone(&acked));
        workers.push(std::thread::spawn(move || {
            let who = [("x-gauntlet-principal", "ops")];
            let name = format!("w{writer}");
            for i in 0.. {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let version = format!("{i}");
                let body = json!({ "parameters": { "artifact": linear(&name, &version, ImputePolicy::Median) } });
                let path = format!("/v2/repository/models/{name}/load");
                match try_call(addr, "POST", &path, &who, Some(&body)) {
                    Ok((200, _)) => acked.lock().unwrap().push(format!("{name}/{version}")),
                    Ok((status, body)) => panic!("load answered {status}: {body}"),
                    Err(_) => break,
                }
                let path = format!("/v2/repository/models/{name}/promote");
                if try_call(addr, "POST", &path, &who, None).is_err() {
                    break;
                }
            }
        }));
    }
    {
        let stop = Arc::clone(&stop);
        workers.push(std::thread::spawn(move || {
            let body = json!({ "inputs": [{ "name": "x", "shape": [1, 2], "datatype": "FP64", "data": [1.0, 2.0] }] });
            while !stop.load(Ordering::Relaxed) {
                if try_call(addr, "POST", "/v2/models/lin/infer", &[], Some(&body)).is_err() {
                    break;
                }
            }
        }));
    }
    // Wait for a checkpoint and a few hundred acknowledged admin calls, then kill -9.
    let start = Instant::now();
    let public_key = loop {
        if let Ok((200, cp)) = try_call(addr, "GET", "/v2/audit/checkpoint", &[], None)
            && acked.lock().unwrap().len() >= 100
        {
            break audit::hex::decode32(cp["public_key"].as_str().unwrap()).unwrap();
        }
        assert!(start.elapsed() < Duration::from_secs(30), "no progress");
        std::thread::sleep(Duration::from_millis(20));
    };
    first.child().kill().unwrap();
    let _ = first.child().wait();
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.join().unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    assert!(acked.len() >= 100, "{}", acked.len());

    // Restart on the same directory, then stop cleanly (which signs a final checkpoint).
    let mut second = engine(&config, &models);
    let (status, cp) = try_call(second.addr(), "GET", "/v2/audit/checkpoint", &[], None).unwrap();
    assert_eq!(status, 200, "{cp}");
    let killed = Command::new("kill")
        .args(["-TERM", &second.child().id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    assert!(wait_exit(second.child(), Duration::from_secs(10)).success());

    let report = audit::verify_dir(
        &log_dir,
        &VerifyOptions {
            public_key: Some(public_key),
        },
    )
    .unwrap();
    assert_eq!(report.unsigned_records, 0, "{report:?}");
    let records = audit::read_records(&log_dir, 0, usize::MAX).unwrap();
    assert_eq!(records.len() as u64, report.records);
    let loaded: std::collections::HashSet<String> = records
        .iter()
        .filter(|r| r.event.action == Action::ModelLoad && r.event.outcome == Outcome::Ok)
        .map(|r| {
            format!(
                "{}/{}",
                r.event.model.as_deref().unwrap_or(""),
                r.event.version.as_deref().unwrap_or("")
            )
        })
        .collect();
    let lost: Vec<&String> = acked.iter().filter(|a| !loaded.contains(*a)).collect();
    assert!(lost.is_empty(), "acknowledged but not in the log: {lost:?}");
    assert!(records.iter().any(|r| r.event.action == Action::Prediction));
}
