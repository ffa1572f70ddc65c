//! How a router is configured: the sandbox limits, the warm-start replay, the breaker and
//! how a faulted instance is replaced.
use std::time::Duration;

use crate::types::Limits;

/// How a faulted instance is replaced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rebuild {
    /// On a background thread, while the host routes round-robin (the proxy).
    Background,
    /// Before the call that faulted returns (the simulator, which must be deterministic).
    Inline,
}

/// A router's configuration; [`RouterOptions::default`] is what the proxy uses unless told
/// otherwise.
#[derive(Debug, Clone)]
pub struct RouterOptions {
    /// The sandbox limits of every instance (CPU deadline per call, memory cap).
    pub limits: Limits,
    /// Recent observations kept to warm-start a new or replacement instance (0: cold start).
    pub replay: usize,
    /// Wall time a warm start may spend replaying (swaps, rebuilds, and the rehearsal
    /// each): what is left of the ring when it runs out is not replayed. Off the request
    /// path; it bounds how long a slow `observe` can delay a swap.
    pub replay_budget: Duration,
    /// Wall time one display call ([`Router::scores`](crate::Router::scores)) may spend
    /// catching the display twin up; the rest is skipped.
    pub display_budget: Duration,
    /// How a faulted instance is replaced.
    pub rebuild: Rebuild,
    /// This many faults within `breaker_window` disable the policy until the next swap.
    pub breaker_faults: usize,
    /// See `breaker_faults`.
    pub breaker_window: Duration,
    /// Passed to the policy in `configure`, and the seed of its `wasi:random` stream.
    pub seed: u64,
    /// The shortest time between two probes of one backend (`--probe-interval`); with at
    /// most one probe in flight per backend, this bounds what a policy can make the host
    /// send.
    pub probe_interval: Duration,
}

impl Default for RouterOptions {
    fn default() -> Self {
        RouterOptions {
            limits: Limits::default(),
            replay: 4096,
            replay_budget: Duration::from_millis(250),
            display_budget: Duration::from_millis(20),
            rebuild: Rebuild::Background,
            breaker_faults: 5,
            breaker_window: Duration::from_secs(10),
            seed: 0x5eed,
            probe_interval: Duration::from_millis(10),
        }
    }
}
