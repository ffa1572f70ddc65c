//! Probes in virtual time: the policy's `host.probe` requests, as events.
//!
//! The router hands accepted probes to [`SimProber`] after a policy call; the event loop
//! drains it right after each call and schedules each probe's arrival at the backend (half
//! the round trip later, where its load is measured, as `backend/`'s `/probe` does: no
//! work, no cycle step, no capacity slot) and its answer (the full round trip). A backend
//! that is down refuses the connection after the scenario's `connect_error`.
use std::sync::{Arc, Mutex, PoisonError};

use switchyard_runtime::{Outcome, Probe, ProbeResult, Prober};

use super::model::BackendModel;

/// Collects the probes the router sends, for the event loop to schedule.
#[derive(Default)]
pub(crate) struct SimProber {
    asked: Mutex<Vec<Probe>>,
}

impl Prober for SimProber {
    fn send(&self, probe: Probe) {
        self.asked
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(probe);
    }
}

impl SimProber {
    pub(crate) fn new() -> Arc<Self> {
        Arc::new(SimProber::default())
    }

    /// The probes sent since the last call, in the order the policy asked.
    pub(crate) fn take(&self) -> Vec<Probe> {
        std::mem::take(&mut *self.asked.lock().unwrap_or_else(PoisonError::into_inner))
    }
}

/// The answer a probe arriving at `model` at `now_ns` gets, sent at `asked_ns`; `None`
/// while the backend is down (the answer is then a refused connection).
pub(crate) fn arrive(
    model: &mut BackendModel<'_>,
    probe: &Probe,
    now_ns: u64,
    rtt_ns: u64,
) -> Option<ProbeResult> {
    let load = model.load_at(now_ns)?;
    let done = probe.asked_ns.saturating_add(rtt_ns);
    Some(ProbeResult {
        now_ns: done,
        latency_ns: rtt_ns,
        status: 200,
        outcome: Outcome::Response,
        headers: wanted(probe.headers.as_deref(), &load.headers()),
    })
}

/// A refused probe, answered at `done_ns`.
pub(crate) fn refused(probe: &Probe, done_ns: u64) -> ProbeResult {
    ProbeResult {
        now_ns: done_ns,
        latency_ns: done_ns.saturating_sub(probe.asked_ns),
        status: 0,
        outcome: Outcome::ConnectError,
        headers: Vec::new(),
    }
}

/// The headers of `all` that the policy named in `wanted`.
pub(crate) fn wanted(
    wanted: Option<&[String]>,
    all: &[(&'static str, String)],
) -> Vec<(String, String)> {
    let Some(wanted) = wanted else {
        return Vec::new();
    };
    all.iter()
        .filter(|(name, _)| wanted.iter().any(|w| w == name))
        .map(|(name, value)| (name.to_string(), value.clone()))
        .collect()
}
