//! Serving on a socket with graceful shutdown.
//!
//! The engine runs its own accept loop rather than `axum::serve`, which gives hyper no timer,
//! so hyper's header-read timeout never applied: a client that sent part of a request head and
//! stalled held its connection forever and, at shutdown, kept the engine waiting for the
//! whole grace.

use std::future::Future;
use std::time::Duration;

use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;

use crate::http::app;
use crate::state::AppState;

/// The first pause after an accept error (such as `EMFILE`), doubled up to
/// [`ACCEPT_BACKOFF_MAX`] while errors repeat: long enough not to spin, short enough that
/// connections are accepted again soon after descriptors are freed.
const ACCEPT_BACKOFF_MIN: Duration = Duration::from_millis(10);
const ACCEPT_BACKOFF_MAX: Duration = Duration::from_millis(100);

/// Serves [`app`] over HTTP/1.1 on `listener` until `shutdown` completes, then stops accepting
/// connections and waits for in-flight requests to finish; bound the wait with a timeout.
///
/// A client that does not send a whole request head within the configured
/// [`header_read_timeout`](crate::EngineConfig::header_read_timeout) is disconnected. Accept
/// errors are logged and retried after a short pause; they never end the loop.
///
/// # Errors
/// None at present: the `Result` leaves room for listener errors that cannot be retried.
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    serve_with(listener, state, None, shutdown).await
}

/// [`serve`] over TLS: each connection's handshake runs in its own task and must finish
/// within the header-read timeout; a failed handshake (plain HTTP on the TLS port, a TLS
/// version below 1.2) closes the connection.
///
/// # Errors
/// As [`serve`].
pub async fn serve_tls(
    listener: TcpListener,
    state: AppState,
    acceptor: crate::security::tls::TlsAcceptor,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    serve_with(listener, state, Some(acceptor), shutdown).await
}

async fn serve_with(
    listener: TcpListener,
    state: AppState,
    tls: Option<crate::security::tls::TlsAcceptor>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let header_read_timeout = state.config().header_read_timeout;
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(header_read_timeout)
        // Above `security.max-headers`, so that the engine's own check answers with JSON.
        .max_headers(crate::security::limits::HARD_MAX_HEADERS)
        .keep_alive(true);
    let service = TowerToHyperService::new(app(state));
    let graceful = GracefulShutdown::new();
    let mut backoff = ACCEPT_BACKOFF_MIN;
    tokio::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = &mut shutdown => break,
        };
        let stream = match accepted {
            Ok((stream, _)) => {
                backoff = ACCEPT_BACKOFF_MIN;
                stream
            }
            Err(err) => {
                // A connection reset or aborted before it was accepted is the client's affair.
                if !is_connection_error(&err) {
                    tracing::error!(error = %err, pause = ?backoff, "failed to accept a connection");
                    tokio::select! {
                        () = tokio::time::sleep(backoff) => {}
                        () = &mut shutdown => break,
                    }
                    backoff = (backoff * 2).min(ACCEPT_BACKOFF_MAX);
                }
                continue;
            }
        };
        if let Some(acceptor) = &tls {
            let (acceptor, watcher) = (acceptor.clone(), graceful.watcher());
            let (builder, service) = (builder.clone(), service.clone());
            tokio::spawn(async move {
                let stream = match tokio::time::timeout(
                    header_read_timeout,
                    acceptor.accept(stream),
                )
                .await
                {
                    Ok(Ok(stream)) => stream,
                    Ok(Err(err)) => {
                        tracing::debug!(error = %err, "TLS handshake failed");
                        return;
                    }
                    Err(_) => {
                        tracing::debug!("TLS handshake timed out");
                        return;
                    }
                };
                let connection = builder.serve_connection(TokioIo::new(stream), service);
                if let Err(err) = watcher.watch(connection).await {
                    tracing::debug!(error = %err, "connection ended with an error");
                }
            });
            continue;
        }
        let connection = builder.serve_connection(TokioIo::new(stream), service.clone());
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(err) = connection.await {
                tracing::debug!(error = %err, "connection ended with an error");
            }
        });
    }
    drop(listener);
    tracing::debug!(
        connections = graceful.count(),
        "stopped accepting; waiting for open connections"
    );
    // Idle connections close at once; one mid-request closes after its response; one that
    // has sent part of a request head closes when the header-read timeout expires.
    graceful.shutdown().await;
    Ok(())
}

fn is_connection_error(err: &std::io::Error) -> bool {
    matches!(
        err.kind(),
        std::io::ErrorKind::ConnectionRefused
            | std::io::ErrorKind::ConnectionAborted
            | std::io::ErrorKind::ConnectionReset
    )
}

/// Registers SIGTERM and SIGINT (Ctrl-C) handlers *now* and returns a future that completes
/// on the first of them. Call it before announcing the address, so that a signal sent right
/// after the announcement is never missed. Must be called inside a Tokio runtime.
pub fn shutdown_signal() -> impl Future<Output = ()> + Send + 'static {
    let mut signals = ShutdownSignals::new();
    async move {
        let name = signals.next().await;
        tracing::info!(signal = name, "shutdown requested");
    }
}

/// SIGTERM and SIGINT (Ctrl-C), registered when created, delivered one after another: the
/// first starts a graceful shutdown, a second can cut it short.
pub struct ShutdownSignals {
    #[cfg(unix)]
    term: Option<tokio::signal::unix::Signal>,
    #[cfg(unix)]
    int: Option<tokio::signal::unix::Signal>,
}

impl ShutdownSignals {
    /// Registers the handlers now, so that no signal sent after this call is missed. Must be
    /// called inside a Tokio runtime.
    #[must_use]
    pub fn new() -> ShutdownSignals {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            let register = |kind, name: &str| {
                signal(kind)
                    .map_err(|err| tracing::warn!(error = %err, "cannot listen for {name}"))
                    .ok()
            };
            ShutdownSignals {
                term: register(SignalKind::terminate(), "SIGTERM"),
                int: register(SignalKind::interrupt(), "SIGINT"),
            }
        }
        #[cfg(not(unix))]
        {
            ShutdownSignals {}
        }
    }

    /// Waits for the next SIGTERM or SIGINT and returns its name; never completes if neither
    /// could be registered.
    pub async fn next(&mut self) -> &'static str {
        #[cfg(unix)]
        {
            async fn recv(signal: Option<&mut tokio::signal::unix::Signal>) {
                let received = match signal {
                    Some(s) => s.recv().await.is_some(),
                    None => false,
                };
                if !received {
                    std::future::pending::<()>().await;
                }
            }
            tokio::select! {
                () = recv(self.term.as_mut()) => "SIGTERM",
                () = recv(self.int.as_mut()) => "SIGINT",
            }
        }
        #[cfg(not(unix))]
        {
            if let Err(err) = tokio::signal::ctrl_c().await {
                tracing::warn!(error = %err, "cannot listen for Ctrl-C");
                std::future::pending::<()>().await;
            }
            "Ctrl-C"
        }
    }
}

impl Default for ShutdownSignals {
    fn default() -> Self {
        ShutdownSignals::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::EngineConfig;
    use std::io::{Read as _, Write as _};

    #[tokio::test]
    async fn serves_until_shutdown() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(serve(
            listener,
            AppState::new(EngineConfig::default()),
            async {
                let _ = rx.await;
            },
        ));
        let response = tokio::task::spawn_blocking(move || {
            let mut stream = std::net::TcpStream::connect(addr).unwrap();
            stream
                .write_all(b"GET /v2/health/live HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
                .unwrap();
            let mut response = String::new();
            stream.read_to_string(&mut response).unwrap();
            response
        })
        .await
        .unwrap();
        assert!(response.starts_with("HTTP/1.1 200"), "{response}");
        tx.send(()).unwrap();
        server.await.unwrap().unwrap();
    }
}
