//! Simulated upstreams for Switchyard: the load-balancing study's three
//! backends (fixed latency cycles advanced once per request), plus echo and
//! bulk-data routes for exercising the proxy's streaming paths.
//!
//! Routes: `POST|PUT /echo` streams the body back, `GET /bytes/N` sends N
//! pattern bytes (see [`pattern_byte`]), `GET /health` answers `ok`,
//! `GET /version` names the HTTP version the request came in on, and
//! `GET /stall/MS` sends `first`, pauses MS ms, then sends `rest`; these
//! bypass the cycle and the capacity limit. Anything else is a profile
//! request: it takes the next step's latency and answers
//! `Hello from A - simulated 10ms` with `x-backend-id` and
//! `x-simulated-latency-ms` headers (or a 500 for a simulated failure).
//!
//! Load reporting: with [`BackendConfig::report_load`] (`--report-load`),
//! every profile response also carries
//! `endpoint-load-metrics: TEXT application_utilization:U,rps_fractional:R,named_metrics.rif:N`
//! (ORCA's text form; U = requests in service / capacity with 3 decimals,
//! omitted without a capacity limit; R = profile requests completed in the
//! last second; N = profile requests in flight, queued or in service),
//! `x-prequal-rif: N` and `x-prequal-latency-us` (median receipt-to-response
//! time of the last 16 completed profile requests, 0 before any). A profile
//! response reports the load its request leaves behind: not itself in flight,
//! but itself among the completions. `GET /probe` answers 200 at once with the
//! same headers, flag or not, and does no work: it takes no cycle step, no
//! capacity permit, no error roll, and is never counted in the load.

mod load;
mod profile;
mod server;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub use profile::{parse_latencies, BackendConfig, ConfigError, MAX_LATENCY_MS, STUDY_IDS};
pub use server::{pattern_byte, SHUTDOWN_GRACE};

use profile::Profile;
use server::Shared;

/// Serves `cfg` on an already-bound listener until `shutdown` resolves.
///
/// Takes the listener rather than an address so callers can report bind
/// failures (and the real port) themselves. Returns `InvalidInput` for an
/// invalid config; otherwise it only returns after shutdown.
pub async fn serve(
    listener: TcpListener,
    cfg: BackendConfig,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let shared = Arc::new(Shared::new(Profile::compile(&cfg)?, &cfg));
    server::run(listener, shared, shutdown).await;
    Ok(())
}

/// Binds `addr` (port 0 picks a free port) and serves `cfg` on a task of
/// the current tokio runtime.
pub async fn spawn(cfg: BackendConfig, addr: SocketAddr) -> std::io::Result<RunningBackend> {
    let profile = Profile::compile(&cfg)?;
    let listener = TcpListener::bind(addr).await?;
    let addr = listener.local_addr()?;
    let shared = Arc::new(Shared::new(profile, &cfg));
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(server::run(listener, shared.clone(), async {
        // Fires on an explicit stop and when the handle is dropped.
        let _ = stopped.await;
    }));
    Ok(RunningBackend {
        addr,
        id: cfg.id,
        shared,
        stop: Some(stop),
        task: Some(task),
    })
}

/// A backend started by [`spawn`]. Dropping it starts a graceful shutdown.
pub struct RunningBackend {
    pub addr: SocketAddr,
    id: String,
    shared: Arc<Shared>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl RunningBackend {
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Base URL without a trailing slash, e.g. `http://127.0.0.1:40123`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Profile requests received so far (the cycle position); the echo,
    /// bytes, health and probe routes are not counted.
    pub fn requests(&self) -> u64 {
        self.shared.requests.load(Ordering::Relaxed)
    }

    /// TCP connections accepted so far, which tells pooled (persistent)
    /// upstream connections apart from one-connection-per-request.
    pub fn connections(&self) -> u64 {
        self.shared.connections.load(Ordering::Relaxed)
    }

    /// Requests a graceful shutdown without waiting for it; the port may
    /// still accept briefly. Use [`RunningBackend::stop`] when that matters.
    pub fn shutdown(self) {}

    /// Stops accepting, finishes in-flight requests (closing idle keep-alive
    /// connections at once) and returns when every connection is closed.
    pub async fn stop(mut self) {
        self.stop.take();
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }

    /// Simulates a crash: the listener and every connection are dropped,
    /// in-flight requests included, without sending responses.
    pub async fn kill(mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
            let _ = task.await;
        }
    }
}

impl Drop for RunningBackend {
    fn drop(&mut self) {
        self.stop.take();
    }
}

#[cfg(test)]
mod tests;
