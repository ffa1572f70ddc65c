//! Probes: a policy asks through `host.probe` during a call, the gate in
//! [`BackendLoads`](crate::loads::BackendLoads) decides, the router hands accepted probes to
//! the attached [`Prober`] once the call is over (never under the routing lock), and the
//! answer comes back through [`Router::probed`] as a `probed` call.
//!
//! Every accepted probe ends exactly once: answered, or dropped unanswered (the prober
//! gave up, or the probe was asked for by an instance that then faulted), and either way
//! the backend's gate is released so the next probe may go.
use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::{Router, RouterState};
use crate::types::{Probe, ProbeResult, Prober};

/// The way back from a [`Probe`] to its router.
pub(crate) struct ProbeReply {
    router: Router,
    backend: usize,
    answered: bool,
}

impl ProbeReply {
    pub(crate) fn deliver(mut self, backend: usize, result: ProbeResult) {
        self.answered = true;
        self.router.probed(backend, result);
    }
}

impl Drop for ProbeReply {
    fn drop(&mut self) {
        if !self.answered {
            self.router.inner.loads.probes().release(self.backend);
        }
    }
}

// === impl Router ===

impl Router {
    /// Attaches the prober that sends the probes policies ask for; until then (and in a
    /// router that never gets one, as in benchmarks), `host.probe` refuses. Only the first
    /// call takes effect.
    pub fn set_prober(&self, prober: Arc<dyn Prober>) {
        if self.inner.prober.set(prober).is_ok() {
            self.inner.loads.probes().enable();
        }
    }

    /// Delivers a probe's answer to the live instance (a 0.1 policy never asks). A fault
    /// here is handled like any other call's.
    pub(crate) fn probed(&self, backend: usize, result: ProbeResult) {
        self.inner.loads.probes().release(backend);
        let c = &self.inner.counters;
        c.probes_answered.fetch_add(1, Ordering::Relaxed);
        let mut st = self.inner.lock();
        let Some(instance) = st.active.instance.as_mut() else {
            return;
        };
        let now_ns = result.now_ns;
        let outcome = instance.probed(backend, &result);
        let asked = instance.take_probes();
        let cost = instance.last_cost();
        match st.active.budget.charge(outcome, cost) {
            Ok(()) => {
                let probes = self.probes(&st, asked, now_ns);
                drop(st);
                self.send(probes);
            }
            Err(fault) => {
                self.release(asked);
                self.on_fault(st, fault, "probed", now_ns);
            }
        }
    }

    /// The probes `asked` during a live call, ready to send. Empty (and allocation-free)
    /// in the common case of a call that asked for none.
    pub(super) fn probes(&self, st: &RouterState, asked: Vec<u32>, now_ns: u64) -> Vec<Probe> {
        if asked.is_empty() {
            return Vec::new();
        }
        let Some(path) = st
            .active
            .instance
            .as_ref()
            .and_then(|i| i.info().probe_path.clone())
        else {
            self.release(asked);
            return Vec::new();
        };
        asked
            .into_iter()
            .map(|b| Probe {
                backend: b as usize,
                path: path.clone(),
                headers: st.active.response_headers.clone(),
                asked_ns: now_ns,
                reply: ProbeReply {
                    router: self.clone(),
                    backend: b as usize,
                    answered: false,
                },
            })
            .collect()
    }

    /// Hands `probes` to the prober (the gate only accepts once one is attached).
    pub(super) fn send(&self, probes: Vec<Probe>) {
        if probes.is_empty() {
            return;
        }
        let Some(prober) = self.inner.prober.get() else {
            return; // Dropping them releases their gates.
        };
        for probe in probes {
            self.inner
                .counters
                .probes_sent
                .fetch_add(1, Ordering::Relaxed);
            prober.send(probe);
        }
    }

    /// Gives back the gates of probes that will not be sent.
    pub(super) fn release(&self, asked: Vec<u32>) {
        for b in asked {
            self.inner.loads.probes().release(b as usize);
        }
    }
}
