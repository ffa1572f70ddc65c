//! The router's counters: monotonic atomics that the console, the admin API and the
//! simulator read at any time without taking the routing lock.
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::types::FaultKind;

/// Monotonic counters; read them any time without locking.
#[derive(Debug, Default)]
pub struct Counters {
    /// Calls of the policy's `choose` (not counting requests routed by the host).
    pub choose_calls: AtomicU64,
    /// Calls of the policy's `observe`.
    pub observe_calls: AtomicU64,
    /// Requests the host routed round-robin because no policy instance could.
    pub fallback_routed: AtomicU64,
    /// Faults by kind, indexed by position in [`FaultKind::ALL`]; see
    /// [`Counters::fault_count`].
    pub faults: [AtomicU64; FaultKind::ALL.len()],
    /// Successful swaps to a new policy.
    pub swaps: AtomicU64,
    /// Reloads that switched nothing: the file did not load, or the new policy failed its
    /// rehearsal or warm start (the running policy stayed).
    pub failed_swaps: AtomicU64,
    /// Faulted instances replaced by a fresh one.
    pub rebuilds: AtomicU64,
    /// Times the breaker disabled the policy.
    pub breaker_trips: AtomicU64,
    /// Faults of the display twin's calls (`scores` for consoles and dashboards): they
    /// never touch the routing instance nor count toward the breaker.
    pub display_faults: AtomicU64,
    /// Warm starts (swaps, rebuilds, display twins) whose replay stopped at its time
    /// budget before the end of the ring.
    pub replays_cut: AtomicU64,
    /// Probes the policy asked for that the host sent.
    pub probes_sent: AtomicU64,
    /// Probe answers delivered back (a probe may also time out: that is an answer too).
    pub probes_answered: AtomicU64,
    /// Nanoseconds spent in the timed `choose` + `observe` calls, as the sandbox's
    /// deadline measured them (`PolicyInstance::last_cost`): one call in `TIMING_SAMPLE`
    /// is added, which keeps these shared atomics off most calls.
    pub call_ns: AtomicU64,
    /// How many calls `call_ns` covers.
    pub timed_calls: AtomicU64,
}

/// One policy call in this many is timed for `Counters::call_ns`.
pub const TIMING_SAMPLE: u64 = 16;

impl Counters {
    /// Faults of `kind` so far.
    pub fn fault_count(&self, kind: FaultKind) -> u64 {
        self.faults[kind.index()].load(Ordering::Relaxed)
    }

    /// Counts a fault of `kind`.
    pub(super) fn count_fault(&self, kind: FaultKind) {
        // `index()` is below `ALL.len()` for every kind (a test in `types` pins it).
        self.faults[kind.index()].fetch_add(1, Ordering::Relaxed);
    }

    /// Counts one policy call in `calls`, and adds its `cost` to `call_ns` if it is one
    /// in `TIMING_SAMPLE`.
    #[inline]
    pub(super) fn counted(&self, calls: &AtomicU64, cost: Duration) {
        if calls
            .fetch_add(1, Ordering::Relaxed)
            .is_multiple_of(TIMING_SAMPLE)
        {
            self.call_ns
                .fetch_add(cost.as_nanos() as u64, Ordering::Relaxed);
            self.timed_calls.fetch_add(1, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_call_in_timing_sample_is_timed() {
        let c = Counters::default();
        for _ in 0..2 * TIMING_SAMPLE + 1 {
            c.counted(&c.choose_calls, Duration::from_nanos(10));
        }
        assert_eq!(
            c.choose_calls.load(Ordering::Relaxed),
            2 * TIMING_SAMPLE + 1
        );
        // Calls 0, 16 and 32.
        assert_eq!(c.timed_calls.load(Ordering::Relaxed), 3);
        assert_eq!(c.call_ns.load(Ordering::Relaxed), 30);
    }

    #[test]
    fn faults_are_counted_by_kind() {
        let c = Counters::default();
        c.count_fault(FaultKind::Memory);
        c.count_fault(FaultKind::Memory);
        c.count_fault(FaultKind::BadIndex);
        let counts = FaultKind::ALL.map(|k| c.fault_count(k));
        assert_eq!(counts, [0, 0, 2, 1, 0, 0]);
    }
}
