//! Test support shared by the workspace's integration tests and benches.
//!
//! Everything here runs the real thing: the `gauntlet-engine` and `gauntlet` binaries as child
//! processes, axum routers on `127.0.0.1:0`. Children are killed and reaped when their handle
//! drops, so a failing test leaves no process behind. Errors are `io::Error`s that say what
//! was being started; tests `expect` them.

pub mod docker;

use std::io::{self, BufRead, BufReader};
use std::net::SocketAddr;
use std::ops::{Deref, DerefMut};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

/// A child process, killed and reaped when dropped.
#[derive(Debug)]
pub struct KillOnDrop(pub Child);

impl Deref for KillOnDrop {
    type Target = Child;
    fn deref(&self) -> &Child {
        &self.0
    }
}

impl DerefMut for KillOnDrop {
    fn deref_mut(&mut self) -> &mut Child {
        &mut self.0
    }
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        // Already exited (a test waited on it) is fine: kill fails, wait returns at once.
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A `gauntlet-engine` process serving on a loopback port; killed when dropped.
#[derive(Debug)]
pub struct EngineProcess {
    child: KillOnDrop,
    addr: SocketAddr,
}

impl EngineProcess {
    /// Starts `gauntlet-engine --listen 127.0.0.1:0 --model-dir MODEL_DIR EXTRA…` with
    /// `RUST_LOG=warn` and waits for its `listening on ADDR` line.
    ///
    /// # Errors
    /// The binary cannot be started, or it exits or prints something else first.
    pub fn spawn(binary: &Path, model_dir: &Path, extra: &[&str]) -> io::Result<EngineProcess> {
        let mut command = Command::new(binary);
        command
            .args(["--listen", "127.0.0.1:0", "--model-dir"])
            .arg(model_dir)
            .args(extra);
        EngineProcess::start(command)
    }

    /// Starts a prepared engine command (e.g. one run under `taskset`) that listens on a
    /// loopback port and prints `listening on ADDR` first, as `gauntlet-engine` does.
    /// `RUST_LOG` defaults to `warn`; stdout is taken for the address line; stderr is
    /// discarded unless the command already set it.
    ///
    /// # Errors
    /// The command cannot be started, or it exits or prints something else first.
    pub fn start(mut command: Command) -> io::Result<EngineProcess> {
        if std::env::var_os("RUST_LOG").is_none() {
            command.env("RUST_LOG", "warn");
        }
        let what = format!("{command:?}");
        let mut child = KillOnDrop(
            command
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .spawn()
                .map_err(|e| io::Error::new(e.kind(), format!("starting {what}: {e}")))?,
        );
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| io::Error::other(format!("{what}: no stdout")))?;
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line)?;
        let addr = line
            .trim()
            .strip_prefix("listening on ")
            .and_then(|a| a.parse().ok())
            .ok_or_else(|| {
                io::Error::other(format!(
                    "{what} printed {line:?} instead of `listening on ADDR`"
                ))
            })?;
        Ok(EngineProcess { child, addr })
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Its port.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// Its base URL, `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The process, to signal it or wait for its exit status.
    pub fn child(&mut self) -> &mut Child {
        &mut self.child
    }

    /// The process (still killed on drop) and its address, apart.
    pub fn into_parts(self) -> (KillOnDrop, SocketAddr) {
        (self.child, self.addr)
    }
}

/// The `gauntlet-engine` binary in the directory `bin_dir` (the profile directory of a
/// target dir, e.g. the one holding the test's own binary), built there with cargo first if
/// it is missing: `--release` when `release`.
///
/// # Errors
/// cargo cannot be run, or the build fails or leaves no binary.
pub fn engine_binary_in(bin_dir: &Path, release: bool) -> io::Result<PathBuf> {
    let engine = bin_dir.join("gauntlet-engine");
    if !engine.exists() {
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let mut build = Command::new(cargo);
        build.args(["build", "-p", "gauntlet-engine", "--bin", "gauntlet-engine"]);
        if release {
            build.arg("--release");
        }
        let status = build.status()?;
        if !status.success() {
            return Err(io::Error::other(format!(
                "cargo build of gauntlet-engine: {status}"
            )));
        }
    }
    if engine.exists() {
        Ok(engine)
    } else {
        Err(io::Error::other(format!(
            "{} was not built",
            engine.display()
        )))
    }
}

/// The workspace's checked-in reference models, `fixtures/models`.
pub fn fixture_models() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/models")
}

/// Runs the CLI binary `bin` with `args` in `cwd`, without the `GAUNTLET_TARGET` and
/// `GAUNTLET_PROFILE` a developer's shell may set, and with `NO_COLOR=1`.
///
/// # Errors
/// The binary cannot be started.
pub fn run_cli(bin: &str, args: &[&str], cwd: &Path) -> io::Result<Output> {
    Command::new(bin)
        .args(args)
        .current_dir(cwd)
        .env_remove("GAUNTLET_TARGET")
        .env_remove("GAUNTLET_PROFILE")
        .env("NO_COLOR", "1")
        .output()
}

/// A finished process's exit code; `-1` when a signal ended it.
pub fn code(output: &Output) -> i32 {
    output.status.code().unwrap_or(-1)
}

/// Bytes as text, lossily.
pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Serves the router `make` builds on `127.0.0.1:0` from a thread of its own (with its own
/// runtime) until the process exits; returns the address once it listens.
///
/// # Errors
/// The listener cannot be bound, or the server does not start within 10 s.
pub fn serve_router(
    make: impl FnOnce() -> axum::Router + Send + 'static,
) -> io::Result<SocketAddr> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let runtime = match tokio::runtime::Runtime::new() {
            Ok(r) => r,
            Err(e) => {
                let _ = tx.send(Err(e));
                return;
            }
        };
        runtime.block_on(async move {
            let app = make();
            let listener = match tokio::net::TcpListener::bind("127.0.0.1:0").await {
                Ok(l) => l,
                Err(e) => {
                    let _ = tx.send(Err(e));
                    return;
                }
            };
            let _ = tx.send(listener.local_addr());
            // Serves until the process exits.
            let _ = axum::serve(listener, app).await;
        });
    });
    rx.recv_timeout(Duration::from_secs(10))
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "server did not start within 10 s"))?
}

/// The reference engine in process — the reference models loaded and promoted live —
/// served on `127.0.0.1:0` from the current tokio runtime: its base URL and a sender that
/// stops it. It also stops by itself after two minutes, whatever happens to the test.
///
/// # Errors
/// A reference model does not load or promote, or the listener cannot be bound.
pub async fn serve_reference_engine() -> io::Result<(String, tokio::sync::oneshot::Sender<()>)> {
    use gauntlet_engine::{AppState, EngineConfig};
    let state = AppState::new(EngineConfig::default());
    let models = gauntlet_fixtures::load_embedded()
        .map_err(|e| io::Error::other(format!("loading the reference models: {e}")))?;
    for artifact in models {
        let name = artifact.name.clone();
        state
            .registry()
            .load(artifact)
            .and_then(|_| state.registry().promote(&name))
            .map_err(|e| io::Error::other(format!("making {name} live: {e}")))?;
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}", listener.local_addr()?);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(gauntlet_engine::serve(listener, state, async move {
        let _ = tokio::time::timeout(Duration::from_secs(120), stopped).await;
    }));
    Ok((url, stop))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_router_is_served_on_loopback() {
        let addr =
            serve_router(|| axum::Router::new().route("/", axum::routing::get(|| async { "ok" })))
                .expect("serve");
        assert!(addr.ip().is_loopback());
        let mut stream = std::net::TcpStream::connect(addr).expect("connect");
        use std::io::{Read, Write};
        stream
            .write_all(b"GET / HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
            .expect("write");
        let mut reply = String::new();
        stream.read_to_string(&mut reply).expect("read");
        assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
        assert!(reply.ends_with("ok"), "{reply}");
    }

    #[test]
    fn the_reference_engine_serves_its_models_until_stopped() {
        let runtime = tokio::runtime::Runtime::new().expect("runtime");
        let (url, stop) = runtime
            .block_on(serve_reference_engine())
            .expect("engine up");
        let addr: SocketAddr = url.trim_start_matches("http://").parse().expect("address");
        assert!(addr.ip().is_loopback());
        let get = |path: &str| {
            use std::io::{Read, Write};
            let mut stream = std::net::TcpStream::connect(addr)?;
            write!(
                stream,
                "GET {path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n"
            )?;
            let mut reply = String::new();
            stream.read_to_string(&mut reply)?;
            io::Result::Ok(reply)
        };
        for model in ["ref-linear", "ref-ensemble"] {
            let reply = get(&format!("/v2/models/{model}/ready")).expect("ready call");
            assert!(reply.starts_with("HTTP/1.1 200"), "{model}: {reply}");
        }
        stop.send(()).expect("engine still running");
        // Stopped: the port no longer answers (within a few tries while it shuts down).
        let refused = (0..50).any(|_| {
            std::thread::sleep(Duration::from_millis(20));
            get("/v2/health/live").is_err()
        });
        assert!(refused, "the engine still answers after stop");
        drop(runtime);
    }

    #[test]
    fn a_command_that_does_not_announce_an_address_is_an_error() {
        let mut command = Command::new("echo");
        command.arg("hello");
        let err = EngineProcess::start(command).expect_err("not an engine");
        assert!(
            err.to_string().contains("instead of `listening on ADDR`"),
            "{err}"
        );
    }
}
