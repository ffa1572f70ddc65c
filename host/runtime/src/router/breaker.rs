//! Faults: the circuit breaker, and replacement of a faulted instance.
use std::sync::atomic::Ordering;
use std::sync::MutexGuard;

use super::{Rebuild, Router, State};
use crate::instance::Fault;

impl Router {
    /// Drops the faulted instance, then either trips the breaker or replaces it.
    pub(super) fn on_fault(
        &self,
        mut st: MutexGuard<'_, State>,
        fault: Fault,
        call: &str,
        now_ns: u64,
    ) {
        let opts = &self.inner.options;
        self.inner.counters.faults[fault.kind.index()].fetch_add(1, Ordering::Relaxed);
        let active = &mut st.active;
        active.instance = None;
        let window_ns = opts.breaker_window.as_nanos() as u64;
        active.fault_times.push_back(now_ns);
        while active
            .fault_times
            .front()
            .is_some_and(|&t| now_ns.saturating_sub(t) > window_ns)
        {
            active.fault_times.pop_front();
        }
        tracing::warn!(
            "policy {} faulted in {call} ({}): {}; request routed round-robin by the host",
            active.name,
            fault.kind.as_str(),
            fault.detail
        );
        if active.fault_times.len() >= opts.breaker_faults {
            active.disabled = true;
            self.inner
                .counters
                .breaker_trips
                .fetch_add(1, Ordering::Relaxed);
            tracing::error!(
                "POLICY DISABLED: {} faulted {} times within {:?}; the host routes round-robin until a new policy file loads",
                active.name,
                active.fault_times.len(),
                opts.breaker_window
            );
            return;
        }
        let generation = active.generation;
        match opts.rebuild {
            Rebuild::Inline => {
                drop(st);
                self.rebuild(generation, now_ns);
            }
            Rebuild::Background => {
                drop(st);
                let router = self.clone();
                let spawned = std::thread::Builder::new()
                    .name("policy-rebuild".into())
                    .spawn(move || router.rebuild(generation, now_ns));
                if let Err(e) = spawned {
                    tracing::error!("cannot start a thread to replace the policy instance: {e}");
                }
            }
        }
    }

    /// Replaces a faulted instance of generation `generation` with a fresh, warm one,
    /// unless a swap happened meanwhile.
    fn rebuild(&self, generation: u64, now_ns: u64) {
        let Some(component) = self.inner.lock().active.component.clone() else {
            return;
        };
        let built = self.warm_instance(&component, now_ns);
        let mut st = self.inner.lock();
        if st.active.generation != generation || st.active.disabled {
            return;
        }
        match built {
            Ok((mut instance, (_, seen))) => {
                let caught_up = st.since(seen).iter().all(|o| instance.observe(o).is_ok());
                if caught_up {
                    st.active.instance = Some(instance);
                    self.inner.counters.rebuilds.fetch_add(1, Ordering::Relaxed);
                    return;
                }
                st.active.disabled = true;
            }
            Err(e) => {
                st.active.disabled = true;
                tracing::error!("POLICY DISABLED: cannot replace the faulted instance: {e}");
            }
        }
        self.inner
            .counters
            .breaker_trips
            .fetch_add(1, Ordering::Relaxed);
    }
}
