//! Leaves every HTTP/1.1 connection in a usable state after an early answer.
//!
//! Many answers come before the request body is read: an unknown model (404), a wrong content
//! type (415), a body declared over the limit (413). hyper then closes the connection with the
//! rest of the body unread, and the kernel answers the client's next bytes with a reset, which
//! can destroy the response before the client reads it, or break the next request on a pooled
//! connection. So, like nginx's lingering close, this layer reads and discards what the handler
//! left of the body, up to a bound and a deadline; when the rest is larger or slower, it adds
//! `Connection: close` so the client does not reuse the connection.

use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, Bytes, HttpBody};
use axum::extract::Request;
use axum::middleware::Next;
use axum::response::Response;
use http::{HeaderValue, header};
use http_body::{Frame, SizeHint};
use http_body_util::{BodyExt as _, Limited};

/// Most bytes discarded after an early answer.
pub(crate) const DRAIN_LIMIT: usize = 4 << 20;
/// Longest time spent discarding after an early answer.
const DRAIN_DEADLINE: Duration = Duration::from_secs(2);

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

/// Runs the handler, then discards what it left of the request body (see the module docs).
pub(crate) async fn drain_unread_body(req: Request, next: Next) -> Response {
    let (parts, body) = req.into_parts();
    if body.is_end_stream() {
        return next.run(Request::from_parts(parts, body)).await;
    }
    let shared = SharedBody(Arc::new(Mutex::new(Some(body))));
    let mut response = next
        .run(Request::from_parts(parts, Body::new(shared.clone())))
        .await;
    let rest = shared
        .0
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .take();
    if let Some(rest) = rest
        && !rest.is_end_stream()
    {
        let too_big = rest
            .size_hint()
            .exact()
            .is_some_and(|n| n > DRAIN_LIMIT as u64);
        let drained = !too_big
            && matches!(
                tokio::time::timeout(DRAIN_DEADLINE, Limited::new(rest, DRAIN_LIMIT).collect())
                    .await,
                Ok(Ok(_))
            );
        if !drained {
            response
                .headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
    }
    response
}
