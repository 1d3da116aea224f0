//! `gauntlet-engine`: serve models over the Open Inference Protocol.
//!
//! Prints `listening on ADDR` (the bound address, so `--listen 127.0.0.1:0` is usable) on
//! stdout once it accepts connections, then `grpc listening on ADDR` when `--grpc-listen` is
//! given; logs go to stderr. See `--help` for exit codes.

use std::io::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, ValueEnum};
use gauntlet_engine::security::Security;
use gauntlet_engine::{AppState, EngineConfig, ShutdownSignals, serve, serve_grpc, serve_tls};
use tracing_subscriber::EnvFilter;

mod commands;

/// mimalloc rather than glibc's malloc: a request allocates and frees a few dozen small
/// blocks, and glibc's allocator took about a tenth of the infer path's CPU time (profile and
/// before/after figures in `engine/benches/README.md`).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Bad flags, a bad config file, or a model file that fails to load.
const EXIT_CONFIG: u8 = 2;
/// The model directory does not exist.
const EXIT_MISSING_MODEL_DIR: u8 = 3;
/// Runtime failure: cannot bind the address, cannot open the audit log, or the server's
/// listener failed.
const EXIT_RUNTIME: u8 = 1;
/// Shutdown did not wait for in-flight requests: the shutdown grace expired with requests in
/// flight, or a second signal cut the delay or grace short.
const EXIT_ABANDONED: u8 = 4;

const EXIT_CODES: &str = "\
Shutdown: on SIGTERM or SIGINT the engine answers 400 to /v2/health/ready but keeps serving
for --shutdown-delay, then stops accepting connections and waits up to --shutdown-grace for
in-flight requests. Idle connections close at once; one that has sent part of a request head
closes when --header-read-timeout expires.
A second SIGTERM or SIGINT during the delay or the grace stops the engine at once (exit 4).

Exit codes:
  0  shut down cleanly after SIGTERM or SIGINT (a subcommand: succeeded)
  1  runtime failure (cannot bind the listen or gRPC address, listener error)
  2  invalid flags or config file, a security file (keyring, admin keys, read tokens, TLS
     certificate or key) that fails to load or is readable by group/others, or a model file
     that fails to load (a subcommand: failed)
  3  the model directory does not exist
  4  shutdown abandoned in-flight requests: the shutdown grace expired with requests still
     in flight, or a second SIGTERM or SIGINT cut the delay or the grace short";

/// Reference ML model-serving engine (Open Inference Protocol / KServe V2).
#[derive(Debug, Parser)]
#[command(name = "gauntlet-engine", version, about, after_help = EXIT_CODES)]
struct Cli {
    /// With no subcommand, the engine serves.
    #[command(subcommand)]
    command: Option<commands::Command>,
    /// Address to listen on [default: 127.0.0.1:8080; port 0 picks a free port].
    #[arg(long, env = "GAUNTLET_ENGINE_LISTEN", value_name = "ADDR")]
    listen: Option<SocketAddr>,
    /// Also serve the Open Inference Protocol over gRPC (KServe V2 GRPCInferenceService,
    /// plain HTTP/2) on this address; port 0 picks a free port [default: off].
    #[arg(long, env = "GAUNTLET_ENGINE_GRPC_LISTEN", value_name = "ADDR")]
    grpc_listen: Option<SocketAddr>,
    /// Directory of `*.json` artifacts to load and promote at start.
    #[arg(long, env = "GAUNTLET_ENGINE_MODEL_DIR", value_name = "DIR")]
    model_dir: Option<PathBuf>,
    /// TOML config file (kebab-case keys of EngineConfig); flags override it.
    #[arg(long, env = "GAUNTLET_ENGINE_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,
    /// Largest request body in bytes [default: 1048576].
    #[arg(long, env = "GAUNTLET_ENGINE_MAX_BODY_BYTES", value_name = "BYTES")]
    max_body_bytes: Option<usize>,
    /// Most rows per infer request [default: 10000].
    #[arg(long, env = "GAUNTLET_ENGINE_MAX_BATCH_ROWS", value_name = "ROWS")]
    max_batch_rows: Option<usize>,
    /// Per-request deadline, e.g. `5s` or `250ms`; repository routes are exempt [default: none].
    #[arg(long, env = "GAUNTLET_ENGINE_REQUEST_TIMEOUT", value_name = "DURATION", value_parser = humantime::parse_duration)]
    request_timeout: Option<Duration>,
    /// Time to keep serving, not ready, after a shutdown signal [default: 0s].
    #[arg(long, env = "GAUNTLET_ENGINE_SHUTDOWN_DELAY", value_name = "DURATION", value_parser = humantime::parse_duration)]
    shutdown_delay: Option<Duration>,
    /// Time to wait for in-flight requests once no longer accepting [default: 10s].
    #[arg(long, env = "GAUNTLET_ENGINE_SHUTDOWN_GRACE", value_name = "DURATION", value_parser = humantime::parse_duration)]
    shutdown_grace: Option<Duration>,
    /// Time a client has to send a whole request head before it is disconnected; also the
    /// longest a kept-alive connection may stay idle [default: 10s].
    #[arg(long, env = "GAUNTLET_ENGINE_HEADER_READ_TIMEOUT", value_name = "DURATION", value_parser = humantime::parse_duration)]
    header_read_timeout: Option<Duration>,
    /// Async worker threads [default: $TOKIO_WORKER_THREADS if set, else one per core the
    /// process may run on].
    #[arg(long, env = "GAUNTLET_ENGINE_WORKER_THREADS", value_name = "N")]
    worker_threads: Option<usize>,
    /// Fault injection: delay every inference response by this much, e.g. `5ms`, at most
    /// 60s, to make a deliberately slowed target for proving latency gates [default: 0s].
    #[arg(long, env = "GAUNTLET_ENGINE_INJECT_LATENCY", value_name = "DURATION", value_parser = parse_inject_latency)]
    inject_latency: Option<Duration>,
    /// KEK keyring file that decrypts `*.enc` artifacts (config `security.keyring`).
    #[arg(long, env = "GAUNTLET_ENGINE_KEYRING", value_name = "FILE")]
    keyring: Option<PathBuf>,
    /// Refuse plain artifacts (config `security.require-encrypted-artifacts`).
    #[arg(long, env = "GAUNTLET_ENGINE_REQUIRE_ENCRYPTED_ARTIFACTS")]
    require_encrypted_artifacts: bool,
    /// Admin keys file: repository routes then require signed requests (config
    /// `security.admin-keys`).
    #[arg(long, env = "GAUNTLET_ENGINE_ADMIN_KEYS", value_name = "FILE")]
    admin_keys: Option<PathBuf>,
    /// Read tokens file: every route but health probes then requires a bearer token (config
    /// `security.read-tokens`).
    #[arg(long, env = "GAUNTLET_ENGINE_READ_TOKENS", value_name = "FILE")]
    read_tokens: Option<PathBuf>,
    /// PEM certificate chain; with --tls-key the engine serves HTTPS only.
    #[arg(
        long,
        env = "GAUNTLET_ENGINE_TLS_CERT",
        value_name = "FILE",
        requires = "tls_key"
    )]
    tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert (mode 0600).
    #[arg(
        long,
        env = "GAUNTLET_ENGINE_TLS_KEY",
        value_name = "FILE",
        requires = "tls_cert"
    )]
    tls_key: Option<PathBuf>,
    /// Log format on stderr; the level comes from RUST_LOG [default level: info].
    #[arg(long, env = "GAUNTLET_ENGINE_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

fn main() -> ExitCode {
    let mut cli = Cli::parse();
    init_tracing(cli.log_format);
    if let Some(command) = cli.command.take() {
        return match commands::run(command) {
            Ok(()) => ExitCode::SUCCESS,
            Err(err) => {
                eprintln!("gauntlet-engine: error: {err:#}");
                ExitCode::from(EXIT_CONFIG)
            }
        };
    }
    let config = match build_config(&cli) {
        Ok(config) => config,
        Err(err) => {
            eprintln!("gauntlet-engine: error: {err:#}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    if let Some(threads) = config.worker_threads {
        runtime.worker_threads(threads);
    }
    let runtime = match runtime.enable_all().build() {
        Ok(rt) => rt,
        Err(err) => {
            eprintln!("gauntlet-engine: error: failed to start the async runtime: {err}");
            return ExitCode::from(EXIT_RUNTIME);
        }
    };
    let code = runtime.block_on(run(config));
    // Do not wait for blocking work a request left behind (an abandoned batch or load).
    runtime.shutdown_background();
    code
}

/// The config file (or defaults) with flags and their env twins laid over it.
fn build_config(cli: &Cli) -> anyhow::Result<EngineConfig> {
    let mut config = match &cli.config {
        Some(path) => EngineConfig::from_toml_file(path).map_err(|e| {
            anyhow::Error::from(e).context(format!("config file `{}`", path.display()))
        })?,
        None => EngineConfig::default(),
    };
    if let Some(listen) = cli.listen {
        config.listen = listen;
    }
    if let Some(listen) = cli.grpc_listen {
        config.grpc_listen = Some(listen);
    }
    if let Some(dir) = &cli.model_dir {
        config.model_dir = Some(dir.clone());
    }
    if let Some(bytes) = cli.max_body_bytes {
        config.max_body_bytes = bytes;
    }
    if let Some(rows) = cli.max_batch_rows {
        config.max_batch_rows = rows;
    }
    if let Some(timeout) = cli.request_timeout {
        config.request_timeout = Some(timeout);
    }
    if let Some(delay) = cli.shutdown_delay {
        config.shutdown_delay = delay;
    }
    if let Some(grace) = cli.shutdown_grace {
        config.shutdown_grace = grace;
    }
    if let Some(timeout) = cli.header_read_timeout {
        config.header_read_timeout = timeout;
    }
    if let Some(threads) = cli.worker_threads {
        config.worker_threads = Some(threads);
    }
    if config.worker_threads.is_none() {
        config.worker_threads = tokio_worker_threads(std::env::var_os(TOKIO_WORKER_THREADS))?;
    }
    if let Some(delay) = cli.inject_latency {
        config.inject_latency = delay;
    }
    let security = &mut config.security;
    if let Some(path) = &cli.keyring {
        security.keyring = Some(path.clone());
    }
    security.require_encrypted_artifacts |= cli.require_encrypted_artifacts;
    if let Some(path) = &cli.admin_keys {
        security.admin_keys = Some(path.clone());
    }
    if let Some(path) = &cli.read_tokens {
        security.read_tokens = Some(path.clone());
    }
    if let (Some(cert), Some(key)) = (&cli.tls_cert, &cli.tls_key) {
        security.tls_cert = Some(cert.clone());
        security.tls_key = Some(key.clone());
    }
    config.validate()?;
    Ok(config)
}

/// Tokio's own variable for its default worker count, which it panics on when it is not a
/// positive integer.
const TOKIO_WORKER_THREADS: &str = "TOKIO_WORKER_THREADS";

/// The worker count `TOKIO_WORKER_THREADS` asks for (`None` when unset), read here so that a
/// bad value is a config error naming the variable and the limit rather than a panic in the
/// runtime builder. Only read when `--worker-threads` (or the config key) is not given.
fn tokio_worker_threads(value: Option<std::ffi::OsString>) -> anyhow::Result<Option<usize>> {
    let Some(value) = value else {
        return Ok(None);
    };
    let max = gauntlet_engine::config::MAX_WORKER_THREADS;
    match value.to_str().and_then(|v| v.parse::<usize>().ok()) {
        Some(threads) if (1..=max).contains(&threads) => Ok(Some(threads)),
        Some(threads) => {
            anyhow::bail!("{TOKIO_WORKER_THREADS} must be between 1 and {max}, got {threads}")
        }
        None => anyhow::bail!(
            "{TOKIO_WORKER_THREADS} must be between 1 and {max}, got {:?}",
            value.to_string_lossy()
        ),
    }
}

/// `--inject-latency`: a humantime duration within [`gauntlet_engine::config::MAX_INJECT_LATENCY`],
/// so that clap's error names the flag and the limit.
fn parse_inject_latency(s: &str) -> Result<Duration, String> {
    let delay = humantime::parse_duration(s).map_err(|e| e.to_string())?;
    gauntlet_engine::config::check_inject_latency(delay)?;
    Ok(delay)
}

fn init_tracing(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Colour only for a person at a terminal; log files and CI get plain text.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

async fn run(config: EngineConfig) -> ExitCode {
    let security = match Security::load(&config.security) {
        Ok(security) => security,
        Err(err) => {
            eprintln!("gauntlet-engine: error: {:#}", anyhow::Error::from(err));
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let state = match AppState::open_with_security(config.clone(), security) {
        Ok(state) => state,
        Err(err) => {
            eprintln!("gauntlet-engine: error: {:#}", anyhow::Error::from(err));
            return ExitCode::from(EXIT_RUNTIME);
        }
    };
    if let Some(audit) = state.audit() {
        let r = audit.recovery();
        for torn in &r.torn {
            tracing::warn!(
                file = %torn.file.display(),
                offset = torn.offset,
                index = ?torn.index,
                bytes = torn.bytes,
                quarantine = %torn.quarantine.display(),
                fault = %torn.fault,
                "audit log: torn tail cut off and kept"
            );
        }
        tracing::info!(
            records = r.records,
            segments = r.segments,
            checkpoints = r.checkpoints,
            torn = r.torn.len(),
            "audit log open"
        );
    }
    let code = serve_until_stopped(&state, &config).await;
    if let Some(audit) = state.audit() {
        audit.close().await;
    }
    code
}

/// Serves `state` until a signal asks to stop; the audit log (if any) is closed by the caller.
async fn serve_until_stopped(state: &AppState, config: &EngineConfig) -> ExitCode {
    let state = state.clone();
    let config = config.clone();
    let tls = match (&config.security.tls_cert, &config.security.tls_key) {
        (Some(cert), Some(key)) => match gauntlet_engine::security::tls::acceptor(cert, key) {
            Ok(acceptor) => Some(acceptor),
            Err(err) => {
                eprintln!("gauntlet-engine: error: {err}");
                return ExitCode::from(EXIT_CONFIG);
            }
        },
        _ => None,
    };
    if config.security.admin_keys.is_none() {
        tracing::warn!(
            listen = %config.listen,
            "repository routes are unauthenticated: set security.admin-keys (--admin-keys) to require signed admin calls"
        );
    }
    if let Some(dir) = &config.model_dir
        && let Err(err) = state.load_model_dir(dir)
    {
        let code = if err.is_missing_model_dir() {
            EXIT_MISSING_MODEL_DIR
        } else {
            EXIT_CONFIG
        };
        eprintln!("gauntlet-engine: error: {:#}", anyhow::Error::from(err));
        return ExitCode::from(code);
    }
    let listener = match tokio::net::TcpListener::bind(config.listen).await {
        Ok(listener) => listener,
        Err(err) => {
            eprintln!(
                "gauntlet-engine: error: failed to bind {}: {err}",
                config.listen
            );
            return ExitCode::from(EXIT_RUNTIME);
        }
    };
    let addr = match listener.local_addr() {
        Ok(addr) => addr,
        Err(err) => {
            eprintln!("gauntlet-engine: error: failed to read the bound address: {err}");
            return ExitCode::from(EXIT_RUNTIME);
        }
    };
    let grpc = match config.grpc_listen {
        Some(grpc_addr) => match bind(grpc_addr).await {
            Ok(bound) => Some(bound),
            Err(code) => return code,
        },
        None => None,
    };
    // Handlers first: a SIGTERM sent as soon as the address is announced must not kill us.
    let mut signals = ShutdownSignals::new();
    let mut stdout = std::io::stdout().lock();
    // The harness parses these lines for the ports; they must reach the pipe now.
    let announced = writeln!(stdout, "listening on {addr}").and_then(|()| match &grpc {
        Some((_, grpc_addr)) => writeln!(stdout, "grpc listening on {grpc_addr}"),
        None => Ok(()),
    });
    if announced.and_then(|()| stdout.flush()).is_err() {
        tracing::warn!("stdout is closed; not announcing the address");
    }
    drop(stdout);
    tracing::info!(%addr, models = state.registry().len(), "serving");

    // Both servers stop accepting when the sender sends (or is dropped).
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(());
    let stopped = |mut rx: tokio::sync::watch::Receiver<()>| async move {
        let _ = rx.changed().await;
    };
    tracing::info!(tls = tls.is_some(), "accepting connections");
    let stop = stopped(stop_rx.clone());
    let http: std::pin::Pin<Box<dyn Future<Output = std::io::Result<()>> + Send>> = match tls {
        Some(acceptor) => Box::pin(serve_tls(listener, state.clone(), acceptor, stop)),
        None => Box::pin(serve(listener, state.clone(), stop)),
    };
    let mut server: std::pin::Pin<Box<dyn Future<Output = std::io::Result<()>> + Send>> = match grpc
    {
        Some((grpc_listener, grpc_addr)) => {
            tracing::info!(addr = %grpc_addr, "serving the OIP over gRPC");
            let grpc = serve_grpc(grpc_listener, state.clone(), stopped(stop_rx));
            Box::pin(async move {
                tokio::try_join!(http, async {
                    grpc.await
                        .map_err(|e| std::io::Error::other(format!("gRPC server: {e}")))
                })
                .map(|((), ())| ())
            })
        }
        None => http,
    };
    let result = tokio::select! {
        result = &mut server => result,
        name = signals.next() => {
            tracing::info!(signal = name, "shutdown requested");
            state.set_ready(false);
            // Keep polling the server, which accepts connections, through the delay.
            let delay = tokio::time::sleep(config.shutdown_delay);
            tracing::info!(delay = ?config.shutdown_delay, "not ready; serving until the shutdown delay ends");
            let early = tokio::select! {
                result = &mut server => Some(result),
                () = delay => None,
                name = signals.next() => return cut_short(name),
            };
            match early {
                Some(result) => result,
                None => {
                    tracing::info!(grace = ?config.shutdown_grace, "draining");
                    let _ = stop_tx.send(());
                    drop(stop_tx);
                    let drained = tokio::select! {
                        drained = tokio::time::timeout(config.shutdown_grace, &mut server) => drained,
                        name = signals.next() => return cut_short(name),
                    };
                    match drained {
                        Ok(result) => result,
                        Err(_) => {
                            tracing::warn!(
                                grace = ?config.shutdown_grace,
                                "in-flight requests did not finish within the shutdown grace; abandoning them"
                            );
                            return ExitCode::from(EXIT_ABANDONED);
                        }
                    }
                }
            }
        }
    };
    match result {
        Ok(()) => {
            tracing::info!("stopped");
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("gauntlet-engine: error: server failed: {err}");
            ExitCode::from(EXIT_RUNTIME)
        }
    }
}

/// Binds the gRPC listener: the listener and its bound address, or the exit code.
async fn bind(addr: SocketAddr) -> Result<(tokio::net::TcpListener, SocketAddr), ExitCode> {
    let listener = tokio::net::TcpListener::bind(addr).await.map_err(|err| {
        eprintln!("gauntlet-engine: error: failed to bind the gRPC address {addr}: {err}");
        ExitCode::from(EXIT_RUNTIME)
    })?;
    let bound = listener.local_addr().map_err(|err| {
        eprintln!("gauntlet-engine: error: failed to read the bound gRPC address: {err}");
        ExitCode::from(EXIT_RUNTIME)
    })?;
    Ok((listener, bound))
}

/// A second signal during the shutdown delay or grace: stop now, abandoning what is in flight.
fn cut_short(signal: &str) -> ExitCode {
    tracing::warn!(
        signal,
        "second shutdown signal; stopping now and abandoning in-flight requests"
    );
    ExitCode::from(EXIT_ABANDONED)
}
