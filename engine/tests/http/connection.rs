//! Connection hygiene over real HTTP/1.1: an early error answer must reach the client intact
//! and leave the connection usable (or say `Connection: close`).

use std::time::Duration;

use gauntlet_engine::{AppState, EngineConfig, app};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

async fn server() -> std::net::SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let router = app(AppState::new(EngineConfig::default()));
    tokio::spawn(async move { axum::serve(listener, router).await });
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

#[tokio::test]
async fn early_answer_drains_the_body_and_keeps_the_connection() {
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
    assert!(!head.contains("connection: close"), "{head}");
    // The same connection serves the next request.
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
