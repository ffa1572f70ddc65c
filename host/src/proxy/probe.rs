//! The proxy's [`Prober`]: sends the probes policies ask for (`host.probe`) with
//! [`Upstreams::probe`](switchyard_upstream::Upstreams::probe), as tasks on the Tokio
//! runtime, off the request path. The router's gate has already bounded how many there
//! are (one in flight and one per `--probe-interval` per backend); `--probe-timeout`
//! bounds how long each may take.
use std::sync::Weak;
use std::time::{Duration, Instant};

use switchyard_runtime::{Outcome, Probe, ProbeResult, Prober};
use switchyard_upstream::UpstreamError;

use super::headers::wanted;
use super::ProxyState;

pub struct HttpProber {
    /// Weak: the router holds the prober, and the proxy state holds the router.
    state: Weak<ProxyState>,
    timeout: Duration,
    runtime: tokio::runtime::Handle,
}

impl HttpProber {
    /// Spawns its probes on `runtime` (the proxy's), each given `timeout` in all.
    pub fn new(
        state: Weak<ProxyState>,
        timeout: Duration,
        runtime: tokio::runtime::Handle,
    ) -> Self {
        HttpProber {
            state,
            timeout,
            runtime,
        }
    }
}

impl Prober for HttpProber {
    fn send(&self, probe: Probe) {
        let (state, timeout) = (self.state.clone(), self.timeout);
        self.runtime.spawn(async move {
            // Gone: the proxy is stopping; the dropped probe frees its gate.
            let Some(shared) = state.upgrade() else {
                return;
            };
            let sent = Instant::now();
            let got = shared
                .upstreams
                .probe(probe.backend, &probe.path, timeout)
                .await;
            let latency_ns = sent.elapsed().as_nanos() as u64;
            let now_ns = shared.now_ns();
            drop(shared);
            let result = match got {
                Ok(resp) => ProbeResult {
                    now_ns,
                    latency_ns: resp.latency.as_nanos() as u64,
                    status: resp.status,
                    outcome: Outcome::Response,
                    headers: probe
                        .headers
                        .as_deref()
                        .map(|names| wanted(names, &resp.headers))
                        .unwrap_or_default(),
                },
                Err(e) => ProbeResult {
                    now_ns,
                    latency_ns,
                    status: 0,
                    outcome: match e {
                        UpstreamError::Connect(_) => Outcome::ConnectError,
                        UpstreamError::Timeout(_) => Outcome::Timeout,
                        UpstreamError::Broken(_) => Outcome::Broken,
                        // Probes have no body to upload.
                        UpstreamError::UploadStalled(_) => Outcome::Aborted,
                    },
                    headers: Vec::new(),
                },
            };
            probe.answer(result);
        });
    }
}
