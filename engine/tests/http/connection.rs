//! Connection hygiene over real HTTP/1.1: an early error answer must reach the client intact
//! and leave the connection usable (or say `Connection: close`); a stalled request head must
//! not hold a connection.

use std::time::Duration;

use gauntlet_engine::{AppState, EngineConfig, serve};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

async fn server() -> std::net::SocketAddr {
    server_with(EngineConfig::default()).await
}

/// The engine's own accept loop on an ephemeral port, serving until the test ends.
async fn server_with(config: EngineConfig) -> std::net::SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(serve(
        listener,
        AppState::new(config),
        std::future::pending(),
    ));
    addr
}

/// Reads one response (head and a content-length body) from the stream.
async fn read_response(stream: &mut TcpStream) -> (String, String) {
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut byte))
            .await
            .expect("response head in time")
            .expect("read");
        assert_eq!(
            n,
            1,
            "connection closed mid-head: {}",
            String::from_utf8_lossy(&buf)
        );
        buf.push(byte[0]);
    }
    let head = String::from_utf8(buf).unwrap().to_ascii_lowercase();
    let len: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length: "))
        .map_or(0, |v| v.trim().parse().unwrap());
    let mut body = vec![0u8; len];
    stream.read_exact(&mut body).await.expect("response body");
    (head, String::from_utf8(body).unwrap())
}

/// Reads to the end of the stream, failing unless the server closes it within 5 s.
async fn expect_close(stream: &mut TcpStream) {
    let mut rest = Vec::new();
    let n = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut rest))
        .await
        .expect("the server closes the connection")
        .unwrap_or(0);
    assert_eq!(n, 0, "{:?}", String::from_utf8_lossy(&rest));
}

/// Regression: an early answer said keep-alive unless the declared body was over the drain
/// limit, but the discard can give up (slow or chunked bodies), and then hyper closed the
/// connection under a client that meant to reuse it. Now the answer arrives intact, says
/// `Connection: close`, and the connection is not reused.
#[tokio::test]
async fn early_answer_to_an_unread_body_says_connection_close() {
    let addr = server().await;
    let mut stream = TcpStream::connect(addr).await.unwrap();
    // 2 MiB to a model that does not exist: the 404 comes before the body is read.
    let body = vec![b'a'; 2 << 20];
    let head = format!(
        "POST /v2/models/nope/infer HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(&body).await.unwrap();
    let (head, body) = read_response(&mut stream).await;
    assert!(head.starts_with("http/1.1 404"), "{head}");
    assert!(body.contains("unknown model"), "{body}");
    assert!(head.contains("connection: close"), "{head}");
    expect_close(&mut stream).await;
}

/// Regression: a chunked body the handler never read got a keep-alive answer.
#[tokio::test]
async fn early_answer_to_a_chunked_body_says_connection_close() {
    let addr = server().await;
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let head = "POST /v2/models/nope/infer HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n400\r\n";
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(&[b' '; 0x400]).await.unwrap();
    let (head, body) = read_response(&mut stream).await;
    assert!(head.starts_with("http/1.1 404"), "{head}");
    assert!(body.contains("unknown model"), "{body}");
    assert!(head.contains("connection: close"), "{head}");
}

/// A fully read body leaves the connection open for the next request.
#[tokio::test]
async fn read_body_keeps_the_connection() {
    let addr = server().await;
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(b"POST /v2/repository/index HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{}")
        .await
        .unwrap();
    let (head, _) = read_response(&mut stream).await;
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert!(!head.contains("connection: close"), "{head}");
    stream
        .write_all(b"GET /v2/health/live HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .unwrap();
    let (head, _) = read_response(&mut stream).await;
    assert!(head.starts_with("http/1.1 200"), "{head}");
}

#[tokio::test]
async fn oversized_declared_body_gets_413_and_connection_close() {
    let addr = server().await;
    let mut stream = TcpStream::connect(addr).await.unwrap();
    // Declares 100 MiB and sends only the head: the engine must answer without waiting.
    let head = "POST /v2/models/nope/infer HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 104857600\r\n\r\n";
    stream.write_all(head.as_bytes()).await.unwrap();
    let (head, body) = read_response(&mut stream).await;
    assert!(
        head.starts_with("http/1.1 404") || head.starts_with("http/1.1 413"),
        "{head}"
    );
    assert!(head.contains("connection: close"), "{head}");
    assert!(body.contains("\"error\""), "{body}");
}

/// Regression: the answer waited for the unread body, so a client that declared 1000 bytes and
/// sent 1 got its 404 only after the 2 s drain deadline.
#[tokio::test]
async fn early_answer_does_not_wait_for_a_slow_body() {
    let addr = server().await;
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let head = "POST /v2/models/nope/infer HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 1000\r\n\r\n{";
    let start = std::time::Instant::now();
    stream.write_all(head.as_bytes()).await.unwrap();
    let (head, body) = read_response(&mut stream).await;
    let waited = start.elapsed();
    assert!(head.starts_with("http/1.1 404"), "{head}");
    assert!(body.contains("unknown model"), "{body}");
    // The discard gives up after its deadline, so the connection cannot be offered for reuse.
    assert!(head.contains("connection: close"), "{head}");
    assert!(
        waited < Duration::from_millis(1000),
        "the answer took {waited:?}"
    );
}

/// Regression: with `Expect: 100-continue` the drain polled the body, so hyper sent
/// `100 Continue` and the client had to upload the whole body before it got the answer.
#[tokio::test]
async fn expect_continue_gets_the_answer_without_sending_the_body() {
    let addr = server().await;
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let head = "POST /v2/models/nope/infer HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 1000\r\nexpect: 100-continue\r\n\r\n";
    stream.write_all(head.as_bytes()).await.unwrap();
    let (head, body) = read_response(&mut stream).await;
    assert!(head.starts_with("http/1.1 404"), "{head}");
    assert!(head.contains("connection: close"), "{head}");
    assert!(body.contains("\"error\""), "{body}");
    // Nothing else follows, and the server closes the connection.
    expect_close(&mut stream).await;
}

/// Regression: a declared body just over the drain limit got `Connection: close` and was never
/// read, so the connection reset under a client still uploading it, often before it read the
/// answer (`error writing a body to connection: Broken pipe`). Reading on for a while after
/// the answer (a lingering close) gives the client the answer.
#[tokio::test]
async fn body_over_the_drain_limit_still_gets_its_answer() {
    let addr = server().await;
    for _ in 0..5 {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        let body = vec![b' '; (4 << 20) + 1024];
        let head = format!(
            "POST /v2/models/nope/infer HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
            body.len()
        );
        stream.write_all(head.as_bytes()).await.unwrap();
        stream
            .write_all(&body)
            .await
            .expect("the server reads on while the client uploads");
        let (head, body) = read_response(&mut stream).await;
        assert!(head.starts_with("http/1.1 404"), "{head}");
        assert!(head.contains("connection: close"), "{head}");
        assert!(body.contains("unknown model"), "{body}");
    }
}

/// Regression: `axum::serve` gave hyper no timer, so its header-read timeout never applied and
/// a client that sent half a request head and stalled (slow-loris) held the connection forever.
#[tokio::test]
async fn stalled_request_head_is_disconnected_after_the_header_read_timeout() {
    let addr = server_with(EngineConfig {
        header_read_timeout: Duration::from_millis(300),
        ..EngineConfig::default()
    })
    .await;
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let start = std::time::Instant::now();
    stream
        .write_all(b"GET /v2/health/live HTTP/1.1\r\nhost: x\r\n")
        .await
        .unwrap();
    expect_close(&mut stream).await;
    let waited = start.elapsed();
    assert!(
        waited >= Duration::from_millis(250) && waited < Duration::from_secs(3),
        "disconnected after {waited:?}"
    );
    // The engine still serves other clients.
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(b"GET /v2/health/live HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .unwrap();
    let (head, _) = read_response(&mut stream).await;
    assert!(head.starts_with("http/1.1 200"), "{head}");
}
