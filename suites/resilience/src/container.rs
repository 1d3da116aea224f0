//! Backend engines in containers: the reference image (`ci/image/build`, `gauntlet-engine:dev`)
//! started with the `docker` CLI, published on a loopback port chosen here (so a container
//! started again after `docker kill` comes back on the same port), labelled, and removed when
//! dropped — after a panic too.

use std::process::{Command, Output};
use std::time::{Duration, Instant};

/// The label on every container the suite starts (`docker ps --filter label=…` finds them).
pub const LABEL: &str = "org.gauntlet.test=resilience";
/// The variable that turns a missing Docker or image into an error instead of a skip.
pub const REQUIRE_VAR: &str = "GAUNTLET_REQUIRE_IMAGE";

/// The port the engine image listens on inside the container.
const PORT: u16 = 8080;
/// Longest a container may take from `docker run` (or `docker start`) to ready.
const READY_WITHIN: Duration = Duration::from_secs(20);
/// Longest one `docker` command may take.
const COMMAND_WITHIN: Duration = Duration::from_secs(30);

/// Runs `docker args…`, at most [`COMMAND_WITHIN`]; `Err` names the command and its stderr.
fn docker(args: &[&str]) -> Result<Output, String> {
    let mut child = Command::new("docker")
        .args(args)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| format!("docker cannot run: {e}"))?;
    let started = Instant::now();
    loop {
        match child.try_wait() {
            Ok(Some(_)) => break,
            Ok(None) if started.elapsed() < COMMAND_WITHIN => {
                std::thread::sleep(Duration::from_millis(5));
            }
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "docker {} did not finish within {} s",
                    args.join(" "),
                    COMMAND_WITHIN.as_secs()
                ));
            }
            Err(e) => return Err(format!("docker {}: {e}", args.join(" "))),
        }
    }
    let out = child
        .wait_with_output()
        .map_err(|e| format!("docker {}: {e}", args.join(" ")))?;
    if out.status.success() {
        Ok(out)
    } else {
        Err(format!(
            "docker {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// [`docker`] off the async runtime's workers.
async fn docker_async(args: Vec<String>) -> Result<Output, String> {
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        docker(&args)
    })
    .await
    .map_err(|e| format!("docker task failed: {e}"))?
}

/// Why container cases cannot run here (`None`: Docker answers and `image` is built).
pub fn unavailable(image: &str) -> Option<String> {
    if let Err(e) = docker(&["info", "--format", "{{.ServerVersion}}"]) {
        return Some(format!("no Docker daemon: {e}"));
    }
    match docker(&["image", "inspect", "--format", "{{.Id}}", image]) {
        Ok(_) => None,
        Err(e) => Some(format!(
            "image {image} is not built (ci/image/build builds it; nothing is pulled): {e}"
        )),
    }
}

/// A free loopback port, for a container to publish on. (Freed again before Docker binds it:
/// another process could take it in between, and `docker run` then fails saying so.)
fn free_port() -> Result<u16, String> {
    std::net::TcpListener::bind(("127.0.0.1", 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| format!("failed to find a free loopback port: {e}"))
}

/// One engine container, removed (`docker rm --force`) when dropped.
#[derive(Debug)]
pub struct EngineContainer {
    name: String,
    port: u16,
}

impl EngineContainer {
    /// Starts `image` as `role` (`blue`, `backend`, …) published on a free 127.0.0.1 port, and
    /// waits until it serves `model`.
    pub async fn start(image: &str, role: &str, model: &str) -> Result<Self, String> {
        let port = free_port()?;
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let name = format!(
            "gauntlet-resilience-{role}-{}-{nanos:09}",
            std::process::id()
        );
        let owner = format!("org.gauntlet.resilience.owner={}", std::process::id());
        let publish = format!("127.0.0.1:{port}:{PORT}");
        let args = [
            "run",
            "--detach",
            "--name",
            name.as_str(),
            "--label",
            LABEL,
            "--label",
            owner.as_str(),
            "--publish",
            publish.as_str(),
            image,
        ];
        let run = docker_async(args.iter().map(|a| (*a).to_owned()).collect()).await;
        // From here on the container may exist (a `docker run` that failed to start it has
        // created it): dropping `container` removes it either way.
        let container = EngineContainer { name, port };
        run?;
        container.wait_ready(model).await?;
        Ok(container)
    }

    /// `http://127.0.0.1:PORT`, the container's published port on loopback.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The published loopback address.
    pub fn addr(&self) -> std::net::SocketAddr {
        std::net::SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// The container's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    async fn command(&self, verb: &[&str]) -> Result<(), String> {
        let mut args: Vec<String> = verb.iter().map(|s| (*s).to_owned()).collect();
        args.push(self.name.clone());
        docker_async(args).await.map(|_| ())
    }

    /// `docker pause`: every process frozen, connections accepted and never answered.
    pub async fn pause(&self) -> Result<(), String> {
        self.command(&["pause"]).await
    }

    /// `docker unpause`.
    pub async fn unpause(&self) -> Result<(), String> {
        self.command(&["unpause"]).await
    }

    /// `docker kill --signal KILL`: the engine dies at once, its port closes.
    pub async fn kill(&self) -> Result<(), String> {
        self.command(&["kill", "--signal", "KILL"]).await
    }

    /// `docker start` after a kill, on the same port, and waits until it serves `model`.
    pub async fn start_again(&self, model: &str) -> Result<(), String> {
        self.command(&["start"]).await?;
        self.wait_ready(model).await
    }

    async fn wait_ready(&self, model: &str) -> Result<(), String> {
        let started = Instant::now();
        let path = format!("/v2/models/{model}/ready");
        loop {
            if get(self.addr(), &path)
                .await
                .is_ok_and(|(status, _)| status == 200)
            {
                return Ok(());
            }
            if started.elapsed() > READY_WITHIN {
                let logs = docker_async(vec![
                    "logs".into(),
                    "--tail".into(),
                    "20".into(),
                    self.name.clone(),
                ])
                .await
                .map(|o| String::from_utf8_lossy(&o.stderr).into_owned())
                .unwrap_or_default();
                return Err(format!(
                    "container {} did not serve {model} within {} s; its log ends: {logs}",
                    self.name,
                    READY_WITHIN.as_secs()
                ));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// A counter of the container's `/metrics` (0 when the series is absent).
    pub async fn counter(&self, series: &str) -> Result<u64, String> {
        let (status, body) = get(self.addr(), "/metrics").await?;
        if status != 200 {
            return Err(format!("GET /metrics of {} answered {status}", self.name));
        }
        Ok(body
            .lines()
            .find_map(|l| l.strip_prefix(series)?.trim().parse::<u64>().ok())
            .unwrap_or(0))
    }
}

impl Drop for EngineContainer {
    fn drop(&mut self) {
        // A paused container is removed by --force too; one never created is no error.
        if let Err(e) = docker(&["rm", "--force", &self.name])
            && !e.contains("No such container")
        {
            eprintln!("warning: container {} not removed: {e}", self.name);
        }
    }
}

/// `GET path` on `addr` (HTTP/1.1, `Connection: close`), within 2 s: the status and body.
async fn get(addr: std::net::SocketAddr, path: &str) -> Result<(u16, String), String> {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let exchange = async {
        let mut s = tokio::net::TcpStream::connect(addr).await?;
        s.write_all(
            format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .await?;
        let mut raw = Vec::new();
        s.read_to_end(&mut raw).await?;
        Ok::<_, std::io::Error>(raw)
    };
    let raw = tokio::time::timeout(Duration::from_secs(2), exchange)
        .await
        .map_err(|_| format!("GET {path} on {addr}: no answer within 2 s"))?
        .map_err(|e| format!("GET {path} on {addr}: {e}"))?;
    let text = String::from_utf8_lossy(&raw);
    let status = text
        .get(9..12)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("GET {path} on {addr}: not an HTTP answer"))?;
    let body = text
        .split_once("\r\n\r\n")
        .map_or(String::new(), |(_, b)| b.to_owned());
    Ok((status, body))
}
