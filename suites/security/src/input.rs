//! SEC-INPUT: hostile requests are refused with a 4xx JSON error (never a 5xx, never a hang),
//! and the target still answers afterwards.

use std::time::{Duration, Instant};

use bytes::Bytes;
use http::Method;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use gauntlet_engine::EngineConfig;
use gauntlet_engine::oip::MAX_NESTING;
use gauntlet_engine::security::SecurityConfig;
use gauntlet_harness::{InProcess, Reply, TargetExt};

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

/// JSON nested 10,000 deep. On this build's engine, also tensor data nested one level past
/// the tensor reader's own limit ([`MAX_NESTING`]), on an engine of the case's own whose
/// `security.max-json-depth` is raised to twice that (at the default of 32 the whole body's
/// depth limit answers first): the refusal names the tensor limit, and data nested exactly
/// to it is not refused for its nesting.
pub(crate) async fn deep_json_is_refused(c: &Ctx) -> Verdict {
    let depth = 10_000;
    let body = format!(
        "{{\"inputs\": {}0{}}}",
        "[".repeat(depth),
        "]".repeat(depth)
    );
    let sent = format!("POST {INFER} with JSON nested {depth} deep");
    let headers = [("content-type", "application/json".to_owned())];
    let verdict = match c
        .send(&sent, Method::POST, INFER, &headers, Bytes::from(body))
        .await
    {
        Ok(reply) => four_xx(c, &sent, &reply, None).await,
        Err(v) => v,
    };
    if verdict.outcome.label() != "pass" || !c.own_build {
        return verdict;
    }
    match tensor_nesting(c).await {
        Ok(said) => Verdict::pass(format!("{}; {said}", verdict.message)),
        Err(v) => v,
    }
}

/// [`deep_json_is_refused`]'s tensor nesting, on an engine of the case's own.
async fn tensor_nesting(c: &Ctx) -> Step<String> {
    let config = EngineConfig {
        security: SecurityConfig {
            max_json_depth: 2 * MAX_NESTING,
            ..SecurityConfig::default()
        },
        ..EngineConfig::default()
    };
    let target = InProcess::with_models(config, c.templates().to_vec()).map_err(|e| {
        Verdict::error(format!(
            "failed to start an engine with max-json-depth {}: {e}",
            2 * MAX_NESTING
        ))
    })?;
    let mut said = Vec::new();
    for (levels, refused) in [(MAX_NESTING + 1, true), (MAX_NESTING, false)] {
        let body = format!(
            "{{\"inputs\": [{{\"name\": \"x\", \"shape\": [{}], \"datatype\": \"FP64\", \
             \"data\": {}0{}}}]}}",
            vec!["1"; levels].join(", "),
            "[".repeat(levels),
            "]".repeat(levels)
        );
        let sent = format!(
            "POST {INFER} with tensor data nested {levels} deep (max-json-depth {})",
            2 * MAX_NESTING
        );
        let reply = target
            .call(
                Method::POST,
                INFER,
                Bytes::from(body),
                Some("application/json"),
            )
            .await
            .map_err(|e| Verdict::error(format!("{sent}: {e}")))?;
        c.record(&sent, &reply);
        let names_limit = reply.status.as_u16() == 400
            && reply
                .text()
                .contains(&format!("nested more than {MAX_NESTING}"));
        if refused && !names_limit {
            return Err(Verdict::fail(format!(
                "sent {sent}; expected 400 naming the nesting limit of {MAX_NESTING}, got {}",
                answer(&reply)
            )));
        }
        if !refused && (names_limit || !reply.status.is_client_error()) {
            return Err(Verdict::fail(format!(
                "sent {sent}; exactly the nesting limit of {MAX_NESTING} must not be refused \
                 for its nesting (its shape is still wrong: a 4xx), got {}",
                answer(&reply)
            )));
        }
        said.push(format!("{sent}: {}", answer(&reply)));
    }
    Ok(said.join("; "))
}

/// Header floods: 200 headers on one request (over any sane header limit, the reference
/// engine's is 64, under the 256 its HTTP parser takes), then one header of 64 KiB (over any
/// sane size limit, the engine's is 16 KiB and nginx's line buffer 8 KiB, under the ~400 KiB
/// its HTTP parser buffers), so that the engine's own JSON answer is what is checked. Where the
/// refusal names the limit and what it measured (the reference engine's do), the limit is
/// then checked to the unit: exactly the limit is served, one more is refused.
pub(crate) async fn header_flood_is_refused(c: &Ctx) -> Verdict {
    let n = 200;
    let headers = |k: usize| -> Vec<(&str, String)> {
        (0..k).map(|i| ("x-flood", format!("v{i}"))).collect()
    };
    let sent = format!("GET /v2 with {n} extra headers");
    let (mut said, limit) = match flood(c, &sent, &headers(n), "security.max-headers").await {
        Ok(seen) => seen,
        Err(v) => return v,
    };
    if let Some((count, limit)) = limit {
        // What the transport adds (host, accept, …) counts too: learnt from the refusal.
        let extra = count.saturating_sub(n);
        if let Some(at) = limit.checked_sub(extra) {
            match edge(c, "headers", &headers(at), &headers(at + 1), limit).await {
                Ok(note) => said = format!("{said}; {note}"),
                Err(v) => return v,
            }
        }
    }
    let pad = 64 << 10;
    let sent = format!("GET /v2 with one {pad}-byte header");
    let (big, limit) = match flood(
        c,
        &sent,
        &[("x-pad", "a".repeat(pad))],
        "security.max-header-bytes",
    )
    .await
    {
        Ok(seen) => seen,
        Err(v) => return v,
    };
    said = format!("{said}; {big}");
    if let Some((bytes, limit)) = limit {
        // A header counts its name and its value; the transport's own headers count too.
        let extra = bytes.saturating_sub("x-pad".len() + pad);
        if let Some(at) = limit.checked_sub(extra + "x-pad".len()) {
            let header = |k: usize| vec![("x-pad", "a".repeat(k))];
            match edge(c, "header bytes", &header(at), &header(at + 1), limit).await {
                Ok(note) => said = format!("{said}; {note}"),
                Err(v) => return v,
            }
        }
    }
    Verdict::pass(said)
}

/// Sends `headers` and expects a refusal: a 431 JSON error, a 431 with no body (an HTTP
/// parser's own limit, answering before the application) or a dropped connection; then the
/// target must still answer. Returns what was seen and, when the JSON error names `key` and
/// the figure it measured, `(measured, limit)`.
async fn flood(
    c: &Ctx,
    sent: &str,
    headers: &[(&str, String)],
    key: &str,
) -> Step<(String, Option<(usize, usize)>)> {
    match c
        .send(sent, Method::GET, "/v2", headers, Bytes::new())
        .await
    {
        Ok(reply) if reply.status.as_u16() == 431 && reply.body.is_empty() => {
            alive(c).await?;
            Ok((
                format!("sent {sent}; got 431 with no body (the HTTP parser's limit); still alive"),
                None,
            ))
        }
        Ok(reply) => {
            let verdict = four_xx(c, sent, &reply, Some(431)).await;
            if verdict.outcome.label() != "pass" {
                return Err(verdict);
            }
            Ok((verdict.message, measured_and_limit(&reply, key)))
        }
        // A server may also drop such a request's connection: that is a refusal too.
        Err(v) if v.outcome.label() == "error" => {
            alive(c).await?;
            Ok((
                format!(
                    "sent {sent}; the connection was refused ({}); still alive",
                    v.message
                ),
                None,
            ))
        }
        Err(v) => Err(v),
    }
}

/// `(measured, limit)` from an error worded like the reference engine's: "request has 203
/// headers, over the security.max-headers limit of 64" names `key`, the figure first and the
/// limit after "limit of".
fn measured_and_limit(reply: &Reply, key: &str) -> Option<(usize, usize)> {
    let error = reply.json::<serde_json::Value>().ok()?["error"]
        .as_str()?
        .to_owned();
    if !error.contains(key) {
        return None;
    }
    let number = |text: &str| -> Option<usize> {
        let digits: String = text
            .chars()
            .skip_while(|c| !c.is_ascii_digit())
            .take_while(char::is_ascii_digit)
            .collect();
        digits.parse().ok()
    };
    let limit = number(error.split("limit of").nth(1)?)?;
    Some((number(&error)?, limit))
}

/// A limit of `limit` `what`, to the unit: `at` (exactly the limit) must be served, `over`
/// (one more) refused with 431.
async fn edge(
    c: &Ctx,
    what: &str,
    at: &[(&str, String)],
    over: &[(&str, String)],
    limit: usize,
) -> Step<String> {
    let sent = format!("GET /v2 with {what} exactly at the limit of {limit}");
    let reply = c.send(&sent, Method::GET, "/v2", at, Bytes::new()).await?;
    if !reply.status.is_success() {
        return Err(Verdict::fail(format!(
            "sent {sent}; the limit itself must be allowed, got {}",
            answer(&reply)
        )));
    }
    let sent = format!("GET /v2 with {what} one over the limit of {limit}");
    let reply = c
        .send(&sent, Method::GET, "/v2", over, Bytes::new())
        .await?;
    if reply.status.as_u16() != 431 {
        return Err(Verdict::fail(format!(
            "sent {sent}; expected 431, got {}",
            answer(&reply)
        )));
    }
    Ok(format!(
        "{what} at the limit of {limit} served, one over refused"
    ))
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
