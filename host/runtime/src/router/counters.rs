//! The router's counters: monotonic, read without locking by the console and the admin API.
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use crate::types::FaultKind;

/// Monotonic counters; read them any time without locking.
#[derive(Debug, Default)]
pub struct Counters {
    pub choose_calls: AtomicU64,
    pub observe_calls: AtomicU64,
    pub fallback_routed: AtomicU64,
    pub faults: [AtomicU64; 4],
    pub swaps: AtomicU64,
    pub failed_swaps: AtomicU64,
    pub rebuilds: AtomicU64,
    pub breaker_trips: AtomicU64,
    /// Nanoseconds spent in the timed `choose` + `observe` calls: one call in
    /// `TIMING_SAMPLE` is timed, since reading the clock twice per call would cost a
    /// third of the call itself.
    pub call_ns: AtomicU64,
    /// How many calls `call_ns` covers.
    pub timed_calls: AtomicU64,
}

/// One policy call in this many is timed for `Counters::call_ns`.
pub const TIMING_SAMPLE: u64 = 16;

impl Counters {
    pub fn fault_count(&self, kind: FaultKind) -> u64 {
        self.faults[kind.index()].load(Ordering::Relaxed)
    }

    pub(super) fn record_timing(&self, started: Option<Instant>) {
        if let Some(started) = started {
            self.call_ns
                .fetch_add(started.elapsed().as_nanos() as u64, Ordering::Relaxed);
            self.timed_calls.fetch_add(1, Ordering::Relaxed);
        }
    }
}
