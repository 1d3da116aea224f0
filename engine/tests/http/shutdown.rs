//! Shutdown of the real binary: the readiness delay and the grace deadline.

use super::heavy::{heavy, heavy_rows};
use super::*;
use gauntlet_testkit::{EngineProcess, KillOnDrop};

/// Starts the engine on an ephemeral port over `dir`; returns it (killed on drop) and its port.
pub(super) fn spawn_engine(dir: &Path, extra: &[&str]) -> (KillOnDrop, u16) {
    let binary = Path::new(env!("CARGO_BIN_EXE_gauntlet-engine"));
    let (child, addr) = EngineProcess::spawn(binary, dir, extra)
        .unwrap()
        .into_parts();
    (child, addr.port())
}

fn sigterm(child: &std::process::Child) {
    signal(child, "-TERM");
}

fn signal(child: &std::process::Child, which: &str) {
    let killed = Command::new("kill")
        .args([which, &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
}

fn get_request(path: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n\r\n")
}

/// Regression: SIGTERM cleared readiness and stopped the listener at the same instant, so
/// load balancers never saw the engine not ready while it still answered.
#[test]
fn shutdown_delay_serves_while_not_ready_then_exits() {
    let dir = tempfile::tempdir().unwrap();
    write_model_dir(dir.path());
    let (mut child, port) = spawn_engine(dir.path(), &["--shutdown-delay", "2s"]);
    assert!(http_request(port, &get_request("/v2/health/ready")).starts_with("HTTP/1.1 200"));
    sigterm(&child);
    let signalled = Instant::now();
    let not_ready = loop {
        let reply = http_request(port, &get_request("/v2/health/ready"));
        if reply.starts_with("HTTP/1.1 400") || signalled.elapsed() > Duration::from_millis(1500) {
            break reply;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(not_ready.starts_with("HTTP/1.1 400"), "{not_ready}");
    // Still accepting connections and serving during the delay.
    let live = http_request(port, &get_request("/v2/health/live"));
    assert!(live.starts_with("HTTP/1.1 200"), "{live}");
    let body = rows(json!([1.0, 2.0]), json!([1, 2])).to_string();
    let infer = http_request(
        port,
        &format!(
            "POST /v2/models/lin/infer HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        ),
    );
    assert!(infer.starts_with("HTTP/1.1 200"), "{infer}");
    let status = wait_exit(&mut child, Duration::from_secs(10));
    assert!(status.success(), "exit status {status:?}");
    assert!(
        signalled.elapsed() >= Duration::from_millis(1900),
        "exited {:?} after SIGTERM, before the 2s delay",
        signalled.elapsed()
    );
}

/// Regression: with a batch still running when the shutdown grace expired, the engine logged
/// that it was exiting, then waited for the batch and exited 0 seconds later.
#[test]
fn grace_expiry_exits_4_without_waiting_for_the_batch() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("heavy.json"),
        serde_json::to_vec(&heavy(100_000)).unwrap(),
    )
    .unwrap();
    // 100,000 rows × 100,000 trees: at 10,000 rows (the default row limit) a 2-vCPU AMD EPYC
    // VM finished the batch within the 700 ms before the grace expired (7 Dec 2026), and the
    // engine then rightly exited 0. The batch must outlast the grace on any machine.
    let (mut child, port) = spawn_engine(
        dir.path(),
        &["--shutdown-grace", "200ms", "--max-batch-rows", "100000"],
    );
    let body = heavy_rows(100_000).to_string();
    let request = format!(
        "POST /v2/models/heavy/infer HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    let client = std::thread::spawn(move || {
        let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        stream.write_all(request.as_bytes()).unwrap();
        let mut response = Vec::new();
        // The engine exits mid-batch: the connection ends without a response.
        let _ = stream.read_to_end(&mut response);
        response
    });
    std::thread::sleep(Duration::from_millis(500));
    sigterm(&child);
    let signalled = Instant::now();
    let status = wait_exit(&mut child, Duration::from_secs(4));
    assert_eq!(status.code(), Some(4), "exit status {status:?}");
    assert!(
        signalled.elapsed() < Duration::from_secs(3),
        "exited {:?} after SIGTERM",
        signalled.elapsed()
    );
    let response = client.join().unwrap();
    assert!(
        response.is_empty(),
        "the batch finished first: {:?}",
        String::from_utf8_lossy(&response)
    );
}

/// Regression: a second signal could not interrupt the shutdown delay: SIGTERM then SIGINT
/// with `--shutdown-delay 5s` still ran the whole 5 s.
#[test]
fn second_signal_cuts_the_shutdown_delay_short_with_exit_4() {
    let dir = tempfile::tempdir().unwrap();
    write_model_dir(dir.path());
    let (mut child, port) = spawn_engine(
        dir.path(),
        &["--shutdown-delay", "5s", "--shutdown-grace", "1s"],
    );
    sigterm(&child);
    let signalled = Instant::now();
    // The first signal has been handled once readiness drops.
    loop {
        let reply = http_request(port, &get_request("/v2/health/ready"));
        if reply.starts_with("HTTP/1.1 400") {
            break;
        }
        assert!(
            signalled.elapsed() < Duration::from_secs(3),
            "still ready: {reply}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    signal(&child, "-INT");
    let status = wait_exit(&mut child, Duration::from_secs(8));
    assert_eq!(status.code(), Some(4), "exit status {status:?}");
    assert!(
        signalled.elapsed() < Duration::from_secs(3),
        "exited {:?} after SIGTERM, not at the second signal",
        signalled.elapsed()
    );
}

/// Regression: a connection that had sent part of a request head and stalled counted as in
/// flight, so SIGTERM waited the whole shutdown grace and exited 4. The header-read timeout
/// now closes it, and the engine exits 0 soon after.
#[test]
fn stalled_request_head_does_not_hold_up_shutdown() {
    let dir = tempfile::tempdir().unwrap();
    write_model_dir(dir.path());
    let (mut child, port) = spawn_engine(
        dir.path(),
        &["--shutdown-grace", "3s", "--header-read-timeout", "300ms"],
    );
    let mut stalled = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    stalled
        .write_all(b"POST /v2/models/lin/infer HTTP/1.1\r\nhost: localhost\r\ncontent-")
        .unwrap();
    // Let the engine accept the connection and start reading the head.
    assert!(http_request(port, &get_request("/v2/health/live")).starts_with("HTTP/1.1 200"));
    sigterm(&child);
    let signalled = Instant::now();
    let status = wait_exit(&mut child, Duration::from_secs(6));
    assert!(status.success(), "exit status {status:?}");
    assert!(
        signalled.elapsed() < Duration::from_millis(2000),
        "exited {:?} after SIGTERM, held up by the stalled head",
        signalled.elapsed()
    );
    drop(stalled);
}
