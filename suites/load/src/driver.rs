//! The open-model driver: requests leave at their scheduled times whether or not earlier
//! ones have come back, and each latency runs from the intended send time (no coordinated
//! omission).
//!
//! All on the driver's own runtime threads (`gx-load-N`), so their CPU can be measured apart
//! from the target's:
//! - the pacing task sleeps to each intended time with a precise timer (`src/pacer.rs`)
//!   and releases every request then due onto a bounded queue; a full queue drops the
//!   request (counted);
//! - the connection tasks, one per pooled HTTP/1.1 connection (`src/http1.rs`: the request
//!   serialised once, the response head parsed with `httparse`), take the next request, drop
//!   it (counted) if it waited past the queue deadline, else send it and record the outcome;
//!   against a `grpc://host:port` base URL they make `ModelInfer` calls instead, several
//!   tasks to an HTTP/2 connection (`src/grpc.rs`);
//! - the sampler (`gx-load-cpu`, see [`crate::sampler`]) reads CPU and load each second.
//!
//! With one runtime thread (the default) a release is a wake-up of a task on the same
//! thread: no system call and no context switch between the pacing and the sending, which
//! is what the driver's CPU per request is mostly made of.
//!
//! Memory is bounded by the queue, the pool and the recorder, whatever the rate and duration.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use http::{HeaderName, HeaderValue, Method, StatusCode, Uri};

use crate::grpc;
use crate::histogram::{Latencies, SecondStats};
use crate::http1::{self, Conn, Prepared};
use crate::pacer::Pacer;
use crate::recorder::{
    Completion, Counters, ErrorClass, Failure, MAX_BODY_BYTES, Recorder, excerpt,
};
use crate::sampler::{CpuSample, Sampler};
use crate::schedule::{Schedule, Shard};

/// Name prefix of the driver's threads (Linux cuts names at 15 bytes).
pub const DRIVER_THREAD_PREFIX: &str = "gx-load";
/// The default pacing resolution: 100 µs, the spacing of 10,000 req/s.
///
/// A wake-up from idle costs the driver's thread far more CPU than a request (about 30 µs
/// of system time on the 2-vCPU VM this was measured on, against ~7 µs for a request's
/// write, read and parse), and a precise timer per request wakes it once for every
/// request. Up to 10,000 req/s this resolution changes nothing — requests are at least
/// this far apart; above, it bounds the wake-ups to 10,000 a second and lets one wake-up
/// release several requests, at a cost of at most 100 µs, counted in the latencies
/// (measured from the intended times). Measured with `suites/load/benches/driver.rs` on that VM:
/// precise pacing stayed valid only to 60,000 req/s (87 % of a core); at 100 µs, 120,000
/// req/s took 0.81–0.85 of a core.
pub const DEFAULT_PACING: Duration = Duration::from_micros(100);

/// Largest response body read; a larger one is a transport error.
const MAX_RESPONSE_BYTES: usize = 16 << 20;

/// The gRPC answer [`ResponseCheck::check_grpc`] reads (re-exported: it is part of the trait).
pub use gauntlet_oip_grpc::inference::ModelInferResponse;

/// Checks a response and optionally tags it (with the model version it names).
pub trait ResponseCheck: Send + Sync {
    /// `Ok(tag)` for a good 2xx response; `Err(reason)` for a body that fails the check.
    fn check(&self, body: &[u8]) -> Result<Option<String>, String>;

    /// The same check of a gRPC answer: `response` decoded, naming the model asked (when it
    /// names one), its outputs' data already found consistent with their shapes and
    /// datatypes.
    fn check_grpc(&self, response: &ModelInferResponse) -> Result<Option<String>, String>;
}

/// Accepts any 2xx body (any consistent gRPC answer).
#[derive(Debug, Clone, Copy, Default)]
pub struct AnyBody;

impl ResponseCheck for AnyBody {
    fn check(&self, _body: &[u8]) -> Result<Option<String>, String> {
        Ok(None)
    }

    fn check_grpc(&self, _response: &ModelInferResponse) -> Result<Option<String>, String> {
        Ok(None)
    }
}

/// The request every scheduled slot sends.
#[derive(Debug, Clone)]
pub struct RequestSpec {
    /// Base URL, `http://host:port`, or `grpc://host:port` for the OIP's gRPC `ModelInfer`
    /// (no path).
    pub base_url: String,
    /// Method.
    pub method: Method,
    /// Path and query, `/v2/models/ref-linear/infer`; over gRPC, the model (and version) it
    /// names.
    pub path: String,
    /// Body (sent as `application/json` when not empty); over gRPC, the JSON infer request
    /// sent as a `ModelInferRequest` (the answer checked with [`ResponseCheck::check_grpc`]).
    pub body: Bytes,
    /// Further bodies: request `k` of the schedule sends `[body, variants…][k mod (1 + len)]`
    /// (a payload template's renderings). Empty: every request sends `body`.
    pub variants: Vec<Bytes>,
    /// Headers every request carries (the target's `--header`s and credentials; values
    /// sensitive).
    pub headers: Vec<(HeaderName, HeaderValue)>,
}

/// Everything a run needs.
#[derive(Clone)]
pub struct DriverConfig {
    /// What to send.
    pub request: RequestSpec,
    /// When to send it.
    pub schedule: Schedule,
    /// Which share of the schedule this process sends.
    pub shard: Shard,
    /// Wall-clock start of the schedule (shards share one); `None`: now.
    pub start_at: Option<SystemTime>,
    /// Requests intended before this offset are counted apart and not gated.
    pub warm_up: Duration,
    /// Connections in the pool (and connection tasks).
    pub connections: usize,
    /// Deadline to connect.
    pub connect_timeout: Duration,
    /// Deadline of one request, from its send to its last body byte.
    pub request_timeout: Duration,
    /// A request sent later than this after its intended time is late.
    pub late_after: Duration,
    /// A request not sent within this of its intended time is dropped.
    pub queue_timeout: Duration,
    /// Shortest time between two wake-ups of the pacing task: requests that fall due in
    /// between are released together at the next one, up to this much after their
    /// intended time (which their latencies still run from). `ZERO`: every request at its
    /// own time. See [`DEFAULT_PACING`].
    pub pacing: Duration,
    /// Worker threads of the driver's runtime.
    pub threads: usize,
    /// The response check.
    pub check: Arc<dyn ResponseCheck>,
    /// Whose CPU is the target's, when it runs in this process or on this host.
    pub target_process: Option<crate::sampler::TargetProcess>,
    /// Called about once a second with a snapshot, for progress lines.
    pub progress: Option<ProgressFn>,
    /// A file to write every measured latency to (µs, one per line), for audits and for
    /// checking a merge against the raw samples.
    pub raw_latencies: Option<std::path::PathBuf>,
}

impl std::fmt::Debug for DriverConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DriverConfig")
            .field("request", &self.request)
            .field("schedule", &self.schedule)
            .field("shard", &self.shard)
            .field("connections", &self.connections)
            .finish_non_exhaustive()
    }
}

/// A progress callback: called about once a second from the driver's runtime.
pub type ProgressFn = Arc<dyn Fn(&Progress) + Send + Sync>;

/// A live view of a run, for progress lines.
#[derive(Debug, Clone)]
pub struct Progress {
    /// Time since the schedule's start.
    pub elapsed: Duration,
    /// The schedule's length.
    pub total: Duration,
    /// The last finished second.
    pub last: Option<SecondStats>,
    /// Failures so far (errors and drops, all windows).
    pub failed: u64,
    /// The run is over: this is the last call.
    pub finished: bool,
}

/// The result of one driver run.
#[derive(Debug, Clone)]
pub struct RunStats {
    /// Wall-clock start of the schedule.
    pub started_at: SystemTime,
    /// The shard that ran.
    pub shard: Shard,
    /// The measured window (after the warm-up).
    pub measured: Duration,
    /// The warm-up.
    pub warm_up: Duration,
    /// Requests per second the schedule called for over the measured window: this shard's
    /// share.
    pub target_rate: f64,
    /// Counters of the measured window.
    pub counters: Counters,
    /// Counters of the warm-up.
    pub warm_up_counters: Counters,
    /// Latencies of successful measured requests.
    pub latencies: Latencies,
    /// Per-second rows, by completion time.
    pub seconds: Vec<SecondStats>,
    /// Per-second CPU and host samples.
    pub cpu: Vec<CpuSample>,
    /// Largest release lag of the pacing task, µs.
    pub max_schedule_lag_us: u64,
    /// Failure samples.
    pub samples: Vec<String>,
    /// Wall time from the schedule's start to the last completion.
    pub wall: Duration,
}

impl RunStats {
    /// Successful responses per second over the measured window.
    pub fn achieved_rate(&self) -> f64 {
        per_second(self.counters.ok, self.measured)
    }
}

/// Count over a duration, per second; 0 for an empty window.
pub fn per_second(count: u64, over: Duration) -> f64 {
    let secs = over.as_secs_f64();
    if secs > 0.0 { count as f64 / secs } else { 0.0 }
}

/// A driver that could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DriverError {
    /// The base URL is not `http://host:port`.
    #[error("invalid base URL {url:?}: {reason}")]
    Url {
        /// The URL.
        url: String,
        /// Why.
        reason: String,
    },
    /// A setting is out of range.
    #[error("{field} = {value} is out of range: {limit}")]
    OutOfRange {
        /// The setting.
        field: &'static str,
        /// Its value.
        value: String,
        /// The allowed range.
        limit: &'static str,
    },
    /// The request cannot be sent as given.
    #[error("invalid request: {0}")]
    Request(String),
    /// The runtime or a thread could not start.
    #[error("failed to start the load driver: {0}")]
    Start(String),
}

/// One scheduled request on the queue.
#[derive(Debug, Clone, Copy)]
struct Slot {
    intended: Instant,
    /// Its index in the whole schedule: which body it sends.
    index: u64,
    /// The pacer's wake-up that released it (counted from 0): the calls of one release
    /// share a gRPC connection.
    release: u64,
}

/// Where to connect and what to put in the request head.
#[derive(Debug, Clone)]
struct Destination {
    authority: String,
    host: HeaderValue,
    /// `grpc://`: `ModelInfer` calls over HTTP/2.
    grpc: bool,
}

fn destination(base_url: &str) -> Result<Destination, DriverError> {
    let bad = |reason: &str| DriverError::Url {
        url: base_url.to_owned(),
        reason: reason.to_owned(),
    };
    let uri: Uri = base_url.parse().map_err(|_| bad("not a URL"))?;
    let grpc = match uri.scheme_str() {
        Some("http") => false,
        Some("grpc") => true,
        _ => {
            return Err(bad(
                "the load driver speaks plain http:// (or grpc://host:port) only",
            ));
        }
    };
    let authority = uri.authority().ok_or_else(|| bad("no host"))?;
    if grpc && authority.port_u16().is_none() {
        return Err(bad("a grpc:// URL needs a port"));
    }
    let port = authority.port_u16().unwrap_or(80);
    let host = authority.host();
    let host_header =
        HeaderValue::from_str(authority.as_str()).map_err(|_| bad("host is not a header value"))?;
    Ok(Destination {
        authority: format!("{host}:{port}"),
        host: host_header,
        grpc,
    })
}

fn check_config(c: &DriverConfig) -> Result<(), DriverError> {
    let range = |field, value: String, limit| DriverError::OutOfRange {
        field,
        value,
        limit,
    };
    if c.connections == 0 || c.connections > 10_000 {
        return Err(range(
            "connections",
            c.connections.to_string(),
            "1 to 10000",
        ));
    }
    if c.threads == 0 || c.threads > 64 {
        return Err(range("threads", c.threads.to_string(), "1 to 64"));
    }
    for stage in c.schedule.stages() {
        for rate in [stage.rate_from, stage.rate_to] {
            if !rate.is_finite() || !(0.0..=10_000_000.0).contains(&rate) {
                return Err(range("rate", rate.to_string(), "0 to 10000000 req/s"));
            }
        }
    }
    if c.pacing > Duration::from_millis(10) {
        return Err(range("pacing", format!("{:?}", c.pacing), "0 to 10 ms"));
    }
    if c.request_timeout.is_zero() {
        return Err(range("request-timeout", "0".into(), "more than 0"));
    }
    Ok(())
}

/// The Instant at which a wall-clock start falls (now, when it has passed or is `None`).
fn start_instant(start_at: Option<SystemTime>) -> Instant {
    let now_i = Instant::now();
    match start_at {
        None => now_i,
        Some(at) => match at.duration_since(SystemTime::now()) {
            Ok(ahead) => now_i + ahead,
            Err(_) => now_i,
        },
    }
}

/// Runs a schedule to its end and returns what was measured. Blocks the calling thread
/// (call it from `spawn_blocking` in async code): the driver has its own runtime and threads.
pub fn run(config: DriverConfig) -> Result<RunStats, DriverError> {
    check_config(&config)?;
    let dest = destination(&config.request.base_url)?;
    let spec = &config.request;
    // Each body serialised once, with its head: sending is a write of ready bytes.
    let bodies = std::iter::once(&spec.body).chain(&spec.variants);
    let proto = if dest.grpc {
        let mut model = String::new();
        let calls = bodies
            .map(|body| {
                grpc::prepare(&spec.path, body).map(|(call, m)| {
                    model = m;
                    call
                })
            })
            .collect::<Result<Vec<grpc::Call>, String>>()
            .map_err(DriverError::Request)?;
        let shared = grpc::Shared::new(
            &dest.authority,
            &spec.headers,
            calls,
            model,
            config.connections,
        )
        .map_err(DriverError::Request)?;
        Proto::Grpc(Arc::new(shared))
    } else {
        let prepared = bodies
            .map(|body| http1::prepare(&spec.method, &spec.path, &dest.host, &spec.headers, body))
            .collect::<Result<Vec<Prepared>, String>>()
            .map_err(DriverError::Request)?;
        Proto::Http1(Arc::new(prepared))
    };
    let worker_index = AtomicUsize::new(0);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(config.threads)
        .thread_name_fn(move || {
            format!(
                "{DRIVER_THREAD_PREFIX}-{}",
                worker_index.fetch_add(1, Ordering::Relaxed)
            )
        })
        .enable_all()
        .build()
        .map_err(|e| DriverError::Start(format!("runtime: {e}")))?;

    let started_at = config.start_at.unwrap_or_else(SystemTime::now);
    let start = start_instant(config.start_at);
    let mut recorder = Recorder::new(start, config.warm_up, config.late_after);
    if let Some(path) = &config.raw_latencies {
        let file = std::fs::File::create(path)
            .map_err(|e| DriverError::Start(format!("cannot create {}: {e}", path.display())))?;
        recorder.raw = Some(std::io::BufWriter::new(file));
    }
    let recorder = Arc::new(Mutex::new(recorder));
    // Room for every request that may wait its queue deadline at the highest rate, so
    // drops come from the deadline, not from the bound; capped to bound memory (16 B each).
    let peak_rate = config
        .schedule
        .stages()
        .iter()
        .map(|s| s.rate_from.max(s.rate_to))
        .fold(0.0, f64::max)
        / f64::from(config.shard.count.max(1));
    let queue_cap = ((peak_rate * config.queue_timeout.as_secs_f64()).ceil() as usize)
        .clamp((config.connections * 4).max(64), 1 << 20);
    let (tx, rx) = async_channel::bounded::<Slot>(queue_cap);

    let sampler = Sampler::start(DRIVER_THREAD_PREFIX, config.target_process.clone(), start)
        .map_err(|e| DriverError::Start(format!("sampler thread: {e}")))?;

    // Connection tasks.
    let mut tasks = Vec::with_capacity(config.connections);
    for _ in 0..config.connections {
        let worker = Worker {
            rx: rx.clone(),
            recorder: Arc::clone(&recorder),
            authority: dest.authority.clone(),
            proto: proto.clone(),
            check: Arc::clone(&config.check),
            connect_timeout: config.connect_timeout,
            request_timeout: config.request_timeout,
            queue_timeout: config.queue_timeout,
        };
        tasks.push(runtime.spawn(worker.run()));
    }
    drop(rx);
    // Progress: once a second, from the driver's runtime.
    let done = Arc::new(AtomicBool::new(false));
    let total = config.schedule.duration();
    if let Some(progress) = config.progress.clone() {
        let recorder = Arc::clone(&recorder);
        let done = Arc::clone(&done);
        runtime.spawn(async move {
            let mut tick = tokio::time::interval_at(
                tokio::time::Instant::from_std(start) + Duration::from_secs(1),
                Duration::from_secs(1),
            );
            while !done.load(Ordering::Relaxed) {
                tick.tick().await;
                let snapshot = {
                    let mut r = recorder.lock().unwrap_or_else(PoisonError::into_inner);
                    r.tick(Instant::now());
                    Progress {
                        elapsed: Instant::now().saturating_duration_since(start),
                        total,
                        last: r.seconds.last().cloned(),
                        failed: r.counters.failed() + r.warm_up.failed(),
                        finished: false,
                    }
                };
                progress(&snapshot);
            }
        });
    }

    // The pacing task, on the runtime beside the connections it feeds.
    let schedule = config.schedule.clone();
    let shard = config.shard;
    let resolution = config.pacing;
    let pace_recorder = Arc::clone(&recorder);
    let pacing = runtime.spawn(async move {
        let pacer = Pacer::new().map_err(|e| format!("precise timer: {e}"))?;
        pace(
            &pacer,
            resolution,
            &schedule,
            shard,
            start,
            &tx,
            &pace_recorder,
        )
        .await
    });
    match runtime.block_on(pacing) {
        Ok(Ok(())) => {}
        Ok(Err(e)) => return Err(DriverError::Start(e)),
        Err(e) => return Err(DriverError::Start(format!("pacing task: {e}"))),
    }
    runtime.block_on(async {
        for task in tasks {
            let _ = task.await;
        }
    });
    done.store(true, Ordering::Relaxed);
    let end = Instant::now();
    let cpu = sampler.stop();
    runtime.shutdown_timeout(Duration::from_secs(1));

    let mut r = recorder.lock().unwrap_or_else(PoisonError::into_inner);
    r.finish(end);
    if let Some(mut raw) = r.raw.take() {
        std::io::Write::flush(&mut raw)
            .map_err(|e| DriverError::Start(format!("writing raw latencies: {e}")))?;
    }
    if let Some(progress) = &config.progress {
        progress(&Progress {
            elapsed: total.max(end.saturating_duration_since(start)),
            total,
            last: r.seconds.last().cloned(),
            failed: r.counters.failed() + r.warm_up.failed(),
            finished: true,
        });
    }
    let measured = total.saturating_sub(config.warm_up);
    // This shard's share: the shards of a run add up to the whole schedule's rate.
    let target_rate = per_second_f(config.schedule.due_between(config.warm_up, total), measured)
        / f64::from(config.shard.count.max(1));
    Ok(RunStats {
        started_at,
        shard: config.shard,
        measured,
        warm_up: config.warm_up.min(total),
        target_rate,
        counters: r.counters.clone(),
        warm_up_counters: r.warm_up.clone(),
        latencies: std::mem::take(&mut r.overall),
        seconds: std::mem::take(&mut r.seconds),
        cpu,
        max_schedule_lag_us: r.max_schedule_lag_us,
        samples: std::mem::take(&mut r.samples),
        wall: end.saturating_duration_since(start),
    })
}

fn per_second_f(count: f64, over: Duration) -> f64 {
    let secs = over.as_secs_f64();
    if secs > 0.0 { count / secs } else { 0.0 }
}

/// Sleeps to each intended time and releases every request then due onto the queue; a
/// full queue drops the request. Wake-ups are aimed at least `resolution` apart: requests
/// that fall due in between go out together at the next one. Ends when the schedule does,
/// closing the queue.
async fn pace(
    pacer: &Pacer,
    resolution: Duration,
    schedule: &Schedule,
    shard: Shard,
    start: Instant,
    tx: &async_channel::Sender<Slot>,
    recorder: &Mutex<Recorder>,
) -> Result<(), String> {
    let mut offsets = schedule
        .offsets(shard)
        .map(|(index, offset)| (index, start + offset))
        .peekable();
    // The previous wake-up's target time (not when it happened: a wake-up that comes late
    // must not push the next one back, or every release would slip by the wake-up latency).
    let mut last: Option<Instant> = None;
    let mut release = 0;
    while let Some(&(_, first)) = offsets.peek() {
        let target = last.map_or(first, |l| first.max(l + resolution));
        pacer
            .sleep_until(target)
            .await
            .map_err(|e| format!("precise timer: {e}"))?;
        last = Some(target);
        let now = Instant::now();
        let mut r = recorder.lock().unwrap_or_else(PoisonError::into_inner);
        while let Some((index, intended)) = offsets.next_if(|(_, at)| *at <= now) {
            r.dispatched(intended, now.saturating_duration_since(intended));
            match tx.try_send(Slot {
                intended,
                index,
                release,
            }) {
                Ok(()) => {}
                Err(async_channel::TrySendError::Full(_)) => r.dropped(intended, now),
                Err(async_channel::TrySendError::Closed(_)) => return Ok(()),
            }
        }
        release += 1;
    }
    Ok(())
}

/// What the connection tasks send.
#[derive(Clone)]
enum Proto {
    /// The HTTP/1.1 request of each body, in schedule order (never empty).
    Http1(Arc<Vec<Prepared>>),
    /// The gRPC calls and their shared HTTP/2 connections.
    Grpc(Arc<grpc::Shared>),
}

/// One pooled connection and the loop that feeds it.
struct Worker {
    rx: async_channel::Receiver<Slot>,
    recorder: Arc<Mutex<Recorder>>,
    authority: String,
    proto: Proto,
    check: Arc<dyn ResponseCheck>,
    connect_timeout: Duration,
    request_timeout: Duration,
    queue_timeout: Duration,
}

impl Worker {
    async fn run(self) {
        let requests = match &self.proto {
            Proto::Http1(requests) => Arc::clone(requests),
            Proto::Grpc(shared) => {
                let worker = grpc::GrpcWorker::new(Arc::clone(shared));
                return self.run_grpc(worker).await;
            }
        };
        let mut conn: Option<Conn> = None;
        while let Ok(slot) = self.rx.recv().await {
            let now = Instant::now();
            if now.saturating_duration_since(slot.intended) > self.queue_timeout {
                self.lock().dropped(slot.intended, now);
                continue;
            }
            let n = requests.len() as u64;
            let request = &requests[(slot.index % n.max(1)) as usize];
            let (sent, how) = self.exchange(&mut conn, request).await;
            let done = Instant::now();
            let mut r = self.lock();
            if let Some(sent) = sent {
                r.sent(slot.intended, sent);
            }
            r.completed(slot.intended, done, how);
        }
    }

    /// [`Worker::run`] over gRPC.
    async fn run_grpc(self, mut worker: grpc::GrpcWorker) {
        while let Ok(slot) = self.rx.recv().await {
            let now = Instant::now();
            if now.saturating_duration_since(slot.intended) > self.queue_timeout {
                self.lock().dropped(slot.intended, now);
                continue;
            }
            let shared = Arc::clone(&worker.shared);
            let call = shared.call(slot.index);
            let (sent, how) = worker
                .exchange(
                    call,
                    slot.release,
                    self.connect_timeout,
                    self.request_timeout,
                    MAX_RESPONSE_BYTES,
                    self.check.as_ref(),
                )
                .await;
            let done = Instant::now();
            let mut r = self.lock();
            if let Some(sent) = sent {
                r.sent(slot.intended, sent);
            }
            r.completed(slot.intended, done, how);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Recorder> {
        self.recorder.lock().unwrap_or_else(PoisonError::into_inner)
    }

    async fn connect(&self) -> Result<Conn, String> {
        tokio::time::timeout(self.connect_timeout, Conn::connect(&self.authority))
            .await
            .map_err(|_| {
                format!(
                    "connect to {} timed out after {} ms",
                    self.authority,
                    self.connect_timeout.as_millis()
                )
            })?
            .map_err(|e| format!("connect to {}: {e}", self.authority))
    }

    /// Sends the request on the pooled connection (connecting first when there is none or
    /// the server has closed it); returns when it was sent, if it was, and how it ended.
    async fn exchange(
        &self,
        conn: &mut Option<Conn>,
        request: &Prepared,
    ) -> (Option<Instant>, Completion) {
        if conn.as_mut().is_some_and(|c| !c.is_reusable()) {
            *conn = None;
        }
        let c = match conn {
            Some(c) => c,
            None => match self.connect().await {
                Ok(c) => conn.insert(c),
                Err(e) => {
                    return (
                        None,
                        Completion::Failed(Failure::new(ErrorClass::Connect, e)),
                    );
                }
            },
        };
        let sent = Instant::now();
        let how = match tokio::time::timeout(
            self.request_timeout,
            c.exchange(request, MAX_RESPONSE_BYTES),
        )
        .await
        {
            Err(_) => Completion::Failed(Failure::new(
                ErrorClass::Timeout,
                format!(
                    "no complete response within {} ms",
                    self.request_timeout.as_millis()
                ),
            )),
            Ok(Err(message)) => Completion::Failed(Failure::new(ErrorClass::Transport, message)),
            Ok(Ok(response)) => match StatusCode::from_u16(response.status) {
                Ok(status) => classify(status, response.body, self.check.as_ref()),
                Err(_) => Completion::Failed(Failure::new(
                    ErrorClass::Transport,
                    format!("invalid status code {}", response.status),
                )),
            },
        };
        // A connection that failed or timed out mid-exchange cannot be reused.
        if let Completion::Failed(f) = &how
            && matches!(f.class, ErrorClass::Timeout | ErrorClass::Transport)
        {
            *conn = None;
        }
        (Some(sent), how)
    }
}

/// The completion a response calls for. A failure keeps its status code and the body's
/// first [`MAX_BODY_BYTES`] (built only for failures: a success costs the check alone).
fn classify(status: StatusCode, body: &[u8], check: &dyn ResponseCheck) -> Completion {
    let failed = |class, detail| {
        Completion::Failed(Failure {
            class,
            status: Some(status.as_u16()),
            detail,
        })
    };
    if status.is_client_error() {
        return failed(ErrorClass::Status4xx, excerpt(body, MAX_BODY_BYTES));
    }
    if !status.is_success() {
        return failed(ErrorClass::Status5xx, excerpt(body, MAX_BODY_BYTES));
    }
    match check.check(body) {
        Ok(tag) => Completion::Ok(tag),
        Err(reason) => failed(
            ErrorClass::BodyMismatch,
            format!("body mismatch: {reason}: {}", excerpt(body, MAX_BODY_BYTES)),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn destinations_are_plain_http_with_a_port() {
        let d = destination("http://127.0.0.1:8080").unwrap();
        assert_eq!(d.authority, "127.0.0.1:8080");
        assert_eq!(
            destination("http://localhost").unwrap().authority,
            "localhost:80"
        );
        let err = destination("https://127.0.0.1:1").unwrap_err();
        assert!(err.to_string().contains("plain http"), "{err}");
        let g = destination("grpc://127.0.0.1:8081").unwrap();
        assert!(g.grpc);
        assert_eq!(g.authority, "127.0.0.1:8081");
        assert!(destination("grpc://127.0.0.1").is_err());
    }

    struct Needs(&'static str);
    impl ResponseCheck for Needs {
        fn check(&self, body: &[u8]) -> Result<Option<String>, String> {
            if body.windows(self.0.len()).any(|w| w == self.0.as_bytes()) {
                Ok(Some("v".into()))
            } else {
                Err(format!("no {:?}", self.0))
            }
        }

        fn check_grpc(&self, _response: &ModelInferResponse) -> Result<Option<String>, String> {
            Err("not over gRPC".into())
        }
    }

    #[test]
    fn responses_are_classified_by_status_then_body() {
        let check = Needs("outputs");
        assert_eq!(
            classify(StatusCode::OK, b"{\"outputs\":[]}", &check),
            Completion::Ok(Some("v".into()))
        );
        assert!(matches!(
            classify(StatusCode::OK, b"{}", &check),
            Completion::Failed(Failure { class: ErrorClass::BodyMismatch, status: Some(200), detail })
                if detail.contains("no \"outputs\"")
        ));
        assert_eq!(
            classify(StatusCode::NOT_FOUND, b"{\"error\":\"no model\"}", &check),
            Completion::Failed(Failure {
                class: ErrorClass::Status4xx,
                status: Some(404),
                detail: "{\"error\":\"no model\"}".to_owned(),
            })
        );
        assert!(matches!(
            classify(StatusCode::SERVICE_UNAVAILABLE, b"", &check),
            Completion::Failed(Failure {
                class: ErrorClass::Status5xx,
                status: Some(503),
                ..
            })
        ));
    }
}
