//! The driver's gRPC path: `ModelInfer` calls of KServe V2 `inference.GRPCInferenceService`
//! over HTTP/2 cleartext, with the `h2` crate directly.
//!
//! Each request of a run is encoded once ([`prepare`]: the JSON infer body the HTTP path
//! sends, as a `ModelInferRequest` in a gRPC length-prefixed frame), so a call is a header
//! block, that frame, and a read of the answer: tonic's channel would add a buffer task and
//! its hand-offs to every call, the driver CPU that bounds the rate it can generate honestly.
//! The run opens one HTTP/2 connection per [`STREAMS_PER_CONNECTION`] worker tasks; each
//! worker has one call in flight. The calls one wake-up of the pacer releases go on the same
//! connection (the next wake-up's on the next one, round the pool), and its task writes
//! them with one system call ([`BatchedWrites`]); the engine then reads them with one and
//! answers them with one. Spread over the connections call by call, each call cost a
//! `writev` of its own on both sides, the most of the driver's CPU per call (the loopback
//! TCP send path: 41 % of its samples under `perf`).
//!
//! An answer is good when its `grpc-status` is 0, its message decodes as a
//! `ModelInferResponse` naming the model asked (when it names one) with at least one output,
//! each output's data hold the elements its shape says in the form its datatype says
//! ([`consistent`]), and the run's [`ResponseCheck::check_grpc`] passes it (the outputs of the
//! model's metadata, as over HTTP); a failed check is a body mismatch. Any other status is a failure of the class gRPC's HTTP mapping gives it
//! (`INVALID_ARGUMENT`, `NOT_FOUND`, … as 4xx; `UNAVAILABLE`, `INTERNAL`, … as 5xx), its detail
//! the status code and message.

use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf as _, BufMut as _, Bytes, BytesMut};
use gauntlet_engine::grpc::BatchedWrites;
use gauntlet_engine::oip::{Datatype, InferRequest};
use gauntlet_oip_grpc::inference::model_infer_request::{
    InferInputTensor, InferRequestedOutputTensor,
};
use gauntlet_oip_grpc::inference::{InferTensorContents, ModelInferRequest, ModelInferResponse};
use h2::client::SendRequest;
use http::{HeaderValue, Request};
use prost::Message as _;
use tokio::net::TcpStream;

use crate::driver::ResponseCheck;
use crate::recorder::{Completion, ErrorClass, Failure, MAX_BODY_BYTES};

/// Worker tasks (calls in flight) per HTTP/2 connection of the pool, on average.
pub(crate) const STREAMS_PER_CONNECTION: usize = 16;

/// A `ModelInfer` call prepared once.
#[derive(Debug, Clone)]
pub(crate) struct Call {
    /// The gRPC frame: flag byte 0 (not compressed), 4-byte big-endian length, message.
    frame: Bytes,
}

/// The model (and version) an infer path `/v2/models/{m}[/versions/{v}]/infer` names.
fn model_of(path: &str) -> Result<(String, String), String> {
    let bad = || format!("path {path:?} is not /v2/models/{{model}}[/versions/{{v}}]/infer");
    let rest = path
        .strip_prefix("/v2/models/")
        .and_then(|r| r.strip_suffix("/infer"))
        .ok_or_else(bad)?;
    let (model, version) = match rest.split_once("/versions/") {
        Some((m, v)) => (m, v),
        None => (rest, ""),
    };
    if model.is_empty() || model.contains('/') || version.contains('/') {
        return Err(bad());
    }
    Ok((model.to_owned(), version.to_owned()))
}

/// The gRPC call the HTTP path's `POST path` with JSON `body` stands for: the same model,
/// version, id, tensors (FP64, FP32 or INT64, in the typed `contents`; a JSON `null` is a
/// NaN, which the protocol has no other way to say) and requested outputs.
pub(crate) fn prepare(path: &str, body: &[u8]) -> Result<(Call, String), String> {
    let (model, version) = model_of(path)?;
    let request: InferRequest = serde_json::from_slice(body)
        .map_err(|e| format!("the infer body is not an OIP infer request: {e}"))?;
    let inputs = request
        .inputs
        .into_iter()
        .enumerate()
        .map(|(i, t)| {
            let shape = t
                .shape
                .iter()
                .map(|&d| i64::try_from(d).map_err(|_| format!("inputs[{i}].shape: {d} is too large")))
                .collect::<Result<Vec<i64>, String>>()?;
            let mut contents = InferTensorContents::default();
            let datatype = match t.datatype {
                Datatype::Fp64 => {
                    contents.fp64_contents = t.data.iter().map(|x| x.unwrap_or(f64::NAN)).collect();
                    gauntlet_oip_grpc::datatype::FP64
                }
                Datatype::Fp32 => {
                    #[expect(clippy::cast_possible_truncation, reason = "an FP32 tensor's values")]
                    let values = t.data.iter().map(|x| x.unwrap_or(f64::NAN) as f32).collect();
                    contents.fp32_contents = values;
                    gauntlet_oip_grpc::datatype::FP32
                }
                Datatype::Int64 => {
                    contents.int64_contents = t
                        .data
                        .iter()
                        .enumerate()
                        .map(|(j, x)| match x {
                            #[expect(clippy::cast_possible_truncation, reason = "integral INT64 values")]
                            Some(v) => Ok(*v as i64),
                            None => Err(format!(
                                "inputs[{i}].data[{j}]: null; an INT64 tensor has no missing value over gRPC"
                            )),
                        })
                        .collect::<Result<_, String>>()?;
                    gauntlet_oip_grpc::datatype::INT64
                }
            };
            Ok(InferInputTensor {
                name: t.name,
                datatype: datatype.to_owned(),
                shape,
                parameters: Default::default(),
                contents: Some(contents),
            })
        })
        .collect::<Result<Vec<_>, String>>()?;
    let outputs = request
        .outputs
        .unwrap_or_default()
        .into_iter()
        .map(|o| InferRequestedOutputTensor {
            name: o.name,
            parameters: Default::default(),
        })
        .collect();
    let message = ModelInferRequest {
        model_name: model.clone(),
        model_version: version,
        id: request.id.unwrap_or_default(),
        parameters: Default::default(),
        inputs,
        outputs,
        raw_input_contents: Vec::new(),
    };
    let len = message.encoded_len();
    let mut frame = BytesMut::with_capacity(5 + len);
    frame.put_u8(0);
    frame.put_u32(
        u32::try_from(len)
            .map_err(|_| format!("a message of {len} bytes is too large for gRPC"))?,
    );
    message
        .encode(&mut frame)
        .map_err(|e| format!("failed to encode the ModelInferRequest: {e}"))?;
    Ok((
        Call {
            frame: frame.freeze(),
        },
        model,
    ))
}

/// What every call of a run shares: the connections, the request head, the calls.
pub(crate) struct Shared {
    authority: String,
    head: Request<()>,
    calls: Vec<Call>,
    model: String,
    slots: Vec<tokio::sync::Mutex<PoolSlot>>,
}

/// One connection's place in the pool.
#[derive(Default)]
struct PoolSlot {
    /// Connections made here so far.
    made: u64,
    live: Option<Pooled>,
}

/// A connection of the pool and which one it is: the connections made in a slot are
/// numbered, so that a worker that finds a connection broken forgets that one, not the
/// one another worker has made since.
#[derive(Clone)]
struct Pooled {
    number: u64,
    send: SendRequest<Bytes>,
}

impl Shared {
    /// For `workers` worker tasks against `authority` (`host:port`), sending `calls`
    /// (never empty) to `model`.
    pub(crate) fn new(
        authority: &str,
        headers: &[(http::HeaderName, HeaderValue)],
        calls: Vec<Call>,
        model: String,
        workers: usize,
    ) -> Result<Shared, String> {
        let mut head = Request::builder()
            .method(http::Method::POST)
            .uri(format!(
                "http://{authority}/{}/ModelInfer",
                gauntlet_oip_grpc::SERVICE_NAME
            ))
            .header(http::header::CONTENT_TYPE, "application/grpc")
            .header(http::header::TE, "trailers");
        for (name, value) in headers {
            head = head.header(name, value.clone());
        }
        let head = head
            .body(())
            .map_err(|e| format!("failed to build the gRPC request head: {e}"))?;
        let connections = workers.div_ceil(STREAMS_PER_CONNECTION).max(1);
        Ok(Shared {
            authority: authority.to_owned(),
            head,
            calls,
            model,
            slots: (0..connections)
                .map(|_| tokio::sync::Mutex::default())
                .collect(),
        })
    }

    /// The call of schedule index `index`.
    pub(crate) fn call(&self, index: u64) -> &Call {
        let n = self.calls.len() as u64;
        &self.calls[(index % n.max(1)) as usize]
    }

    /// Connections in the pool.
    fn connections(&self) -> usize {
        self.slots.len()
    }

    /// Connection `k` of the pool, made now when there is none (or it broke).
    async fn connection(&self, k: usize, connect_timeout: Duration) -> Result<Pooled, Failure> {
        let mut slot = self.slots[k].lock().await;
        if let Some(pooled) = slot.live.as_ref() {
            return Ok(pooled.clone());
        }
        let connect = async {
            let tcp = TcpStream::connect(&self.authority).await?;
            tcp.set_nodelay(true)?;
            let (send, connection) = h2::client::Builder::new()
                .initial_window_size(1 << 20)
                .initial_connection_window_size(1 << 24)
                .handshake::<_, Bytes>(BatchedWrites::new(tcp))
                .await
                .map_err(std::io::Error::other)?;
            tokio::spawn(async move {
                if let Err(e) = connection.await {
                    tracing::debug!(error = %e, "gRPC connection ended with an error");
                }
            });
            Ok::<_, std::io::Error>(send)
        };
        let send = tokio::time::timeout(connect_timeout, connect)
            .await
            .map_err(|_| {
                Failure::new(
                    ErrorClass::Connect,
                    format!(
                        "connect to {} timed out after {} ms",
                        self.authority,
                        connect_timeout.as_millis()
                    ),
                )
            })?
            .map_err(|e| {
                Failure::new(
                    ErrorClass::Connect,
                    format!("connect to {}: {e}", self.authority),
                )
            })?;
        let pooled = Pooled {
            number: slot.made,
            send,
        };
        slot.made += 1;
        slot.live = Some(pooled.clone());
        Ok(pooled)
    }

    /// Forgets connection `number` of slot `k` after a transport failure on it.
    async fn broken(&self, k: usize, number: u64) {
        let mut slot = self.slots[k].lock().await;
        if slot.live.as_ref().is_some_and(|p| p.number == number) {
            slot.live = None;
        }
    }
}

/// One worker's side of the pool: its handles on the shared connections.
pub(crate) struct GrpcWorker {
    pub(crate) shared: Arc<Shared>,
    /// A handle on each connection of the pool, taken when first used.
    sends: Vec<Option<Pooled>>,
}

impl GrpcWorker {
    pub(crate) fn new(shared: Arc<Shared>) -> GrpcWorker {
        GrpcWorker {
            sends: vec![None; shared.connections()],
            shared,
        }
    }

    /// Sends `call`, released by the pacer's wake-up `release`; returns whether it was sent
    /// and how it ended. A call that fails in transport (or times out) drops its
    /// connection, so the next call on it reconnects.
    pub(crate) async fn exchange(
        &mut self,
        call: &Call,
        release: u64,
        connect_timeout: Duration,
        request_timeout: Duration,
        max_response: usize,
        check: &dyn ResponseCheck,
    ) -> (Option<std::time::Instant>, Completion) {
        let k = (release % self.sends.len() as u64) as usize;
        let pooled = match &mut self.sends[k] {
            Some(p) => p,
            None => match self.shared.connection(k, connect_timeout).await {
                Ok(p) => self.sends[k].insert(p),
                Err(f) => return (None, Completion::Failed(f)),
            },
        };
        let number = pooled.number;
        let sent = std::time::Instant::now();
        let how = match tokio::time::timeout(
            request_timeout,
            one_call(&mut pooled.send, &self.shared.head, call, max_response),
        )
        .await
        {
            Err(_) => Completion::Failed(Failure::new(
                ErrorClass::Timeout,
                format!(
                    "no complete answer within {} ms",
                    request_timeout.as_millis()
                ),
            )),
            Ok(Err(message)) => Completion::Failed(Failure::new(ErrorClass::Transport, message)),
            Ok(Ok(answer)) => classify(answer, &self.shared.model, check),
        };
        if let Completion::Failed(f) = &how
            && matches!(f.class, ErrorClass::Timeout | ErrorClass::Transport)
        {
            self.sends[k] = None;
            self.shared.broken(k, number).await;
        }
        (Some(sent), how)
    }
}

/// A call's answer: its `grpc-status`, `grpc-message` and message bytes.
struct Answer {
    status: u32,
    message: String,
    body: Bytes,
}

async fn one_call(
    send: &mut SendRequest<Bytes>,
    head: &Request<()>,
    call: &Call,
    max_response: usize,
) -> Result<Answer, String> {
    std::future::poll_fn(|cx| send.poll_ready(cx))
        .await
        .map_err(|e| format!("HTTP/2 connection: {e}"))?;
    let mut request = Request::new(());
    *request.method_mut() = head.method().clone();
    *request.uri_mut() = head.uri().clone();
    *request.headers_mut() = head.headers().clone();
    let (response, mut stream) = send
        .send_request(request, false)
        .map_err(|e| format!("HTTP/2 send: {e}"))?;
    stream
        .send_data(call.frame.clone(), true)
        .map_err(|e| format!("HTTP/2 send: {e}"))?;
    let response = response
        .await
        .map_err(|e| format!("HTTP/2 response: {e}"))?;
    let (parts, mut body) = response.into_parts();
    if parts.status != http::StatusCode::OK {
        return Err(format!(
            "HTTP status {} (a gRPC answer is 200)",
            parts.status
        ));
    }
    // A trailers-only answer (an error) carries the status in its head.
    if let Some(status) = grpc_status(&parts.headers) {
        return Ok(Answer {
            status,
            message: grpc_message(&parts.headers),
            body: Bytes::new(),
        });
    }
    let mut first: Option<Bytes> = None;
    let mut rest = BytesMut::new();
    while let Some(chunk) = body.data().await {
        let chunk = chunk.map_err(|e| format!("HTTP/2 body: {e}"))?;
        let _ = body.flow_control().release_capacity(chunk.len());
        match &first {
            None => first = Some(chunk),
            Some(f) => {
                if rest.is_empty() {
                    rest.extend_from_slice(f);
                }
                rest.extend_from_slice(&chunk);
            }
        }
        if rest.len().max(first.as_ref().map_or(0, Bytes::len)) > max_response {
            return Err(format!("answer larger than {max_response} bytes"));
        }
    }
    let data = if rest.is_empty() {
        first.unwrap_or_default()
    } else {
        rest.freeze()
    };
    let trailers = body
        .trailers()
        .await
        .map_err(|e| format!("HTTP/2 trailers: {e}"))?
        .unwrap_or_default();
    let status = grpc_status(&trailers).ok_or("no grpc-status in the answer's trailers")?;
    Ok(Answer {
        status,
        message: grpc_message(&trailers),
        body: data,
    })
}

fn grpc_status(headers: &http::HeaderMap) -> Option<u32> {
    headers
        .get("grpc-status")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
}

fn grpc_message(headers: &http::HeaderMap) -> String {
    headers
        .get("grpc-message")
        .map(|v| percent_decode(v.as_bytes()))
        .unwrap_or_default()
}

/// `grpc-message` is percent-encoded.
fn percent_decode(bytes: &[u8]) -> String {
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let Ok(hex) = std::str::from_utf8(&bytes[i + 1..i + 3])
            && let Ok(b) = u8::from_str_radix(hex, 16)
        {
            out.push(b);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// gRPC status names, by code.
const CODES: [&str; 17] = [
    "OK",
    "CANCELLED",
    "UNKNOWN",
    "INVALID_ARGUMENT",
    "DEADLINE_EXCEEDED",
    "NOT_FOUND",
    "ALREADY_EXISTS",
    "PERMISSION_DENIED",
    "RESOURCE_EXHAUSTED",
    "FAILED_PRECONDITION",
    "ABORTED",
    "OUT_OF_RANGE",
    "UNIMPLEMENTED",
    "INTERNAL",
    "UNAVAILABLE",
    "DATA_LOSS",
    "UNAUTHENTICATED",
];

fn classify(answer: Answer, model: &str, check: &dyn ResponseCheck) -> Completion {
    if answer.status != 0 {
        let name = CODES.get(answer.status as usize).copied().unwrap_or("?");
        // The client's fault, as gRPC's HTTP mapping has it; the rest is the server's.
        let class = match answer.status {
            3 | 5 | 6 | 7 | 8 | 9 | 11 | 16 => ErrorClass::Status4xx,
            _ => ErrorClass::Status5xx,
        };
        let mut detail = format!("grpc-status {} {name}: {}", answer.status, answer.message);
        detail.truncate(MAX_BODY_BYTES);
        return Completion::Failed(Failure::new(class, detail));
    }
    let checked = decode(&answer.body).and_then(|response| {
        consistent(&response, model)?;
        check.check_grpc(&response)
    });
    match checked {
        Ok(tag) => Completion::Ok(tag),
        Err(mut reason) => {
            reason.truncate(MAX_BODY_BYTES);
            Completion::Failed(Failure::new(
                ErrorClass::BodyMismatch,
                format!("body mismatch: {reason}"),
            ))
        }
    }
}

/// The `ModelInferResponse` of an answer: one uncompressed frame holding it.
fn decode(mut body: &[u8]) -> Result<ModelInferResponse, String> {
    if body.len() < 5 {
        return Err(format!(
            "an answer of {} bytes holds no gRPC frame",
            body.len()
        ));
    }
    if body[0] != 0 {
        return Err("a compressed answer (none was offered)".to_owned());
    }
    body.advance(1);
    let len = body.get_u32() as usize;
    if body.len() != len {
        return Err(format!(
            "the frame says {len} bytes, the answer holds {}",
            body.len()
        ));
    }
    ModelInferResponse::decode(body).map_err(|e| format!("not a ModelInferResponse: {e}"))
}

/// What every answer must be, whatever the model's metadata says (as the HTTP path's JSON
/// check): naming `model` when it names one, with at least one output, each holding as many
/// elements as its shape says — in the typed field its datatype calls for, or as
/// `raw_output_contents` of the datatype's width (one entry per output, and then no typed
/// contents).
pub(crate) fn consistent(response: &ModelInferResponse, model: &str) -> Result<(), String> {
    if !response.model_name.is_empty() && response.model_name != model {
        return Err(format!(
            "model_name {:?} is not the model asked, {model:?}",
            response.model_name
        ));
    }
    if response.outputs.is_empty() {
        return Err("no outputs in the answer".to_owned());
    }
    let raw = &response.raw_output_contents;
    if !raw.is_empty() && raw.len() != response.outputs.len() {
        return Err(format!(
            "raw_output_contents has {} entries for {} outputs",
            raw.len(),
            response.outputs.len()
        ));
    }
    for (i, o) in response.outputs.iter().enumerate() {
        let want = shape_elements(&o.shape).ok_or_else(|| {
            format!(
                "output {:?} has shape {:?}, not a tensor's",
                o.name, o.shape
            )
        })?;
        let typed = o.contents.as_ref().map(|c| typed_elements(&o.datatype, c));
        let got = match (raw.get(i), typed) {
            (Some(_), Some(Ok(n) | Err((_, n)))) if n > 0 => {
                return Err(format!(
                    "output {:?} has typed contents and raw_output_contents; the protocol allows one",
                    o.name
                ));
            }
            (Some(bytes), _) => raw_elements(&o.datatype, bytes)
                .map_err(|why| format!("output {:?}: raw_output_contents[{i}] {why}", o.name))?,
            (None, Some(Ok(n))) => n,
            (None, Some(Err((why, _)))) => return Err(format!("output {:?}: {why}", o.name)),
            (None, None) => 0,
        };
        if got != want {
            return Err(format!(
                "output {:?} has shape {:?} ({want} elements) but {got} data elements",
                o.name, o.shape
            ));
        }
    }
    Ok(())
}

/// The elements a shape holds; `None` for a negative dimension or an overflow.
fn shape_elements(shape: &[i64]) -> Option<u64> {
    shape
        .iter()
        .try_fold(1u64, |n, &d| n.checked_mul(u64::try_from(d).ok()?))
}

/// The elements of the typed field `datatype` calls for; an error (with every element
/// counted) when another field holds any, or the datatype has no typed field.
fn typed_elements(datatype: &str, c: &InferTensorContents) -> Result<u64, (String, u64)> {
    let fields = gauntlet_oip_grpc::datatype::field_lengths(c);
    let total = fields.iter().map(|(_, n)| *n as u64).sum();
    let field = match (gauntlet_oip_grpc::datatype::typed_field(datatype), datatype) {
        (Some(field), _) => field,
        (None, "FP16" | "BF16") if total == 0 => return Ok(0),
        (None, "FP16" | "BF16") => {
            return Err((
                format!(
                    "a {datatype} tensor has no typed contents; its data go in raw_output_contents"
                ),
                total,
            ));
        }
        (None, other) => {
            return Err((
                format!("datatype {other:?} is not a KServe V2 datatype"),
                total,
            ));
        }
    };
    match fields.iter().find(|(f, n)| *n > 0 && *f != field) {
        Some((wrong, _)) => Err((
            format!("{datatype} data in {wrong}, where a {datatype} tensor's go in {field}"),
            total,
        )),
        None => Ok(total),
    }
}

/// The elements of a raw output: little-endian elements of the datatype's width, or for
/// BYTES, elements each prefixed by its 4-byte little-endian length.
fn raw_elements(datatype: &str, bytes: &[u8]) -> Result<u64, String> {
    let width = match (
        gauntlet_oip_grpc::datatype::element_size(datatype),
        datatype,
    ) {
        (Some(width), _) => width,
        (None, "BYTES") => {
            let mut rest = bytes;
            let mut n = 0;
            while !rest.is_empty() {
                if rest.len() < 4 {
                    return Err("ends inside a BYTES element's length".to_owned());
                }
                let len = rest.get_u32_le() as usize;
                if rest.len() < len {
                    return Err(format!(
                        "has a BYTES element of {len} bytes but only {} left",
                        rest.len()
                    ));
                }
                rest.advance(len);
                n += 1;
            }
            return Ok(n);
        }
        (None, other) => {
            return Err(format!(
                "is of datatype {other:?}, not a KServe V2 datatype"
            ));
        }
    };
    if !bytes.len().is_multiple_of(width) {
        return Err(format!(
            "holds {} bytes, not a whole number of {datatype} elements of {width} bytes",
            bytes.len()
        ));
    }
    Ok((bytes.len() / width) as u64)
}

/// The FP64 elements of output `i`, typed or raw; `None` when it is not FP64.
pub(crate) fn fp64_output(response: &ModelInferResponse, i: usize) -> Option<Vec<f64>> {
    let o = response.outputs.get(i)?;
    if o.datatype != gauntlet_oip_grpc::datatype::FP64 {
        return None;
    }
    match response.raw_output_contents.get(i) {
        Some(raw) => Some(
            raw.chunks_exact(8)
                .map(|c| {
                    let mut b = [0; 8];
                    b.copy_from_slice(c);
                    f64::from_le_bytes(b)
                })
                .collect(),
        ),
        None => Some(
            o.contents
                .as_ref()
                .map(|c| c.fp64_contents.clone())
                .unwrap_or_default(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_name_the_model_and_version() {
        assert_eq!(
            model_of("/v2/models/m/infer").unwrap(),
            ("m".into(), String::new())
        );
        assert_eq!(
            model_of("/v2/models/m/versions/3/infer").unwrap(),
            ("m".into(), "3".into())
        );
        assert!(model_of("/v2/models/m").is_err());
        assert!(model_of("/v2/models//infer").is_err());
    }

    #[test]
    fn json_bodies_become_model_infer_frames() {
        let body = br#"{"id":"r","inputs":[{"name":"x","shape":[1,2],"datatype":"FP64","data":[1.5,null]}],"outputs":[{"name":"prediction"}]}"#;
        let (call, model) = prepare("/v2/models/m/infer", body).unwrap();
        assert_eq!(model, "m");
        let mut frame = call.frame.clone();
        assert_eq!(frame.get_u8(), 0);
        let len = frame.get_u32() as usize;
        assert_eq!(len, frame.len());
        let m = ModelInferRequest::decode(frame).unwrap();
        assert_eq!((m.model_name.as_str(), m.id.as_str()), ("m", "r"));
        assert_eq!(m.inputs[0].shape, [1, 2]);
        let values = &m.inputs[0].contents.as_ref().unwrap().fp64_contents;
        assert_eq!(values[0], 1.5);
        assert!(values[1].is_nan());
        assert_eq!(m.outputs[0].name, "prediction");
        let e = prepare(
            "/v2/models/m/infer",
            br#"{"inputs":[{"name":"x","shape":[1],"datatype":"INT64","data":[null]}]}"#,
        )
        .unwrap_err();
        assert!(e.contains("inputs[0].data[0]: null"), "{e}");
    }

    /// The driver's own checks of an answer's bytes.
    fn check(body: &[u8], model: &str) -> Result<(), String> {
        consistent(&decode(body)?, model)
    }

    fn framed(m: &ModelInferResponse) -> Vec<u8> {
        let mut out = vec![0];
        out.extend_from_slice(&u32::try_from(m.encoded_len()).unwrap().to_be_bytes());
        out.extend_from_slice(&m.encode_to_vec());
        out
    }

    #[test]
    fn answers_are_checked_and_statuses_classified() {
        let good = ModelInferResponse {
            model_name: "m".into(),
            outputs: vec![
                gauntlet_oip_grpc::inference::model_infer_response::InferOutputTensor {
                    name: "prediction".into(),
                    datatype: "FP64".into(),
                    shape: vec![1],
                    parameters: Default::default(),
                    contents: Some(InferTensorContents {
                        fp64_contents: vec![0.5],
                        ..Default::default()
                    }),
                },
            ],
            ..Default::default()
        };
        assert_eq!(check(&framed(&good), "m"), Ok(()));
        assert!(
            check(&framed(&good), "other")
                .unwrap_err()
                .contains("not the model asked")
        );
        let empty = ModelInferResponse {
            model_name: "m".into(),
            ..Default::default()
        };
        assert_eq!(
            check(&framed(&empty), "m").unwrap_err(),
            "no outputs in the answer"
        );
        assert!(check(&[0, 0, 0], "m").is_err());
        let answer = |status| Answer {
            status,
            message: "unknown model \"x\"".into(),
            body: Bytes::new(),
        };
        assert!(matches!(
            classify(answer(5), "m", &crate::driver::AnyBody),
            Completion::Failed(Failure { class: ErrorClass::Status4xx, ref detail, .. })
                if detail == "grpc-status 5 NOT_FOUND: unknown model \"x\""
        ));
        assert!(matches!(
            classify(answer(14), "m", &crate::driver::AnyBody),
            Completion::Failed(Failure {
                class: ErrorClass::Status5xx,
                ..
            })
        ));
        assert_eq!(percent_decode(b"a%20b%"), "a b%");
    }
}
