//! `grpc://host:port`: an Open Inference Protocol server's gRPC service (KServe V2
//! `inference.GRPCInferenceService`, HTTP/2 cleartext), driven with tonic.
//!
//! Such a target offers [`Capability::Grpc`] and speaks no HTTP API: cases over HTTP are
//! skipped with that reason ([`Target::speaks_http`]). The `--header`s of a run
//! ([`GrpcTarget::connect_with`]) go as metadata with every call ([`CallHeaders`]), their
//! values never shown.

use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use http::{HeaderValue, Request, Response};

use gauntlet_oip_grpc::inference::grpc_inference_service_client::GrpcInferenceServiceClient;
use tonic::metadata::{Ascii, MetadataKey, MetadataValue};
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

use super::security::{ClientSecurity, ExtraHeader, HeaderError};
use super::{Capabilities, Capability, HttpOptions, ServedEngine, Target, TargetError};

/// A tonic client of a target's `GRPCInferenceService`, adding the target's [`CallHeaders`]
/// to every call.
pub type GrpcClient = GrpcInferenceServiceClient<InterceptedService<Channel, CallHeaders>>;

/// Metadata added to every gRPC call: the run's `--header`s (ASCII metadata; values marked
/// sensitive). `Debug` shows the names only.
#[derive(Clone, Default)]
pub struct CallHeaders {
    entries: std::sync::Arc<[(MetadataKey<Ascii>, MetadataValue<Ascii>)]>,
    headers: std::sync::Arc<[(http::HeaderName, HeaderValue)]>,
}

impl std::fmt::Debug for CallHeaders {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.entries.iter().map(|(k, _)| format!("{k}: ***")))
            .finish()
    }
}

impl CallHeaders {
    /// `headers` as gRPC metadata.
    ///
    /// # Errors
    /// [`HeaderError::Reserved`] for a name gRPC sets itself (`te`, `content-type`,
    /// `grpc-…`), [`HeaderError::Name`] for a binary (`…-bin`) name, [`HeaderError::Value`]
    /// for a value that is not ASCII metadata; none shows the value.
    pub fn new(headers: &[ExtraHeader]) -> Result<CallHeaders, HeaderError> {
        let mut entries = Vec::with_capacity(headers.len());
        for h in headers {
            let name = h.name().as_str();
            if matches!(name, "te" | "content-type") || name.starts_with("grpc-") {
                return Err(HeaderError::Reserved(name.to_owned()));
            }
            let key = MetadataKey::<Ascii>::from_bytes(name.as_bytes())
                .map_err(|_| HeaderError::Name(name.to_owned()))?;
            let mut value = MetadataValue::<Ascii>::try_from(h.value().as_bytes())
                .map_err(|_| HeaderError::Value(name.to_owned()))?;
            value.set_sensitive(true);
            entries.push((key, value));
        }
        Ok(CallHeaders {
            entries: entries.into(),
            headers: headers
                .iter()
                .map(|h| (h.name().clone(), h.value().clone()))
                .collect(),
        })
    }

    /// The same as HTTP/2 headers (values sensitive), for the load driver's own calls.
    pub fn headers(&self) -> &[(http::HeaderName, HeaderValue)] {
        &self.headers
    }
}

impl tonic::service::Interceptor for CallHeaders {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> Result<tonic::Request<()>, tonic::Status> {
        for (key, value) in self.entries.iter() {
            request.metadata_mut().insert(key.clone(), value.clone());
        }
        Ok(request)
    }
}

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
    /// Metadata for every call (the run's `--header`s).
    pub headers: CallHeaders,
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
        Ok(GrpcInferenceServiceClient::with_interceptor(
            channel,
            self.headers.clone(),
        ))
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
        GrpcTarget::connect_with(url, options, ClientSecurity::default()).await
    }

    /// [`GrpcTarget::connect`] with the extra headers of `security` as metadata on every
    /// call (a bearer token: `authorization: Bearer …`). Admin credentials and keyrings are
    /// for the HTTP API's admin routes, which gRPC has none of: they are not used here.
    ///
    /// # Errors
    /// [`TargetError::InvalidUrl`] also for a CA file (a `grpc://` target is cleartext HTTP/2)
    /// and for a header that cannot be gRPC metadata (naming it, never its value).
    pub async fn connect_with(
        url: &str,
        options: HttpOptions,
        security: ClientSecurity,
    ) -> Result<Self, TargetError> {
        let authority = grpc_authority(url)?;
        let invalid = |reason: String| TargetError::InvalidUrl {
            url: url.to_owned(),
            reason,
        };
        if security.ca_file.is_some() {
            return Err(invalid(
                "--ca-file is for https:// targets; a grpc:// target is cleartext HTTP/2"
                    .to_owned(),
            ));
        }
        let headers = CallHeaders::new(&security.headers).map_err(|e| invalid(e.to_string()))?;
        let endpoint = GrpcEndpoint {
            authority,
            timeout: options.request_timeout,
            connect_timeout: options.connect_timeout,
            server: None,
            headers,
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

    #[test]
    fn headers_become_sensitive_metadata_and_reserved_names_are_refused() {
        let bearer = ExtraHeader::parse("authorization: Bearer s3cr3t-t0ken").unwrap();
        let tenant = ExtraHeader::parse("x-tenant: desk-7").unwrap();
        let h = CallHeaders::new(&[bearer, tenant]).unwrap();
        let names: Vec<&str> = h.headers().iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["authorization", "x-tenant"]);
        assert!(h.headers().iter().all(|(_, v)| v.is_sensitive()));
        let shown = format!("{h:?}");
        assert!(!shown.contains("s3cr3t"), "{shown}");
        assert!(shown.contains("x-tenant"), "{shown}");
        let mut request = tonic::Request::new(());
        request = tonic::service::Interceptor::call(&mut h.clone(), request).unwrap();
        let metadata = request.metadata();
        assert_eq!(
            metadata.get("authorization").unwrap(),
            "Bearer s3cr3t-t0ken"
        );
        assert!(metadata.get("authorization").unwrap().is_sensitive());
        assert_eq!(metadata.get("x-tenant").unwrap(), "desk-7");
        for (header, error) in [
            (
                "grpc-timeout: 1S",
                "--header grpc-timeout: this header is set by gauntlet itself",
            ),
            (
                "te: trailers",
                "--header te: this header is set by gauntlet itself",
            ),
            (
                "x-key-bin: c2VjcmV0",
                "--header: `x-key-bin` is not a valid header name",
            ),
        ] {
            let e = CallHeaders::new(&[ExtraHeader::parse(header).unwrap()]).unwrap_err();
            assert_eq!(e.to_string(), error);
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
