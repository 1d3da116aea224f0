//! SEC-SECRETS: what a target says never carries a secret of the run or a stack trace, and its
//! TLS port speaks nothing but TLS 1.2 or later.

use std::time::Duration;

use bytes::Bytes;
use http::Method;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

use gauntlet_engine::security::sign;
use gauntlet_harness::{Capability, TargetExt};

use crate::probe::{Ctx, Verdict, encodings, now, signed};

/// How long a TLS probe waits for the server's first bytes.
const PROBE_WAIT: Duration = Duration::from_secs(5);

/// What a stack trace or an internal path looks like in a body.
const TRACE_MARKERS: [&str; 6] = [
    "panicked at",
    "stack backtrace",
    "RUST_BACKTRACE",
    ".rs:",
    "/src/",
    "/home/",
];

/// Provokes errors of every kind, then reads `/metrics`, and looks for every secret of the run
/// (raw, hex, base64) in every body and header seen by the suite, and for stack traces in every
/// error body.
pub(crate) async fn no_secret_or_trace_leaks(c: &Ctx) -> Verdict {
    let json = [("content-type", "application/json".to_owned())];
    let mut provoked = vec![
        (
            "POST /v2/models/no-such-model/infer",
            Method::POST,
            "/v2/models/no-such-model/infer".to_owned(),
            Bytes::from_static(b"{}"),
        ),
        (
            "POST /v2/models/ref-linear/infer with malformed JSON",
            Method::POST,
            "/v2/models/ref-linear/infer".to_owned(),
            Bytes::from_static(b"{\"inputs\": ["),
        ),
        (
            "POST /v2/models/ref-linear/infer with bytes that are not UTF-8",
            Method::POST,
            "/v2/models/ref-linear/infer".to_owned(),
            Bytes::from_static(b"\xff\xfe\xfd"),
        ),
        ("DELETE /v2", Method::DELETE, "/v2".to_owned(), Bytes::new()),
    ];
    if c.has(Capability::Repository) {
        provoked.push((
            "POST /v2/repository/models/..%2F..%2Fetc/load",
            Method::POST,
            "/v2/repository/models/..%2F..%2Fetc/load".to_owned(),
            Bytes::from_static(b"{\"parameters\": {\"artifact\": {\"format\": 1}}}"),
        ));
    }
    for (what, method, path, body) in provoked {
        if let Err(v) = c.send(what, method, &path, &json, body).await {
            return v;
        }
    }
    // A forged signature under each known key id: an answer that echoes what it checked
    // would show the secret it compared with.
    let ids: Vec<String> = c
        .access
        .iter()
        .flat_map(|a| a.admin.iter().map(|k| k.key_id().to_owned()))
        .collect();
    for id in ids {
        let path = "/v2/repository/index";
        let headers = signed(
            &id,
            &sign::random_secret(),
            "POST",
            path,
            None,
            b"",
            now(),
            &sign::random_nonce(),
        );
        let what = format!("POST {path} forged under key id {id}");
        if let Err(v) = c
            .send(&what, Method::POST, path, &headers, Bytes::new())
            .await
        {
            return v;
        }
    }
    let mut scanned_metrics = false;
    if c.has(Capability::Metrics) {
        match c.target.get("/metrics").await {
            Ok(reply) => {
                c.record("GET /metrics", &reply);
                scanned_metrics = true;
            }
            Err(e) => return Verdict::error(format!("GET /metrics: {e}")),
        }
    }
    let seen = c
        .seen
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone();
    let secrets: Vec<(usize, Vec<String>)> = c
        .access
        .iter()
        .flat_map(|a| a.secrets.iter())
        .enumerate()
        .map(|(i, s)| {
            (
                i,
                encodings(s).into_iter().filter(|f| f.len() >= 8).collect(),
            )
        })
        .collect();
    for (what, reply) in &seen {
        let mut texts = vec![("body".to_owned(), reply.text())];
        for (name, value) in &reply.headers {
            texts.push((
                format!("header {name}"),
                String::from_utf8_lossy(value.as_bytes()).into_owned(),
            ));
        }
        for (place, text) in &texts {
            for (i, forms) in &secrets {
                if forms.iter().any(|f| text.contains(f.as_str())) {
                    // The message names the secret by its index, never by value.
                    return Verdict::fail(format!(
                        "secret #{i} of the run (of {}) appears in the {place} of the answer \
                         to {what} (status {})",
                        secrets.len(),
                        reply.status.as_u16()
                    ));
                }
            }
        }
        if reply.status.is_client_error() || reply.status.is_server_error() {
            let body = reply.text();
            if let Some(marker) = TRACE_MARKERS.iter().find(|m| body.contains(*m)) {
                return Verdict::fail(format!(
                    "the error body of {what} (status {}) carries {marker:?}: a stack trace or an \
                     internal path",
                    reply.status.as_u16()
                ));
            }
        }
    }
    Verdict::pass(format!(
        "scanned {} answers{} for {} secrets (raw, hex, base64) and stack traces: none found",
        seen.len(),
        if scanned_metrics {
            ", /metrics among them,"
        } else {
            ""
        },
        secrets.len()
    ))
}

/// The TLS address, or a skip.
fn tls_addr(c: &Ctx) -> Result<std::net::SocketAddr, Verdict> {
    let access = c.access()?;
    match &access.raw {
        Some(raw) if access.tls => Ok(raw.addr),
        _ => Err(Verdict::skip(
            "the target is not served over TLS (not an https:// URL)",
        )),
    }
}

/// Reads the server's first bytes after `request`, up to [`PROBE_WAIT`].
async fn first_bytes(addr: std::net::SocketAddr, request: &[u8]) -> Result<Vec<u8>, Verdict> {
    let mut stream = TcpStream::connect(addr)
        .await
        .map_err(|e| Verdict::error(format!("failed to connect to {addr}: {e}")))?;
    let _ = stream.write_all(request).await;
    let mut buf = vec![0u8; 512];
    match tokio::time::timeout(PROBE_WAIT, stream.read(&mut buf)).await {
        Ok(Ok(n)) => {
            buf.truncate(n);
            Ok(buf)
        }
        Ok(Err(_)) | Err(_) => Ok(Vec::new()),
    }
}

/// Plain HTTP to the TLS port: no HTTP answer but a refusal may come back.
pub(crate) async fn tls_port_refuses_plain_http(c: &Ctx) -> Verdict {
    let addr = match tls_addr(c) {
        Ok(a) => a,
        Err(v) => return v,
    };
    let sent = format!("plain `GET /v2/health/live HTTP/1.1` to the TLS port {addr}");
    let got = match first_bytes(
        addr,
        b"GET /v2/health/live HTTP/1.1\r\nhost: gauntlet\r\nconnection: close\r\n\r\n",
    )
    .await
    {
        Ok(b) => b,
        Err(v) => return v,
    };
    let text = String::from_utf8_lossy(&got);
    let status = text.lines().next().unwrap_or("").to_owned();
    if status.starts_with("HTTP/1.1 2")
        || status.starts_with("HTTP/1.0 2")
        || status.starts_with("HTTP/1.1 3")
    {
        Verdict::fail(format!(
            "sent {sent}; the port answered plain HTTP: `{status}`"
        ))
    } else if got.is_empty() {
        Verdict::pass(format!(
            "sent {sent}; the connection was closed without an answer"
        ))
    } else if got[0] == 0x15 {
        Verdict::pass(format!("sent {sent}; got a TLS alert record and no HTTP"))
    } else {
        Verdict::pass(format!(
            "sent {sent}; got no successful HTTP answer (`{}`)",
            status.chars().take(60).collect::<String>()
        ))
    }
}

/// A TLS 1.1 ClientHello (offering only TLS 1.1 and two TLS 1.0-era suites).
fn client_hello_tls11() -> Vec<u8> {
    let mut body = vec![0x03, 0x02];
    body.extend((0..32u8).map(|i| i.wrapping_mul(37)));
    body.push(0); // no session id
    body.extend_from_slice(&[0x00, 0x04, 0xc0, 0x13, 0x00, 0x2f]);
    body.extend_from_slice(&[0x01, 0x00]); // null compression
    let len = body.len();
    let mut handshake = vec![0x01, 0x00, (len >> 8) as u8, len as u8];
    handshake.extend(body);
    let len = handshake.len();
    let mut record = vec![0x16, 0x03, 0x01, (len >> 8) as u8, len as u8];
    record.extend(handshake);
    record
}

/// A client offering at most TLS 1.1 must not get a ServerHello.
pub(crate) async fn tls_below_1_2_is_refused(c: &Ctx) -> Verdict {
    let addr = match tls_addr(c) {
        Ok(a) => a,
        Err(v) => return v,
    };
    let sent = format!("a ClientHello offering at most TLS 1.1 to {addr}");
    let got = match first_bytes(addr, &client_hello_tls11()).await {
        Ok(b) => b,
        Err(v) => return v,
    };
    match got.as_slice() {
        [0x16, _, _, _, _, 0x02, _, _, _, major, minor, ..] => Verdict::fail(format!(
            "sent {sent}; the server answered with a ServerHello for version {major}.{minor} \
             (3.2 is TLS 1.1)"
        )),
        [0x15, _, _, _, _, level, desc, ..] => Verdict::pass(format!(
            "sent {sent}; got a TLS alert (level {level}, description {desc}{})",
            if *desc == 70 {
                ": protocol_version"
            } else {
                ""
            }
        )),
        [] => Verdict::pass(format!(
            "sent {sent}; the connection was closed without a ServerHello"
        )),
        other => Verdict::pass(format!(
            "sent {sent}; got {} bytes that are no ServerHello (first byte {:#04x})",
            other.len(),
            other[0]
        )),
    }
}
