//! The HTTP client of one remote OIP backend: `POST {backend}/v2/models/{m}/infer` (and
//! `GET {backend}/v2/models/{m}` for its metadata) with a deadline, over a small pool of
//! kept-alive HTTP/1.1 connections.

use std::time::Duration;

use bytes::Bytes;
use http::{StatusCode, Uri, header};
use http_body_util::{BodyExt as _, Full, Limited};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

/// Largest backend answer read (16 MiB): ten thousand rows are a few hundred kilobytes.
const MAX_REPLY_BYTES: usize = 16 << 20;
/// Idle pooled connections are dropped before the backend's own idle limit (an engine's
/// `header-read-timeout`, 10 s by default) would close them under a request.
const POOL_IDLE: Duration = Duration::from_secs(5);

/// Why a backend call counts as failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CallError {
    /// No complete answer within the timeout.
    #[error("backend did not answer within {}", humantime::format_duration(*.0))]
    Timeout(Duration),
    /// Connecting, sending or reading failed.
    #[error("backend connection failed: {0}")]
    Connection(String),
    /// The backend answered a status that is its fault (5xx, 404 unknown model, 429, ...).
    #[error("backend answered {0}")]
    Status(StatusCode),
    /// A 200 whose body is not an OIP infer response.
    #[error("backend answered 200 with a body that is not an infer response: {0}")]
    BadBody(String),
}

/// A backend's answer that is not its fault.
#[derive(Debug)]
pub enum Reply {
    /// 200 with a valid infer response (the body, as sent).
    Served(Bytes),
    /// A client error about this request (400, 413, 415, 422): passed on as is.
    Refused(StatusCode, Bytes),
}

/// The client of one backend.
#[derive(Debug, Clone)]
pub struct RemoteClient {
    client: Client<HttpConnector, Full<Bytes>>,
    infer_uri: Uri,
    metadata_uri: Uri,
    timeout: Duration,
}

impl RemoteClient {
    /// A client of `authority`'s model `remote_name`, each call bounded by `timeout`.
    pub fn new(authority: &http::uri::Authority, remote_name: &str, timeout: Duration) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(timeout));
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(POOL_IDLE)
            .build(connector);
        let uri = |path: String| {
            Uri::builder()
                .scheme("http")
                .authority(authority.clone())
                .path_and_query(path)
                .build()
                // Authority and name were validated with the config.
                .unwrap_or_default()
        };
        RemoteClient {
            client,
            infer_uri: uri(format!("/v2/models/{remote_name}/infer")),
            metadata_uri: uri(format!("/v2/models/{remote_name}")),
            timeout,
        }
    }

    /// Reads the model's metadata (`GET {backend}/v2/models/{remote_name}`) within the
    /// timeout.
    ///
    /// # Errors
    /// [`CallError`]: no answer in time, a status other than 200 ([`CallError::Status`]), or a
    /// body that is not model metadata ([`CallError::BadBody`]).
    pub async fn metadata(&self) -> Result<crate::oip::ModelMetadata, CallError> {
        let call = async {
            let request = http::Request::get(self.metadata_uri.clone())
                .body(Full::new(Bytes::new()))
                .map_err(|e| CallError::Connection(e.to_string()))?;
            let (status, body) = self.exchange(request).await?;
            if status != StatusCode::OK {
                return Err(CallError::Status(status));
            }
            serde_json::from_slice(&body).map_err(|e| CallError::BadBody(e.to_string()))
        };
        tokio::time::timeout(self.timeout, call)
            .await
            .map_err(|_| CallError::Timeout(self.timeout))?
    }

    /// Sends `request` and reads the whole answer (at most [`MAX_REPLY_BYTES`]).
    async fn exchange(
        &self,
        request: http::Request<Full<Bytes>>,
    ) -> Result<(StatusCode, Bytes), CallError> {
        let response = self
            .client
            .request(request)
            .await
            .map_err(|e| CallError::Connection(chain(&e)))?;
        let status = response.status();
        let body = Limited::new(response.into_body(), MAX_REPLY_BYTES)
            .collect()
            .await
            .map_err(|e| CallError::Connection(e.to_string()))?
            .to_bytes();
        Ok((status, body))
    }

    /// Posts an infer request body and reads the answer, all within the timeout.
    ///
    /// # Errors
    /// [`CallError`]: what the breaker counts as a failure.
    pub async fn infer(&self, body: Bytes) -> Result<Reply, CallError> {
        tokio::time::timeout(self.timeout, self.call(body))
            .await
            .map_err(|_| CallError::Timeout(self.timeout))?
    }

    async fn call(&self, body: Bytes) -> Result<Reply, CallError> {
        let request = http::Request::post(self.infer_uri.clone())
            .header(header::CONTENT_TYPE, "application/json")
            .body(Full::new(body))
            .map_err(|e| CallError::Connection(e.to_string()))?;
        let (status, body) = self.exchange(request).await?;
        match status {
            StatusCode::OK => {
                serde_json::from_slice::<crate::oip::InferResponse>(&body)
                    .map_err(|e| CallError::BadBody(e.to_string()))?;
                Ok(Reply::Served(body))
            }
            StatusCode::BAD_REQUEST
            | StatusCode::PAYLOAD_TOO_LARGE
            | StatusCode::UNSUPPORTED_MEDIA_TYPE
            | StatusCode::UNPROCESSABLE_ENTITY => Ok(Reply::Refused(status, body)),
            other => Err(CallError::Status(other)),
        }
    }
}

/// The error and its sources, `: `-separated (hyper's own message is only the outermost).
fn chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut out = err.to_string();
    let mut source = err.source();
    while let Some(e) = source {
        out.push_str(": ");
        out.push_str(&e.to_string());
        source = e.source();
    }
    out
}
