//! What an update carries, as the page reads it (JSON). These are views, not the
//! telemetry's own types: the telemetry stays free of serde, and a view may say things
//! differently for the page (an empty second is `None` for a backend, not a zero mean).
use serde::Serialize;

use crate::admin::state::StateView;
use crate::telemetry::Second;

/// One second of traffic, as the charts use it: [`Second`] for the page.
#[derive(Debug, Clone, Serialize)]
pub(super) struct SecondView {
    pub(super) unix: u64,
    pub(super) requests: u64,
    pub(super) errors: u64,
    pub(super) faults: u64,
    pub(super) reused: u64,
    pub(super) mean_ms: f64,
    pub(super) p95_ms: f64,
    pub(super) p99_ms: f64,
    /// Per backend, in backend order.
    pub(super) backends: Vec<BackendSecondView>,
}

#[derive(Debug, Clone, Serialize)]
pub(super) struct BackendSecondView {
    pub(super) requests: u64,
    pub(super) errors: u64,
    /// `None` when the backend served nothing that second (a gap, not a zero).
    pub(super) mean_ms: Option<f64>,
    pub(super) p95_ms: Option<f64>,
}

impl From<&Second> for SecondView {
    fn from(s: &Second) -> Self {
        SecondView {
            unix: s.unix,
            requests: s.requests,
            errors: s.errors,
            faults: s.faults,
            reused: s.reused,
            mean_ms: s.mean_ms,
            p95_ms: s.p95_ms,
            p99_ms: s.p99_ms,
            backends: s
                .backends
                .iter()
                .map(|b| BackendSecondView {
                    requests: b.requests,
                    errors: b.errors,
                    mean_ms: (b.requests > 0).then_some(b.mean_ms),
                    p95_ms: (b.requests > 0).then_some(b.p95_ms),
                })
                .collect(),
        }
    }
}

/// Something to draw on the latency chart.
#[derive(Debug, Clone, Serialize)]
pub(super) struct Marker {
    pub(super) id: u64,
    /// Unix seconds.
    pub(super) at: f64,
    /// "swap", "failed_swap", "fault" or "disabled".
    pub(super) kind: &'static str,
    pub(super) label: String,
}

/// A recent request with the policy's scores sampled at the tick that first saw it.
#[derive(Debug, Clone, Serialize)]
pub(super) struct Row {
    pub(super) id: u64,
    pub(super) at: f64,
    pub(super) backend: String,
    pub(super) latency_ms: f64,
    pub(super) status: u16,
    pub(super) outcome: &'static str,
    pub(super) routing_mode: String,
    pub(super) scores: Vec<Option<f64>>,
}

/// Upstream connections opened and requests on reused connections, per second, over the
/// interval ending at `at` (from the upstreams' own counters).
#[derive(Debug, Clone, Serialize)]
pub(super) struct ConnSample {
    pub(super) at: f64,
    pub(super) opened: f64,
    pub(super) reused: f64,
}

/// One event-stream message.
#[derive(Debug, Serialize)]
pub(super) struct Update {
    /// "snapshot" (first message on a stream) or "tick".
    pub(super) kind: &'static str,
    pub(super) now: f64,
    pub(super) state: StateView,
    pub(super) seconds: Vec<SecondView>,
    pub(super) markers: Vec<Marker>,
    pub(super) recent: Vec<Row>,
    pub(super) conns: Vec<ConnSample>,
}
