//! What the host knows per backend and shares with every instance of a router: requests in
//! flight (behind `host.in-flight`) and the probe gate (behind `host.probe`).
//!
//! Atomics, not a lock: the counts change twice per request on the request path, from
//! every worker thread, and are read from inside policy calls.
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

/// Per-backend counters of one router, indexed like its backends.
#[derive(Debug)]
pub(crate) struct BackendLoads {
    in_flight: Box<[AtomicU32]>,
    probes: ProbeGate,
}

impl BackendLoads {
    /// Counters for `n` backends; probes to one backend at most once per `probe_interval`.
    pub(crate) fn new(n: usize, probe_interval: Duration) -> Self {
        BackendLoads {
            in_flight: (0..n).map(|_| AtomicU32::new(0)).collect(),
            probes: ProbeGate::new(n, probe_interval),
        }
    }

    /// Requests in flight to backend `i` (0 for an index out of range).
    pub(crate) fn in_flight(&self, i: usize) -> u32 {
        self.in_flight
            .get(i)
            .map_or(0, |n| n.load(Ordering::Relaxed))
    }

    /// A request to `i` was routed.
    #[inline]
    pub(crate) fn start(&self, i: usize) {
        if let Some(n) = self.in_flight.get(i) {
            n.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// A request to `i` ended. Only called with a [`Ticket`](crate::Ticket), which only
    /// `start` hands out, so the count never goes below zero; saturating all the same,
    /// since a wrapped count would read as four billion requests in flight.
    #[inline]
    pub(crate) fn end(&self, i: usize) {
        if let Some(n) = self.in_flight.get(i) {
            let _ = n.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| v.checked_sub(1));
        }
    }

    pub(crate) fn probes(&self) -> &ProbeGate {
        &self.probes
    }

    /// A detached copy: today's in-flight counts and probe interval, with a gate of its
    /// own that accepts probes nobody sends (a rehearsal must look like live traffic, and
    /// cannot probe).
    pub(crate) fn copy(&self) -> Self {
        let copy = BackendLoads {
            in_flight: self
                .in_flight
                .iter()
                .map(|n| AtomicU32::new(n.load(Ordering::Relaxed)))
                .collect(),
            probes: ProbeGate::new(
                self.in_flight.len(),
                Duration::from_nanos(self.probes.interval_ns),
            ),
        };
        copy.probes.enable();
        copy
    }
}

/// Whether a policy may probe a backend now: a prober is attached, no probe to that
/// backend is unanswered, and the last one was sent at least `interval` ago. This bounds
/// what a policy can make the host send: at most one probe in flight and `1 / interval`
/// per second per backend, whatever the policy asks.
#[derive(Debug)]
pub(crate) struct ProbeGate {
    enabled: AtomicBool,
    interval_ns: u64,
    pending: Box<[AtomicBool]>,
    /// When each backend was last probed, `NEVER` before the first.
    last_ns: Box<[AtomicU64]>,
}

const NEVER: u64 = u64::MAX;

impl ProbeGate {
    fn new(n: usize, interval: Duration) -> Self {
        ProbeGate {
            enabled: AtomicBool::new(false),
            interval_ns: u64::try_from(interval.as_nanos()).unwrap_or(u64::MAX),
            pending: (0..n).map(|_| AtomicBool::new(false)).collect(),
            last_ns: (0..n).map(|_| AtomicU64::new(NEVER)).collect(),
        }
    }

    /// Probes can be sent from now on (a [`Prober`](crate::Prober) is attached).
    pub(crate) fn enable(&self) {
        self.enabled.store(true, Ordering::Relaxed);
    }

    /// Takes the right to probe backend `i` at `now_ns`, if the rules allow it.
    pub(crate) fn try_acquire(&self, i: usize, now_ns: u64) -> bool {
        let (Some(pending), Some(last)) = (self.pending.get(i), self.last_ns.get(i)) else {
            return false;
        };
        if !self.enabled.load(Ordering::Relaxed) {
            return false;
        }
        let prev = last.load(Ordering::Relaxed);
        if prev != NEVER && now_ns.saturating_sub(prev) < self.interval_ns {
            return false;
        }
        if pending
            .compare_exchange(false, true, Ordering::AcqRel, Ordering::Relaxed)
            .is_err()
        {
            return false;
        }
        last.store(now_ns, Ordering::Relaxed);
        true
    }

    /// The probe to `i` was answered or given up: the next one may go.
    pub(crate) fn release(&self, i: usize) {
        if let Some(p) = self.pending.get(i) {
            p.store(false, Ordering::Release);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;

    #[test]
    fn in_flight_counts_never_go_below_zero() {
        let l = BackendLoads::new(2, Duration::ZERO);
        l.start(1);
        l.start(1);
        l.end(1);
        assert_eq!((l.in_flight(0), l.in_flight(1)), (0, 1));
        l.end(0);
        assert_eq!(l.in_flight(0), 0, "saturates");
        l.start(7);
        assert_eq!(l.in_flight(7), 0, "out of range: ignored");
    }

    #[test]
    fn probes_wait_for_a_prober_the_answer_and_the_interval() {
        let g = ProbeGate::new(2, Duration::from_millis(10));
        assert!(!g.try_acquire(0, 0), "no prober yet");
        g.enable();
        assert!(g.try_acquire(0, 0));
        assert!(!g.try_acquire(0, 20 * MS), "the first is unanswered");
        assert!(g.try_acquire(1, 0), "backends are independent");
        g.release(0);
        assert!(
            !g.try_acquire(0, 10 * MS - 1),
            "one nanosecond short of the interval"
        );
        assert!(g.try_acquire(0, 10 * MS), "exactly the interval later");
        assert!(!g.try_acquire(2, 0), "out of range");
    }
}
