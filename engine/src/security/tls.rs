//! HTTPS with rustls (ring provider; TLS 1.2 and 1.3 only, no OpenSSL).
//!
//! [`acceptor`] reads a PEM certificate chain and its private key; [`crate::serve_tls`] serves
//! the engine behind it. A client that speaks plain HTTP to the TLS port fails the handshake
//! and is disconnected.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
pub use tokio_rustls::TlsAcceptor;

/// Why the TLS settings were refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// The certificate file could not be read or holds no certificate.
    #[error("failed to read TLS certificate chain `{}`: {message}", path.display())]
    Cert {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// The key file could not be read, is readable by others, or holds no key.
    #[error("failed to read TLS private key `{}`: {message}", path.display())]
    Key {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// rustls refused the pair (a key that does not match the certificate, say).
    #[error("failed to configure TLS: {0}")]
    Config(String),
}

/// The crypto provider every TLS config here uses (no process-wide default is installed).
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A TLS acceptor for the certificate chain and key in PEM files (HTTP/1.1 over ALPN).
///
/// # Errors
/// [`TlsError`] naming the file; a key file that group or others may read is refused.
pub fn acceptor(cert: &Path, key: &Path) -> Result<TlsAcceptor, TlsError> {
    let certs = CertificateDer::pem_file_iter(cert)
        .and_then(|iter| iter.collect::<Result<Vec<_>, _>>())
        .map_err(|e| TlsError::Cert {
            path: cert.to_owned(),
            message: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(TlsError::Cert {
            path: cert.to_owned(),
            message: "no CERTIFICATE block".into(),
        });
    }
    super::keyring::check_private(key).map_err(|e| TlsError::Key {
        path: key.to_owned(),
        message: match e {
            super::keyring::KeyringError::Permissions { mode, .. } => {
                format!("mode {mode:04o} lets group or others read it; run `chmod 600` on it")
            }
            other => other.to_string(),
        },
    })?;
    let private = PrivateKeyDer::from_pem_file(key).map_err(|e| TlsError::Key {
        path: key.to_owned(),
        message: e.to_string(),
    })?;
    let mut config = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Config(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, private)
        .map_err(|e| TlsError::Config(e.to_string()))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}
