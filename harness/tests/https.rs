//! An `https://` target with a CA file, extra headers and signed admin calls, against the
//! reference engine served over TLS (a CA made here with rcgen) on 127.0.0.1.
#![expect(clippy::unwrap_used, reason = "a failed unwrap is a failed test")]

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use http::{Method, Request};
use serde_json::json;

use gauntlet_engine::security::sign::Credentials;
use gauntlet_engine::security::{AdminKeys, ReadTokens, Role, Security, SecurityConfig};
use gauntlet_engine::{AppState, EngineConfig};
use gauntlet_harness::{
    ClientSecurity, ExtraHeader, HttpOptions, HttpTarget, Target, TargetError, TargetExt, Unsigned,
};

const TOKEN: &str = "read-token-never-to-be-shown-0123456789";
const OPS: [u8; 32] = [7; 32];

/// Writes the CA's PEM to `dir/ca.pem`; serves a keyed engine over TLS with its certificate.
async fn tls_engine(dir: &Path) -> SocketAddr {
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let ca = ca_params.self_signed(&ca_key).unwrap();
    std::fs::write(dir.join("ca.pem"), ca.pem()).unwrap();
    let params = rcgen::CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = params.signed_by(&key, &ca, &ca_key).unwrap();
    let private = rustls::pki_types::PrivateKeyDer::try_from(key.serialize_der()).unwrap();
    let mut server =
        rustls::ServerConfig::builder_with_provider(gauntlet_engine::security::tls::provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![cert.der().clone()], private)
            .unwrap();
    server.alpn_protocols = vec![b"http/1.1".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(server));

    let config = EngineConfig {
        security: SecurityConfig {
            admin_keys: Some("admin.toml".into()),
            read_tokens: Some("tokens.toml".into()),
            ..SecurityConfig::default()
        },
        ..EngineConfig::default()
    };
    let mut keys = AdminKeys::default();
    keys.insert("ops-1".into(), OPS.to_vec(), "olga".into(), Role::Operator)
        .unwrap();
    let mut tokens = ReadTokens::default();
    tokens.insert_token(TOKEN, "gauntlet");
    let security = Security::from_parts(&config.security, None, Some(keys), Some(tokens));
    let state = AppState::with_security(config, security);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(gauntlet_engine::serve_tls(
        listener,
        state,
        acceptor,
        std::future::pending(),
    ));
    addr
}

fn security(dir: &Path, token: &str) -> ClientSecurity {
    ClientSecurity {
        ca_file: Some(dir.join("ca.pem")),
        headers: vec![ExtraHeader::parse(&format!("Authorization: Bearer {token}")).unwrap()],
        admin: vec![
            Credentials::from_secret("ops-1", &OPS)
                .unwrap()
                .with_role(Role::Operator),
        ],
        ..ClientSecurity::default()
    }
}

fn load_body(name: &str) -> serde_json::Value {
    let mut artifact = gauntlet_fixtures::load_embedded()
        .unwrap()
        .into_iter()
        .find(|m| m.name == "ref-linear")
        .unwrap();
    artifact.name = name.to_owned();
    json!({ "parameters": { "artifact": artifact } })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_target_with_a_ca_file_headers_and_signed_admin_calls() {
    let dir = tempfile::tempdir().unwrap();
    let addr = tls_engine(dir.path()).await;
    let url = format!("https://localhost:{}", addr.port());
    let target =
        HttpTarget::connect_with(&url, HttpOptions::default(), security(dir.path(), TOKEN))
            .await
            .unwrap();
    assert!(target.describe().starts_with(&url), "{}", target.describe());
    assert!(!format!("{target:?}").contains(TOKEN));

    // The bearer token goes with every request: /v2 needs it.
    let meta = target.get("/v2").await.unwrap();
    assert_eq!(meta.status, 200, "{}", meta.text());
    assert!(
        target
            .capabilities()
            .contains(&gauntlet_harness::Capability::Repository)
    );

    // An admin call is signed for the operator; marked unsigned, the same call is refused.
    let path = "/v2/repository/models/tls-m/load";
    let loaded = target.post_json(path, &load_body("tls-m")).await.unwrap();
    assert_eq!(loaded.status, 200, "{}", loaded.text());
    let mut unsigned = Request::builder()
        .method(Method::POST)
        .uri(path)
        .header("content-type", "application/json")
        .body(Bytes::from(load_body("tls-n").to_string()))
        .unwrap();
    unsigned.extensions_mut().insert(Unsigned);
    let refused = target.send(unsigned).await.unwrap();
    assert_eq!(refused.status(), 401);

    // The load driver speaks no TLS: an https target offers no plain endpoint.
    let err = target.http_endpoint().await.unwrap_err();
    assert!(matches!(err, TargetError::Unsupported { .. }), "{err}");

    // What the security suite gets: the TLS address and every secret to look for.
    let access = target.security().unwrap();
    assert!(access.tls);
    assert_eq!(access.raw.as_ref().unwrap().addr.port(), addr.port());
    assert!(access.secrets.iter().any(|s| s.ends_with(TOKEN.as_bytes())));
    assert!(access.secrets.iter().any(|s| s.as_slice() == OPS));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_ca_or_token_fails_without_showing_the_token() {
    let dir = tempfile::tempdir().unwrap();
    let addr = tls_engine(dir.path()).await;
    let url = format!("https://localhost:{}", addr.port());

    // Another CA: the handshake fails, reported as unreachable, naming no secret.
    let other = tempfile::tempdir().unwrap();
    let _ = tls_engine(other.path()).await;
    let err = HttpTarget::connect_with(&url, HttpOptions::default(), security(other.path(), TOKEN))
        .await
        .unwrap_err();
    assert!(matches!(err, TargetError::Unreachable { .. }), "{err}");
    let text = err.to_string();
    assert!(
        text.contains("certificate") || text.contains("Certificate"),
        "{text}"
    );
    assert!(!text.contains(TOKEN), "{text}");

    // A wrong token: the health probe is open, the rest is 401.
    let wrong = "wrong-token-also-never-shown-0123456789";
    let target =
        HttpTarget::connect_with(&url, HttpOptions::default(), security(dir.path(), wrong))
            .await
            .unwrap();
    let reply = target.get("/v2").await.unwrap();
    assert_eq!(reply.status, 401);
    assert!(!reply.text().contains(wrong));

    // A CA file is for https only; a plain http:// target with one is a usage error.
    let err = HttpTarget::connect_with(
        &format!("http://127.0.0.1:{}", addr.port()),
        HttpOptions::default(),
        security(dir.path(), TOKEN),
    )
    .await
    .unwrap_err();
    assert!(matches!(err, TargetError::InvalidUrl { .. }), "{err}");
    assert!(!err.to_string().contains(TOKEN));
}
