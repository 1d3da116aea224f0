//! The security controls over real HTTP on 127.0.0.1: encrypted artifacts (SEC-ENC), signed
//! admin calls with roles (SEC-SIG, SEC-AUTHZ), bearer tokens, hostile input (SEC-INPUT), and
//! the keyring commands of the real binary (SEC-KEYROT).

use std::net::SocketAddr;
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use gauntlet_engine::security::envelope;
use gauntlet_engine::security::keyring::Keyring;
use gauntlet_engine::security::sign;
use gauntlet_engine::security::{AdminKeys, ReadTokens, Role, Security, SecurityConfig};
use gauntlet_engine::{AppState, EngineConfig, ModelArtifact, serve};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};

use super::constant;

/// The engine's accept loop on an ephemeral port for the rest of the test.
async fn start(config: EngineConfig, security: Security) -> (SocketAddr, AppState) {
    let state = AppState::with_security(config, security);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(serve(listener, state.clone(), std::future::pending()));
    (addr, state)
}

/// An HTTP/1.1 answer: status, and the body parsed as JSON (`Value::Null` when empty).
#[derive(Debug)]
pub(super) struct Answer {
    pub(super) status: u16,
    pub(super) text: String,
}

impl Answer {
    pub(super) fn json(&self) -> Value {
        if self.text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&self.text).unwrap_or_else(|e| panic!("{e}: {}", self.text))
        }
    }
}

/// Parses a whole `connection: close` response.
pub(super) fn parse_answer(raw: &[u8]) -> Answer {
    let text = String::from_utf8_lossy(raw);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line: {text:?}"));
    Answer {
        status,
        text: body.to_owned(),
    }
}

/// The raw bytes of one request with `connection: close`.
pub(super) fn request_bytes(
    method: &str,
    path: &str,
    headers: &[(&str, String)],
    body: &[u8],
) -> Vec<u8> {
    let mut out = format!("{method} {path} HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n");
    for (name, value) in headers {
        out.push_str(&format!("{name}: {value}\r\n"));
    }
    out.push_str(&format!("content-length: {}\r\n\r\n", body.len()));
    let mut bytes = out.into_bytes();
    bytes.extend_from_slice(body);
    bytes
}

/// One request over a fresh loopback connection.
async fn call(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, String)],
    body: &[u8],
) -> Answer {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(&request_bytes(method, path, headers, body))
        .await
        .unwrap();
    let mut raw = Vec::new();
    tokio::time::timeout(
        std::time::Duration::from_secs(10),
        stream.read_to_end(&mut raw),
    )
    .await
    .expect("an answer within 10 s")
    .unwrap();
    parse_answer(&raw)
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

const OPS: [u8; 32] = [1; 32];
const APPROVER: [u8; 32] = [2; 32];
const VIEWER: [u8; 32] = [3; 32];

fn admin_keys() -> AdminKeys {
    let mut keys = AdminKeys::default();
    for (id, secret, principal, role) in [
        ("ops-1", OPS, "olga", Role::Operator),
        ("appr-1", APPROVER, "anna", Role::Approver),
        ("view-1", VIEWER, "vic", Role::Viewer),
    ] {
        keys.insert(id.into(), secret.to_vec(), principal.into(), role)
            .unwrap();
    }
    keys
}

/// Signature headers plus the content type, when the body is JSON.
fn signed(
    secret: &[u8],
    key_id: &str,
    path: &str,
    body: &[u8],
    timestamp: u64,
    nonce: &str,
) -> Vec<(&'static str, String)> {
    let ct = (!body.is_empty()).then_some("application/json");
    let mut headers =
        sign::signature_headers(secret, key_id, "POST", path, ct, body, timestamp, nonce);
    if let Some(ct) = ct {
        headers.push(("content-type", ct.to_owned()));
    }
    headers
}

fn load_body(artifact: &ModelArtifact) -> Vec<u8> {
    json!({"parameters": {"artifact": artifact}})
        .to_string()
        .into_bytes()
}

async fn signed_engine() -> SocketAddr {
    let config = EngineConfig {
        security: SecurityConfig {
            admin_keys: Some("admin-keys.toml".into()),
            ..SecurityConfig::default()
        },
        ..EngineConfig::default()
    };
    let security = Security::from_parts(&config.security, None, Some(admin_keys()), None);
    start(config, security).await.0
}

/// SEC-SIG: an unsigned, replayed, stale, future-dated, body-swapped, unknown-key or
/// wrong-secret admin call is a 401 whose body is the same for every cause and reveals nothing.
#[tokio::test]
async fn admin_calls_need_a_fresh_valid_signature() {
    let addr = signed_engine().await;
    let path = "/v2/repository/models/m/load";
    let body = load_body(&constant("m", 1));
    let json_ct = [("content-type", "application/json".to_owned())];
    let mut refusals = Vec::new();

    refusals.push(("unsigned", call(addr, "POST", path, &json_ct, &body).await));
    let ok = signed(&OPS, "ops-1", path, &body, now(), "nonce-0000000001");
    assert_eq!(call(addr, "POST", path, &ok, &body).await.status, 200);
    refusals.push(("replayed", call(addr, "POST", path, &ok, &body).await));
    let stale = signed(&OPS, "ops-1", path, &body, now() - 301, "nonce-0000000002");
    refusals.push(("stale", call(addr, "POST", path, &stale, &body).await));
    let future = signed(&OPS, "ops-1", path, &body, now() + 301, "nonce-0000000003");
    refusals.push(("future", call(addr, "POST", path, &future, &body).await));
    let swapped = signed(&OPS, "ops-1", path, &body, now(), "nonce-0000000004");
    let other = load_body(&constant("m", 2));
    refusals.push((
        "body swapped",
        call(addr, "POST", path, &swapped, &other).await,
    ));
    let unknown = signed(&OPS, "nobody", path, &body, now(), "nonce-0000000005");
    refusals.push((
        "unknown key",
        call(addr, "POST", path, &unknown, &body).await,
    ));
    let forged = signed(&[9; 32], "ops-1", path, &body, now(), "nonce-0000000006");
    refusals.push((
        "wrong secret",
        call(addr, "POST", path, &forged, &body).await,
    ));
    let mut retyped = signed(&OPS, "ops-1", path, &body, now(), "nonce-0000000007");
    retyped.retain(|(n, _)| *n != "content-type");
    retyped.push(("content-type", "application/octet-stream".into()));
    refusals.push((
        "content type swapped",
        call(addr, "POST", path, &retyped, &body).await,
    ));
    let other_path = signed(&OPS, "ops-1", path, &body, now(), "nonce-0000000008");
    refusals.push((
        "path swapped",
        call(
            addr,
            "POST",
            "/v2/repository/models/m/unload",
            &other_path,
            &body,
        )
        .await,
    ));

    for (case, answer) in &refusals {
        assert_eq!(answer.status, 401, "{case}: {}", answer.text);
        assert_eq!(
            answer.json(),
            json!({"error": "failed to authenticate the request"}),
            "{case}"
        );
        for secret in [OPS, APPROVER, [9; 32]] {
            assert!(!answer.text.contains(&sign::hex(&secret)), "{case}");
        }
    }
    // Within the skew, an earlier timestamp is accepted (any role may list).
    let index = "/v2/repository/index";
    let recent = signed(
        &VIEWER,
        "view-1",
        index,
        b"",
        now() - 240,
        "nonce-0000000009",
    );
    assert_eq!(call(addr, "POST", index, &recent, b"").await.status, 200);
}

/// SEC-AUTHZ: an authenticated principal whose role lacks the permission gets 403.
#[tokio::test]
async fn roles_limit_what_a_principal_may_do() {
    let addr = signed_engine().await;
    let load = "/v2/repository/models/m/load";
    let promote = "/v2/repository/models/m/promote";
    let body = load_body(&constant("m", 1));

    let h = signed(&VIEWER, "view-1", load, &body, now(), "viewer-load-000001");
    let a = call(addr, "POST", load, &h, &body).await;
    assert_eq!(
        (a.status, a.json()),
        (403, json!({"error": "role viewer may not load models"}))
    );
    let h = signed(
        &APPROVER,
        "appr-1",
        load,
        &body,
        now(),
        "approver-load-0001",
    );
    assert_eq!(call(addr, "POST", load, &h, &body).await.status, 403);
    let h = signed(&OPS, "ops-1", load, &body, now(), "operator-load-0001");
    assert_eq!(call(addr, "POST", load, &h, &body).await.status, 200);
    let h = signed(&OPS, "ops-1", promote, b"", now(), "operator-promote-1");
    let a = call(addr, "POST", promote, &h, b"").await;
    assert_eq!(
        (a.status, a.json()),
        (
            403,
            json!({"error": "role operator may not promote models"})
        )
    );
    let h = signed(
        &APPROVER,
        "appr-1",
        promote,
        b"",
        now(),
        "approver-promote-1",
    );
    let a = call(addr, "POST", promote, &h, b"").await;
    assert_eq!(a.status, 200, "{}", a.text);
    assert_eq!(a.json()["live_version"], "1");
}

/// Read routes with `read-tokens`: a bearer token is needed everywhere but the health probes.
#[tokio::test]
async fn read_routes_need_a_bearer_token_when_configured() {
    let config = EngineConfig {
        security: SecurityConfig {
            read_tokens: Some("tokens.toml".into()),
            ..SecurityConfig::default()
        },
        ..EngineConfig::default()
    };
    let mut tokens = ReadTokens::default();
    tokens.insert_token("tok-0123456789abcdef0123456789", "predictor");
    let security = Security::from_parts(&config.security, None, None, Some(tokens));
    let (addr, state) = start(config, security).await;
    state.registry().load(constant("m", 3)).unwrap();
    state.registry().promote("m").unwrap();
    let body =
        json!({"inputs": [{"name": "x", "shape": [1, 2], "datatype": "FP64", "data": [0.0, 0.0]}]})
            .to_string();
    let path = "/v2/models/m/infer";
    let ct = ("content-type", "application/json".to_owned());
    let none = call(
        addr,
        "POST",
        path,
        std::slice::from_ref(&ct),
        body.as_bytes(),
    )
    .await;
    assert_eq!(
        (none.status, none.json()),
        (401, json!({"error": "failed to authenticate the request"}))
    );
    let wrong = [
        ct.clone(),
        (
            "authorization",
            "Bearer tok-0123456789abcdef0123456788".into(),
        ),
    ];
    assert_eq!(
        call(addr, "POST", path, &wrong, body.as_bytes())
            .await
            .status,
        401
    );
    let right = [
        ct,
        (
            "authorization",
            "Bearer tok-0123456789abcdef0123456789".into(),
        ),
    ];
    let ok = call(addr, "POST", path, &right, body.as_bytes()).await;
    assert_eq!(ok.status, 200, "{}", ok.text);
    assert_eq!(ok.json()["outputs"][0]["data"], json!([3.0]));
    assert_eq!(call(addr, "GET", "/metrics", &[], b"").await.status, 401);
    assert_eq!(
        call(addr, "GET", "/v2/openapi.json", &[], b"").await.status,
        401
    );
    assert_eq!(
        call(addr, "GET", "/v2/health/live", &[], b"").await.status,
        200
    );
    assert_eq!(
        call(addr, "GET", "/v2/health/ready", &[], b"").await.status,
        200
    );
}

fn keyring() -> Keyring {
    let mut ring = Keyring::new();
    ring.add_random("k1").unwrap();
    ring
}

fn encrypted(ring: &mut Keyring, artifact: &ModelArtifact) -> Vec<u8> {
    let plain = serde_json::to_vec(artifact).unwrap();
    envelope::encrypt(ring, &artifact.name, &artifact.version, &plain).unwrap()
}

async fn load_file(addr: SocketAddr, model: &str, bytes: &[u8]) -> Answer {
    let ct = [("content-type", "application/octet-stream".to_owned())];
    call(
        addr,
        "POST",
        &format!("/v2/repository/models/{model}/load"),
        &ct,
        bytes,
    )
    .await
}

async fn prediction(addr: SocketAddr, model: &str) -> Value {
    let body =
        json!({"inputs": [{"name": "x", "shape": [1, 2], "datatype": "FP64", "data": [0.0, 0.0]}]})
            .to_string();
    let a = call(
        addr,
        "POST",
        &format!("/v2/models/{model}/infer"),
        &[("content-type", "application/json".into())],
        body.as_bytes(),
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.text);
    a.json()["outputs"][0]["data"][0].clone()
}

/// SEC-ENC: an encrypted artifact loads; a flipped byte, another model's envelope, a retired
/// or unknown key are typed 400s, and the live model keeps serving throughout.
#[tokio::test]
async fn encrypted_artifacts_load_and_bad_ones_leave_the_live_model_serving() {
    let mut ring = keyring();
    let v1 = encrypted(&mut ring, &constant("m", 1));
    let v2 = encrypted(&mut ring, &constant("m", 2));
    let other = encrypted(&mut ring, &constant("n", 5));
    let mut retiring = ring.clone();
    retiring.add_random("k2").unwrap();
    retiring.set_primary("k2").unwrap();
    let config = EngineConfig {
        security: SecurityConfig {
            keyring: Some("keyring.toml".into()),
            ..SecurityConfig::default()
        },
        ..EngineConfig::default()
    };
    let mut served = retiring.clone();
    served.retire("k1").unwrap();
    // The server's keyring has k1 retired: sealed under k2 works, under k1 is refused.
    let v3 = encrypted(&mut retiring, &constant("m", 3));
    let security = Security::from_parts(&config.security, Some(ring.clone()), None, None);
    let (addr, _) = start(config.clone(), security).await;

    let a = load_file(addr, "m", &v1).await;
    assert_eq!(a.status, 200, "{}", a.text);
    assert_eq!(a.json()["version"], "1");
    let promote = call(addr, "POST", "/v2/repository/models/m/promote", &[], b"").await;
    assert_eq!(promote.status, 200);
    assert_eq!(prediction(addr, "m").await, json!(1.0));

    for (case, bytes, message) in [
        (
            "flipped body byte",
            flip(&v2, v2.len() - 20),
            "the content does not authenticate",
        ),
        (
            "flipped header byte",
            flip(&v2, 30),
            "does not authenticate",
        ),
        (
            "another model",
            other.clone(),
            "it holds model \"n\", not \"m\"",
        ),
        ("unknown key", v3.clone(), "key \"k2\""),
        ("truncated", v2[..40].to_vec(), "truncated"),
    ] {
        let a = load_file(addr, "m", &bytes).await;
        assert_eq!(a.status, 400, "{case}: {}", a.text);
        let error = a.json()["error"].as_str().unwrap().to_owned();
        assert!(error.starts_with("body: failed to"), "{case}: {error}");
        assert!(error.contains(message), "{case}: {error}");
        assert_eq!(prediction(addr, "m").await, json!(1.0), "{case}");
    }

    // The same server keys with k1 retired.
    let security = Security::from_parts(&config.security, Some(served), None, None);
    let (addr, state) = start(config, security).await;
    state.registry().load(constant("m", 1)).unwrap();
    state.registry().promote("m").unwrap();
    let a = load_file(addr, "m", &v2).await;
    assert_eq!(
        (a.status, a.json()),
        (
            400,
            json!({"error": "body: failed to decrypt artifact: key \"k1\" is retired"})
        )
    );
    assert_eq!(load_file(addr, "m", &v3).await.status, 200);
    assert_eq!(prediction(addr, "m").await, json!(1.0), "staged, not live");
}

fn flip(bytes: &[u8], at: usize) -> Vec<u8> {
    let mut out = bytes.to_vec();
    out[at] ^= 0x40;
    out
}

/// Plain artifacts are accepted unless `require-encrypted-artifacts` is set.
#[tokio::test]
async fn plain_artifacts_are_refused_only_when_encryption_is_required() {
    let plain = serde_json::to_vec(&constant("m", 1)).unwrap();
    let (open, _) = start(
        EngineConfig::default(),
        Security::from_parts(&SecurityConfig::default(), None, None, None),
    )
    .await;
    assert_eq!(load_file(open, "m", &plain).await.status, 200);

    let config = EngineConfig {
        security: SecurityConfig {
            keyring: Some("keyring.toml".into()),
            require_encrypted_artifacts: true,
            ..SecurityConfig::default()
        },
        ..EngineConfig::default()
    };
    let mut ring = keyring();
    let sealed = encrypted(&mut ring, &constant("m", 1));
    let security = Security::from_parts(&config.security, Some(ring), None, None);
    let (addr, _) = start(config, security).await;
    let refused = "failed to accept a plain artifact: security.require-encrypted-artifacts is set";
    let a = load_file(addr, "m", &plain).await;
    assert_eq!(
        (a.status, a.json()),
        (400, json!({"error": format!("body: {refused}")}))
    );
    let a = call(
        addr,
        "POST",
        "/v2/repository/models/m/load",
        &[("content-type", "application/json".into())],
        &load_body(&constant("m", 1)),
    )
    .await;
    assert_eq!(
        (a.status, a.json()),
        (
            400,
            json!({"error": format!("parameters.artifact: {refused}")})
        )
    );
    assert_eq!(load_file(addr, "m", &sealed).await.status, 200);
}

/// The model directory holds `*.enc` files next to `*.json`; a bad envelope names its file.
#[test]
fn model_dir_loads_encrypted_files() {
    let dir = tempfile::tempdir().unwrap();
    let mut ring = keyring();
    std::fs::write(
        dir.path().join("a.enc"),
        encrypted(&mut ring, &constant("a", 1)),
    )
    .unwrap();
    std::fs::write(dir.path().join("b.json"), constant("b", 2).to_json_pretty()).unwrap();
    let config = EngineConfig {
        security: SecurityConfig {
            keyring: Some("keyring.toml".into()),
            ..SecurityConfig::default()
        },
        ..EngineConfig::default()
    };
    let state = AppState::with_security(
        config.clone(),
        Security::from_parts(&config.security, Some(ring.clone()), None, None),
    );
    assert_eq!(state.load_model_dir(dir.path()).unwrap(), 2);
    assert!(state.registry().live("a").is_some());

    std::fs::write(
        dir.path().join("c.enc"),
        flip(&encrypted(&mut ring, &constant("c", 1)), 60),
    )
    .unwrap();
    let state = AppState::with_security(
        config.clone(),
        Security::from_parts(&config.security, Some(ring), None, None),
    );
    let err = state.load_model_dir(dir.path()).unwrap_err();
    let chain = format!("{:#}", anyhow::Error::from(err));
    assert!(
        chain.contains("c.enc") && chain.contains("does not authenticate"),
        "{chain}"
    );
    assert!(state.registry().is_empty());
}

/// SEC-INPUT: header flood, deep JSON and oversized tensors are JSON 4xx naming the limit, over
/// real HTTP; no error body carries a stack trace or an internal path.
#[tokio::test]
async fn hostile_input_is_refused_with_the_limit_named() {
    let config = EngineConfig {
        security: SecurityConfig {
            max_tensor_elements: 8,
            ..SecurityConfig::default()
        },
        ..EngineConfig::default()
    };
    let security = Security::from_parts(&config.security, None, None, None);
    let (addr, state) = start(config, security).await;
    state.registry().load(constant("m", 1)).unwrap();
    state.registry().promote("m").unwrap();
    let mut answers = Vec::new();

    let flood: Vec<(&str, String)> = (0..70).map(|i| ("x-flood", format!("v{i}"))).collect();
    let a = call(addr, "GET", "/v2", &flood, b"").await;
    assert_eq!(a.status, 431);
    assert!(
        a.json()["error"]
            .as_str()
            .unwrap()
            .contains("security.max-headers limit of 64"),
        "{}",
        a.text
    );
    answers.push(a);
    let big = [("x-big", "a".repeat(20_000))];
    let a = call(addr, "GET", "/v2", &big, b"").await;
    assert_eq!(a.status, 431);
    assert!(
        a.json()["error"]
            .as_str()
            .unwrap()
            .contains("security.max-header-bytes limit of 16384"),
        "{}",
        a.text
    );
    answers.push(a);

    let ct = [("content-type", "application/json".to_owned())];
    let deep = format!("{{\"inputs\": {}1{}}}", "[".repeat(40), "]".repeat(40));
    let a = call(addr, "POST", "/v2/models/m/infer", &ct, deep.as_bytes()).await;
    assert_eq!(a.status, 400);
    assert!(
        a.json()["error"]
            .as_str()
            .unwrap()
            .contains("security.max-json-depth limit of 32"),
        "{}",
        a.text
    );
    answers.push(a);
    let wide =
        json!({"inputs": [{"name": "x", "shape": [5, 2], "datatype": "FP64", "data": vec![0.0; 10]}]})
            .to_string();
    let a = call(addr, "POST", "/v2/models/m/infer", &ct, wide.as_bytes()).await;
    assert_eq!(a.status, 413);
    assert!(
        a.json()["error"]
            .as_str()
            .unwrap()
            .contains("10 tensor elements, over the security.max-tensor-elements limit of 8"),
        "{}",
        a.text
    );
    answers.push(a);
    let fine =
        json!({"inputs": [{"name": "x", "shape": [4, 2], "datatype": "FP64", "data": vec![0.0; 8]}]})
            .to_string();
    assert_eq!(
        call(addr, "POST", "/v2/models/m/infer", &ct, fine.as_bytes())
            .await
            .status,
        200
    );

    for (method, path, body) in [
        (
            "POST",
            "/v2/models/m/infer",
            &b"{\"inputs\": [{\"shape\": \"x\"}]}"[..],
        ),
        ("POST", "/v2/models/m/infer", b"\xff\xfe"),
        ("POST", "/v2/repository/models/..%2F..%2Fetc/load", b""),
        (
            "POST",
            "/v2/repository/models/m/load",
            b"{\"parameters\": {\"artifact\": {\"format\": 1}}}",
        ),
        ("GET", "/v2/models/%00/versions/x", b""),
        ("DELETE", "/v2", b""),
    ] {
        answers.push(call(addr, method, path, &ct, body).await);
    }
    for a in &answers {
        assert!((400..500).contains(&a.status), "{a:?}");
        assert!(a.json()["error"].is_string(), "{a:?}");
        for leak in [
            "panicked",
            "stack backtrace",
            ".rs:",
            "/src/",
            "/work/",
            "/home/",
            "RUST_BACKTRACE",
        ] {
            assert!(!a.text.contains(leak), "{leak} in {a:?}");
        }
    }
}

/// SEC-KEYROT through the real binary: keys add → encrypt → add k2 as primary → rewrap →
/// retire k1; the engine serves the rewrapped artifact, refuses a group-readable keyring, and
/// refuses the artifact still under k1.
#[test]
fn keyring_commands_rotate_keys_end_to_end() {
    let dir = tempfile::tempdir().unwrap();
    let ring = dir.path().join("keyring.toml");
    let models = dir.path().join("models");
    std::fs::create_dir(&models).unwrap();
    let plain = dir.path().join("m.json");
    std::fs::write(&plain, constant("m", 7).to_json_pretty()).unwrap();
    let ring_s = ring.to_str().unwrap();
    let run = |args: &[&str]| -> (i32, String, String) {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_gauntlet-engine"))
            .args(args)
            .env("RUST_LOG", "off")
            .output()
            .unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let ok = |args: &[&str]| {
        let (code, out, err) = run(args);
        assert_eq!(code, 0, "{args:?}: {err}");
        out
    };
    ok(&["keys", "add", "--keyring", ring_s, "--id", "k1"]);
    let sealed = models.join("m.enc");
    let stale = dir.path().join("stale.enc");
    ok(&[
        "artifact",
        "encrypt",
        "--keyring",
        ring_s,
        "--in",
        plain.to_str().unwrap(),
        "--out",
        sealed.to_str().unwrap(),
    ]);
    std::fs::copy(&sealed, &stale).unwrap();
    ok(&[
        "keys",
        "add",
        "--keyring",
        ring_s,
        "--id",
        "k2",
        "--primary",
    ]);
    let out = ok(&[
        "artifact",
        "rewrap",
        "--keyring",
        ring_s,
        sealed.to_str().unwrap(),
    ]);
    assert!(out.contains("from key k1 to key k2"), "{out}");
    ok(&["keys", "retire", "--keyring", ring_s, "--id", "k1"]);
    let list = ok(&["keys", "list", "--keyring", ring_s]);
    assert!(list.contains("k1") && list.contains("retired"), "{list}");
    assert!(
        list.lines()
            .any(|l| l.starts_with("k2") && l.contains("yes")),
        "{list}"
    );
    let text = std::fs::read_to_string(&ring).unwrap();
    assert_eq!(text.matches("key = ").count(), 1, "k1's material is erased");

    let (code, _, err) = run(&[
        "artifact",
        "decrypt",
        "--keyring",
        ring_s,
        "--in",
        stale.to_str().unwrap(),
        "--out",
        dir.path().join("x.json").to_str().unwrap(),
    ]);
    assert_eq!(code, 2);
    assert!(err.contains("key \"k1\" is retired"), "{err}");
    let out_json = dir.path().join("back.json");
    ok(&[
        "artifact",
        "decrypt",
        "--keyring",
        ring_s,
        "--in",
        sealed.to_str().unwrap(),
        "--out",
        out_json.to_str().unwrap(),
        "--name",
        "m",
    ]);
    assert_eq!(
        std::fs::read(&out_json).unwrap(),
        std::fs::read(&plain).unwrap()
    );

    let (child, port) = super::shutdown::spawn_engine(
        &models,
        &["--keyring", ring_s, "--require-encrypted-artifacts"],
    );
    let response = super::http_request(
        port,
        "GET /v2/models/m HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n",
    );
    assert!(response.contains("\"live_version\":\"7\""), "{response}");
    drop(child);

    set_mode(&ring, 0o644);
    let (code, _, err) = run(&[
        "--listen",
        "127.0.0.1:0",
        "--model-dir",
        models.to_str().unwrap(),
        "--keyring",
        ring_s,
    ]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("mode 0644") && err.contains("chmod 600"),
        "{err}"
    );
}

#[cfg(unix)]
pub(super) fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// SEC-SECRETS: through the real binary at `RUST_LOG=debug`, with admin keys, a keyring and
/// read tokens in use and calls that fail every way, no secret (raw, hex or base64) appears in
/// an answer, in `/metrics` or in the log.
#[test]
fn secrets_never_reach_answers_metrics_or_logs() {
    use base64::Engine as _;
    let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
    let dir = tempfile::tempdir().unwrap();
    let models = dir.path().join("models");
    std::fs::create_dir(&models).unwrap();
    let admin_secret = *b"admin-secret-that-must-not-leak!";
    let token = "read-token-that-must-not-leak-0123456789";
    let admin = dir.path().join("admin.toml");
    std::fs::write(
        &admin,
        format!(
            "[[keys]]\nid = \"ops-1\"\nsecret = \"{}\"\nprincipal = \"olga\"\nrole = \"operator\"\n",
            b64(&admin_secret)
        ),
    )
    .unwrap();
    let tokens = dir.path().join("tokens.toml");
    std::fs::write(
        &tokens,
        format!(
            "[[tokens]]\nprincipal = \"p\"\nsha256 = \"{}\"\n",
            sign::hex(&sha256(token.as_bytes()))
        ),
    )
    .unwrap();
    let ring_path = dir.path().join("keyring.toml");
    let mut ring = keyring();
    ring.save(&ring_path).unwrap();
    let kek_b64 = std::fs::read_to_string(&ring_path)
        .unwrap()
        .lines()
        .find_map(|l| {
            l.strip_prefix("key = \"")
                .map(|k| k.trim_end_matches('"').to_owned())
        })
        .unwrap();
    let kek = base64::engine::general_purpose::STANDARD
        .decode(&kek_b64)
        .unwrap();
    for f in [&admin, &tokens] {
        set_mode(f, 0o600);
    }
    let sealed = encrypted(&mut ring, &constant("m", 1));

    let log = dir.path().join("engine.log");
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_gauntlet-engine"));
    command
        .args(["--listen", "127.0.0.1:0", "--model-dir"])
        .arg(&models)
        .arg("--admin-keys")
        .arg(&admin)
        .arg("--keyring")
        .arg(&ring_path)
        .arg("--read-tokens")
        .arg(&tokens)
        .env("RUST_LOG", "debug")
        .stderr(std::fs::File::create(&log).unwrap());
    // Spawned here rather than by the testkit, which discards stderr.
    let mut engine = gauntlet_testkit::KillOnDrop(
        command
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(engine.stdout.take().unwrap()),
        &mut line,
    )
    .unwrap();
    let port = line
        .trim()
        .strip_prefix("listening on ")
        .and_then(|a| a.parse::<SocketAddr>().ok())
        .unwrap_or_else(|| panic!("{line:?}"))
        .port();
    let raw = |method: &str, path: &str, headers: &[(&str, String)], body: &[u8]| -> String {
        let bytes = request_bytes(method, path, headers, body);
        let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        stream
            .set_read_timeout(Some(std::time::Duration::from_secs(5)))
            .unwrap();
        std::io::Write::write_all(&mut stream, &bytes).unwrap();
        let mut out = Vec::new();
        let _ = std::io::Read::read_to_end(&mut stream, &mut out);
        String::from_utf8_lossy(&out).into_owned()
    };
    let load = "/v2/repository/models/m/load";
    let octet = |h: Vec<(&'static str, String)>| {
        let mut h = h;
        h.push(("content-type", "application/octet-stream".into()));
        h
    };
    let sign_octet = |secret: &[u8], body: &[u8], nonce: &str| {
        octet(sign::signature_headers(
            secret,
            "ops-1",
            "POST",
            load,
            Some("application/octet-stream"),
            body,
            now(),
            nonce,
        ))
    };
    let mut seen = Vec::new();
    seen.push(raw(
        "POST",
        load,
        &sign_octet(&[0; 32], &sealed, "leak-check-000001"),
        &sealed,
    ));
    let tampered = flip(&sealed, sealed.len() - 3);
    seen.push(raw(
        "POST",
        load,
        &sign_octet(&admin_secret, &tampered, "leak-check-000002"),
        &tampered,
    ));
    let ok = raw(
        "POST",
        load,
        &sign_octet(&admin_secret, &sealed, "leak-check-000003"),
        &sealed,
    );
    assert!(ok.starts_with("HTTP/1.1 200"), "{ok}");
    seen.push(ok);
    seen.push(raw(
        "GET",
        "/v2",
        &[("authorization", format!("Bearer {token}x"))],
        b"",
    ));
    let metrics = raw(
        "GET",
        "/metrics",
        &[("authorization", format!("Bearer {token}"))],
        b"",
    );
    assert!(metrics.starts_with("HTTP/1.1 200"), "{metrics}");
    seen.push(metrics);
    drop(engine);
    seen.push(std::fs::read_to_string(&log).unwrap());
    assert!(
        seen.last()
            .unwrap()
            .contains("signed admin request accepted"),
        "the log was captured"
    );

    let secrets = [
        String::from_utf8(admin_secret.to_vec()).unwrap(),
        b64(&admin_secret),
        sign::hex(&admin_secret),
        kek_b64,
        sign::hex(&kek),
        token.to_owned(),
        b64(token.as_bytes()),
    ];
    for text in &seen {
        for secret in &secrets {
            assert!(
                !text.contains(secret.as_str()),
                "a secret leaked into:\n{text}"
            );
        }
    }
}

fn sha256(bytes: &[u8]) -> [u8; 32] {
    use sha2::Digest as _;
    sha2::Sha256::digest(bytes).into()
}

/// Reads one answer from `stream` without waiting for the connection to close: the head, then
/// `content-length` bytes of body.
async fn read_answer(stream: &mut TcpStream) -> Answer {
    let mut raw = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        if let Some(end) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&raw[..end]).to_ascii_lowercase();
            let length: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .map_or(0, |v| v.trim().parse().unwrap());
            if raw.len() >= end + 4 + length {
                return parse_answer(&raw[..end + 4 + length]);
            }
        }
        let n = stream.read(&mut buf).await.unwrap();
        assert!(n > 0, "connection closed mid-answer: {raw:?}");
        raw.extend_from_slice(&buf[..n]);
    }
}

/// Regression: with admin keys configured the kill switch, the throttle release and checkpoint
/// requests believed the `x-gauntlet-principal` header, so anyone who could reach the port
/// could stop trading as `risk-officer`, and a signed load was audited under whatever name the
/// header gave. Now every admin route needs a signature and the principal is the verified key's.
#[tokio::test]
async fn with_admin_keys_the_principal_comes_from_the_signature_not_a_header() {
    let tmp = tempfile::tempdir().unwrap();
    let audit_dir = super::audit::config(tmp.path()).dir;
    let config = EngineConfig {
        audit: Some(super::audit::config(tmp.path())),
        security: SecurityConfig {
            admin_keys: Some("admin-keys.toml".into()),
            ..SecurityConfig::default()
        },
        ..EngineConfig::default()
    };
    const RISK: [u8; 32] = [4; 32];
    let mut keys = admin_keys();
    keys.insert(
        "risk-1".into(),
        RISK.to_vec(),
        "risk-officer".into(),
        Role::Viewer,
    )
    .unwrap();
    let security = Security::from_parts(&config.security, None, Some(keys), None);
    let state = AppState::open_with_security(config, security).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(serve(listener, state, std::future::pending()));
    let claim = ("x-gauntlet-principal", "risk-officer".to_owned());
    let kill = "/v2/trading/kill";
    let all = br#"{"scope": "all"}"#;
    let json_ct = ("content-type", "application/json".to_owned());

    let a = call(addr, "POST", kill, &[claim.clone(), json_ct.clone()], all).await;
    assert_eq!(
        (a.status, a.json()),
        (401, json!({"error": "failed to authenticate the request"})),
        "an unsigned kill naming a risk principal"
    );
    for (path, body) in [
        ("/v2/trading/kill/release", &all[..]),
        ("/v2/trading/algos/a1/enable", b""),
        ("/v2/audit/checkpoint", b""),
    ] {
        let mut h = vec![claim.clone()];
        if !body.is_empty() {
            h.push(json_ct.clone());
        }
        assert_eq!(
            call(addr, "POST", path, &h, body).await.status,
            401,
            "{path}"
        );
    }
    let mut h = signed(&OPS, "ops-1", kill, all, now(), "olga-claims-risk-01");
    h.push(claim.clone());
    let a = call(addr, "POST", kill, &h, all).await;
    assert_eq!(
        (a.status, a.json()),
        (
            403,
            json!({"error": "principal \"olga\" is not one of trading.risk-principals"})
        ),
        "signed by olga, claiming risk-officer in the header"
    );
    let h = signed(&RISK, "risk-1", kill, all, now(), "risk-officer-kill-1");
    let a = call(addr, "POST", kill, &h, all).await;
    assert_eq!(a.status, 200, "{}", a.text);
    assert_eq!(
        call(addr, "GET", kill, &[], b"").await.status,
        200,
        "reads stay open"
    );
    let checkpoint = "/v2/audit/checkpoint";
    let h = signed(
        &VIEWER,
        "view-1",
        checkpoint,
        b"",
        now(),
        "viewer-checkpoint-1",
    );
    assert_eq!(call(addr, "POST", checkpoint, &h, b"").await.status, 200);
    // Reading the log needs a viewer or an auditor too: unsigned 401, an operator 403.
    let read = |secret: &'static [u8; 32], id: &'static str, path: &'static str, nonce: &str| {
        sign::signature_headers(secret, id, "GET", path, None, b"", now(), nonce)
    };
    for path in [
        "/v2/audit/checkpoint",
        "/v2/audit/records/0",
        "/v2/audit/proof/inclusion?index=0",
        "/v2/audit/proof/consistency?first=1",
    ] {
        let a = call(addr, "GET", path, std::slice::from_ref(&claim), b"").await;
        assert_eq!(a.status, 401, "unsigned GET {path}: {}", a.text);
        let h = read(&OPS, "ops-1", path, &sign::random_nonce());
        let a = call(addr, "GET", path, &h, b"").await;
        assert_eq!(
            (a.status, a.json()),
            (
                403,
                json!({"error": "role operator may not read the audit log"})
            ),
            "GET {path} signed by an operator"
        );
        let h = read(&VIEWER, "view-1", path, &sign::random_nonce());
        let a = call(addr, "GET", path, &h, b"").await;
        assert!(
            a.status == 200 || a.status == 400,
            "GET {path} signed by a viewer: {} {}",
            a.status,
            a.text
        );
    }
    let h = read(&RISK, "risk-1", checkpoint, &sign::random_nonce());
    let a = call(addr, "GET", checkpoint, &h, b"").await;
    assert_eq!(a.status, 200, "{}", a.text);

    let load = "/v2/repository/models/m/load";
    let body = load_body(&constant("m", 1));
    let mut h = signed(&OPS, "ops-1", load, &body, now(), "olga-loads-as-mal-1");
    h.push(("x-gauntlet-principal", "mallory".to_owned()));
    assert_eq!(call(addr, "POST", load, &h, &body).await.status, 200);

    let records = gauntlet_engine::audit::read_records(&audit_dir, 0, 100).unwrap();
    let who: Vec<(String, String)> = records
        .iter()
        .map(|r| (format!("{:?}", r.event.action), r.event.principal.clone()))
        .collect();
    assert!(
        who.iter().any(|(a, p)| a == "ModelLoad" && p == "olga"),
        "{who:?}"
    );
    assert!(
        who.iter()
            .any(|(a, p)| a == "KillEngage" && p == "risk-officer"),
        "{who:?}"
    );
    assert!(
        who.iter()
            .any(|(a, p)| a == "CheckpointRequest" && p == "vic"),
        "{who:?}"
    );
    assert!(!who.iter().any(|(_, p)| p == "mallory"), "{who:?}");
}

/// Regression: the admin layer read (up to `max-artifact-bytes` of) the body before it looked
/// up the key id, so a client with no key could make the engine wait for and buffer an
/// artifact on every admin route. An unknown key id and a declared length over the route's
/// limit are answered before any of the body is sent.
#[tokio::test]
async fn admin_calls_are_refused_before_their_body_is_read() {
    let addr = signed_engine().await;
    let head = |path: &str, key_id: &str, secret: &[u8], length: usize| {
        let mut h = signed(secret, key_id, path, b"x", now(), &sign::random_nonce());
        h.push(("content-length", length.to_string()));
        let mut out = format!("POST {path} HTTP/1.1\r\nhost: localhost\r\n");
        for (name, value) in h {
            out.push_str(&format!("{name}: {value}\r\n"));
        }
        out.push_str("\r\n");
        out
    };
    let started = std::time::Instant::now();
    for (path, key_id, secret, length, status, error) in [
        (
            "/v2/repository/models/m/load",
            "nobody",
            &OPS,
            5_000_000,
            401,
            "failed to authenticate the request",
        ),
        (
            "/v2/repository/models/m/promote",
            "appr-1",
            &APPROVER,
            2 << 20,
            413,
            "request body of 2097152 bytes exceeds the max-body-bytes limit of 1048576 bytes",
        ),
        (
            "/v2/repository/models/m/load",
            "ops-1",
            &OPS,
            17 << 20,
            413,
            "request body of 17825792 bytes exceeds the max-artifact-bytes limit of 16777216 bytes",
        ),
    ] {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        stream
            .write_all(head(path, key_id, secret, length).as_bytes())
            .await
            .unwrap();
        let a = tokio::time::timeout(std::time::Duration::from_secs(5), read_answer(&mut stream))
            .await
            .unwrap_or_else(|_| panic!("{path} as {key_id}: no answer before the body was sent"));
        assert_eq!(
            (a.status, a.json()),
            (status, json!({"error": error})),
            "{path}"
        );
    }
    assert!(started.elapsed() < std::time::Duration::from_secs(10));
}
