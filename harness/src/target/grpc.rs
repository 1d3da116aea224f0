//! `grpc://host:port`: an Open Inference Protocol server's gRPC service (KServe V2
//! `inference.GRPCInferenceService`, HTTP/2 cleartext), driven with tonic.
//!
//! Such a target offers [`Capability::Grpc`] and speaks no HTTP API: cases over HTTP are
//! skipped with that reason ([`Target::speaks_http`]).

use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use http::{Request, Response};

use gauntlet_oip_grpc::inference::grpc_inference_service_client::GrpcInferenceServiceClient;
use tonic::transport::Channel;

use super::{Capabilities, Capability, HttpOptions, ServedEngine, Target, TargetError};

/// A tonic client of a target's `GRPCInferenceService`.
pub type GrpcClient = GrpcInferenceServiceClient<Channel>;

/// Where a target serves the OIP over gRPC, and what keeps it served.
#[derive(Debug, Clone)]
pub struct GrpcEndpoint {
    /// `host:port`.
    pub authority: String,
    /// Deadline of each call.
    pub timeout: Duration,
    /// Deadline to connect.
    pub connect_timeout: Duration,
    /// The in-process engine serving it, when there is one (stops when the last clone drops).
    pub server: Option<std::sync::Arc<ServedEngine>>,
}

impl GrpcEndpoint {
    /// `grpc://host:port`.
    pub fn url(&self) -> String {
        format!("grpc://{}", self.authority)
    }

    /// A connected client (one HTTP/2 connection).
    ///
    /// # Errors
    /// [`TargetError::Unreachable`] when nothing accepts the connection in time.
    pub async fn client(&self) -> Result<GrpcClient, TargetError> {
        let unreachable = |reason: String| TargetError::Unreachable {
            url: self.url(),
            reason,
        };
        let endpoint = Channel::from_shared(format!("http://{}", self.authority))
            .map_err(|e| unreachable(e.to_string()))?
            .connect_timeout(self.connect_timeout)
            .timeout(self.timeout)
            .tcp_nodelay(true);
        let channel = endpoint
            .connect()
            .await
            .map_err(|e| unreachable(error_chain(&e)))?;
        Ok(GrpcInferenceServiceClient::new(channel))
    }
}

fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// The authority of a `grpc://host:port` URL (no path, no credentials).
///
/// # Errors
/// [`TargetError::InvalidUrl`] saying what is wrong.
pub fn grpc_authority(url: &str) -> Result<String, TargetError> {
    let invalid = |reason: &str| TargetError::InvalidUrl {
        url: url.to_owned(),
        reason: reason.to_owned(),
    };
    let rest = url
        .strip_prefix("grpc://")
        .ok_or_else(|| invalid("a gRPC target is grpc://host:port"))?;
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    let uri: http::uri::Authority = rest
        .parse()
        .map_err(|_| invalid("expected grpc://host:port, with no path"))?;
    if uri.as_str().contains('@') {
        return Err(invalid("credentials in a grpc:// URL are not supported"));
    }
    if uri.port_u16().is_none() {
        return Err(invalid("a gRPC target needs a port: grpc://host:port"));
    }
    Ok(uri.as_str().to_owned())
}

/// An OIP server's gRPC service at `grpc://host:port`.
#[derive(Debug, Clone)]
pub struct GrpcTarget {
    endpoint: GrpcEndpoint,
    capabilities: Capabilities,
}

impl GrpcTarget {
    /// Checks the URL and that something accepts connections there (within
    /// `options.connect_timeout`); calls time out after `options.request_timeout`.
    ///
    /// # Errors
    /// [`TargetError::InvalidUrl`] or [`TargetError::Unreachable`].
    pub async fn connect(url: &str, options: HttpOptions) -> Result<Self, TargetError> {
        let authority = grpc_authority(url)?;
        let endpoint = GrpcEndpoint {
            authority,
            timeout: options.request_timeout,
            connect_timeout: options.connect_timeout,
            server: None,
        };
        endpoint.client().await?;
        Ok(GrpcTarget {
            endpoint,
            capabilities: [Capability::Grpc].into_iter().collect(),
        })
    }
}

#[async_trait]
impl Target for GrpcTarget {
    fn describe(&self) -> String {
        format!("gRPC {}", self.endpoint.url())
    }

    fn capabilities(&self) -> &Capabilities {
        &self.capabilities
    }

    fn speaks_http(&self) -> bool {
        false
    }

    async fn send(&self, request: Request<Bytes>) -> Result<Response<Bytes>, TargetError> {
        Err(TargetError::Unsupported {
            target: self.describe(),
            what: format!(
                "HTTP ({} {}): a grpc:// target is driven over gRPC only",
                request.method(),
                request.uri().path()
            ),
        })
    }

    async fn grpc_endpoint(&self) -> Result<GrpcEndpoint, TargetError> {
        Ok(self.endpoint.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_urls_are_host_and_port() {
        assert_eq!(
            grpc_authority("grpc://127.0.0.1:8081").unwrap(),
            "127.0.0.1:8081"
        );
        assert_eq!(
            grpc_authority("grpc://localhost:9/").unwrap(),
            "localhost:9"
        );
        for (url, why) in [
            ("http://127.0.0.1:1", "grpc://host:port"),
            ("grpc://127.0.0.1", "needs a port"),
            ("grpc://h:1/v2", "no path"),
            ("grpc://u:p@h:1", "credentials"),
        ] {
            let e = grpc_authority(url).unwrap_err().to_string();
            assert!(e.contains(why), "{url}: {e}");
        }
    }

    #[tokio::test]
    async fn nothing_listening_is_unreachable() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        drop(listener);
        let options = HttpOptions {
            connect_timeout: Duration::from_secs(2),
            ..HttpOptions::default()
        };
        let e = GrpcTarget::connect(&format!("grpc://127.0.0.1:{port}"), options)
            .await
            .unwrap_err();
        assert!(matches!(e, TargetError::Unreachable { .. }), "{e}");
    }
}
