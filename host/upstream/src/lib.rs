//! Connections to backends, managed by the host itself: a keep-alive pool per backend
//! (persistent) or a fresh connection per request with `Connection: close`
//! (non-persistent), over HTTP/1.1 (in clear or over TLS, `tls`) or multiplexed HTTP/2
//! (h2c). Knows nothing of policies;
//! counts every connection it opens so the difference between the modes is measured, not
//! assumed. A request that asks to switch protocols (WebSocket) gets an HTTP/1.1
//! connection of its own, which the proxy then tunnels (`upgrade`).
mod body;
mod h2c;
mod lease;
mod oneshot;
mod pool;
mod probe;
mod tls;
mod upgrade;
mod upload;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use http::header::HeaderValue;
use hyper::client::conn::http1::SendRequest;
use hyper::{Request, Response};
use thiserror::Error;
use tokio::net::TcpStream;

pub use body::{Body, BoxError};
pub use lease::Lease;
pub use probe::{ProbeResponse, PROBE_BODY_LIMIT};
pub use tls::{client_config, BackendTls, Roots, TlsSetupError};
pub use upload::Upload;

/// How upstream connections are used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Keep-alive pool per backend: connections are reused.
    Persistent,
    /// A new TCP connection per request, `Connection: close`, closed after the response.
    NonPersistent,
}

impl Mode {
    /// Every mode, in the order the command line lists them.
    pub const ALL: [Mode; 2] = [Mode::Persistent, Mode::NonPersistent];

    /// The name the command line, the logs and the reports use.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Persistent => "persistent",
            Mode::NonPersistent => "non-persistent",
        }
    }
}

impl std::str::FromStr for Mode {
    type Err = String;
    fn from_str(s: &str) -> Result<Mode, String> {
        Mode::ALL
            .into_iter()
            .find(|m| m.as_str() == s)
            .ok_or_else(|| format!("unknown upstream mode `{s}`: use persistent or non-persistent"))
    }
}

/// The protocol spoken to backends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// HTTP/1.1: one request at a time per connection.
    Http1,
    /// HTTP/2 over cleartext with prior knowledge: requests multiplexed as streams over
    /// a few long-lived connections per backend (persistent mode only).
    H2c,
}

impl Protocol {
    /// Every protocol, in the order the command line lists them.
    pub const ALL: [Protocol; 2] = [Protocol::Http1, Protocol::H2c];

    /// The name the command line and the logs use.
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Http1 => "http1",
            Protocol::H2c => "h2c",
        }
    }
}

impl std::str::FromStr for Protocol {
    type Err = String;
    fn from_str(s: &str) -> Result<Protocol, String> {
        Protocol::ALL
            .into_iter()
            .find(|p| p.as_str() == s)
            .ok_or_else(|| format!("unknown upstream protocol `{s}`: use http1 or h2c"))
    }
}

/// Why an exchange with a backend failed. The proxy maps these to 502/504.
#[derive(Debug, Error)]
pub enum UpstreamError {
    #[error("cannot connect: {0}")]
    Connect(std::io::Error),
    #[error("no response within {0:?}")]
    Timeout(Duration),
    #[error("connection broke: {0}")]
    Broken(BoxError),
    /// The client paused its request body for longer than the upload limit: its fault, not
    /// the backend's.
    #[error("the client sent no request body for {0:?}")]
    UploadStalled(Duration),
}

impl From<hyper::Error> for UpstreamError {
    /// hyper reports every failure after the connection is up: the exchange broke.
    fn from(e: hyper::Error) -> Self {
        UpstreamError::Broken(e.into())
    }
}

/// Per-backend connection counters, readable at any time.
#[derive(Debug, Default)]
pub struct ConnStats {
    pub opened: AtomicU64,
    pub reused: AtomicU64,
    pub failed_connects: AtomicU64,
}

/// One backend's address and connections.
pub struct Upstream {
    pub addr: SocketAddr,
    /// `host:port`, for the Host header when the client sent none.
    pub authority: HeaderValue,
    pub stats: ConnStats,
    /// `Some` for an https backend.
    tls: Option<BackendTls>,
    idle: pool::Idle,
    mux: h2c::Mux,
}

/// All backends, indexed like the router's backend list.
pub struct Upstreams {
    backends: Vec<Arc<Upstream>>,
    mode: Mode,
    protocol: Protocol,
    timeout: Duration,
    upload_timeout: Duration,
    body_timeout: Duration,
}

/// How to reach the backends.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    pub mode: Mode,
    pub protocol: Protocol,
    /// The backend's allowance: to connect, and to answer once it has the whole request
    /// (the clock starts when the request body has been read in full; see `upload`).
    pub timeout: Duration,
    /// Longest pause allowed between two pieces of a client's request body.
    pub upload_timeout: Duration,
    /// Longest pause allowed between two pieces of a response body.
    pub body_timeout: Duration,
    /// HTTP/2 connections per backend (one per worker thread spreads the framing work).
    pub h2_connections: usize,
    /// HTTP/2 PING interval (and answer deadline); None: no PINGs.
    pub h2_keepalive: Option<Duration>,
}

/// Where one backend is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub addr: SocketAddr,
    /// `host:port` as configured, sent as Host when the client sent none.
    pub authority: String,
    /// `Some` for an https backend: TLS before HTTP.
    pub tls: Option<BackendTls>,
}

impl Upstreams {
    /// Connections to `targets`, indexed as given.
    pub fn new(targets: Vec<Target>, options: Options) -> Self {
        let backends = targets
            .into_iter()
            .map(
                |Target {
                     addr,
                     authority,
                     tls,
                 }| {
                    Arc::new(Upstream {
                        addr,
                        tls,
                        authority: HeaderValue::from_str(&authority)
                            .unwrap_or_else(|_| HeaderValue::from_static("localhost")),
                        stats: ConnStats::default(),
                        idle: pool::Idle::default(),
                        mux: h2c::Mux::new(options.h2_connections, options.h2_keepalive),
                    })
                },
            )
            .collect();
        Upstreams {
            backends,
            mode: options.mode,
            protocol: options.protocol,
            timeout: options.timeout,
            upload_timeout: options.upload_timeout,
            body_timeout: options.body_timeout,
        }
    }

    pub fn mode(&self) -> Mode {
        self.mode
    }

    pub fn protocol(&self) -> Protocol {
        self.protocol
    }

    /// Longest pause allowed between two pieces of a response body.
    pub fn body_timeout(&self) -> Duration {
        self.body_timeout
    }

    pub fn get(&self, i: usize) -> Option<&Arc<Upstream>> {
        self.backends.get(i)
    }

    pub fn iter(&self) -> impl Iterator<Item = &Arc<Upstream>> {
        self.backends.iter()
    }

    /// Connections opened and reused so far, over all backends.
    pub fn conn_totals(&self) -> (u64, u64) {
        self.backends.iter().fold((0, 0), |(o, r), u| {
            (
                o + u.stats.opened.load(Ordering::Relaxed),
                r + u.stats.reused.load(Ordering::Relaxed),
            )
        })
    }

    /// Sends `req` to backend `i` and waits for the response head (within the timeout).
    /// The returned lease must be released once the response body has been read in full,
    /// which returns a persistent connection to the pool.
    pub async fn send(
        &self,
        i: usize,
        req: Request<Upload>,
    ) -> Result<(Response<Body>, Lease), UpstreamError> {
        let Some(up) = self.backends.get(i) else {
            return Err(UpstreamError::Connect(std::io::Error::other(format!(
                "no backend {i}"
            ))));
        };
        let req_clock = req.body().clock();
        let exchange = async {
            if upgrade::requested(&req) {
                return upgrade::send(up, req).await;
            }
            match (self.mode, self.protocol) {
                (Mode::Persistent, Protocol::H2c) => h2c::send(up, req).await,
                (Mode::NonPersistent, _) => oneshot::send(up, req).await,
                (Mode::Persistent, Protocol::Http1) => pool::send(up, req).await,
            }
        };
        let Some(clock) = req_clock else {
            // No body to wait for: the backend's clock runs from now.
            return match tokio::time::timeout(self.timeout, exchange).await {
                Ok(result) => result,
                Err(_) => Err(UpstreamError::Timeout(self.timeout)),
            };
        };
        let mut exchange = std::pin::pin!(exchange);
        loop {
            let wake = match upload::verdict(
                clock.turn(),
                std::time::Instant::now(),
                self.timeout,
                self.upload_timeout,
            ) {
                upload::Verdict::WakeAt(at) => at,
                upload::Verdict::BackendTimeout => {
                    return Err(UpstreamError::Timeout(self.timeout))
                }
                upload::Verdict::ClientStalled => {
                    return Err(UpstreamError::UploadStalled(self.upload_timeout))
                }
            };
            tokio::select! {
                result = exchange.as_mut() => return result,
                () = tokio::time::sleep_until(wake.into()) => {}
            }
        }
    }
}

/// Opens a TCP connection to the backend, counting it.
pub(crate) async fn open(up: &Upstream) -> Result<TcpStream, UpstreamError> {
    let stream = match TcpStream::connect(up.addr).await {
        Ok(s) => s,
        Err(e) => {
            up.stats.failed_connects.fetch_add(1, Ordering::Relaxed);
            return Err(UpstreamError::Connect(e));
        }
    };
    let _ = stream.set_nodelay(true);
    up.stats.opened.fetch_add(1, Ordering::Relaxed);
    Ok(stream)
}

/// Opens and handshakes a new HTTP/1.1 connection.
async fn connect(up: &Upstream) -> Result<SendRequest<Upload>, UpstreamError> {
    let tcp = open(up).await?;
    match &up.tls {
        None => handshake(tcp).await,
        Some(tls) => handshake(secure(up, tls, tcp).await?).await,
    }
}

/// The TLS handshake with an https backend; a failure is a connect error (the backend
/// could not be reached as configured), counted as one.
pub(crate) async fn secure<T>(
    up: &Upstream,
    tls: &BackendTls,
    io: T,
) -> Result<tokio_rustls::client::TlsStream<T>, UpstreamError>
where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    tls.connect(io).await.map_err(|e| {
        up.stats.failed_connects.fetch_add(1, Ordering::Relaxed);
        UpstreamError::Connect(std::io::Error::new(
            e.kind(),
            format!("TLS handshake failed: {e}"),
        ))
    })
}

/// Starts HTTP/1.1 on `io`, with the connection driven by its own task.
pub(crate) async fn handshake<T>(io: T) -> Result<SendRequest<Upload>, UpstreamError>
where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(io)).await?;
    tokio::spawn(async move {
        // Ends when the exchange is over (non-persistent), the backend closes, or every
        // sender is dropped; errors were already reported to the request that saw them.
        let _ = conn.await;
    });
    Ok(sender)
}
