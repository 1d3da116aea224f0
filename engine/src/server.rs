//! Serving on a socket with graceful shutdown.

use std::future::Future;

use tokio::net::TcpListener;

use crate::http::app;
use crate::state::AppState;

/// Serves [`app`] on `listener` until `shutdown` completes, then stops accepting connections
/// and waits for in-flight requests to finish.
///
/// # Errors
/// An I/O error of the listener.
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, app(state))
        .with_graceful_shutdown(shutdown)
        .await
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
