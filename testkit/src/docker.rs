//! Docker for the container tests (`gauntlet/tests/image.rs`, `shards.rs`): the `docker`
//! command line, containers and networks removed when their handle drops, and waits that end.
//! Every helper runs the real `docker` client against the machine's daemon.

use std::process::{Command, Output};
use std::time::{Duration, Instant, SystemTime};

use crate::text;

/// `docker ARGS…`, its output whatever the exit status.
///
/// # Panics
/// When the `docker` client cannot be started at all.
pub fn docker(args: &[&str]) -> Output {
    Command::new("docker")
        .args(args)
        .output()
        .expect("run docker")
}

/// What a [`Removed`] handle removes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `docker rm --force`.
    Container,
    /// `docker network rm`.
    Network,
}

/// A container or network removed when the handle drops, however the test ends.
#[derive(Debug)]
pub struct Removed {
    /// Container or network.
    pub kind: Kind,
    /// Its name (or id).
    pub name: String,
}

impl Removed {
    /// A handle on the container `name`.
    pub fn container(name: impl Into<String>) -> Self {
        Removed {
            kind: Kind::Container,
            name: name.into(),
        }
    }

    /// A handle on the network `name`.
    pub fn network(name: impl Into<String>) -> Self {
        Removed {
            kind: Kind::Network,
            name: name.into(),
        }
    }
}

impl Drop for Removed {
    fn drop(&mut self) {
        let _ = match self.kind {
            Kind::Network => docker(&["network", "rm", &self.name]),
            Kind::Container => docker(&["rm", "--force", &self.name]),
        };
    }
}

/// A name no other test run uses: `prefix`, this process's id and the clock's nanoseconds.
pub fn unique(prefix: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    format!("{prefix}-{}-{nanos}", std::process::id())
}

/// The host port Docker published `inner` (`8080/tcp`) of `container` on, on 127.0.0.1.
///
/// # Panics
/// When the container publishes no such port on 127.0.0.1.
pub fn mapped_port(container: &str, inner: &str) -> String {
    let ports = text(&docker(&["port", container, inner]).stdout);
    ports
        .lines()
        .find_map(|l| l.strip_prefix("127.0.0.1:"))
        .unwrap_or_else(|| panic!("no 127.0.0.1 mapping in {ports:?}"))
        .trim()
        .to_owned()
}

/// Status code of `GET path` on 127.0.0.1:`port`, if anything answered within 2 s.
pub fn http_status(port: &str, path: &str) -> Option<u16> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(format!("127.0.0.1:{port}")).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut head = [0u8; 12];
    s.read_exact(&mut head).ok()?;
    std::str::from_utf8(&head[9..12]).ok()?.parse().ok()
}

/// Containers carrying `label`, running or not.
pub fn labelled(label: &str) -> Vec<String> {
    let out = docker(&[
        "ps",
        "--all",
        "--quiet",
        "--filter",
        &format!("label={label}"),
    ]);
    text(&out.stdout).lines().map(str::to_owned).collect()
}

/// Waits (at most `limit`) for the container `name` to exit; its exit code and its logs.
///
/// # Panics
/// When it is still running after `limit`.
pub fn wait_exit(name: &str, limit: Duration) -> (String, String) {
    let started = Instant::now();
    loop {
        let running = docker(&["inspect", "--format", "{{.State.Running}}", name]);
        if text(&running.stdout).trim() == "false" {
            break;
        }
        assert!(
            started.elapsed() < limit,
            "{name} still running after {limit:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let exit = docker(&["inspect", "--format", "{{.State.ExitCode}}", name]);
    let logs = docker(&["logs", name]);
    (
        text(&exit.stdout).trim().to_owned(),
        format!("{}{}", text(&logs.stdout), text(&logs.stderr)),
    )
}
