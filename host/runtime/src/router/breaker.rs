//! Faults: the circuit breaker, and replacement of a faulted instance.
//!
//! A faulted instance is dropped at once (its state may be half-updated) and replaced by
//! a fresh one, warm-started from the replay ring. A policy that keeps faulting would be
//! rebuilt forever, so `breaker_faults` faults within `breaker_window` disable it
//! instead: the host routes round-robin until a new policy file loads.
use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::MutexGuard;
use std::time::Duration;

use super::swap::Warmth;
use super::{Rebuild, Router, RouterState};
use crate::instance::Fault;

/// The times (`now_ns`) of a policy generation's recent faults, oldest first.
#[derive(Debug, Default)]
pub(super) struct FaultWindow {
    times: VecDeque<u64>,
}

impl FaultWindow {
    /// Records a fault at `now_ns` and forgets those more than `window` older; returns
    /// how many faults are left within the window, this one included.
    pub(super) fn record(&mut self, now_ns: u64, window: Duration) -> usize {
        let window_ns = window.as_nanos() as u64;
        self.times.push_back(now_ns);
        while self
            .times
            .front()
            .is_some_and(|&t| now_ns.saturating_sub(t) > window_ns)
        {
            self.times.pop_front();
        }
        self.times.len()
    }
}

// === impl Router ===

impl Router {
    /// Drops the faulted instance, then either trips the breaker or replaces it.
    pub(super) fn on_fault(
        &self,
        mut st: MutexGuard<'_, RouterState>,
        fault: Fault,
        call: &str,
        now_ns: u64,
    ) {
        let opts = &self.inner.options;
        self.inner.counters.count_fault(fault.kind);
        let active = &mut st.active;
        active.instance = None;
        let recent = active.faults.record(now_ns, opts.breaker_window);
        tracing::warn!(
            "policy {} faulted in {call} ({}): {}; request routed round-robin by the host",
            active.name,
            fault.kind.as_str(),
            fault.detail
        );
        if recent >= opts.breaker_faults {
            active.disabled = true;
            self.inner
                .counters
                .breaker_trips
                .fetch_add(1, Ordering::Relaxed);
            tracing::error!(
                "POLICY DISABLED: {} faulted {recent} times within {:?}; the host routes round-robin until a new policy file loads",
                active.name,
                opts.breaker_window
            );
            return;
        }
        let generation = active.generation;
        drop(st);
        match opts.rebuild {
            Rebuild::Inline => self.rebuild(generation, now_ns),
            Rebuild::Background => {
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
    /// unless a swap happened meanwhile. If the replacement cannot be built or faults
    /// while catching up, the policy is disabled as if the breaker had tripped.
    fn rebuild(&self, generation: u64, now_ns: u64) {
        let Some(component) = self.inner.lock().active.component.clone() else {
            return;
        };
        let built = self
            .warm_instance(&component, now_ns, Warmth::Live)
            .and_then(|mut warm| self.catch_up(&mut warm, &component).map(|()| warm));
        let mut st = self.inner.lock();
        if st.active.generation != generation || st.active.disabled {
            return;
        }
        match built {
            Ok(warm) => {
                if warm.cut {
                    self.inner
                        .counters
                        .replays_cut
                        .fetch_add(1, Ordering::Relaxed);
                }
                st.active.instance = Some(warm.instance);
                self.inner.counters.rebuilds.fetch_add(1, Ordering::Relaxed);
                return;
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::router::RouterOptions;

    const S: u64 = 1_000_000_000;

    /// The breaker's default settings: 5 faults within 10 s.
    fn defaults() -> (usize, Duration) {
        let o = RouterOptions::default();
        assert_eq!(
            (o.breaker_faults, o.breaker_window),
            (5, Duration::from_secs(10))
        );
        (o.breaker_faults, o.breaker_window)
    }

    #[test]
    fn five_faults_within_ten_seconds_trip() {
        let (trip, window) = defaults();
        let mut w = FaultWindow::default();
        let counts: Vec<usize> = (0..5).map(|i| w.record(i * 2 * S, window)).collect();
        assert_eq!(counts, [1, 2, 3, 4, 5]);
        assert!(counts[..4].iter().all(|&n| n < trip));
        assert!(counts[4] >= trip);
    }

    #[test]
    fn older_faults_fall_out_of_the_window() {
        let (trip, window) = defaults();
        let mut w = FaultWindow::default();
        // One fault every 3 s: the window never holds more than four, so it never trips.
        let counts: Vec<usize> = (0..8).map(|i| w.record(i * 3 * S, window)).collect();
        assert_eq!(counts, [1, 2, 3, 4, 4, 4, 4, 4]);
        assert!(counts.iter().all(|&n| n < trip));
    }

    #[test]
    fn a_fault_exactly_one_window_old_still_counts() {
        let (_, window) = defaults();
        let mut w = FaultWindow::default();
        w.record(0, window);
        assert_eq!(w.record(10 * S, window), 2);
        assert_eq!(w.record(10 * S + 1, window), 2);
    }

    #[test]
    fn a_burst_after_a_quiet_spell_starts_afresh() {
        let (_, window) = defaults();
        let mut w = FaultWindow::default();
        for i in 0..4 {
            w.record(i * S, window);
        }
        assert_eq!(w.record(60 * S, window), 1);
    }
}
