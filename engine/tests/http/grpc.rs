//! The OIP over gRPC (`inference.GRPCInferenceService`): a real tonic client against
//! [`serve_grpc`] on a loopback port, and the binary's `--grpc-listen`.

use gauntlet_engine::security::{ReadTokens, Security, SecurityConfig};
use gauntlet_engine::serve_grpc;
use gauntlet_oip_grpc::inference::grpc_inference_service_client::GrpcInferenceServiceClient;
use gauntlet_oip_grpc::inference::model_infer_request::{
    InferInputTensor, InferRequestedOutputTensor,
};
use gauntlet_oip_grpc::inference::{
    InferTensorContents, ModelInferRequest, ModelMetadataRequest, ModelReadyRequest,
    ServerLiveRequest, ServerMetadataRequest, ServerReadyRequest, infer_parameter,
};
use tonic::Code;
use tonic::transport::Channel;

use super::*;

pub(super) type Client = GrpcInferenceServiceClient<Channel>;

/// Serves `state` over gRPC on an ephemeral loopback port; the server stops when the
/// returned sender is dropped.
pub(super) async fn start(state: AppState) -> (Client, tokio::sync::oneshot::Sender<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(serve_grpc(listener, state, async {
        let _ = rx.await;
    }));
    let client = GrpcInferenceServiceClient::connect(format!("http://{addr}"))
        .await
        .unwrap();
    (client, tx)
}

pub(super) fn tensor(
    name: &str,
    datatype: &str,
    shape: &[i64],
    contents: InferTensorContents,
) -> InferInputTensor {
    InferInputTensor {
        name: name.into(),
        datatype: datatype.into(),
        shape: shape.to_vec(),
        parameters: Default::default(),
        contents: Some(contents),
    }
}

pub(super) fn fp64(values: &[f64]) -> InferTensorContents {
    InferTensorContents {
        fp64_contents: values.to_vec(),
        ..Default::default()
    }
}

pub(super) fn infer(model: &str, inputs: Vec<InferInputTensor>) -> ModelInferRequest {
    ModelInferRequest {
        model_name: model.into(),
        id: "req-1".into(),
        inputs,
        ..Default::default()
    }
}

/// The error status of a call, asserting its code and that its message has every fragment.
pub(super) fn refused<T: std::fmt::Debug>(
    result: Result<T, tonic::Status>,
    code: Code,
    fragments: &[&str],
) {
    let status = result.unwrap_err();
    assert_eq!(status.code(), code, "{status:?}");
    for f in fragments {
        assert!(
            status.message().contains(f),
            "{:?} lacks {f:?}",
            status.message()
        );
    }
}

#[tokio::test]
async fn health_and_metadata_rpcs() {
    let state = state_with(
        EngineConfig::default(),
        &[linear("lin", "1", ImputePolicy::Median)],
    );
    let (mut c, _stop) = start(state.clone()).await;
    assert!(
        c.server_live(ServerLiveRequest {})
            .await
            .unwrap()
            .into_inner()
            .live
    );
    assert!(
        c.server_ready(ServerReadyRequest {})
            .await
            .unwrap()
            .into_inner()
            .ready
    );
    let meta = c
        .server_metadata(ServerMetadataRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(meta.name, "gauntlet-engine");
    assert!(meta.extensions.iter().any(|e| e == "gauntlet"), "{meta:?}");

    let ready = |name: &str, version: &str| ModelReadyRequest {
        name: name.into(),
        version: version.into(),
    };
    assert!(
        c.model_ready(ready("lin", ""))
            .await
            .unwrap()
            .into_inner()
            .ready
    );
    assert!(
        c.model_ready(ready("lin", "1"))
            .await
            .unwrap()
            .into_inner()
            .ready
    );
    refused(
        c.model_ready(ready("nope", "")).await,
        Code::NotFound,
        &["unknown model \"nope\""],
    );
    refused(
        c.model_ready(ready("lin", "9")).await,
        Code::NotFound,
        &["no version \"9\""],
    );

    let m = c
        .model_metadata(ModelMetadataRequest {
            name: "lin".into(),
            version: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (m.name.as_str(), m.versions.as_slice()),
        ("lin", ["1".to_owned()].as_slice())
    );
    assert_eq!(m.inputs[0].datatype, "FP64");
    assert_eq!(m.inputs[0].shape, [-1, 2]);
    assert_eq!(m.outputs[0].name, "prediction");
    refused(
        c.model_metadata(ModelMetadataRequest {
            name: "nope".into(),
            version: String::new(),
        })
        .await,
        Code::NotFound,
        &["unknown model"],
    );

    // Not ready while shutting down, as `/v2/health/ready`.
    state.set_ready(false);
    assert!(
        !c.server_ready(ServerReadyRequest {})
            .await
            .unwrap()
            .into_inner()
            .ready
    );
}

/// The gRPC prediction is the HTTP one, in each datatype and in both tensor forms.
#[tokio::test]
async fn infer_matches_http_in_every_form() {
    let state = state_with(
        EngineConfig::default(),
        &[linear("lin", "1", ImputePolicy::Median)],
    );
    let http = app(state.clone());
    let (mut c, _stop) = start(state).await;
    let reply = post(
        &http,
        "/v2/models/lin/infer",
        rows(json!([1.0, 0.5, -0.25, 9.0]), json!([2, 2])),
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK);
    let expected: InferResponse = serde_json::from_slice(&reply.body).unwrap();

    let typed = c
        .model_infer(infer(
            "lin",
            vec![tensor("x", "FP64", &[2, 2], fp64(&[1.0, 0.5, -0.25, 9.0]))],
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (typed.model_name.as_str(), typed.model_version.as_str()),
        ("lin", "1")
    );
    assert_eq!(typed.id, "req-1");
    let out = &typed.outputs[0];
    assert_eq!(
        (out.name.as_str(), out.datatype.as_str()),
        ("prediction", "FP64")
    );
    assert_eq!(out.shape, [2]);
    assert_eq!(
        out.contents.as_ref().unwrap().fp64_contents,
        expected.outputs[0].data
    );
    // 9.0 is clipped to 3 MADs: the sanitiser report travels as parameters.
    assert_eq!(
        typed.parameters["sanitiser_changes_total"].parameter_choice,
        Some(infer_parameter::ParameterChoice::Int64Param(1))
    );

    let mut raw = tensor("x", "FP64", &[2, 2], InferTensorContents::default());
    raw.contents = None;
    let bytes: Vec<u8> = [1.0f64, 0.5, -0.25, 9.0]
        .iter()
        .flat_map(|x| x.to_le_bytes())
        .collect();
    let mut request = infer("lin", vec![raw]);
    request.raw_input_contents = vec![bytes.into()];
    let answer = c.model_infer(request).await.unwrap().into_inner();
    let got: Vec<f64> = answer.raw_output_contents[0]
        .chunks_exact(8)
        .map(|b| f64::from_le_bytes(b.try_into().unwrap()))
        .collect();
    assert_eq!(got, expected.outputs[0].data);

    // INT64 and FP32 elements, one tensor per feature, requested output named.
    let a = tensor(
        "a",
        "INT64",
        &[1],
        InferTensorContents {
            int64_contents: vec![1],
            ..Default::default()
        },
    );
    let b = tensor(
        "b",
        "FP32",
        &[1, 1],
        InferTensorContents {
            fp32_contents: vec![0.5],
            ..Default::default()
        },
    );
    let mut request = infer("lin", vec![b, a]);
    request.outputs = vec![InferRequestedOutputTensor {
        name: "prediction".into(),
        parameters: Default::default(),
    }];
    let answer = c.model_infer(request).await.unwrap().into_inner();
    assert_eq!(
        answer.outputs[0].contents.as_ref().unwrap().fp64_contents,
        [2.0]
    );
}

#[tokio::test]
async fn bad_infer_calls_get_the_right_status() {
    let config = EngineConfig {
        max_batch_rows: 4,
        ..EngineConfig::default()
    };
    let state = state_with(config, &[linear("lin", "1", ImputePolicy::Median)]);
    let (mut c, _stop) = start(state).await;
    let one = || tensor("x", "FP64", &[1, 2], fp64(&[1.0, 2.0]));
    refused(
        c.model_infer(infer("nope", vec![one()])).await,
        Code::NotFound,
        &["unknown model \"nope\""],
    );
    let mut versioned = infer("lin", vec![one()]);
    versioned.model_version = "7".into();
    refused(
        c.model_infer(versioned).await,
        Code::NotFound,
        &["no version \"7\""],
    );
    refused(
        c.model_infer(infer(
            "lin",
            vec![tensor(
                "x",
                "BYTES",
                &[1, 2],
                InferTensorContents::default(),
            )],
        ))
        .await,
        Code::InvalidArgument,
        &["inputs[0].datatype", "FP64, FP32 or INT64"],
    );
    refused(
        c.model_infer(infer(
            "lin",
            vec![tensor("x", "FP64", &[1, 3], fp64(&[1.0, 2.0, 3.0]))],
        ))
        .await,
        Code::InvalidArgument,
        &["inputs[0].shape[1]: expected 2"],
    );
    refused(
        c.model_infer(infer(
            "lin",
            vec![tensor("x", "FP64", &[2, 2], fp64(&[1.0, 2.0]))],
        ))
        .await,
        Code::InvalidArgument,
        &["needs 4 values, got 2"],
    );
    refused(
        c.model_infer(infer(
            "lin",
            vec![
                tensor("a", "FP64", &[1], fp64(&[1.0])),
                tensor("zz", "FP64", &[1], fp64(&[1.0])),
            ],
        ))
        .await,
        Code::InvalidArgument,
        &["inputs[1].name: \"zz\" is not a feature"],
    );
    refused(
        c.model_infer(infer(
            "lin",
            vec![tensor("x", "FP64", &[5, 2], fp64(&[0.0; 10]))],
        ))
        .await,
        Code::ResourceExhausted,
        &["max-batch-rows limit of 4"],
    );
    let mut unknown_output = infer("lin", vec![one()]);
    unknown_output.outputs = vec![InferRequestedOutputTensor {
        name: "probability".into(),
        parameters: Default::default(),
    }];
    refused(
        c.model_infer(unknown_output).await,
        Code::InvalidArgument,
        &["outputs[0].name: unknown output \"probability\""],
    );
}

/// `max-body-bytes` bounds a gRPC message as it bounds an HTTP body.
#[tokio::test]
async fn messages_over_the_body_limit_are_refused() {
    let config = EngineConfig {
        max_body_bytes: 256,
        ..EngineConfig::default()
    };
    let state = state_with(config, &[linear("lin", "1", ImputePolicy::Median)]);
    let (mut c, _stop) = start(state).await;
    let ok = c
        .model_infer(infer(
            "lin",
            vec![tensor("x", "FP64", &[1, 2], fp64(&[1.0, 2.0]))],
        ))
        .await;
    assert!(ok.is_ok(), "{ok:?}");
    let big = c
        .model_infer(infer(
            "lin",
            vec![tensor("x", "FP64", &[32, 2], fp64(&[0.0; 64]))],
        ))
        .await;
    let status = big.unwrap_err();
    assert_ne!(status.code(), Code::Ok);
    assert!(status.message().contains("too large"), "{status:?}");
}

#[tokio::test]
async fn read_tokens_guard_all_but_the_health_rpcs() {
    let config = EngineConfig {
        security: SecurityConfig {
            read_tokens: Some("tokens.toml".into()),
            ..SecurityConfig::default()
        },
        ..EngineConfig::default()
    };
    let mut tokens = ReadTokens::default();
    let token = "tok-0123456789abcdef0123456789";
    tokens.insert_token(token, "predictor");
    let security = Security::from_parts(&config.security, None, None, Some(tokens));
    let state = AppState::with_security(config, security);
    state.registry().load(constant("m", 3)).unwrap();
    state.registry().promote("m").unwrap();
    let (mut c, _stop) = start(state).await;
    assert!(
        c.server_live(ServerLiveRequest {})
            .await
            .unwrap()
            .into_inner()
            .live
    );
    let call = || infer("m", vec![tensor("x", "FP64", &[1, 2], fp64(&[0.0, 0.0]))]);
    refused(
        c.model_infer(call()).await,
        Code::Unauthenticated,
        &["failed to authenticate"],
    );
    let mut with_token = tonic::Request::new(call());
    with_token
        .metadata_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    let answer = c.model_infer(with_token).await.unwrap().into_inner();
    assert_eq!(
        answer.outputs[0].contents.as_ref().unwrap().fp64_contents,
        [3.0]
    );
}

/// The binary announces both ports, serves both, and a SIGTERM stops both cleanly.
#[test]
fn binary_serves_grpc_beside_http_and_stops_on_sigterm() {
    use std::io::BufRead as _;
    let dir = tempfile::tempdir().unwrap();
    write_model_dir(dir.path());
    let binary = Path::new(env!("CARGO_BIN_EXE_gauntlet-engine"));
    let mut command = Command::new(binary);
    command
        .args([
            "--listen",
            "127.0.0.1:0",
            "--grpc-listen",
            "127.0.0.1:0",
            "--model-dir",
        ])
        .arg(dir.path())
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null());
    let mut child = gauntlet_testkit::KillOnDrop(command.spawn().unwrap());
    let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let http_line = lines.next().unwrap().unwrap();
    assert!(
        http_line.starts_with("listening on 127.0.0.1:"),
        "{http_line}"
    );
    let grpc_line = lines.next().unwrap().unwrap();
    let grpc_addr = grpc_line
        .strip_prefix("grpc listening on ")
        .unwrap()
        .to_owned();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let mut c = GrpcInferenceServiceClient::connect(format!("http://{grpc_addr}"))
            .await
            .unwrap();
        let answer = c
            .model_infer(infer(
                "lin",
                vec![tensor("x", "FP64", &[1, 2], fp64(&[1.0, 0.0]))],
            ))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(
            answer.outputs[0].contents.as_ref().unwrap().fp64_contents,
            [2.5]
        );
    });
    // The client's connection closes with its runtime: an open HTTP/2 connection whose
    // client no longer answers the server's shutdown PING holds shutdown for the whole grace.
    drop(runtime);
    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "the engine did not stop within 10 s"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "{status:?}");
}
