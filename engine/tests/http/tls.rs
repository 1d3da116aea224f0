//! HTTPS with a test CA made at test time (rcgen), over real loopback TLS.

use std::net::SocketAddr;
use std::sync::Arc;

use gauntlet_engine::security::tls::{acceptor, provider};
use gauntlet_engine::{AppState, EngineConfig, serve_tls};
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};

use super::security::{parse_answer, request_bytes, set_mode};

struct Pki {
    ca: CertificateDer<'static>,
    cert_pem: String,
    key_pem: String,
}

fn pki() -> Pki {
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "gauntlet test CA");
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let params =
        rcgen::CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
            .unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = params.signed_by(&key, &ca, &ca_key).unwrap();
    Pki {
        ca: ca.der().clone(),
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    }
}

/// Writes the PEM files (key mode 0600) and serves the engine over TLS.
async fn tls_engine(pki: &Pki, dir: &std::path::Path) -> SocketAddr {
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&cert, &pki.cert_pem).unwrap();
    std::fs::write(&key, &pki.key_pem).unwrap();
    set_mode(&key, 0o600);
    let acceptor = acceptor(&cert, &key).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(serve_tls(
        listener,
        AppState::new(EngineConfig::default()),
        acceptor,
        std::future::pending(),
    ));
    addr
}

fn client(
    ca: &CertificateDer<'static>,
    versions: &[&'static rustls::SupportedProtocolVersion],
) -> tokio_rustls::TlsConnector {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.clone()).unwrap();
    let config = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(versions)
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    tokio_rustls::TlsConnector::from(Arc::new(config))
}

async fn https_get(
    connector: &tokio_rustls::TlsConnector,
    addr: SocketAddr,
    host: &str,
    path: &str,
) -> super::security::Answer {
    let tcp = TcpStream::connect(addr).await.unwrap();
    let name = ServerName::try_from(host.to_owned()).unwrap();
    let mut tls = connector.connect(name, tcp).await.unwrap();
    tls.write_all(&request_bytes("GET", path, &[], b""))
        .await
        .unwrap();
    let mut raw = Vec::new();
    // A peer that closes without close_notify is an error after the data: keep what came.
    let _ = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        tls.read_to_end(&mut raw),
    )
    .await;
    parse_answer(&raw)
}

#[tokio::test]
async fn serves_https_with_tls_1_3_and_1_2_under_a_test_ca() {
    let dir = tempfile::tempdir().unwrap();
    let pki = pki();
    let addr = tls_engine(&pki, dir.path()).await;
    let v13 = client(&pki.ca, &[&rustls::version::TLS13]);
    let a = https_get(&v13, addr, "localhost", "/v2").await;
    assert_eq!(a.status, 200, "{}", a.text);
    assert_eq!(a.json()["name"], "gauntlet-engine");
    let v12 = client(&pki.ca, &[&rustls::version::TLS12]);
    assert_eq!(
        https_get(&v12, addr, "127.0.0.1", "/v2/health/live")
            .await
            .status,
        200
    );
}

#[tokio::test]
async fn plain_http_and_old_tls_get_no_http_answer() {
    let dir = tempfile::tempdir().unwrap();
    let pki = pki();
    let addr = tls_engine(&pki, dir.path()).await;

    let mut tcp = TcpStream::connect(addr).await.unwrap();
    tcp.write_all(b"GET /v2 HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut raw = Vec::new();
    let _ = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        tcp.read_to_end(&mut raw),
    )
    .await;
    assert!(
        !raw.starts_with(b"HTTP/"),
        "plain HTTP was answered: {raw:?}"
    );

    // A TLS 1.0 ClientHello offering only TLS_RSA_WITH_AES_128_CBC_SHA: the answer is an
    // alert record (0x15), never a ServerHello (0x16).
    let mut hello = vec![0x03, 0x01];
    hello.extend_from_slice(&[7u8; 32]);
    hello.extend_from_slice(&[0x00, 0x00, 0x02, 0x00, 0x2f, 0x01, 0x00]);
    let mut handshake = vec![0x01, 0x00, 0x00, u8::try_from(hello.len()).unwrap()];
    handshake.extend_from_slice(&hello);
    let mut record = vec![
        0x16,
        0x03,
        0x01,
        0x00,
        u8::try_from(handshake.len()).unwrap(),
    ];
    record.extend_from_slice(&handshake);
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    tcp.write_all(&record).await.unwrap();
    let mut raw = Vec::new();
    let _ = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        tcp.read_to_end(&mut raw),
    )
    .await;
    assert_eq!(
        raw.first(),
        Some(&0x15),
        "expected a TLS alert, got {raw:?}"
    );
}

#[test]
fn a_key_file_readable_by_others_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let pki = pki();
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&cert, &pki.cert_pem).unwrap();
    std::fs::write(&key, &pki.key_pem).unwrap();
    set_mode(&key, 0o644);
    let err = acceptor(&cert, &key).err().unwrap().to_string();
    assert!(
        err.contains("key.pem") && err.contains("mode 0644"),
        "{err}"
    );
    assert!(!err.contains("PRIVATE KEY"), "{err}");
    set_mode(&key, 0o600);
    std::fs::write(&cert, "not a certificate").unwrap();
    let err = acceptor(&cert, &key).err().unwrap().to_string();
    assert!(err.contains("no CERTIFICATE block"), "{err}");
}
