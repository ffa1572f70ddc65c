//! TLS termination on the client listener (`--tls-cert` / `--tls-key`).
//!
//! Why it is built this way:
//!
//! - **rustls with the ring provider**: no OpenSSL to link, no cmake (aws-lc-rs needs it
//!   and builds slowly); TLS 1.3 and 1.2, the protocols nginx and HAProxy enable by default.
//! - **Certificates by SNI, first pair as default**: each pair serves the names its
//!   certificate's SAN lists (checked by webpki, as rustls checks them on the client side);
//!   a client that sends no SNI or a name no certificate has gets the first pair, as nginx's
//!   default server does, rather than a failed handshake. With one pair nothing is parsed per
//!   handshake.
//! - **Reload by polling**: every [`POLL`] the files' modification times and sizes are
//!   compared with what was loaded; on a change every pair is read again and, if all of them
//!   load and match their keys, swapped in at once. Open connections keep the keys they
//!   were set up with (rustls holds them per connection), so nothing is dropped; only new
//!   handshakes see the new certificates. A file that does not load leaves the previous
//!   certificates in place with a warning, and is tried again when it changes again (an
//!   editor writing the certificate before its key first fails, then succeeds). Polling
//!   rather than `notify`: certificates are replaced by renaming (certbot, Kubernetes
//!   secrets via symlink swaps), which inotify watches on the file miss, and a stat of a
//!   few files per second costs nothing.
//! - **A handshake deadline** (`--tls-handshake-timeout`): a client that connects and sends
//!   nothing, or stalls mid-handshake, would otherwise hold a connection slot forever;
//!   hyper's header timer only starts once HTTP does.
//! - **ALPN `h2` and `http/1.1`**: the connection is then served by hyper's HTTP/2 or
//!   HTTP/1.1 server according to what was negotiated (`proxy::conn`).
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock, Weak};
use std::time::{Duration, SystemTime};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::ServerConfig;
use thiserror::Error;
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

/// How often the certificate files are checked for changes.
pub const POLL: Duration = Duration::from_secs(1);

/// One `--tls-cert` with its `--tls-key`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertPair {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// TLS on the listener, as configured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenerTls {
    /// The first is the default for clients whose SNI matches none.
    pub pairs: Vec<CertPair>,
    /// From accepting the connection to the end of the TLS handshake.
    pub handshake_timeout: Duration,
}

/// Why a certificate pair could not be loaded; each names the flag and the file.
#[derive(Debug, Error)]
pub enum TlsError {
    #[error("--tls-cert {path}: {reason}")]
    Cert { path: String, reason: String },
    #[error("--tls-key {path}: {reason}")]
    Key { path: String, reason: String },
    #[error("--tls-key {key} does not match --tls-cert {cert}: {reason}; give each certificate its own key, in the same order")]
    Mismatch {
        cert: String,
        key: String,
        reason: String,
    },
    #[error("TLS settings: {0}")]
    Rustls(#[from] rustls::Error),
}

/// Reads and checks one pair: a certificate chain (leaf first) and the key that matches it.
fn load_pair(pair: &CertPair) -> Result<Arc<CertifiedKey>, TlsError> {
    let cert_err = |reason: String| TlsError::Cert {
        path: pair.cert.display().to_string(),
        reason,
    };
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&pair.cert)
        .map_err(|e| cert_err(pem_reason(&e)))?
        .collect::<Result<_, _>>()
        .map_err(|e| cert_err(pem_reason(&e)))?;
    if chain.is_empty() {
        return Err(cert_err(
            "holds no PEM certificate (-----BEGIN CERTIFICATE-----): give the certificate chain"
                .into(),
        ));
    }
    let key = PrivateKeyDer::from_pem_file(&pair.key).map_err(|e| TlsError::Key {
        path: pair.key.display().to_string(),
        reason: pem_reason(&e),
    })?;
    let provider = rustls::crypto::ring::default_provider();
    let signing = provider
        .key_provider
        .load_private_key(key)
        .map_err(|e| TlsError::Key {
            path: pair.key.display().to_string(),
            reason: format!("not a usable private key ({e})"),
        })?;
    let certified = CertifiedKey::new(chain, signing);
    certified.keys_match().map_err(|e| TlsError::Mismatch {
        cert: pair.cert.display().to_string(),
        key: pair.key.display().to_string(),
        reason: e.to_string(),
    })?;
    Ok(Arc::new(certified))
}

/// A PEM error in words, with a hint for the usual mistakes.
fn pem_reason(e: &rustls::pki_types::pem::Error) -> String {
    match e {
        rustls::pki_types::pem::Error::NoItemsFound => {
            "holds no PEM item of the expected kind (a certificate for --tls-cert, a private key for --tls-key)".into()
        }
        other => other.to_string(),
    }
}

fn load_all(pairs: &[CertPair]) -> Result<Vec<Arc<CertifiedKey>>, TlsError> {
    pairs.iter().map(load_pair).collect()
}

/// The certificates in use, swapped whole on reload.
#[derive(Debug)]
struct Resolver(RwLock<Arc<[Arc<CertifiedKey>]>>);

impl Resolver {
    fn current(&self) -> Arc<[Arc<CertifiedKey>]> {
        // Poisoning needs a panic while holding the lock; nothing here panics.
        self.0.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn replace(&self, certs: Vec<Arc<CertifiedKey>>) {
        *self.0.write().unwrap_or_else(|e| e.into_inner()) = certs.into();
    }
}

impl ResolvesServerCert for Resolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let certs = self.current();
        let default = certs.first()?;
        if certs.len() == 1 {
            return Some(default.clone());
        }
        let Some(name) = hello
            .server_name()
            .and_then(|n| ServerName::try_from(n.to_string()).ok())
        else {
            return Some(default.clone());
        };
        let chosen = certs.iter().find(|c| {
            c.end_entity_cert().is_ok_and(|der| {
                webpki::EndEntityCert::try_from(der)
                    .is_ok_and(|ee| ee.verify_is_valid_for_subject_name(&name).is_ok())
            })
        });
        Some(chosen.unwrap_or(default).clone())
    }
}

/// What the files looked like when they were last read: modification time and size.
type Stamp = Vec<Option<(SystemTime, u64)>>;

fn stamp(pairs: &[CertPair]) -> Stamp {
    let of = |p: &Path| {
        std::fs::metadata(p)
            .ok()
            .map(|m| (m.modified().unwrap_or(SystemTime::UNIX_EPOCH), m.len()))
    };
    pairs
        .iter()
        .flat_map(|p| [of(&p.cert), of(&p.key)])
        .collect()
}

/// The listener's TLS side: accepts handshakes with the current certificates.
pub struct Terminator {
    acceptor: TlsAcceptor,
    handshake_timeout: Duration,
}

/// A finished handshake: the stream, and whether the client chose HTTP/2.
pub struct Accepted {
    pub stream: TlsStream<TcpStream>,
    pub h2: bool,
}

impl Terminator {
    /// Loads every pair (all must load and match), and starts watching the files. Call
    /// within a Tokio runtime; the watch ends when the terminator is dropped.
    pub fn start(config: &ListenerTls) -> Result<Arc<Terminator>, TlsError> {
        let stamp_now = stamp(&config.pairs);
        let resolver = Arc::new(Resolver(RwLock::new(load_all(&config.pairs)?.into())));
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut server = ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
            .with_no_client_auth()
            .with_cert_resolver(resolver.clone());
        server.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        let terminator = Arc::new(Terminator {
            acceptor: TlsAcceptor::from(Arc::new(server)),
            handshake_timeout: config.handshake_timeout,
        });
        tokio::spawn(watch(
            Arc::downgrade(&terminator),
            resolver,
            config.pairs.clone(),
            stamp_now,
        ));
        Ok(terminator)
    }

    /// The handshake, within the handshake timeout; `None` if it failed or took too long
    /// (the connection is then closed: there is no HTTP to answer on).
    pub async fn accept(&self, tcp: TcpStream, client: std::net::SocketAddr) -> Option<Accepted> {
        match tokio::time::timeout(self.handshake_timeout, self.acceptor.accept(tcp)).await {
            Ok(Ok(stream)) => {
                let h2 = stream.get_ref().1.alpn_protocol() == Some(b"h2");
                Some(Accepted { stream, h2 })
            }
            Ok(Err(e)) => {
                tracing::debug!("TLS handshake with {client} failed: {e}");
                None
            }
            Err(_) => {
                tracing::debug!(
                    "TLS handshake with {client} not done within {:?} (--tls-handshake-timeout): closed",
                    self.handshake_timeout
                );
                None
            }
        }
    }
}

/// Polls the files while the terminator lives; reloads on any change.
async fn watch(
    owner: Weak<Terminator>,
    resolver: Arc<Resolver>,
    pairs: Vec<CertPair>,
    mut seen: Stamp,
) {
    let mut tick = tokio::time::interval(POLL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if owner.strong_count() == 0 {
            return;
        }
        // A few stats, and on a change a few small reads: short enough for a worker thread.
        let now = stamp(&pairs);
        if now == seen {
            continue;
        }
        seen = now;
        match load_all(&pairs) {
            Ok(certs) => {
                resolver.replace(certs);
                tracing::info!("TLS certificates reloaded; new handshakes use them");
            }
            Err(e) => {
                tracing::warn!("TLS certificates not reloaded, keeping the previous ones: {e}")
            }
        }
    }
}
