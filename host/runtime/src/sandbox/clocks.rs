//! `wasi:clocks` for policies: frozen at zero. Time reaches a policy only as the `now-ns`
//! of each call, so the same policy runs in real time in the proxy and in virtual time in
//! the simulator.
use std::time::Duration;

/// A wall clock and a monotonic clock that always read zero.
pub(super) struct FrozenClock;

impl wasmtime_wasi::HostWallClock for FrozenClock {
    fn resolution(&self) -> Duration {
        Duration::from_nanos(1)
    }
    fn now(&self) -> Duration {
        Duration::ZERO
    }
}

impl wasmtime_wasi::HostMonotonicClock for FrozenClock {
    fn resolution(&self) -> u64 {
        1
    }
    fn now(&self) -> u64 {
        0
    }
}
