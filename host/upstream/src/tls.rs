//! TLS to `https://` backends: the backend's certificate is verified against the system's
//! roots or a CA file, with the URL's host as SNI and as the name checked.
//!
//! Why this shape: the handshake is one step between connecting and starting HTTP/1.1, so
//! a TLS connection is an ordinary pooled or one-shot connection afterwards (hyper's
//! `SendRequest` does not carry the socket's type), and a plaintext backend pays one
//! `Option` check per new connection and nothing per request. A failed handshake (unknown
//! issuer, wrong name, a backend that does not speak TLS) is a connect error: the backend
//! could not be reached as configured, so the request is answered 502 and the policy
//! penalises the backend as for a refused connection.
//!
//! HTTP/1.1 only (ALPN `http/1.1`): h2c is cleartext by definition, and the host refuses
//! `--upstream-protocol h2c` with https backends.
use std::fmt;
use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, RootCertStore};
use thiserror::Error;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

/// Where trusted roots come from.
#[derive(Debug, Clone, Copy)]
pub enum Roots<'a> {
    /// The operating system's store (rustls-native-certs).
    System,
    /// The CA certificates in a PEM file, and no others.
    File(&'a Path),
}

/// Why the backends' TLS settings could not be built. The host names the flag.
#[derive(Debug, Error)]
pub enum TlsSetupError {
    #[error("cannot read {path}: {reason}")]
    Read { path: String, reason: String },
    #[error("{path} holds no PEM certificate")]
    NoCertificate { path: String },
    #[error("{path}: no certificate in it is a usable CA: {reason}")]
    Unusable { path: String, reason: String },
    #[error("no system root certificates could be loaded ({0})")]
    NoSystemRoots(String),
    #[error("`{0}` is not a valid TLS server name")]
    ServerName(String),
    #[error("TLS settings: {0}")]
    Rustls(#[from] rustls::Error),
}

/// The client settings every https backend shares: roots, TLS 1.2 and 1.3, ALPN
/// `http/1.1`, the ring provider.
pub fn client_config(roots: Roots<'_>) -> Result<Arc<ClientConfig>, TlsSetupError> {
    let mut store = RootCertStore::empty();
    match roots {
        Roots::File(path) => {
            let shown = path.display().to_string();
            let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
                .map_err(|e| TlsSetupError::Read {
                    path: shown.clone(),
                    reason: e.to_string(),
                })?
                .collect::<Result<_, _>>()
                .map_err(|e| TlsSetupError::Read {
                    path: shown.clone(),
                    reason: e.to_string(),
                })?;
            if certs.is_empty() {
                return Err(TlsSetupError::NoCertificate { path: shown });
            }
            for cert in certs {
                store.add(cert).map_err(|e| TlsSetupError::Unusable {
                    path: shown.clone(),
                    reason: e.to_string(),
                })?;
            }
        }
        Roots::System => {
            let found = rustls_native_certs::load_native_certs();
            let (added, _ignored) = store.add_parsable_certificates(found.certs);
            if added == 0 {
                let why = found
                    .errors
                    .first()
                    .map(|e| e.to_string())
                    .unwrap_or_else(|| "the store is empty".into());
                return Err(TlsSetupError::NoSystemRoots(why));
            }
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
        .with_root_certificates(store)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// How to reach one https backend: the shared settings and the name to ask for and check.
#[derive(Clone)]
pub struct BackendTls {
    config: Arc<ClientConfig>,
    server_name: ServerName<'static>,
}

impl BackendTls {
    /// `host` as in the URL: a DNS name or an IP address (IPv6 with or without brackets).
    pub fn new(config: Arc<ClientConfig>, host: &str) -> Result<BackendTls, TlsSetupError> {
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        let server_name = ServerName::try_from(bare.to_string())
            .map_err(|_| TlsSetupError::ServerName(host.to_string()))?;
        Ok(BackendTls {
            config,
            server_name,
        })
    }

    /// The TLS handshake on a connected socket.
    pub(crate) async fn connect<T>(&self, io: T) -> std::io::Result<TlsStream<T>>
    where
        T: AsyncRead + AsyncWrite + Unpin,
    {
        TlsConnector::from(self.config.clone())
            .connect(self.server_name.clone(), io)
            .await
    }
}

impl fmt::Debug for BackendTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BackendTls")
            .field("server_name", &self.server_name)
            .finish_non_exhaustive()
    }
}

impl PartialEq for BackendTls {
    /// The same name under the same settings (settings are compared by identity).
    fn eq(&self, other: &Self) -> bool {
        self.server_name == other.server_name && Arc::ptr_eq(&self.config, &other.config)
    }
}

impl Eq for BackendTls {}
