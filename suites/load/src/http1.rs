//! The driver's HTTP/1.1 connection: one keep-alive TCP connection that writes a request
//! prepared once as bytes and reads one response at a time into a reused buffer.
//!
//! Every request of a run is the same, so the driver serialises it once ([`prepare`]) and
//! each exchange is a write, reads until the response is complete, and a parse of its head
//! with `httparse` (the parser hyper uses). Against hyper's client connection this drops a
//! spawned connection task, two channel hand-offs, a header map and a body buffer list per
//! request: the driver's CPU per request is what bounds the rate it can generate honestly
//! (see `suites/load/benches/driver.rs`). Bodies are framed by `Content-Length`, chunked transfer
//! coding, or the end of the connection, as RFC 9112 §6.3 orders them; 1xx responses are
//! skipped.

use std::io;
use std::task::Poll;

use bytes::Bytes;
use http::{HeaderName, HeaderValue, Method};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

/// Largest response head read.
const MAX_HEAD_BYTES: usize = 64 << 10;
/// Headers parsed per response.
const MAX_HEADERS: usize = 64;
/// Read granularity.
const READ_CHUNK: usize = 16 << 10;

/// A request serialised once, sent as is on every exchange.
#[derive(Debug, Clone)]
pub(crate) struct Prepared {
    bytes: Bytes,
    /// A `HEAD` request: its response has no body whatever its head says.
    head: bool,
}

/// Serialises `method path` with its `Host`, `headers` and body (`content-type:
/// application/json` unless `headers` name another).
pub(crate) fn prepare(
    method: &Method,
    path: &str,
    host: &HeaderValue,
    headers: &[(HeaderName, HeaderValue)],
    body: &[u8],
) -> Result<Prepared, String> {
    if !path.starts_with('/') || path.bytes().any(|b| b <= b' ' || b == 0x7f) {
        return Err(format!(
            "path {path:?} must start with / and hold no spaces or control characters"
        ));
    }
    let mut out = Vec::with_capacity(128 + body.len());
    out.extend_from_slice(method.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(path.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\nhost: ");
    out.extend_from_slice(host.as_bytes());
    out.extend_from_slice(b"\r\n");
    for (name, value) in headers {
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    let carries_body =
        !body.is_empty() || matches!(*method, Method::POST | Method::PUT | Method::PATCH);
    let typed = headers
        .iter()
        .any(|(name, _)| name == http::header::CONTENT_TYPE);
    if !body.is_empty() && !typed {
        out.extend_from_slice(b"content-type: application/json\r\n");
    }
    if carries_body {
        out.extend_from_slice(format!("content-length: {}\r\n", body.len()).as_bytes());
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(body);
    Ok(Prepared {
        bytes: Bytes::from(out),
        head: *method == Method::HEAD,
    })
}

/// A response read off a connection; the body borrows the connection's buffer.
#[derive(Debug)]
pub(crate) struct Response<'a> {
    /// Status code.
    pub status: u16,
    /// The body, de-chunked.
    pub body: &'a [u8],
}

/// How the body of a response is delimited.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Framing {
    Empty,
    Length(usize),
    Chunked,
    UntilClose,
}

/// What a response head says.
struct Head {
    len: usize,
    status: u16,
    framing: Framing,
    keep_alive: bool,
}

/// One HTTP/1.1 connection.
#[derive(Debug)]
pub(crate) struct Conn {
    stream: TcpStream,
    /// Bytes read off the socket for the current response.
    buf: Vec<u8>,
    /// The de-chunked body of a chunked response.
    chunked: Vec<u8>,
    /// The server may take another request on this connection.
    reusable: bool,
}

impl Conn {
    /// Connects to `authority` (`host:port`) with Nagle's algorithm off.
    pub(crate) async fn connect(authority: &str) -> io::Result<Conn> {
        let stream = TcpStream::connect(authority).await?;
        stream.set_nodelay(true)?;
        Ok(Conn {
            stream,
            buf: Vec::with_capacity(READ_CHUNK),
            chunked: Vec::new(),
            reusable: true,
        })
    }

    /// True while the connection can carry another request: the last response allowed it,
    /// and the server has neither closed it nor sent anything since (no system call unless
    /// the socket has become readable while idle).
    pub(crate) fn is_reusable(&mut self) -> bool {
        if !self.reusable {
            return false;
        }
        let waker = std::task::Waker::noop();
        let mut cx = std::task::Context::from_waker(waker);
        if let Poll::Ready(Ok(())) = self.stream.poll_read_ready(&mut cx) {
            let mut probe = [0u8; 1];
            match self.stream.try_read(&mut probe) {
                // Closed (0) or unsolicited bytes: not for us to read as the next response.
                Ok(_) => self.reusable = false,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(_) => self.reusable = false,
            }
        }
        self.reusable
    }

    /// Sends `request` and reads its response, refusing bodies over `max_body` bytes.
    pub(crate) async fn exchange(
        &mut self,
        request: &Prepared,
        max_body: usize,
    ) -> Result<Response<'_>, String> {
        self.buf.clear();
        self.stream
            .write_all(&request.bytes)
            .await
            .map_err(|e| format!("writing the request: {e}"))?;
        let head = loop {
            if let Some(head) = self.parse_head(request.head)? {
                if (100..200).contains(&head.status) {
                    // An interim response (100 Continue, 103 Early Hints): the final one follows.
                    self.buf.drain(..head.len);
                    continue;
                }
                break head;
            }
            if self.buf.len() >= MAX_HEAD_BYTES {
                return Err(format!("response head longer than {MAX_HEAD_BYTES} bytes"));
            }
            if self.fill().await? == 0 {
                return Err(if self.buf.is_empty() {
                    "the server closed the connection before responding".to_owned()
                } else {
                    "the server closed the connection mid-head".to_owned()
                });
            }
        };
        self.reusable = head.keep_alive;
        let start = head.len;
        let end = match head.framing {
            Framing::Empty => start,
            Framing::Length(n) => {
                if n > max_body {
                    self.reusable = false;
                    return Err(format!(
                        "response body of {n} bytes exceeds the limit of {max_body}"
                    ));
                }
                while self.buf.len() < start + n {
                    if self.fill().await? == 0 {
                        return Err(format!(
                            "the server closed the connection after {} of {n} body bytes",
                            self.buf.len() - start
                        ));
                    }
                }
                start + n
            }
            Framing::UntilClose => {
                self.reusable = false;
                while self.fill().await? > 0 {
                    if self.buf.len() - start > max_body {
                        return Err(format!(
                            "response body exceeds the limit of {max_body} bytes"
                        ));
                    }
                }
                self.buf.len()
            }
            Framing::Chunked => {
                let end = self.read_chunked(start, max_body).await?;
                if end < self.buf.len() {
                    self.reusable = false;
                }
                return Ok(Response {
                    status: head.status,
                    body: &self.chunked,
                });
            }
        };
        if end < self.buf.len() {
            // Bytes past the response: not ours to take as the next one.
            self.reusable = false;
        }
        Ok(Response {
            status: head.status,
            body: &self.buf[start..end],
        })
    }

    /// Reads more bytes into the buffer; 0 at the end of the stream.
    async fn fill(&mut self) -> Result<usize, String> {
        self.buf.reserve(READ_CHUNK);
        self.stream
            .read_buf(&mut self.buf)
            .await
            .map_err(|e| format!("reading the response: {e}"))
    }

    /// The response head, once the buffer holds all of it.
    fn parse_head(&self, head_request: bool) -> Result<Option<Head>, String> {
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut response = httparse::Response::new(&mut headers);
        let len = match response.parse(&self.buf) {
            Ok(httparse::Status::Complete(len)) => len,
            Ok(httparse::Status::Partial) => return Ok(None),
            Err(e) => return Err(format!("malformed response head: {e}")),
        };
        let status = response.code.unwrap_or(0);
        let http10 = response.version == Some(0);
        let mut length: Option<usize> = None;
        let mut chunked = false;
        let mut keep_alive = !http10;
        for h in response.headers.iter() {
            if h.name.eq_ignore_ascii_case("content-length") {
                let n = std::str::from_utf8(h.value)
                    .ok()
                    .and_then(|v| v.trim().parse::<usize>().ok())
                    .ok_or_else(|| {
                        format!("bad content-length {:?}", String::from_utf8_lossy(h.value))
                    })?;
                if length.is_some_and(|m| m != n) {
                    return Err("conflicting content-length headers".to_owned());
                }
                length = Some(n);
            } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
                chunked = h
                    .value
                    .rsplit(|b| *b == b',')
                    .next()
                    .is_some_and(|last| last.trim_ascii().eq_ignore_ascii_case(b"chunked"));
            } else if h.name.eq_ignore_ascii_case("connection") {
                for token in h.value.split(|b| *b == b',') {
                    let token = token.trim_ascii();
                    if token.eq_ignore_ascii_case(b"close") {
                        keep_alive = false;
                    } else if token.eq_ignore_ascii_case(b"keep-alive") && http10 {
                        keep_alive = true;
                    }
                }
            }
        }
        let framing = if head_request || status == 204 || status == 304 || status < 200 {
            Framing::Empty
        } else if chunked {
            Framing::Chunked
        } else if let Some(n) = length {
            Framing::Length(n)
        } else {
            Framing::UntilClose
        };
        Ok(Some(Head {
            len,
            status,
            framing,
            keep_alive,
        }))
    }

    /// De-chunks the body starting at `pos` into `self.chunked`; returns where the message
    /// ends in the buffer.
    async fn read_chunked(&mut self, mut pos: usize, max_body: usize) -> Result<usize, String> {
        self.chunked.clear();
        loop {
            let (consumed, size) = loop {
                match httparse::parse_chunk_size(&self.buf[pos..]) {
                    Ok(httparse::Status::Complete(found)) => break found,
                    Ok(httparse::Status::Partial) => self.fill_or_fail("a chunk size").await?,
                    Err(_) => return Err("malformed chunk size line".to_owned()),
                }
            };
            let size = usize::try_from(size)
                .ok()
                .filter(|s| self.chunked.len().saturating_add(*s) <= max_body)
                .ok_or_else(|| format!("response body exceeds the limit of {max_body} bytes"))?;
            pos += consumed;
            if size == 0 {
                // Trailer fields, then an empty line.
                loop {
                    match find_crlf(&self.buf[pos..]) {
                        Some(0) => return Ok(pos + 2),
                        Some(line) => pos += line + 2,
                        None => self.fill_or_fail("the trailer").await?,
                    }
                }
            }
            while self.buf.len() < pos + size + 2 {
                self.fill_or_fail("a chunk").await?;
            }
            self.chunked.extend_from_slice(&self.buf[pos..pos + size]);
            if &self.buf[pos + size..pos + size + 2] != b"\r\n" {
                return Err("chunk not followed by CRLF".to_owned());
            }
            pos += size + 2;
        }
    }

    async fn fill_or_fail(&mut self, what: &str) -> Result<(), String> {
        match self.fill().await? {
            0 => Err(format!(
                "the server closed the connection in the middle of {what}"
            )),
            _ => Ok(()),
        }
    }
}

fn find_crlf(bytes: &[u8]) -> Option<usize> {
    bytes.windows(2).position(|w| w == b"\r\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::header::{AUTHORIZATION, CONTENT_TYPE};
    use tokio::net::TcpListener;

    /// A one-shot server on loopback that answers each request with the next canned reply
    /// (written in pieces to exercise partial reads), then closes.
    async fn canned(replies: Vec<Vec<u8>>) -> String {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut buf = vec![0u8; 4096];
            for reply in replies {
                let n = s.read(&mut buf).await.unwrap();
                assert!(n > 0);
                for piece in reply.chunks(7) {
                    s.write_all(piece).await.unwrap();
                    s.flush().await.unwrap();
                    tokio::task::yield_now().await;
                }
            }
        });
        addr
    }

    fn get() -> Prepared {
        prepare(&Method::GET, "/x", &HeaderValue::from_static("h"), &[], b"").unwrap()
    }

    #[test]
    fn requests_are_serialised_with_length_for_bodies() {
        let p = prepare(
            &Method::POST,
            "/v2/models/m/infer",
            &HeaderValue::from_static("127.0.0.1:9"),
            &[
                (AUTHORIZATION, HeaderValue::from_static("Bearer t")),
                (
                    HeaderName::from_static("x-api-key"),
                    HeaderValue::from_static("k"),
                ),
            ],
            b"{}",
        )
        .unwrap();
        assert_eq!(
            &p.bytes[..],
            b"POST /v2/models/m/infer HTTP/1.1\r\nhost: 127.0.0.1:9\r\nauthorization: Bearer t\r\n\
              x-api-key: k\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{}"
        );
        // A content type of the user's replaces the default.
        let typed = prepare(
            &Method::POST,
            "/p",
            &HeaderValue::from_static("h"),
            &[(
                CONTENT_TYPE,
                HeaderValue::from_static("application/x-ndjson"),
            )],
            b"{}",
        )
        .unwrap();
        assert_eq!(
            &typed.bytes[..],
            b"POST /p HTTP/1.1\r\nhost: h\r\ncontent-type: application/x-ndjson\r\n\
              content-length: 2\r\n\r\n{}"
        );
        assert_eq!(&get().bytes[..], b"GET /x HTTP/1.1\r\nhost: h\r\n\r\n");
        let err = prepare(
            &Method::GET,
            "/a b",
            &HeaderValue::from_static("h"),
            &[],
            b"",
        )
        .unwrap_err();
        assert!(err.contains("no spaces"), "{err}");
    }

    #[tokio::test]
    async fn length_chunked_and_interim_responses_read_back_on_one_connection() {
        let addr = canned(vec![
            b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhello".to_vec(),
            b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\n\r\n\
              3;ext=1\r\nabc\r\n4\r\ndefg\r\n0\r\nx-trailer: 1\r\n\r\n"
                .to_vec(),
            b"HTTP/1.1 204 No Content\r\ncontent-length: 0\r\n\r\n".to_vec(),
            b"HTTP/1.1 503 Service Unavailable\r\nconnection: close\r\ncontent-length: 4\r\n\r\nbusy"
                .to_vec(),
        ])
        .await;
        let mut c = Conn::connect(&addr).await.unwrap();
        let r = c.exchange(&get(), 1 << 20).await.unwrap();
        assert_eq!((r.status, r.body), (200, &b"hello"[..]));
        assert!(c.is_reusable());
        let r = c.exchange(&get(), 1 << 20).await.unwrap();
        assert_eq!((r.status, r.body), (201, &b"abcdefg"[..]));
        assert!(c.is_reusable());
        let r = c.exchange(&get(), 1 << 20).await.unwrap();
        assert_eq!((r.status, r.body), (204, &b""[..]));
        let r = c.exchange(&get(), 1 << 20).await.unwrap();
        assert_eq!((r.status, r.body), (503, &b"busy"[..]));
        assert!(!c.is_reusable(), "connection: close");
    }

    #[tokio::test]
    async fn a_body_read_to_the_close_ends_the_connection() {
        let addr = canned(vec![b"HTTP/1.1 200 OK\r\n\r\nuntil the end".to_vec()]).await;
        let mut c = Conn::connect(&addr).await.unwrap();
        let r = c.exchange(&get(), 1 << 20).await.unwrap();
        assert_eq!((r.status, r.body), (200, &b"until the end"[..]));
        assert!(!c.is_reusable());
    }

    #[tokio::test]
    async fn a_closed_idle_connection_is_not_reused() {
        let addr = canned(vec![
            b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n".to_vec(),
        ])
        .await;
        let mut c = Conn::connect(&addr).await.unwrap();
        c.exchange(&get(), 1 << 20).await.unwrap();
        // The server has closed after its one reply; the FIN arrives shortly.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while c.is_reusable() {
            assert!(std::time::Instant::now() < deadline, "FIN never noticed");
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
    }

    #[tokio::test]
    async fn bad_responses_are_errors_that_say_what_broke() {
        for (reply, expect) in [
            (&b"SMTP ready\r\n\r\n"[..], "malformed response head"),
            (
                b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nshort",
                "after 5 of 10 body bytes",
            ),
            (
                b"HTTP/1.1 200 OK\r\ncontent-length: 99999\r\n\r\n",
                "exceeds the limit of 1024",
            ),
            (
                b"HTTP/1.1 200 OK\r\ncontent-length: x\r\n\r\n",
                "bad content-length",
            ),
            (
                b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\nzz\r\n",
                "malformed chunk size",
            ),
            (
                b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n2\r\nabXY",
                "chunk not followed by CRLF",
            ),
            (b"", "closed the connection before responding"),
        ] {
            let addr = canned(vec![reply.to_vec()]).await;
            let mut c = Conn::connect(&addr).await.unwrap();
            let err = c.exchange(&get(), 1024).await.unwrap_err();
            assert!(err.contains(expect), "{err:?} should say {expect:?}");
        }
    }
}
