//! What a simulation produces: one record per request, the result, and its statistics.
use std::sync::Arc;
use std::time::Duration;

use switchyard_runtime::{Backend, FaultKind, Outcome, Scores};

use super::engine::Run;
use super::model::Exchange;
use switchyard_report::{Record, RunStats};

// === impl SimRecord, SimResult ===

/// One simulated request, from the client's send to its answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SimRecord {
    pub conn: u32,
    /// Index into [`SimResult::backends`].
    pub backend: u32,
    /// Index into [`SimResult::modes`]: who routed it.
    pub mode: u32,
    /// What the client got (502 for a refused or broken connection, 504 for a timeout).
    pub status: u16,
    pub outcome: Outcome,
    /// Set when the policy faulted on this very request (the host routed it).
    pub fault: Option<FaultKind>,
    /// The client sent it.
    pub sent_ns: u64,
    /// The proxy asked the policy and forwarded it (`sent_ns` + overhead).
    pub dispatched_ns: u64,
    /// The client had the answer.
    pub done_ns: u64,
}

impl SimRecord {
    /// As the client saw it (includes the proxy overhead).
    pub fn latency_ns(&self) -> u64 {
        self.done_ns - self.sent_ns
    }

    /// How the exchange with the backend ended, as the model decided it.
    pub fn exchange(&self) -> Exchange {
        Exchange {
            end_ns: self.done_ns,
            status: self.status,
            outcome: self.outcome,
        }
    }
}

/// Everything a simulation produced.
#[derive(Debug, Clone)]
pub struct SimResult {
    /// The policy's name from `configure` (e.g. "adaptive_ewma").
    pub policy: String,
    /// The configuration label in the tables: the policy name and any policy arguments.
    pub label: String,
    pub backends: Vec<Backend>,
    /// Every request, warm-up included, in completion order (the order a proxy logs them).
    pub requests: Vec<SimRecord>,
    /// Routing modes seen, indexed by [`SimRecord::mode`].
    pub modes: Vec<Arc<str>>,
    /// Statistics of the requests sent after the warm-up.
    pub stats: RunStats,
    pub warmup_ns: u64,
    /// When the last request finished.
    pub end_ns: u64,
    /// The policy's scores at the end, when it keeps any.
    pub scores: Option<Scores>,
    pub faults: u64,
    pub fallback_routed: u64,
    /// Wall-clock time of the event loop; the only field that varies between runs.
    pub wall: Duration,
}

impl SimResult {
    /// The requests the statistics and the CSV cover (sent after the warm-up).
    pub fn measured(&self) -> impl Iterator<Item = &SimRecord> {
        measured(&self.requests, self.warmup_ns)
    }

    pub fn mode(&self, r: &SimRecord) -> &str {
        mode(&self.modes, r)
    }

    pub fn backend_id(&self, r: &SimRecord) -> &str {
        backend_id(&self.backends, r)
    }

    /// Simulated requests per second of wall-clock time.
    pub fn sim_rate(&self) -> f64 {
        self.requests.len() as f64 / self.wall.as_secs_f64().max(1e-9)
    }
}

/// The latency the report and the CSV use: whole microseconds, so that `analyze` reading the
/// CSV (3 decimals of ms) computes exactly the numbers the simulator printed.
pub(crate) fn latency_ms(r: &SimRecord) -> f64 {
    (r.latency_ns() / 1_000) as f64 / 1_000.0
}

// === the result: label and statistics ===

/// The configuration label in the tables: the policy's name and any policy arguments.
pub(super) fn label(policy_name: &str, policy_args: &[(String, String)]) -> String {
    if policy_args.is_empty() {
        return policy_name.to_string();
    }
    let args: Vec<String> = policy_args
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    format!("{policy_name} ({})", args.join(", "))
}

/// The statistics of the requests sent after the warm-up, over the measured span.
pub(super) fn run_stats(
    label: &str,
    backends: &[Backend],
    run: &Run,
    warmup_ns: u64,
    measured_s: f64,
) -> RunStats {
    let records: Vec<Record> = measured(&run.requests, warmup_ns)
        .map(|r| Record {
            t_ms: r.done_ns as f64 / 1e6,
            backend: backend_id(backends, r).to_string(),
            latency_ms: latency_ms(r),
            status: r.status,
            routing_mode: mode(&run.modes, r).to_string(),
        })
        .collect();
    let ids: Vec<String> = backends.iter().map(|b| b.id.clone()).collect();
    RunStats::compute(label, &records, &ids, Some(measured_s))
}

pub(super) fn measured(requests: &[SimRecord], warmup_ns: u64) -> impl Iterator<Item = &SimRecord> {
    requests.iter().filter(move |r| r.sent_ns >= warmup_ns)
}

pub(super) fn mode<'a>(modes: &'a [Arc<str>], r: &SimRecord) -> &'a str {
    modes.get(r.mode as usize).map_or("", |m| m)
}

pub(super) fn backend_id<'a>(backends: &'a [Backend], r: &SimRecord) -> &'a str {
    backends.get(r.backend as usize).map_or("", |b| &b.id)
}
