//! SEC-INPUT: hostile requests are refused with a 4xx JSON error (never a 5xx, never a hang),
//! and the target still answers afterwards.

use std::time::{Duration, Instant};

use bytes::Bytes;
use http::Method;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use gauntlet_harness::{Reply, TargetExt};

use crate::probe::{Ctx, Step, Verdict, answer};

/// How long a slowloris client may hold a connection before the target must cut it off.
const SLOWLORIS_DEADLINE: Duration = Duration::from_secs(30);
/// Time between the slowloris client's header lines.
const TRICKLE: Duration = Duration::from_millis(500);
/// The upload an early answer must survive: under the reference engine's discard limit
/// (4 MiB), and many times a loopback socket's first buffers.
const UPLOAD_BYTES: usize = 2 << 20;
/// The pause after the upload's head and first piece, for the answer to go out (and for a
/// target that closes at once to have closed) before the rest is sent.
const UPLOAD_PAUSE: Duration = Duration::from_millis(100);
/// Longest the rest of the upload and the answer may take.
const UPLOAD_DEADLINE: Duration = Duration::from_secs(10);

const INFER: &str = "/v2/models/ref-linear/infer";

/// A 4xx with a JSON `error` passes; a 2xx or 5xx fails; then the target must still be alive.
async fn four_xx(c: &Ctx, sent: &str, reply: &Reply, expected: Option<u16>) -> Verdict {
    let status = reply.status.as_u16();
    let json_error = reply
        .json::<serde_json::Value>()
        .ok()
        .is_some_and(|v| v["error"].is_string());
    if !reply.status.is_client_error() || !json_error {
        return Verdict::fail(format!(
            "sent {sent}; expected a 4xx JSON error, got {}",
            answer(reply)
        ));
    }
    if let Some(expected) = expected
        && status != expected
    {
        return Verdict::fail(format!(
            "sent {sent}; expected status {expected}, got {}",
            answer(reply)
        ));
    }
    match alive(c).await {
        Ok(()) => Verdict::pass(format!("sent {sent}; got {}; still alive", answer(reply))),
        Err(v) => v,
    }
}

async fn alive(c: &Ctx) -> Step<()> {
    let reply = c
        .target
        .get("/v2/health/live")
        .await
        .map_err(|e| Verdict::fail(format!("the target stopped answering afterwards: {e}")))?;
    if reply.status.is_success() {
        Ok(())
    } else {
        Err(Verdict::fail(format!(
            "GET /v2/health/live afterwards: {}",
            answer(&reply)
        )))
    }
}

/// An infer body of exactly `n` bytes: a tensor of zeros padded with spaces (its shape is
/// wrong on purpose: only its size matters).
fn zeros_body(n: usize) -> Bytes {
    let mut body =
        b"{\"inputs\": [{\"name\": \"x\", \"shape\": [1], \"datatype\": \"FP64\", \"data\": ["
            .to_vec();
    while body.len() + 3 < n {
        body.extend_from_slice(b"0, ");
    }
    body.truncate(n - 3);
    body.extend_from_slice(b"0]}");
    body.resize(n, b' ');
    Bytes::from(body)
}

/// The body limit the target is expected to enforce, to the byte: a body of exactly the limit
/// is not refused for its size (whatever its content earns), one byte more is refused with
/// 413.
pub(crate) async fn oversized_body_is_refused(c: &Ctx) -> Verdict {
    match c.target.get("/v2/models/ref-linear").await {
        Ok(r) if r.status.is_success() => {}
        Ok(r) => {
            return Verdict::skip(format!(
                "the target does not serve ref-linear (GET /v2/models/ref-linear: {})",
                r.status.as_u16()
            ));
        }
        Err(e) => return Verdict::error(format!("GET /v2/models/ref-linear: {e}")),
    }
    let headers = [("content-type", "application/json".to_owned())];
    let limit = c.max_body_bytes;
    // At the limit, its length declared as a client over a socket declares it (in process
    // nothing adds the header): both the check of the declared length and the count of the
    // bytes read see exactly the limit, where an off-by-one refuses what the limit allows.
    let sent = format!("POST {INFER} with a {limit}-byte body (the limit is {limit})");
    let declared = [
        ("content-type", "application/json".to_owned()),
        ("content-length", limit.to_string()),
    ];
    match c
        .send(&sent, Method::POST, INFER, &declared, zeros_body(limit))
        .await
    {
        Ok(reply) if reply.status.as_u16() == 413 || reply.status.is_server_error() => {
            return Verdict::fail(format!(
                "sent {sent}; a body of exactly the limit must not be refused for its size, got {}",
                answer(&reply)
            ));
        }
        Ok(_) => {}
        Err(v) => return v,
    }
    let n = limit + 1;
    let sent = format!("POST {INFER} with a {n}-byte body (the limit is {limit})");
    match c
        .send(&sent, Method::POST, INFER, &headers, zeros_body(n))
        .await
    {
        Ok(reply) => four_xx(c, &sent, &reply, Some(413)).await,
        Err(v) => v,
    }
}

/// JSON nested 10,000 deep.
pub(crate) async fn deep_json_is_refused(c: &Ctx) -> Verdict {
    let depth = 10_000;
    let body = format!(
        "{{\"inputs\": {}0{}}}",
        "[".repeat(depth),
        "]".repeat(depth)
    );
    let sent = format!("POST {INFER} with JSON nested {depth} deep");
    let headers = [("content-type", "application/json".to_owned())];
    match c
        .send(&sent, Method::POST, INFER, &headers, Bytes::from(body))
        .await
    {
        Ok(reply) => four_xx(c, &sent, &reply, None).await,
        Err(v) => v,
    }
}

/// 200 headers on one request: over any sane header limit (the reference engine's is 64),
/// under the 256 its HTTP parser takes, so the engine's own JSON answer is what is checked.
pub(crate) async fn header_flood_is_refused(c: &Ctx) -> Verdict {
    let n = 200;
    let headers: Vec<(&str, String)> = (0..n).map(|i| ("x-flood", format!("v{i}"))).collect();
    let sent = format!("GET /v2 with {n} extra headers");
    match c
        .send(&sent, Method::GET, "/v2", &headers, Bytes::new())
        .await
    {
        // An HTTP parser's own limit may answer before the application, without a JSON body:
        // still a refusal.
        Ok(reply) if reply.status.as_u16() == 431 && reply.body.is_empty() => {
            match alive(c).await {
                Ok(()) => Verdict::pass(format!(
                    "sent {sent}; got 431 with no body (the HTTP parser's limit); still alive"
                )),
                Err(v) => v,
            }
        }
        Ok(reply) => four_xx(c, &sent, &reply, Some(431)).await,
        // A server may also drop such a request's connection: that is a refusal too.
        Err(v) if v.outcome.label() == "error" => match alive(c).await {
            Ok(()) => Verdict::pass(format!(
                "sent {sent}; the connection was refused ({}); still alive",
                v.message
            )),
            Err(v) => v,
        },
        Err(v) => v,
    }
}

/// A request head sent one header line every 500 ms, never finished: the target must cut the
/// connection off (or answer) within 30 s.
pub(crate) async fn slowloris_is_cut_off(c: &Ctx) -> Verdict {
    let raw = match c.raw() {
        Ok(raw) => raw,
        Err(v) => return v,
    };
    let mut stream = match raw.connect().await {
        Ok(s) => s,
        Err(e) => return Verdict::error(format!("failed to connect to {}: {e}", raw.addr)),
    };
    let started = Instant::now();
    let sent = format!(
        "GET /v2/health/live to {}{} one header line every {} ms, never ending the head",
        raw.addr,
        if raw.tls.is_some() { " over TLS" } else { "" },
        TRICKLE.as_millis()
    );
    if stream
        .write_all(b"GET /v2/health/live HTTP/1.1\r\nhost: gauntlet\r\n")
        .await
        .is_err()
    {
        return Verdict::error(format!("sent {sent}; the first write failed"));
    }
    let mut buf = [0u8; 1024];
    let mut line = 0u32;
    loop {
        if started.elapsed() > SLOWLORIS_DEADLINE {
            return Verdict::fail(format!(
                "sent {sent}; the connection was still open after {} s",
                SLOWLORIS_DEADLINE.as_secs()
            ));
        }
        tokio::select! {
            read = stream.read(&mut buf) => {
                let took = started.elapsed().as_secs_f64();
                return match read {
                    Ok(0) | Err(_) => Verdict::pass(format!("sent {sent}; the target closed the connection after {took:.1} s")),
                    Ok(n) => {
                        let head = String::from_utf8_lossy(&buf[..n]);
                        let status = head.lines().next().unwrap_or("").to_owned();
                        Verdict::pass(format!("sent {sent}; the target answered `{status}` after {took:.1} s and stopped waiting"))
                    }
                };
            }
            () = tokio::time::sleep(TRICKLE) => {
                line += 1;
                if stream.write_all(format!("x-slow-{line}: y\r\n").as_bytes()).await.is_err() {
                    let took = started.elapsed().as_secs_f64();
                    return Verdict::pass(format!("sent {sent}; the target closed the connection after {took:.1} s"));
                }
            }
        }
    }
}

/// A 2 MiB POST to a model that does not exist: the target answers before reading the body
/// (404, or 401/413 where a control comes first). The client pauses after the first 64 KiB,
/// then sends the rest, then reads: it must read the 4xx. A target that closes the
/// connection with the body unread makes the kernel answer the rest with a reset, which
/// destroys the answer before the client reads it (the lingering close nginx and the
/// reference engine do against it: engine/src/http/drain.rs).
pub(crate) async fn early_answer_reaches_an_uploading_client(c: &Ctx) -> Verdict {
    let raw = match c.raw() {
        Ok(raw) => raw,
        Err(v) => return v,
    };
    let sent = format!(
        "POST /v2/models/no-such-model/infer to {}{} declaring a {UPLOAD_BYTES}-byte body, \
         {} ms after its first 64 KiB the rest",
        raw.addr,
        if raw.tls.is_some() { " over TLS" } else { "" },
        UPLOAD_PAUSE.as_millis()
    );
    let mut stream = match raw.connect().await {
        Ok(s) => s,
        Err(e) => return Verdict::error(format!("failed to connect to {}: {e}", raw.addr)),
    };
    let head = format!(
        "POST /v2/models/no-such-model/infer HTTP/1.1\r\nhost: gauntlet\r\n\
         content-type: application/json\r\ncontent-length: {UPLOAD_BYTES}\r\n\r\n"
    );
    let piece = vec![b' '; 64 << 10];
    let first = async {
        stream.write_all(head.as_bytes()).await?;
        stream.write_all(&piece).await?;
        stream.flush().await
    };
    if let Err(e) = first.await {
        return Verdict::error(format!("sent {sent}; the head and first piece failed: {e}"));
    }
    tokio::time::sleep(UPLOAD_PAUSE).await;
    let mut uploaded = piece.len();
    let rest = async {
        while uploaded < UPLOAD_BYTES {
            let n = piece.len().min(UPLOAD_BYTES - uploaded);
            stream.write_all(&piece[..n]).await?;
            uploaded += n;
        }
        stream.flush().await?;
        // Up to the status line: a target that keeps the connection open after its answer
        // (it read the whole body) is not waited out.
        let (mut answer, mut buf) = (Vec::new(), [0u8; 4096]);
        loop {
            match stream.read(&mut buf).await {
                Ok(0) => break,
                Ok(n) => {
                    answer.extend_from_slice(&buf[..n]);
                    if answer.windows(2).any(|w| w == b"\r\n") {
                        break;
                    }
                }
                Err(e) if answer.is_empty() => return Err(e),
                // A reset after part of the answer arrived still delivered it.
                Err(_) => break,
            }
        }
        Ok(answer)
    };
    let answer = match tokio::time::timeout(UPLOAD_DEADLINE, rest).await {
        Ok(Ok(answer)) => answer,
        Ok(Err(e)) => {
            return Verdict::fail(format!(
                "sent {sent}; after {uploaded} bytes of the body the connection failed ({e}): \
                 the target closed it with the body unread, and the reset lost its answer"
            ));
        }
        Err(_) => {
            return Verdict::fail(format!(
                "sent {sent}; neither the upload ({uploaded} bytes sent) nor an answer finished \
                 within {} s",
                UPLOAD_DEADLINE.as_secs()
            ));
        }
    };
    let text = String::from_utf8_lossy(&answer);
    let status_line = text.lines().next().unwrap_or("").to_owned();
    let status = status_line
        .strip_prefix("HTTP/1.1 ")
        .and_then(|rest| rest.get(..3))
        .and_then(|code| code.parse::<u16>().ok());
    match status {
        Some(code) if (400..500).contains(&code) => match alive(c).await {
            Ok(()) => Verdict::pass(format!(
                "sent {sent}; the whole body went out and `{status_line}` was read; still alive"
            )),
            Err(v) => v,
        },
        _ => Verdict::fail(format!(
            "sent {sent}; expected a 4xx answer after the upload, read {} bytes starting `{}`",
            answer.len(),
            status_line.chars().take(80).collect::<String>()
        )),
    }
}
