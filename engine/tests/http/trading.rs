//! Trading controls over real HTTP on loopback: every pre-trade control refuses with its
//! name, repeated breaches throttle until an operator re-enables, the kill switch stops by
//! algorithm, trader or everything, only for risk principals, and all of it is audited.

use gauntlet_engine::artifact::ImputePolicy;
use gauntlet_engine::audit::{self, Action, Outcome};
use gauntlet_engine::trading::TradingConfig;
use gauntlet_engine::{AppState, EngineConfig, app};
use serde_json::{Value, json};

use super::audit::{call, config};
use super::linear;

const RISK: [(&str, &str); 1] = [("x-gauntlet-principal", "risk-officer")];
const TRADER_DESK: [(&str, &str); 1] = [("x-gauntlet-principal", "desk-7")];

/// A signal for model `lin` (y = 0.5 + 2a − b; features (0.1, 0) predict 0.7: buy 70).
fn signal(algo: &str, trader: &str, extra: Value) -> Value {
    let mut s = json!({
        "algo_id": algo, "trader_id": trader, "instrument": "XYZ", "model": "lin",
        "features": [0.1, 0.0], "reference_price": 100.0,
    });
    for (k, v) in extra.as_object().unwrap() {
        s[k] = v.clone();
    }
    s
}

#[test]
fn pre_trade_controls_throttle_and_kill_switch_over_http() {
    let tmp = tempfile::tempdir().unwrap();
    let log_dir = config(tmp.path()).dir;
    let engine_config = EngineConfig {
        audit: Some(config(tmp.path())),
        trading: TradingConfig {
            max_order_quantity: 50,
            max_order_value: 4_000.0,
            max_messages_per_second: 5,
            throttle_after_breaches: 3,
            ..TradingConfig::default()
        },
        ..EngineConfig::default()
    };
    let state = AppState::open(engine_config).unwrap();
    state
        .registry()
        .load(linear("lin", "1", ImputePolicy::Median))
        .unwrap();
    state.registry().promote("lin").unwrap();
    let log = state.audit().unwrap().clone();
    let addr = gauntlet_testkit::serve_router(move || app(state)).unwrap();
    let post = |body: &Value| call(addr, "POST", "/v2/trading/signal", &TRADER_DESK, Some(body));

    let (_, meta) = call(addr, "GET", "/v2", &[], None);
    assert!(
        meta["extensions"]
            .as_array()
            .unwrap()
            .contains(&json!("gauntlet_trading"))
    );

    // Accepted: the prediction's sign and size, a limit 5 bps through the reference.
    let (status, ok) = post(&signal("a1", "t-1", json!({ "quantity": 10, "id": "s-1" })));
    assert_eq!(status, 200, "{ok}");
    assert_eq!(ok["intent"]["side"], "buy");
    assert_eq!(ok["intent"]["quantity"], 10);
    assert_eq!(ok["intent"]["limit_price"], 100.05);
    assert_eq!(ok["id"], "s-1");

    // Each control refuses naming itself; the collar is exact to the tick.
    let (status, e) = post(&signal(
        "a1",
        "t-1",
        json!({ "quantity": 1, "limit_price": 101.0 }),
    ));
    assert_eq!(status, 200, "on the collar: {e}");
    for (body, control, code) in [
        (
            json!({ "quantity": 1, "limit_price": 101.01 }),
            "price_collar",
            422,
        ),
        (
            json!({ "quantity": 1, "limit_price": 98.99 }),
            "price_collar",
            422,
        ),
        (json!({}), "max_order_volume", 422),
        (
            json!({ "quantity": 45, "limit_price": 100.0 }),
            "max_order_value",
            422,
        ),
    ] {
        let algo = format!("c-{control}-{}", body.to_string().len());
        let (status, e) = post(&signal(&algo, "t-1", body));
        assert_eq!(
            (status, e["control"].as_str().unwrap()),
            (code, control),
            "{e}"
        );
        assert!(e["error"].as_str().unwrap().contains(control), "{e}");
    }

    // Message rate: a burst of 6 from one algorithm at 5/s.
    let statuses: Vec<u16> = (0..6)
        .map(|_| post(&signal("burst", "t-1", json!({ "quantity": 1 }))).0)
        .collect();
    assert_eq!(
        statuses.iter().filter(|s| **s == 200).count(),
        5,
        "{statuses:?}"
    );
    let (status, e) = post(&signal("burst", "t-1", json!({ "quantity": 1 })));
    assert_eq!(
        (status, e["control"].as_str()),
        (429, Some("message_rate")),
        "{e}"
    );

    // Three breaches throttle the algorithm; time does not lift it, an operator does.
    for _ in 0..3 {
        let (status, _) = post(&signal(
            "a2",
            "t-1",
            json!({ "quantity": 1, "limit_price": 150.0 }),
        ));
        assert_eq!(status, 422);
    }
    std::thread::sleep(std::time::Duration::from_millis(1_100));
    let good = signal("a2", "t-1", json!({ "quantity": 1 }));
    let (status, e) = post(&good);
    assert_eq!(
        (status, e["control"].as_str()),
        (429, Some("throttle")),
        "{e}"
    );
    let (status, _) = call(addr, "POST", "/v2/trading/algos/a2/enable", &[], None);
    assert_eq!(status, 401);
    let (status, _) = call(
        addr,
        "POST",
        "/v2/trading/algos/a2/enable",
        &TRADER_DESK,
        None,
    );
    assert_eq!(status, 403);
    let (_, controls) = call(addr, "GET", "/v2/trading/controls", &[], None);
    assert!(
        controls["algos"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["algo_id"] == "a2" && a["throttled"] == true),
        "{controls}"
    );
    let (status, body) = call(addr, "POST", "/v2/trading/algos/a2/enable", &RISK, None);
    assert_eq!(
        (status, &body["was_throttled"]),
        (200, &json!(true)),
        "{body}"
    );
    assert_eq!(post(&good).0, 200);

    // Kill switch: only risk principals; by algorithm, by trader, everything.
    let kill = |who: &[(&str, &str)], scope: Value| {
        call(
            addr,
            "POST",
            "/v2/trading/kill",
            who,
            Some(&json!({ "scope": scope })),
        )
    };
    let (status, _) = kill(&TRADER_DESK, json!("all"));
    assert_eq!(status, 403);
    assert_eq!(
        post(&signal("a3", "t-1", json!({ "quantity": 1 }))).0,
        200,
        "not engaged"
    );
    let (status, k) = kill(&RISK, json!({ "algo": "a3" }));
    assert_eq!(status, 200, "{k}");
    let (status, e) = post(&signal("a3", "t-1", json!({ "quantity": 1 })));
    assert_eq!((status, e["control"].as_str()), (403, Some("kill_switch")));
    assert_eq!(post(&signal("a4", "t-1", json!({ "quantity": 1 }))).0, 200);
    kill(&RISK, json!({ "trader": "t-secret-9" }));
    assert_eq!(
        post(&signal("a4", "t-secret-9", json!({ "quantity": 1 }))).0,
        403
    );
    assert_eq!(post(&signal("a4", "t-2", json!({ "quantity": 1 }))).0, 200);
    kill(&RISK, json!("all"));
    for (algo, trader) in [("a4", "t-2"), ("a5", "t-3"), ("zz", "t-1")] {
        assert_eq!(post(&signal(algo, trader, json!({ "quantity": 1 }))).0, 403);
    }
    let (status, _) = call(
        addr,
        "POST",
        "/v2/trading/kill/release",
        &TRADER_DESK,
        Some(&json!({ "scope": "all" })),
    );
    assert_eq!(status, 403, "release is for risk principals too");
    let (status, r) = call(
        addr,
        "POST",
        "/v2/trading/kill/release",
        &RISK,
        Some(&json!({ "scope": "all" })),
    );
    assert_eq!((status, &r["changed"]), (200, &json!(true)), "{r}");
    assert_eq!(post(&signal("a5", "t-3", json!({ "quantity": 1 }))).0, 200);
    assert_eq!(
        post(&signal("a3", "t-3", json!({ "quantity": 1 }))).0,
        403,
        "the algo kill stays"
    );

    // Bad input is a 400 naming the field.
    let (status, e) = post(&signal("a5", "t-3", json!({ "reference_price": -1.0 })));
    assert_eq!(status, 400);
    assert!(
        e["error"].as_str().unwrap().contains("reference_price"),
        "{e}"
    );

    // Audited: kills durably with their principal, refusals with their control, traders
    // only as pseudonyms.
    let cp = block_on(log.checkpoint_now()).unwrap();
    let records = audit::read_records(&log_dir, 0, usize::MAX).unwrap();
    assert_eq!(records.len() as u64, cp.size);
    let kills: Vec<_> = records
        .iter()
        .filter(|r| r.event.action == Action::KillEngage)
        .map(|r| (r.event.principal.as_str(), r.event.outcome))
        .collect();
    assert_eq!(
        kills,
        vec![
            ("desk-7", Outcome::Refused),
            ("risk-officer", Outcome::Ok),
            ("risk-officer", Outcome::Ok),
            ("risk-officer", Outcome::Ok)
        ]
    );
    assert!(
        records
            .iter()
            .any(|r| r.event.action == Action::ThrottleRelease && r.event.outcome == Outcome::Ok)
    );
    assert!(records.iter().any(|r| {
        r.event.action == Action::OrderIntent
            && r.event
                .detail
                .as_deref()
                .is_some_and(|d| d.contains("control=price_collar"))
    }));
    assert!(records.iter().any(|r| {
        r.event
            .detail
            .as_deref()
            .is_some_and(|d| d.contains("throttle=tripped"))
    }));
    for entry in std::fs::read_dir(&log_dir).unwrap() {
        let bytes = std::fs::read(entry.unwrap().path()).unwrap();
        assert!(
            !bytes.windows(10).any(|w| w == b"t-secret-9"),
            "trader id in clear"
        );
    }
}

/// Runs a future to completion on a throwaway runtime (the test itself is synchronous).
fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
}
