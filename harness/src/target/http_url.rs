//! Any Open Inference Protocol server at a base URL, over real HTTP or HTTPS.
//!
//! `http://` goes through reqwest; `https://` through hyper with rustls (ring; TLS 1.2 and 1.3;
//! no OpenSSL), trusting a CA file or the system's roots. Both add the [`ClientSecurity`]
//! headers to every request and sign admin calls when credentials are given.

use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode};
use http_body_util::BodyExt as _;

use super::retries::{self, ConnectionLog, ConnectionRetry, Exchange};
use super::security::{ClientSecurity, RawEndpoint, SecurityAccess, client_config, prepare};
use super::{Capabilities, Capability, HttpEndpoint, Target, TargetError, TargetExt};

/// The hyper client of an `https://` target.
type TlsClient = hyper_util::client::legacy::Client<
    hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector>,
    http_body_util::Full<Bytes>,
>;

/// How requests travel: reqwest for `http://`, hyper over rustls for `https://`.
#[derive(Clone)]
enum Transport {
    Plain(reqwest::Client),
    /// Boxed: the hyper client is ~40 times the size of reqwest's handle.
    Tls(Box<TlsClient>),
}

impl std::fmt::Debug for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Transport::Plain(_) => "http",
            Transport::Tls(_) => "https",
        })
    }
}

/// Timeouts of an [`HttpTarget`].
#[derive(Debug, Clone, Copy)]
pub struct HttpOptions {
    /// Deadline for the reachability probe at connect time (and for each TCP connect).
    pub connect_timeout: Duration,
    /// Deadline for each request, body included.
    pub request_timeout: Duration,
    /// Largest response body read; a larger one is a transport error, so a
    /// misbehaving server cannot exhaust the harness's memory.
    pub max_response_bytes: usize,
}

/// Default [`HttpOptions::max_response_bytes`]: 64 MiB.
pub const DEFAULT_MAX_RESPONSE_BYTES: usize = 64 << 20;

impl Default for HttpOptions {
    fn default() -> Self {
        HttpOptions {
            connect_timeout: Duration::from_secs(3),
            request_timeout: Duration::from_secs(10),
            max_response_bytes: DEFAULT_MAX_RESPONSE_BYTES,
        }
    }
}

/// An OIP server at a base URL, driven with reqwest.
#[derive(Debug, Clone)]
pub struct HttpTarget {
    base: String,
    /// The Basic `Authorization` header of the URL's `user:password@`, made once.
    basic: Option<HeaderValue>,
    transport: Transport,
    options: HttpOptions,
    capabilities: Capabilities,
    server: String,
    security: ClientSecurity,
    access: SecurityAccess,
    /// Where `GET /metrics` goes when the server exposes Prometheus elsewhere (another port
    /// or path, as MLServer's 8082); `None`: `{base}/metrics`.
    metrics_url: Option<String>,
    /// The last exchange of each pooled connection and the retries so far (shared by clones,
    /// which share the pool).
    log: std::sync::Arc<ConnectionLog>,
}

impl HttpTarget {
    /// Checks the URL, probes `GET /v2/health/live` within the connect deadline,
    /// and reads the server's extensions from `GET /v2` to learn its capabilities.
    ///
    /// An address where nothing answers fails with [`TargetError::Unreachable`]
    /// within `options.connect_timeout`.
    pub async fn connect(url: &str, options: HttpOptions) -> Result<Self, TargetError> {
        HttpTarget::connect_with(url, options, ClientSecurity::default()).await
    }

    /// [`HttpTarget::connect`] with the CA file, extra headers and admin credentials of
    /// `security`. No header value or secret appears in an error or in [`Target::describe`].
    pub async fn connect_with(
        url: &str,
        options: HttpOptions,
        security: ClientSecurity,
    ) -> Result<Self, TargetError> {
        let (base, credentials) = validate_base_url(url)?;
        let https = base.starts_with("https://");
        let invalid = |reason: String| TargetError::InvalidUrl {
            url: base.clone(),
            reason,
        };
        let basic = match &credentials {
            None => None,
            Some(c) => {
                // reqwest encodes Basic credentials; take its header rather than encode again.
                let request = reqwest::Client::new()
                    .get(&base)
                    .basic_auth(&c.user, c.password.as_deref())
                    .build()
                    .map_err(|e| invalid(e.to_string()))?;
                request
                    .headers()
                    .get(http::header::AUTHORIZATION)
                    .cloned()
                    .map(|mut v| {
                        v.set_sensitive(true);
                        v
                    })
            }
        };
        let tls = if https {
            let roots = match &security.ca_file {
                Some(path) => super::security::read_ca_file(path).map_err(&invalid)?,
                None => system_roots().map_err(&invalid)?,
            };
            Some(client_config(roots).map_err(&invalid)?)
        } else {
            if security.ca_file.is_some() {
                return Err(invalid("a CA file is for https:// targets".to_owned()));
            }
            None
        };
        let transport = match &tls {
            Some(config) => {
                let mut http = hyper_util::client::legacy::connect::HttpConnector::new();
                http.enforce_http(false);
                http.set_connect_timeout(Some(options.connect_timeout));
                http.set_nodelay(true);
                let connector = hyper_rustls::HttpsConnectorBuilder::new()
                    .with_tls_config((**config).clone())
                    .https_only()
                    .enable_http1()
                    .wrap_connector(http);
                let client = hyper_util::client::legacy::Client::builder(
                    hyper_util::rt::TokioExecutor::new(),
                )
                .pool_idle_timeout(Duration::from_secs(5))
                .pool_timer(hyper_util::rt::TokioTimer::new())
                .build(connector);
                Transport::Tls(Box::new(client))
            }
            None => Transport::Plain(
                reqwest::Client::builder()
                    .no_proxy()
                    .connect_timeout(options.connect_timeout)
                    .timeout(options.request_timeout)
                    // Below common server idle limits (gauntlet-engine closes idle connections after its
                    // 10 s header-read timeout), so a pooled connection is not reused as the server drops it.
                    .pool_idle_timeout(Duration::from_secs(5))
                    .build()
                    .map_err(|e| invalid(format!("failed to build HTTP client: {e}")))?,
            ),
        };
        let parsed = reqwest::Url::parse(&base).map_err(|e| invalid(e.to_string()))?;
        let host = parsed.host_str().unwrap_or("").to_owned();
        let port = parsed.port_or_known_default().unwrap_or(80);
        let raw = tokio::net::lookup_host((host.trim_matches(['[', ']']), port))
            .await
            .ok()
            .and_then(|mut addrs| addrs.next())
            .map(|addr| RawEndpoint {
                addr,
                tls: tls
                    .clone()
                    .map(|c| (c, host.trim_matches(['[', ']']).to_owned())),
            });
        let mut secrets: Vec<Vec<u8>> =
            security.admin.iter().map(|c| c.secret().to_vec()).collect();
        secrets.extend(
            security
                .headers
                .iter()
                .map(|h| h.value().as_bytes().to_vec())
                .chain(
                    credentials
                        .as_ref()
                        .and_then(|c| c.password.clone())
                        .map(String::into_bytes),
                )
                .filter(|v| v.len() >= 8),
        );
        for ring in security.keyring.iter().chain(&security.retired) {
            secrets.extend(super::security::key_material(ring));
        }
        let access = SecurityAccess {
            admin: security.admin.clone(),
            keyring: security.keyring.clone(),
            retired: security.retired.clone(),
            raw,
            tls: https,
            secrets,
        };
        let mut target = HttpTarget {
            base: base.clone(),
            basic,
            transport,
            options,
            capabilities: Capabilities::new(),
            server: String::from("unknown server"),
            security,
            access,
            metrics_url: None,
            log: std::sync::Arc::default(),
        };
        let unreachable = |reason: String| TargetError::Unreachable {
            url: base.clone(),
            reason,
        };
        let probe = tokio::time::timeout(options.connect_timeout, target.get("/v2/health/live"));
        match probe.await {
            Err(_) => {
                return Err(unreachable(format!(
                    "no answer to GET /v2/health/live within {} ms",
                    options.connect_timeout.as_millis()
                )));
            }
            Ok(Err(e)) => return Err(unreachable(e.to_string())),
            Ok(Ok(reply)) if reply.status != StatusCode::OK => {
                return Err(unreachable(format!(
                    "GET /v2/health/live answered {}, expected 200",
                    reply.status
                )));
            }
            Ok(Ok(_)) => {}
        }
        if let Ok(reply) = target.get("/v2").await
            && reply.status == StatusCode::OK
            && let Ok(meta) = reply.json::<serde_json::Value>()
        {
            let name = meta["name"].as_str().unwrap_or("unknown server");
            let version = meta["version"].as_str().unwrap_or("?");
            target.server = format!("{name} {version}");
            let has = |ext: &str| {
                meta["extensions"]
                    .as_array()
                    .is_some_and(|a| a.iter().any(|e| e.as_str() == Some(ext)))
            };
            if has("model_repository") {
                target.capabilities.insert(Capability::Repository);
                // Artifact upload is gauntlet-engine's own extension of the load call.
                if name == "gauntlet-engine" {
                    target.capabilities.insert(Capability::ArtifactUpload);
                }
            }
        }
        if let Ok(reply) = target.get("/metrics").await
            && reply.status == StatusCode::OK
        {
            target.capabilities.insert(Capability::Metrics);
        }
        Ok(target)
    }

    /// The base URL, without a trailing slash.
    pub fn base_url(&self) -> &str {
        &self.base
    }

    /// Sends `GET /metrics` to `url` instead of `{base}/metrics`, for servers that expose
    /// Prometheus on another port or path (MLServer: `http://host:8082/metrics`), and probes it:
    /// the target has [`Capability::Metrics`] when it answers 200.
    ///
    /// # Errors
    /// [`TargetError::InvalidUrl`] when `url` is not an absolute URL of the target's scheme
    /// (`http://` or `https://`, which the client is built for) with a host and no credentials,
    /// query or fragment.
    pub async fn with_metrics_url(mut self, url: &str) -> Result<Self, TargetError> {
        let invalid = |reason: &str| TargetError::InvalidUrl {
            url: redact_url(url),
            reason: format!("--metrics-url: {reason}"),
        };
        let parsed = reqwest::Url::parse(url).map_err(|e| invalid(&e.to_string()))?;
        let scheme = self.base.split("://").next().unwrap_or("http");
        if parsed.scheme() != scheme {
            return Err(invalid(&format!(
                "scheme {:?} differs from the target's {scheme:?}",
                parsed.scheme()
            )));
        }
        if parsed.host_str().is_none() {
            return Err(invalid("the URL has no host"));
        }
        if !parsed.username().is_empty() || parsed.password().is_some() {
            return Err(invalid(
                "credentials in the URL are not taken (use --header)",
            ));
        }
        if parsed.query().is_some() || parsed.fragment().is_some() {
            return Err(invalid("the URL takes no query or fragment"));
        }
        self.metrics_url = Some(parsed.as_str().to_owned());
        self.capabilities.remove(&Capability::Metrics);
        if let Ok(reply) = self.get("/metrics").await
            && reply.status == StatusCode::OK
        {
            self.capabilities.insert(Capability::Metrics);
        }
        Ok(self)
    }
}

fn target_url(url: &str) -> String {
    url.trim_end_matches('/').to_owned()
}

/// Basic-auth credentials taken out of a base URL, so they never reach a report.
#[derive(Clone)]
struct Credentials {
    user: String,
    password: Option<String>,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Credentials(redacted)")
    }
}

/// Checks a base URL and splits off any `user:password@` part.
fn validate_base_url(url: &str) -> Result<(String, Option<Credentials>), TargetError> {
    // Messages quote the URL without its credentials.
    let shown = redact_url(url);
    let invalid = |reason: &str| TargetError::InvalidUrl {
        url: shown.clone(),
        reason: reason.to_owned(),
    };
    let mut parsed = reqwest::Url::parse(url).map_err(|e| invalid(&e.to_string()))?;
    match parsed.scheme() {
        "http" | "https" => {}
        other => return Err(invalid(&format!("scheme {other:?} is not http or https"))),
    }
    if parsed.host_str().is_none() {
        return Err(invalid("the URL has no host"));
    }
    if parsed.query().is_some() || parsed.fragment().is_some() {
        return Err(invalid("a base URL takes no query or fragment"));
    }
    // URLs carry credentials percent-encoded (`p%40ss` for `p@ss`); servers expect them decoded.
    let credentials = if parsed.username().is_empty() && parsed.password().is_none() {
        None
    } else {
        let decoded = |part: &str, what: &str| {
            percent_decode(part).ok_or_else(|| {
                invalid(&format!(
                    "the {what} is not valid UTF-8 once percent-decoded"
                ))
            })
        };
        Some(Credentials {
            user: decoded(parsed.username(), "user name")?,
            password: parsed
                .password()
                .map(|p| decoded(p, "password"))
                .transpose()?,
        })
    };
    // Both calls only fail for URLs that cannot have credentials, which http URLs can.
    let _ = parsed.set_username("");
    let _ = parsed.set_password(None);
    Ok((target_url(parsed.as_str()), credentials))
}

/// Decodes `%XX` escapes; `None` when the result is not UTF-8.
fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| char::from(b).to_digit(16);
        match (
            bytes[i],
            bytes.get(i + 1).copied().and_then(hex),
            bytes.get(i + 2).copied().and_then(hex),
        ) {
            (b'%', Some(hi), Some(lo)) => {
                // Two hex digits make at most 0xff.
                out.push(u8::try_from(hi * 16 + lo).unwrap_or(u8::MAX));
                i += 3;
            }
            (b, _, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

/// The URL with any `user:password@` replaced by `***@`, for messages and reports.
pub fn redact_url(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(mut parsed) if !parsed.username().is_empty() || parsed.password().is_some() => {
            let _ = parsed.set_username("***");
            let _ = parsed.set_password(None);
            parsed.to_string()
        }
        Ok(_) => url.to_owned(),
        // Unparsable: cut everything between the scheme and an '@' to be safe.
        Err(_) => match (url.find("://"), url.rfind('@')) {
            (Some(s), Some(at)) if at > s => format!("{}***{}", &url[..s + 3], &url[at..]),
            _ => url.to_owned(),
        },
    }
}

#[async_trait]
impl Target for HttpTarget {
    fn describe(&self) -> String {
        format!("{} ({})", self.base, self.server)
    }

    fn capabilities(&self) -> &Capabilities {
        &self.capabilities
    }

    fn security(&self) -> Option<&SecurityAccess> {
        Some(&self.access)
    }

    fn connection_retries(&self) -> retries::Retries {
        self.log.retries()
    }

    /// The base URL itself, with the `--header`s and the `Authorization` its credentials
    /// call for. An `https://` target has none: the load driver speaks no TLS.
    async fn http_endpoint(&self) -> Result<HttpEndpoint, TargetError> {
        if matches!(self.transport, Transport::Tls(_)) {
            return Err(TargetError::Unsupported {
                target: self.describe(),
                what: "a plain-HTTP endpoint (the load driver speaks no TLS)".to_owned(),
            });
        }
        let mut headers: Vec<(http::HeaderName, http::HeaderValue)> = self
            .security
            .headers
            .iter()
            .map(|h| (h.name().clone(), h.value().clone()))
            .collect();
        if let Some(basic) = &self.basic
            && !headers
                .iter()
                .any(|(n, _)| n == http::header::AUTHORIZATION)
        {
            headers.push((http::header::AUTHORIZATION, basic.clone()));
        }
        Ok(HttpEndpoint {
            url: self.base.clone(),
            headers,
            server: None,
        })
    }

    async fn send(&self, mut request: Request<Bytes>) -> Result<Response<Bytes>, TargetError> {
        if let Some(basic) = &self.basic
            && !self
                .security
                .headers
                .iter()
                .any(|h| h.name() == http::header::AUTHORIZATION)
        {
            request
                .headers_mut()
                .insert(http::header::AUTHORIZATION, basic.clone());
        }
        prepare(&mut request, &self.security.headers, &self.security.admin);
        let (parts, body) = request.into_parts();
        let path = parts
            .uri
            .path_and_query()
            .map_or_else(|| parts.uri.path().to_owned(), |pq| pq.as_str().to_owned());
        let method = parts.method.clone();
        let url = match &self.metrics_url {
            Some(metrics) if path == "/metrics" => metrics.clone(),
            _ => format!("{}{}", self.base, path),
        };
        let limit = self.options.max_response_bytes;
        let too_large = |method: http::Method, path: String| TargetError::Transport {
            method,
            path,
            reason: format!("response body exceeds the max-response-bytes limit of {limit} bytes"),
        };
        let client = match &self.transport {
            Transport::Tls(client) => {
                let build = || {
                    let mut builder = Request::builder().method(parts.method.clone()).uri(&url);
                    if let Some(headers) = builder.headers_mut() {
                        headers.clone_from(&parts.headers);
                    }
                    builder
                        .body(http_body_util::Full::new(body.clone()))
                        .map_err(|e| TargetError::BadRequest {
                            path: path.clone(),
                            reason: e.to_string(),
                        })
                };
                // The same request again, for a retry on a fresh connection.
                let (request, retry) = (build()?, build()?);
                let exchange = async {
                    let response = match client.request(request).await {
                        Err(e) if is_dropped(&e) => {
                            self.retry_once(&method, &path, e, || client.request(retry))
                                .await
                        }
                        other => other,
                    }
                    .map_err(|e| TargetError::Transport {
                        method: method.clone(),
                        path: path.clone(),
                        reason: crate::error_chain(&e),
                    })?;
                    self.note_exchange(&method, &path, response.status(), response.extensions());
                    let (head, body) = response.into_parts();
                    let bytes = http_body_util::Limited::new(body, limit)
                        .collect()
                        .await
                        .map_err(|e| {
                            if e.downcast_ref::<http_body_util::LengthLimitError>()
                                .is_some()
                            {
                                too_large(method.clone(), path.clone())
                            } else {
                                TargetError::Transport {
                                    method: method.clone(),
                                    path: path.clone(),
                                    reason: e.to_string(),
                                }
                            }
                        })?
                        .to_bytes();
                    Ok(Response::from_parts(head, bytes))
                };
                return tokio::time::timeout(self.options.request_timeout, exchange)
                    .await
                    .unwrap_or_else(|_| {
                        Err(TargetError::Timeout {
                            method: method.clone(),
                            path: path.clone(),
                            after_ms: u64::try_from(self.options.request_timeout.as_millis())
                                .unwrap_or(u64::MAX),
                        })
                    });
            }
            Transport::Plain(client) => client,
        };
        let send = |headers: http::HeaderMap| {
            client
                .request(parts.method.clone(), url.as_str())
                .headers(headers)
                .body(body.clone())
                .send()
        };
        let response = match send(parts.headers.clone()).await {
            // A kept-alive connection the server dropped (some servers close theirs right after
            // their own 500) fails the next request sent on it before any byte of a reply: the
            // fault of an earlier exchange, not this request's. It goes once more, on a fresh
            // connection (the pool has discarded the dead one); a second failure is reported.
            Err(e) if is_dropped(&e) => {
                self.retry_once(&method, &path, e, || send(parts.headers))
                    .await
            }
            other => other,
        }
        .map_err(|e| classify(e, &method, &path, self.options))?;
        let status = response.status();
        self.note_exchange(&method, &path, status, response.extensions());
        let headers = response.headers().clone();
        let mut body = bytes::BytesMut::new();
        let mut response = response;
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| classify(e, &method, &path, self.options))?
        {
            if body.len() + chunk.len() > limit {
                return Err(too_large(method, path));
            }
            body.extend_from_slice(&chunk);
        }
        let mut out = Response::new(body.freeze());
        *out.status_mut() = status;
        *out.headers_mut() = headers;
        Ok(out)
    }
}

impl HttpTarget {
    /// Notes which case's request the connection of `extensions` carried last, so a reset
    /// that follows on it can be traced to it.
    fn note_exchange(
        &self,
        method: &http::Method,
        path: &str,
        status: StatusCode,
        extensions: &http::Extensions,
    ) {
        if let Some(local) = retries::local_addr_of_extensions(extensions) {
            self.log.record(
                local,
                Exchange {
                    case: retries::current_case().map(|c| c.to_string()),
                    request: format!("{method} {path}"),
                    status: status.as_u16(),
                },
            );
        }
    }

    /// After `first` failed on a dropped connection: when that connection carried an earlier
    /// exchange (or is unknown), sends `again` on a fresh one and notes the retry with that
    /// exchange; a fresh connection dropped at once is the request's own failure, not retried.
    async fn retry_once<T, E, F>(
        &self,
        method: &http::Method,
        path: &str,
        first: E,
        again: impl FnOnce() -> F,
    ) -> Result<T, E>
    where
        E: std::error::Error + 'static,
        F: std::future::Future<Output = Result<T, E>>,
        T: HasStatus,
    {
        let local = retries::local_addr_of_error(&first);
        let after = local.and_then(|a| self.log.take(a));
        if local.is_some() && after.is_none() {
            return Err(first);
        }
        let result = again().await;
        self.log.retried(ConnectionRetry {
            case: retries::current_case().map(|c| c.to_string()),
            request: format!("{method} {path}"),
            error: crate::error_chain(&first),
            after,
            outcome: match &result {
                Ok(r) => format!("answered {}", r.status_code()),
                Err(e) => format!("failed again: {}", crate::error_chain(e)),
            },
        });
        result
    }
}

/// A response's status, whichever client gave it.
trait HasStatus {
    fn status_code(&self) -> StatusCode;
}

impl HasStatus for reqwest::Response {
    fn status_code(&self) -> StatusCode {
        self.status()
    }
}

impl<B> HasStatus for Response<B> {
    fn status_code(&self) -> StatusCode {
        self.status()
    }
}

/// Whether a request failed because its pooled connection was already closed by the server:
/// reset, aborted, or closed before any byte of a response. Not a connect failure or a timeout,
/// which a fresh connection would not cure.
fn is_dropped(e: &(dyn std::error::Error + 'static)) -> bool {
    if let Some(r) = e.downcast_ref::<reqwest::Error>()
        && (r.is_connect() || r.is_timeout() || !r.is_request())
    {
        return false;
    }
    if let Some(h) = e.downcast_ref::<hyper_util::client::legacy::Error>()
        && h.is_connect()
    {
        return false;
    }
    let mut cause: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(e);
    while let Some(c) = cause {
        if let Some(io) = c.downcast_ref::<std::io::Error>()
            && matches!(
                io.kind(),
                std::io::ErrorKind::ConnectionReset
                    | std::io::ErrorKind::ConnectionAborted
                    | std::io::ErrorKind::BrokenPipe
            )
        {
            return true;
        }
        // hyper's "connection closed before message completed" (no io error beneath it).
        if c.to_string()
            .contains("connection closed before message completed")
        {
            return true;
        }
        cause = c.source();
    }
    false
}

/// The system's trusted roots (the PEM bundle rustls-native-certs finds), for an `https://`
/// target given no CA file.
fn system_roots() -> Result<Vec<rustls::pki_types::CertificateDer<'static>>, String> {
    let found = rustls_native_certs::load_native_certs();
    if found.certs.is_empty() {
        return Err(format!(
            "no CA file given and no system CA certificates found{}; pass --ca-file",
            found
                .errors
                .first()
                .map(|e| format!(" ({e})"))
                .unwrap_or_default()
        ));
    }
    Ok(found.certs)
}

fn classify(
    e: reqwest::Error,
    method: &http::Method,
    path: &str,
    options: HttpOptions,
) -> TargetError {
    if e.is_timeout() {
        TargetError::Timeout {
            method: method.clone(),
            path: path.to_owned(),
            after_ms: u64::try_from(options.request_timeout.as_millis()).unwrap_or(u64::MAX),
        }
    } else {
        // reqwest's Display omits the cause ("error sending request"); include the chain.
        let mut reason = e.to_string();
        let mut source = std::error::Error::source(&e);
        while let Some(s) = source {
            reason.push_str(": ");
            reason.push_str(&s.to_string());
            source = s.source();
        }
        TargetError::Transport {
            method: method.clone(),
            path: path.to_owned(),
            reason,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_bad_urls_with_reason() {
        for (url, needle) in [
            ("ftp://127.0.0.1:1", "scheme"),
            ("not a url", "relative URL"),
            ("http://127.0.0.1:1/?q=1", "query"),
        ] {
            let err = validate_base_url(url).unwrap_err().to_string();
            assert!(err.contains(needle), "{url}: {err}");
        }
        assert_eq!(
            validate_base_url("http://127.0.0.1:8080/").unwrap().0,
            "http://127.0.0.1:8080"
        );
    }

    #[test]
    fn credentials_never_reach_the_base_url_or_messages() {
        let (base, creds) = validate_base_url("http://admin:s3cret@127.0.0.1:8080/").unwrap();
        assert_eq!(base, "http://127.0.0.1:8080");
        let creds = creds.unwrap();
        assert_eq!(
            (creds.user.as_str(), creds.password.as_deref()),
            ("admin", Some("s3cret"))
        );
        assert!(!format!("{creds:?}").contains("s3cret"));
        let (_, creds) = validate_base_url("http://us%40er:p%40ss%3Aw@127.0.0.1:1").unwrap();
        let creds = creds.unwrap();
        assert_eq!(
            (creds.user.as_str(), creds.password.as_deref()),
            ("us@er", Some("p@ss:w"))
        );
        let (_, creds) = validate_base_url("http://:s3cret@127.0.0.1:1").unwrap();
        assert_eq!(creds.unwrap().password.as_deref(), Some("s3cret"));
        let err = validate_base_url("http://u:%ff@127.0.0.1:1")
            .unwrap_err()
            .to_string();
        assert!(err.contains("password") && err.contains("UTF-8"), "{err}");
        let err = validate_base_url("ftp://admin:s3cret@127.0.0.1:1")
            .unwrap_err()
            .to_string();
        assert!(!err.contains("s3cret") && err.contains("***"), "{err}");
    }

    /// A loopback HTTP/1.1 server answering 200 with `body` to `GET {path}` and 404 to anything
    /// else, one request per connection.
    async fn serve_only(path: &'static str, body: &'static str) -> std::net::SocketAddr {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut sock, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 4096];
                    let n = sock.read(&mut buf).await.unwrap_or(0);
                    let head = String::from_utf8_lossy(&buf[..n]).into_owned();
                    let hit = head.starts_with(&format!("GET {path} "));
                    let (status, body) = if hit {
                        ("200 OK", body)
                    } else {
                        ("404 Not Found", "")
                    };
                    let reply = format!(
                        "HTTP/1.1 {status}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = sock.write_all(reply.as_bytes()).await;
                });
            }
        });
        addr
    }

    #[tokio::test]
    async fn metrics_url_sends_metrics_elsewhere() {
        let server = serve_only("/v2/health/live", "").await;
        let prometheus = serve_only("/prom/metrics", "up 1\n").await;
        let target = HttpTarget::connect(&format!("http://{server}"), HttpOptions::default())
            .await
            .unwrap();
        assert!(!target.capabilities().contains(&Capability::Metrics));
        let moved = target
            .clone()
            .with_metrics_url(&format!("http://{prometheus}/prom/metrics"))
            .await
            .unwrap();
        assert!(moved.capabilities().contains(&Capability::Metrics));
        let reply = moved.get("/metrics").await.unwrap();
        assert_eq!(
            (reply.status, reply.text().as_str()),
            (StatusCode::OK, "up 1\n")
        );
        // Everything else still goes to the server.
        assert_eq!(
            moved.get("/v2/health/live").await.unwrap().status,
            StatusCode::OK
        );
        let nowhere = target
            .clone()
            .with_metrics_url(&format!("http://{prometheus}/elsewhere"))
            .await
            .unwrap();
        assert!(!nowhere.capabilities().contains(&Capability::Metrics));
        for (url, needle) in [
            (format!("https://{prometheus}/metrics"), "scheme"),
            (
                format!("http://u:secret-pw@{prometheus}/metrics"),
                "credentials",
            ),
            ("metrics".to_owned(), "--metrics-url"),
        ] {
            let err = target
                .clone()
                .with_metrics_url(&url)
                .await
                .unwrap_err()
                .to_string();
            assert!(
                err.contains(needle) && !err.contains("secret-pw"),
                "{url}: {err}"
            );
        }
    }

    #[tokio::test]
    async fn oversized_response_is_a_transport_error() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        // A server that answers every request with a 4 KiB body.
        tokio::spawn(async move {
            loop {
                let Ok((mut sock, _)) = listener.accept().await else {
                    return;
                };
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 4096];
                    while let Ok(n) = sock.read(&mut buf).await {
                        if n == 0 {
                            return;
                        }
                        let body = "x".repeat(4096);
                        let head =
                            format!("HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n", body.len());
                        if sock.write_all(head.as_bytes()).await.is_err()
                            || sock.write_all(body.as_bytes()).await.is_err()
                        {
                            return;
                        }
                    }
                });
            }
        });
        let options = HttpOptions {
            max_response_bytes: 1024,
            ..HttpOptions::default()
        };
        let target = HttpTarget::connect(&format!("http://{addr}"), options).await;
        let err = target.unwrap_err().to_string();
        assert!(err.contains("max-response-bytes limit of 1024"), "{err}");
    }

    #[tokio::test]
    async fn credentials_are_sent_decoded_as_basic_auth() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Ok((mut sock, _)) = listener.accept().await {
                let tx = tx.clone();
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 4096];
                    while let Ok(n) = sock.read(&mut buf).await {
                        if n == 0 {
                            return;
                        }
                        let _ = tx.send(String::from_utf8_lossy(&buf[..n]).to_ascii_lowercase());
                        let reply = "HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n";
                        let ok = "HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n";
                        let head = String::from_utf8_lossy(&buf[..n]).into_owned();
                        let answer = if head.starts_with("GET /v2/health/live") {
                            ok
                        } else {
                            reply
                        };
                        if sock.write_all(answer.as_bytes()).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        let url = format!("http://us%40er:p%40ss%3Aw@{addr}");
        let target = HttpTarget::connect(&url, HttpOptions::default())
            .await
            .unwrap();
        assert!(!target.describe().contains("p%40ss") && !target.describe().contains("us%40er"));
        let head = rx.recv().await.unwrap();
        assert!(
            head.contains("authorization: basic dxnazxi6cebzczp3"),
            "{head}"
        );
    }

    /// A keep-alive HTTP/1.1 server on loopback that, like MLServer, drops a connection after
    /// its own 500: `GET /boom` answers 500 and marks the connection, and the next request on
    /// it is read and the connection closed with no reply. `GET /dead` is closed unanswered
    /// on any connection (a real failure). Everything else answers 200.
    async fn serve_resetting_after_500() -> std::net::SocketAddr {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut sock, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let mut poisoned = false;
                    let mut buf = vec![0u8; 8192];
                    loop {
                        let Ok(n) = sock.read(&mut buf).await else {
                            return;
                        };
                        if n == 0 {
                            return;
                        }
                        let head = String::from_utf8_lossy(&buf[..n]).into_owned();
                        if poisoned || head.starts_with("GET /dead ") {
                            return; // closed with no reply
                        }
                        let reply = if head.starts_with("GET /boom ") {
                            poisoned = true;
                            "HTTP/1.1 500 Internal Server Error\r\ncontent-length: 4\r\n\r\noops"
                        } else {
                            "HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"
                        };
                        if sock.write_all(reply.as_bytes()).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        addr
    }

    /// Regression (#17 item 4): a server that dropped its kept-alive connection after its own
    /// 500 had the reset charged to the next, innocent case on that connection. The request is
    /// retried once on a fresh connection and the retry names the case before it.
    #[tokio::test]
    async fn a_reset_after_a_500_is_retried_and_traced_to_the_case_before_it() {
        let addr = serve_resetting_after_500().await;
        let target = HttpTarget::connect(&format!("http://{addr}"), HttpOptions::default())
            .await
            .unwrap();
        let boom = retries::with_case("conformance::guilty", target.get("/boom"))
            .await
            .unwrap();
        assert_eq!(boom.status, StatusCode::INTERNAL_SERVER_ERROR);
        // Give the connection time to go back to the pool, as the next case would.
        tokio::time::sleep(Duration::from_millis(50)).await;
        let next = retries::with_case("conformance::innocent", target.get("/v2/health/live"))
            .await
            .expect("the innocent case's request is retried and answered");
        assert_eq!(next.status, StatusCode::OK);
        let retries = target.connection_retries();
        assert_eq!(retries.listed.len(), 1, "{retries:?}");
        let retry = &retries.listed[0];
        assert_eq!(retry.case.as_deref(), Some("conformance::innocent"));
        assert_eq!(retry.request, "GET /v2/health/live");
        assert_eq!(retry.outcome, "answered 200 OK");
        assert_eq!(
            retry.after,
            Some(Exchange {
                case: Some("conformance::guilty".to_owned()),
                request: "GET /boom".to_owned(),
                status: 500,
            })
        );
        assert!(
            retry
                .describe()
                .contains("GET /boom by conformance::guilty answered 500")
        );
        let section = retries::section(&retries).expect("a section for the report");
        assert!(section.tables[0].rows[0][4].contains("conformance::guilty"));
        // No retry, no section.
        assert!(retries::section(&retries::Retries::default()).is_none());
    }

    /// A real failure still fails: a request the server drops on a fresh connection is not
    /// retried, and one dropped again after a retry is reported as the case's failure.
    #[tokio::test]
    async fn a_request_the_server_always_drops_still_fails() {
        let addr = serve_resetting_after_500().await;
        let target = HttpTarget::connect(&format!("http://{addr}"), HttpOptions::default())
            .await
            .unwrap();
        // On the pooled connection of the connect probe: retried once, and dropped again.
        let err = retries::with_case("conformance::dead", target.get("/dead"))
            .await
            .unwrap_err();
        assert!(matches!(err, TargetError::Transport { .. }), "{err}");
        let listed = target.connection_retries().listed;
        assert_eq!(listed.len(), 1, "{listed:?}");
        assert!(listed[0].outcome.starts_with("failed again"), "{listed:?}");
        // The retry's fresh connection was dropped at once: that one is not retried again.
        let err = retries::with_case("conformance::dead2", target.get("/dead"))
            .await
            .unwrap_err();
        assert!(matches!(err, TargetError::Transport { .. }), "{err}");
        assert_eq!(target.connection_retries().listed.len(), 1);
    }

    #[tokio::test]
    async fn unreachable_fails_fast() {
        // A port just released by the OS: nothing listens there.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        drop(listener);
        let started = std::time::Instant::now();
        let err = HttpTarget::connect(&format!("http://127.0.0.1:{port}"), HttpOptions::default())
            .await
            .unwrap_err();
        assert!(matches!(err, TargetError::Unreachable { .. }), "{err}");
        assert!(started.elapsed() < Duration::from_secs(5));
        let err = HttpTarget::connect(
            &format!("http://admin:s3cret@127.0.0.1:{port}"),
            HttpOptions::default(),
        )
        .await
        .unwrap_err()
        .to_string();
        assert!(!err.contains("s3cret"), "{err}");
    }
}
