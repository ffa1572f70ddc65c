//! Connections to backends, managed by the host itself: a keep-alive pool per backend
//! (persistent) or a fresh connection per request with `Connection: close`
//! (non-persistent). Knows nothing of policies; counts every connection it opens so the
//! difference between the two modes is measured, not assumed.
mod pool;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use http::header::{HeaderValue, CONNECTION};
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use hyper::{Request, Response};
use thiserror::Error;
use tokio::net::TcpStream;

pub use pool::Lease;

/// How upstream connections are used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Mode {
    /// Keep-alive pool per backend: connections are reused.
    Persistent,
    /// A new TCP connection per request, `Connection: close`, closed after the response.
    NonPersistent,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Persistent => "persistent",
            Mode::NonPersistent => "non-persistent",
        }
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
    Broken(hyper::Error),
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
    idle: pool::Idle,
}

/// All backends, indexed like the router's backend list.
pub struct Upstreams {
    backends: Vec<Arc<Upstream>>,
    mode: Mode,
    timeout: Duration,
}

impl Upstreams {
    pub fn new(addrs: Vec<(SocketAddr, String)>, mode: Mode, timeout: Duration) -> Self {
        let backends = addrs
            .into_iter()
            .map(|(addr, authority)| {
                Arc::new(Upstream {
                    addr,
                    authority: HeaderValue::from_str(&authority)
                        .unwrap_or_else(|_| HeaderValue::from_static("localhost")),
                    stats: ConnStats::default(),
                    idle: pool::Idle::default(),
                })
            })
            .collect();
        Upstreams {
            backends,
            mode,
            timeout,
        }
    }

    pub fn mode(&self) -> Mode {
        self.mode
    }

    pub fn get(&self, i: usize) -> Option<&Arc<Upstream>> {
        self.backends.get(i)
    }

    pub fn iter(&self) -> impl Iterator<Item = &Arc<Upstream>> {
        self.backends.iter()
    }

    /// Sends `req` to backend `i` and waits for the response head (within the timeout).
    /// The returned lease must be released once the response body has been read in full,
    /// which returns a persistent connection to the pool.
    pub async fn send(
        &self,
        i: usize,
        mut req: Request<Incoming>,
    ) -> Result<(Response<Incoming>, Lease), UpstreamError> {
        let Some(up) = self.backends.get(i) else {
            return Err(UpstreamError::Connect(std::io::Error::other(format!(
                "no backend {i}"
            ))));
        };
        let exchange = async {
            match self.mode {
                Mode::NonPersistent => {
                    req.headers_mut()
                        .insert(CONNECTION, HeaderValue::from_static("close"));
                    let mut sender = connect(up).await?;
                    let resp = sender
                        .send_request(req)
                        .await
                        .map_err(UpstreamError::Broken)?;
                    // Dropping the sender lets the connection close once the body is read.
                    Ok((resp, Lease::none(false)))
                }
                Mode::Persistent => pool::send(up, req).await,
            }
        };
        match tokio::time::timeout(self.timeout, exchange).await {
            Ok(result) => result,
            Err(_) => Err(UpstreamError::Timeout(self.timeout)),
        }
    }
}

/// Opens and handshakes a new HTTP/1.1 connection, counting it.
async fn connect(up: &Upstream) -> Result<SendRequest<Incoming>, UpstreamError> {
    let stream = match TcpStream::connect(up.addr).await {
        Ok(s) => s,
        Err(e) => {
            up.stats.failed_connects.fetch_add(1, Ordering::Relaxed);
            return Err(UpstreamError::Connect(e));
        }
    };
    let _ = stream.set_nodelay(true);
    up.stats.opened.fetch_add(1, Ordering::Relaxed);
    let (sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .map_err(UpstreamError::Broken)?;
    tokio::spawn(async move {
        // Ends when the backend closes or every sender is dropped; errors were already
        // reported to the request that saw them.
        let _ = conn.await;
    });
    Ok(sender)
}
