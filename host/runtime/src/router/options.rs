//! How the router is configured.
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

#[derive(Debug, Clone)]
pub struct RouterOptions {
    pub limits: Limits,
    /// Recent observations kept to warm-start a new or replacement instance (0: cold start).
    pub replay: usize,
    pub rebuild: Rebuild,
    /// This many faults within `breaker_window` disable the policy until the next swap.
    pub breaker_faults: usize,
    pub breaker_window: Duration,
    pub seed: u64,
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
        }
    }
}
