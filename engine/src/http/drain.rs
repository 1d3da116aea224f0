//! Leaves every HTTP/1.1 connection in a usable state after an early answer.
//!
//! Many answers come before the request body is read: an unknown model (404), a wrong content
//! type (415), a body declared over the limit (413). hyper then closes the connection with the
//! rest of the body unread, and the kernel answers the client's next bytes with a reset, which
//! can destroy the response before the client reads it, or break the next request on a pooled
//! connection. So, like nginx's lingering close, this layer discards what the handler left of
//! the body, in a task of its own so the answer goes out at once: it drops each frame as it
//! arrives and stops after [`DRAIN_LIMIT`] bytes or [`DRAIN_DEADLINE`], then drops the body.
//!
//! Whenever part of the body is left unread, the answer says `Connection: close`: the discard
//! may give up (a slow or large upload), and hyper then closes the connection, so a client that
//! was told keep-alive would find its next request on a dead connection. The discarding is a
//! lingering close, not a way to keep the connection: a client that is still uploading reads the
//! answer instead of a reset. When the client sent `Expect: 100-continue`, the body is never
//! polled (that would send `100 Continue` and ask for an upload nobody wants): it is dropped.

use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, Bytes, HttpBody};
use axum::extract::Request;
use axum::response::Response;
use http::{HeaderValue, header};
use http_body::{Frame, SizeHint};
use http_body_util::BodyExt as _;

/// Most bytes discarded after an early answer.
pub(crate) const DRAIN_LIMIT: usize = 4 << 20;
/// Longest time spent discarding after an early answer.
pub(crate) const DRAIN_DEADLINE: Duration = Duration::from_secs(2);

/// The request body, shared between the handler and this layer.
#[derive(Clone)]
struct SharedBody(Arc<Mutex<Option<Body>>>);

impl HttpBody for SharedBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let mut slot = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        match slot.as_mut() {
            None => Poll::Ready(None),
            Some(body) => {
                let polled = Pin::new(body).poll_frame(cx);
                if matches!(polled, Poll::Ready(None)) {
                    *slot = None;
                }
                polled
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        let slot = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        slot.as_ref().is_none_or(HttpBody::is_end_stream)
    }

    fn size_hint(&self) -> SizeHint {
        let slot = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        slot.as_ref()
            .map_or_else(|| SizeHint::with_exact(0), HttpBody::size_hint)
    }
}

/// Runs the handler (`inner`), then deals with what it left of the request body (see the
/// module docs).
pub(crate) async fn drain_unread_body<F, Fut>(req: Request, inner: F) -> Response
where
    F: FnOnce(Request) -> Fut,
    Fut: Future<Output = Response>,
{
    let (parts, body) = req.into_parts();
    if body.is_end_stream() {
        return inner(Request::from_parts(parts, body)).await;
    }
    let expects_continue = parts
        .headers
        .get(header::EXPECT)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"));
    let shared = SharedBody(Arc::new(Mutex::new(Some(body))));
    let mut response = inner(Request::from_parts(parts, Body::new(shared.clone()))).await;
    let rest = shared
        .0
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .take();
    let Some(rest) = rest.filter(|rest| !rest.is_end_stream()) else {
        return response;
    };
    // Whether the discard below would finish is unknowable here (the rest may be slow or
    // unbounded), so the connection is never offered for reuse.
    response
        .headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    if !expects_continue {
        // Reading on for a while (a lingering close) lets a client that is still uploading
        // read the answer before the connection resets.
        tokio::spawn(discard(rest));
    }
    response
}

/// Reads and drops frames until the body ends, [`DRAIN_LIMIT`] bytes have gone by or
/// [`DRAIN_DEADLINE`] has passed; then drops the body.
async fn discard(mut body: Body) {
    let drained = tokio::time::timeout(DRAIN_DEADLINE, async {
        let mut seen = 0usize;
        while let Some(Ok(frame)) = body.frame().await {
            if let Some(data) = frame.data_ref() {
                seen = seen.saturating_add(data.len());
                if seen > DRAIN_LIMIT {
                    return false;
                }
            }
        }
        true
    })
    .await;
    if !matches!(drained, Ok(true)) {
        tracing::debug!("gave up discarding an unread request body; the connection will close");
    }
}
