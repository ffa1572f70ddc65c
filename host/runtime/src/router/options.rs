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
            rebuild: Rebuild::Background,
            breaker_faults: 5,
            breaker_window: Duration::from_secs(10),
            seed: 0x5eed,
            probe_interval: Duration::from_millis(10),
        }
    }
}
