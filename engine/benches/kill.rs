//! Kill switch under load (issue 13, RTS 6 Art. 12: "immediately"): the time from the kill
//! call to the first refused intent while 10,000 signals a second flow, and whether any intent
//! sent after the kill was acknowledged still got through. Figures in `benches/README.md`.
//!
//! Each round serves the reference engine on `127.0.0.1:0` (the audit log on, so the kill is
//! an admin record synced before its 200; trading controls on, 200 algorithms at 50 signals a
//! second each, under the 100/s message limit), sends signals open-loop at `RATE` (10000) a
//! second for `DURATION` (3 s), engages `{"scope":"all"}` as the risk principal at a third of
//! the run, and prints:
//! - `rate`: signals sent per second before the kill;
//! - `p99 before`: the signals' latency before the kill, from when each was due (open loop,
//!   64 kept-alive connections);
//! - `ack`: kill call to its 200 (the audit record's fsync included);
//! - `first refusal`: kill call to the first `kill_switch` refusal received;
//! - `last accepted`: kill call to the last accepted intent received (sent before the ack);
//! - `through after ack`: intents *sent* after the kill's 200 that were still accepted — a
//!   broken switch; the run exits 1 if there is one.
//!
//!   cargo bench -p gauntlet-engine --bench kill            # ROUNDS=5 RATE=10000 DURATION=3s
//!
//! The engine and this client share the host; run it on a quiet one and read the ranges.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use gauntlet_engine::artifact::{
    ARTIFACT_FORMAT, ARTIFACT_FORMAT_VERSION, FeatureSpec, ImputePolicy, ModelArtifact, ModelParams,
};
use gauntlet_engine::audit::AuditConfig;
use gauntlet_engine::trading::TradingConfig;
use gauntlet_engine::{AppState, EngineConfig, app};
use http::{Method, Request};
use http_body_util::{BodyExt as _, Full};
use hyper_util::rt::TokioIo;

const ALGOS: usize = 200;
/// Kept-alive connections the signals are spread over.
const CONNECTIONS: usize = 64;
const PRINCIPAL: &str = "x-gauntlet-principal";

type Conn = hyper::client::conn::http1::SendRequest<Full<Bytes>>;

/// One signal's fate.
struct Sent {
    due: Instant,
    sent: Instant,
    received: Instant,
    status: u16,
    killed: bool,
}

struct Round {
    rate: f64,
    p99_before: Duration,
    ack: Duration,
    first_refusal: Option<Duration>,
    last_accepted: Option<Duration>,
    through_after_ack: usize,
    other_errors: usize,
}

fn env<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn model() -> ModelArtifact {
    ModelArtifact {
        format: ARTIFACT_FORMAT.to_owned(),
        format_version: ARTIFACT_FORMAT_VERSION,
        name: "kill-bench".to_owned(),
        version: "1".to_owned(),
        features: vec![FeatureSpec {
            name: "x".to_owned(),
            median: 0.0,
            mad: 1.0,
            min: -10.0,
            max: 10.0,
        }],
        impute: ImputePolicy::Median,
        clip_mads: None,
        // Predicts 0.5 whatever x: a buy of 50.
        model: ModelParams::Linear {
            intercept: 0.5,
            weights: vec![0.0],
        },
    }
}

/// The engine on its own runtime and thread; it stops when the sender is dropped or fires.
struct Served {
    addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Served {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn serve(dir: &std::path::Path) -> Served {
    let config = EngineConfig {
        audit: Some(AuditConfig::new(dir.join("log"), dir.join("keys"))),
        trading: TradingConfig::default(),
        ..EngineConfig::default()
    };
    let state = AppState::open(config).expect("engine with its audit log");
    state.registry().load(model()).expect("load");
    state.registry().promote("kill-bench").expect("promote");
    let (addr_tx, addr_rx) = std::sync::mpsc::channel();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let thread = std::thread::spawn(move || {
        let runtime = tokio::runtime::Runtime::new().expect("engine runtime");
        runtime.block_on(async move {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .expect("bind 127.0.0.1:0");
            addr_tx
                .send(listener.local_addr().expect("addr"))
                .expect("addr");
            axum::serve(listener, app(state))
                .with_graceful_shutdown(async {
                    let _ = stopped.await;
                })
                .await
                .expect("serve");
        });
    });
    Served {
        addr: addr_rx.recv().expect("engine started"),
        stop: Some(stop),
        thread: Some(thread),
    }
}

fn post(addr: SocketAddr, path: &str, principal: &str, body: String) -> Request<Full<Bytes>> {
    Request::builder()
        .method(Method::POST)
        .uri(path)
        .header(http::header::HOST, addr.to_string())
        .header(http::header::CONTENT_TYPE, "application/json")
        .header(PRINCIPAL, principal)
        .body(Full::new(Bytes::from(body)))
        .expect("request")
}

async fn send(client: &mut Conn, request: Request<Full<Bytes>>) -> (u16, Bytes) {
    if client.ready().await.is_err() {
        return (0, Bytes::new());
    }
    match client.send_request(request).await {
        Ok(response) => {
            let status = response.status().as_u16();
            let body = response
                .into_body()
                .collect()
                .await
                .map(|b| b.to_bytes())
                .unwrap_or_default();
            (status, body)
        }
        Err(_) => (0, Bytes::new()),
    }
}

/// One kept-alive HTTP/1.1 connection to `addr`.
async fn connect(addr: SocketAddr) -> Conn {
    let stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    stream.set_nodelay(true).expect("nodelay");
    let (send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .expect("handshake");
    tokio::spawn(conn);
    send
}

async fn round(addr: SocketAddr, rate: f64, duration: Duration) -> Round {
    let total = (rate * duration.as_secs_f64()) as u64;
    let results = Arc::new(Mutex::new(Vec::<Sent>::with_capacity(total as usize + 16)));
    let kill_at = duration / 3;
    // Open loop: signal i is due at start + i/rate, whatever came back before; each of
    // CONNECTIONS connections sends its share in order, and a signal's latency counts from
    // when it was due (no coordinated omission).
    let mut lanes = Vec::with_capacity(CONNECTIONS);
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..CONNECTIONS {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(Instant, u64)>();
        lanes.push(tx);
        let mut conn = connect(addr).await;
        let results = Arc::clone(&results);
        workers.spawn(async move {
            while let Some((due, i)) = rx.recv().await {
                let body = format!(
                    r#"{{"algo_id":"algo-{}","trader_id":"desk","instrument":"XYZ","model":"kill-bench","features":[0.0],"reference_price":100.0,"id":"s-{i}"}}"#,
                    i as usize % ALGOS
                );
                let sent = Instant::now();
                let (status, body) =
                    send(&mut conn, post(addr, "/v2/trading/signal", "desk", body)).await;
                let killed = status == 403 && body.windows(11).any(|w| w == b"kill_switch");
                results.lock().expect("results").push(Sent {
                    due,
                    sent,
                    received: Instant::now(),
                    status,
                    killed,
                });
            }
        });
    }
    let start = Instant::now();
    let kill = tokio::spawn(async move {
        let mut conn = connect(addr).await;
        tokio::time::sleep_until((start + kill_at).into()).await;
        let sent = Instant::now();
        let (status, body) = send(
            &mut conn,
            post(
                addr,
                "/v2/trading/kill",
                "risk-officer",
                r#"{"scope":"all"}"#.to_owned(),
            ),
        )
        .await;
        assert_eq!(status, 200, "kill: {}", String::from_utf8_lossy(&body));
        (sent, Instant::now())
    });
    for i in 0..total {
        let due = start + Duration::from_secs_f64(i as f64 / rate);
        tokio::time::sleep_until(due.into()).await;
        let _ = lanes[i as usize % CONNECTIONS].send((due, i));
    }
    drop(lanes);
    while workers.join_next().await.is_some() {}
    let (kill_sent, kill_acked) = kill.await.expect("kill task");
    let results = std::mem::take(&mut *results.lock().expect("results"));

    let mut before: Vec<Duration> = results
        .iter()
        .filter(|r| r.received < kill_sent)
        .map(|r| r.received - r.due)
        .collect();
    before.sort();
    let sent_before = results.iter().filter(|r| r.sent < kill_sent).count();
    Round {
        rate: sent_before as f64 / (kill_sent - start).as_secs_f64(),
        p99_before: before
            .get((before.len() * 99 / 100).min(before.len().saturating_sub(1)))
            .copied()
            .unwrap_or_default(),
        ack: kill_acked - kill_sent,
        first_refusal: results
            .iter()
            .filter(|r| r.killed)
            .map(|r| r.received.saturating_duration_since(kill_sent))
            .min(),
        last_accepted: results
            .iter()
            .filter(|r| r.status == 200 && r.received >= kill_sent)
            .map(|r| r.received - kill_sent)
            .max(),
        through_after_ack: results
            .iter()
            .filter(|r| r.status == 200 && r.sent >= kill_acked)
            .count(),
        other_errors: results
            .iter()
            .filter(|r| r.status != 200 && !r.killed)
            .count(),
    }
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1e3)
}

fn main() {
    let rounds: usize = env("ROUNDS", 5);
    let rate: f64 = env("RATE", 10_000.0);
    let duration =
        humantime::parse_duration(&env("DURATION", "3s".to_owned())).expect("DURATION, e.g. 3s");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("client runtime");
    println!(
        "kill switch under {rate} signals/s for {}, {rounds} rounds",
        humantime::format_duration(duration)
    );
    println!(
        "{:>5} {:>10} {:>11} {:>10} {:>14} {:>14} {:>18} {:>7}",
        "round",
        "rate /s",
        "p99 before",
        "ack",
        "first refusal",
        "last accepted",
        "through after ack",
        "errors"
    );
    let mut broken = false;
    let mut firsts = Vec::new();
    for n in 0..rounds {
        let dir = tempfile::tempdir().expect("tempdir");
        let engine = serve(dir.path());
        let r = runtime.block_on(round(engine.addr, rate, duration));
        drop(engine);
        broken |= r.through_after_ack > 0 || r.first_refusal.is_none();
        if let Some(f) = r.first_refusal {
            firsts.push(f);
        }
        println!(
            "{:>5} {:>10.0} {:>11} {:>10} {:>14} {:>14} {:>18} {:>7}",
            n + 1,
            r.rate,
            ms(r.p99_before),
            ms(r.ack),
            r.first_refusal.map_or("none".to_owned(), ms),
            r.last_accepted.map_or("none".to_owned(), ms),
            r.through_after_ack,
            r.other_errors
        );
    }
    firsts.sort();
    if let (Some(lo), Some(hi)) = (firsts.first(), firsts.last()) {
        println!(
            "kill call to first refused intent: {} – {}",
            ms(*lo),
            ms(*hi)
        );
    }
    if broken {
        eprintln!(
            "an intent sent after the kill was acknowledged got through, or none was refused"
        );
        std::process::exit(1);
    }
}
