//! A real HTTP endpoint of a target, for drivers that need a socket (load tests).
//!
//! An [`HttpTarget`](super::HttpTarget) already is one. The [`InProcess`](super::InProcess)
//! engine is served on `127.0.0.1:0` by [`ServedEngine`], on a tokio runtime and OS threads of
//! its own, so that the engine's CPU time can be told apart from the load generator's.

use std::net::SocketAddr;
use std::thread::JoinHandle;
use std::time::Duration;

use http::{HeaderName, HeaderValue};
use tokio::sync::oneshot;

use gauntlet_engine::AppState;

use super::TargetError;

/// Name prefix of the threads that serve an in-process engine; thread names are cut at 15 bytes
/// by Linux, so keep it short. Load generators read `/proc/self/task/*/comm` for it.
pub const ENGINE_THREAD_PREFIX: &str = "gx-engine";

/// How long dropping a [`ServedEngine`] waits for its connections to finish.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);

/// An HTTP base URL that serves a target, and what keeps it served.
#[derive(Debug)]
pub struct HttpEndpoint {
    /// The base URL without a trailing slash (`http://127.0.0.1:41234`).
    pub url: String,
    /// The headers every request to `url` carries: the run's `--header`s and, when none of
    /// them is `authorization`, the one the URL's credentials call for (values sensitive).
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// The engine serving `url` when the target is in-process: dropping it stops the server.
    pub server: Option<ServedEngine>,
}

/// The reference engine served on a loopback port by its own runtime; stops on drop.
#[derive(Debug)]
pub struct ServedEngine {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl ServedEngine {
    /// Serves `state` on `127.0.0.1:0` with `worker_threads` tokio workers named
    /// [`ENGINE_THREAD_PREFIX`]`-N`; returns once the port is bound.
    pub fn start(state: AppState, worker_threads: usize) -> Result<Self, TargetError> {
        ServedEngine::start_with(state, worker_threads, Protocol::Http)
    }

    /// [`ServedEngine::start`] for the engine's gRPC service
    /// ([`gauntlet_engine::serve_grpc`]); reach it at `grpc://` [`ServedEngine::addr`].
    pub fn start_grpc(state: AppState, worker_threads: usize) -> Result<Self, TargetError> {
        ServedEngine::start_with(state, worker_threads, Protocol::Grpc)
    }

    /// [`ServedEngine::start`] over TLS with `acceptor` (the URL is still `http://…`; reach it
    /// with a TLS client).
    pub fn start_tls(
        state: AppState,
        worker_threads: usize,
        acceptor: gauntlet_engine::security::tls::TlsAcceptor,
    ) -> Result<Self, TargetError> {
        ServedEngine::start_with(state, worker_threads, Protocol::Tls(acceptor))
    }

    fn start_with(
        state: AppState,
        worker_threads: usize,
        protocol: Protocol,
    ) -> Result<Self, TargetError> {
        let setup = |reason: String| TargetError::Unreachable {
            url: "in-process engine on 127.0.0.1:0".to_owned(),
            reason,
        };
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(worker_threads.max(1))
            .thread_name_fn(|| {
                use std::sync::atomic::{AtomicUsize, Ordering};
                static NEXT: AtomicUsize = AtomicUsize::new(0);
                format!(
                    "{ENGINE_THREAD_PREFIX}-{}",
                    NEXT.fetch_add(1, Ordering::Relaxed)
                )
            })
            .enable_all()
            .build()
            .map_err(|e| setup(format!("failed to start the engine's runtime: {e}")))?;
        // Bound here with std (no runtime needed: the caller may be inside one), handed to
        // the engine's runtime in its thread.
        let listener = std::net::TcpListener::bind(("127.0.0.1", 0))
            .and_then(|l| l.set_nonblocking(true).map(|()| l))
            .map_err(|e| setup(format!("failed to bind 127.0.0.1:0: {e}")))?;
        let addr = listener
            .local_addr()
            .map_err(|e| setup(format!("failed to read the bound address: {e}")))?;
        let (stop, stopped) = oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name(format!("{ENGINE_THREAD_PREFIX}-main"))
            .spawn(move || {
                let (drain, drained) = oneshot::channel::<()>();
                let result = runtime.block_on(async {
                    let listener = match tokio::net::TcpListener::from_std(listener) {
                        Ok(l) => l,
                        Err(e) => return Some(Err(e)),
                    };
                    let stop = async {
                        let _ = drained.await;
                    };
                    let served: std::pin::Pin<
                        Box<dyn std::future::Future<Output = std::io::Result<()>> + Send>,
                    > = match protocol {
                        Protocol::Tls(acceptor) => {
                            Box::pin(gauntlet_engine::serve_tls(listener, state, acceptor, stop))
                        }
                        Protocol::Http => Box::pin(gauntlet_engine::serve(listener, state, stop)),
                        Protocol::Grpc => Box::pin(async move {
                            gauntlet_engine::serve_grpc(listener, state, stop)
                                .await
                                .map_err(std::io::Error::other)
                        }),
                    };
                    tokio::pin!(served);
                    tokio::select! {
                        result = &mut served => Some(result),
                        _ = stopped => {
                            let _ = drain.send(());
                            tokio::time::timeout(SHUTDOWN_GRACE, served).await.ok()
                        }
                    }
                });
                if let Some(Err(e)) = result {
                    tracing::warn!(error = %e, "in-process engine server failed");
                }
                // Blocking work a request left behind must not hold the harness up.
                runtime.shutdown_timeout(SHUTDOWN_GRACE);
            })
            .map_err(|e| setup(format!("failed to start the engine's thread: {e}")))?;
        Ok(ServedEngine {
            addr,
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The base URL, `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

/// What a [`ServedEngine`] serves.
enum Protocol {
    Http,
    Tls(gauntlet_engine::security::tls::TlsAcceptor),
    Grpc,
}

impl Drop for ServedEngine {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            // Dropped inside a case, on a worker of the harness's runtime: the join must not
            // hold that worker, which may be the one to drive the client's side of the last
            // connection closed; the server would then wait out its whole grace for it.
            let on_multi_thread_runtime = tokio::runtime::Handle::try_current()
                .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread);
            if on_multi_thread_runtime {
                tokio::task::block_in_place(|| {
                    let _ = thread.join();
                });
            } else {
                let _ = thread.join();
            }
        }
    }
}
