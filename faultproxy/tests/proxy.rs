//! The fault proxy between a real client and a real upstream on loopback, each toxic in
//! turn, plus the admin API and the binary.
#![expect(
    clippy::unwrap_used,
    reason = "a failed unwrap in a test is the test's failure"
)]

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use gauntlet_faultproxy::{FaultProxy, Toxics, admin};
use http_body_util::BodyExt as _;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tower::ServiceExt as _;

/// An upstream that echoes every byte back.
async fn echo() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let (mut r, mut w) = s.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
            });
        }
    });
    addr
}

async fn proxy() -> FaultProxy {
    FaultProxy::bind("127.0.0.1:0".parse().unwrap(), echo().await)
        .await
        .unwrap()
}

/// Sends `bytes` and reads as many back, within `limit`.
async fn round_trip(addr: SocketAddr, bytes: &[u8], limit: Duration) -> std::io::Result<Vec<u8>> {
    let mut s = TcpStream::connect(addr).await?;
    s.write_all(bytes).await?;
    let mut back = vec![0u8; bytes.len()];
    tokio::time::timeout(limit, s.read_exact(&mut back))
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "no answer"))??;
    Ok(back)
}

#[tokio::test]
async fn forwards_bytes_unchanged_and_counts_them() {
    let p = proxy().await;
    let data: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
    let back = round_trip(p.addr(), &data, Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(back, data);
    let stats = p.control().stats();
    assert_eq!(
        (stats.accepted, stats.bytes_up, stats.bytes_down),
        (1, 100_000, 100_000)
    );
}

#[tokio::test]
async fn latency_delays_each_answer() {
    let p = proxy().await;
    p.control()
        .set(Toxics {
            latency: Duration::from_millis(200),
            jitter: Duration::from_millis(20),
            ..Toxics::default()
        })
        .unwrap();
    let started = Instant::now();
    round_trip(p.addr(), b"hello", Duration::from_secs(5))
        .await
        .unwrap();
    assert!(
        started.elapsed() >= Duration::from_millis(180),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn bandwidth_limits_the_downstream_rate() {
    let p = proxy().await;
    p.control()
        .set(Toxics {
            bandwidth: Some(100_000),
            ..Toxics::default()
        })
        .unwrap();
    let started = Instant::now();
    let data = vec![7u8; 30_000];
    let back = round_trip(p.addr(), &data, Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(back, data);
    // 30 kB at 100 kB/s: at least 0.3 s.
    assert!(
        started.elapsed() >= Duration::from_millis(290),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn blackhole_holds_connections_and_passes_nothing_until_lifted() {
    let p = proxy().await;
    p.control()
        .set(Toxics {
            blackhole: true,
            ..Toxics::default()
        })
        .unwrap();
    let err = round_trip(p.addr(), b"hello", Duration::from_millis(300))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::TimedOut);
    assert_eq!(p.control().stats().bytes_up, 0);
    p.control().set(Toxics::default()).unwrap();
    let back = round_trip(p.addr(), b"hello", Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(back, b"hello");
}

#[tokio::test]
async fn reset_after_n_bytes_cuts_the_connection() {
    let p = proxy().await;
    p.control()
        .set(Toxics {
            reset_after: Some(10),
            ..Toxics::default()
        })
        .unwrap();
    let mut s = TcpStream::connect(p.addr()).await.unwrap();
    s.write_all(&[1u8; 64]).await.unwrap();
    let mut got = Vec::new();
    // Ends with an RST (or EOF if the RST won the race with the data).
    let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut got))
        .await
        .expect("the connection ends");
    assert!(got.len() <= 10, "{} bytes got through", got.len());
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(p.control().stats().resets, 1);
}

#[tokio::test]
async fn disabling_closes_open_and_new_connections() {
    let p = proxy().await;
    let mut open = TcpStream::connect(p.addr()).await.unwrap();
    open.write_all(b"x").await.unwrap();
    let mut one = [0u8; 1];
    open.read_exact(&mut one).await.unwrap();
    p.control()
        .set(Toxics {
            enabled: false,
            ..Toxics::default()
        })
        .unwrap();
    let mut rest = Vec::new();
    let n = tokio::time::timeout(Duration::from_secs(5), open.read_to_end(&mut rest))
        .await
        .expect("closed at once");
    assert!(matches!(n, Ok(0) | Err(_)), "{n:?}");
    let err = round_trip(p.addr(), b"x", Duration::from_secs(5)).await;
    assert!(err.is_err(), "a new connection is closed too");
}

#[tokio::test]
async fn admin_api_sets_reads_and_refuses_bad_toxics() {
    let p = proxy().await;
    let app = admin::router(p.control().clone());
    let call = |method: &str, uri: &str, body: &'static str| {
        let app = app.clone();
        let request = http::Request::builder()
            .method(method)
            .uri(uri)
            .header("content-type", "application/json")
            .body(axum::body::Body::from(body))
            .unwrap();
        async move {
            let response = app.oneshot(request).await.unwrap();
            let status = response.status();
            let body = response.into_body().collect().await.unwrap().to_bytes();
            (
                status,
                serde_json::from_slice::<serde_json::Value>(&body).unwrap_or_default(),
            )
        }
    };
    let (status, body) = call(
        "PUT",
        "/toxics",
        r#"{"latency": "25ms", "blackhole": true}"#,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(body["latency"], "25ms");
    assert!(p.control().toxics().blackhole);
    let (status, body) = call("PUT", "/toxics", r#"{"bandwidth": 0}"#).await;
    assert_eq!(status, 400);
    assert_eq!(
        body["error"],
        "invalid toxics: bandwidth must be between 1 and 10000000000 bytes/s, got 0"
    );
    let (status, body) = call("PUT", "/toxics", r#"{"latncy": "1s"}"#).await;
    assert_eq!(status, 400);
    assert!(body["error"].as_str().unwrap().contains("latncy"), "{body}");
    assert!(
        p.control().toxics().blackhole,
        "a refused change changes nothing"
    );
    let (status, _) = call("POST", "/reset", "").await;
    assert_eq!(status, 200);
    assert_eq!(p.control().toxics(), Toxics::default());
    let (status, body) = call("GET", "/stats", "").await;
    assert_eq!((status.as_u16(), body["accepted"].as_u64()), (200, Some(0)));
}

#[test]
fn binary_proxies_obeys_its_admin_port_and_refuses_a_public_one() {
    let bin = env!("CARGO_BIN_EXE_gauntlet-faultproxy");
    let out = std::process::Command::new(bin)
        .args(["--upstream", "127.0.0.1:9", "--admin", "0.0.0.0:0"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("--admin 0.0.0.0:0 is not a loopback address")
    );

    let runtime = tokio::runtime::Runtime::new().unwrap();
    let upstream = runtime.block_on(echo());
    let mut child = std::process::Command::new(bin)
        .args(["--upstream", &upstream.to_string(), "--exit-after", "20s"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.stdout.take().unwrap()),
        &mut line,
    )
    .unwrap();
    let words: Vec<&str> = line.split_whitespace().collect();
    let (proxy, admin): (SocketAddr, SocketAddr) =
        (words[2].parse().unwrap(), words[5].parse().unwrap());
    runtime.block_on(async {
        assert_eq!(round_trip(proxy, b"hi", Duration::from_secs(5)).await.unwrap(), b"hi");
        let mut s = TcpStream::connect(admin).await.unwrap();
        let body = r#"{"blackhole": true}"#;
        s.write_all(
            format!("PUT /toxics HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}", body.len())
                .as_bytes(),
        )
        .await
        .unwrap();
        let mut reply = String::new();
        s.read_to_string(&mut reply).await.unwrap();
        assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
        assert!(round_trip(proxy, b"hi", Duration::from_millis(300)).await.is_err());
    });
    child.kill().unwrap();
    child.wait().unwrap();
}
