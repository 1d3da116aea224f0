//! Goose 0.19 closed-model scenarios through the load suite (built with `--features goose`).
#![cfg(feature = "goose")]
#![allow(clippy::unwrap_used, reason = "tests fail loudly")]

use std::sync::Arc;

use gauntlet_harness::suite::SuiteOutput;
use gauntlet_reports::Outcome;

mod common;

fn run(load: &str) -> SuiteOutput {
    common::run_phase(load, Arc::new(common::engine()))
}

const GOOSE_ONLY: &str = "sustained = false\nswap = false\nstress = false\ngoose = true\n\
                          goose-users = 4\ngoose-duration = \"2s\"\np99 = \"250ms\"\n";

#[test]
fn goose_journeys_fold_into_the_report_and_gate_on_the_achieved_rate() {
    // Throttled well below what 4 unthrottled users send on a quiet host (~40,000 req/s, one
    // saturated generator thread, rightly judged invalid): the gates are what is tested here.
    let out = run(&format!(
        "{GOOSE_ONLY}goose-throttle = 1000\ngoose-min-rate = 20\n"
    ));
    let names: Vec<&str> = out.cases.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(
        names,
        ["goose_achieved_rate", "goose_p99", "goose_error_rate"]
    );
    for case in &out.cases {
        assert_eq!(
            case.outcome,
            Outcome::Pass,
            "{}: {:?}",
            case.id,
            case.message
        );
    }
    let rate = out.cases[0].message.as_deref().unwrap();
    assert!(rate.starts_with("achieved "), "{rate}");
    assert_eq!(out.sections[0].id, "load.goose");

    // A throttle of 50 req/s caps the run below a floor of 80: the gate reads what was
    // achieved, not what the throttle allowed.
    let out = run(&format!(
        "{GOOSE_ONLY}goose-throttle = 50\ngoose-min-rate = 80\n"
    ));
    let gate = &out.cases[0];
    assert_eq!(gate.outcome, Outcome::Fail, "{:?}", gate.message);
    let message = gate.message.as_deref().unwrap();
    assert!(message.contains("< floor 80 req/s"), "{message}");
    assert!(message.contains("throttle 50 req/s is a cap"), "{message}");
}
