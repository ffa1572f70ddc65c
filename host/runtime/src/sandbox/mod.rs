//! The sandbox a policy runs in: which WASI it gets, its CPU deadline and memory cap.
//!
//! Policies are built for `wasm32-wasip2`, so Rust's std makes them import some WASI even
//! when they never touch it. The host links only what cannot leak or block:
//! - `wasi:clocks`: frozen at zero ([`clocks`]). Time reaches a policy as `now-ns` in each
//!   call, so the simulator can run it in virtual time.
//! - `wasi:random`: a deterministic stream from the policy's seed ([`random`]; std's
//!   `HashMap` needs it), at most `Limits::random_bytes_per_call` bytes per import call.
//! - `wasi:cli` stdout/stderr: line-buffered into the host's log with the policy's name,
//!   within the byte caps of [`crate::stderr`]; stdin is empty, the environment and
//!   arguments are empty, `exit` traps.
//! - `wasi:filesystem/preopens`: an empty list, so `std::fs` fails with an error instead
//!   of trapping.
//! - `wasi:filesystem/types`: wasmtime-wasi's sync bindings, which would block on a Tokio
//!   worker like its `wasi:io` (below), but are unreachable: every operation needs a
//!   descriptor, and without a preopened directory a policy can never obtain one. The
//!   `open-file` fixture (`policies/fixtures/open-file`) guards this.
//! - `wasi:io`: streams and pollables implemented synchronously here, never blocking
//!   ([`wasi_io`]). (wasmtime-wasi's own sync versions call `Handle::block_on`, which
//!   panics on a Tokio worker thread, i.e. on the proxy's request path.)
//!
//! Besides WASI, a 0.2 policy imports the contract's own `host` interface ([`host`]):
//! requests in flight per backend, and probes through the router's gate.
//!
//! Any other WASI a policy imports (the `wasi:sockets` and `wasi:http` that Python's and
//! JavaScript's runtimes import whether used or not) is linked to functions that fault
//! when called, naming the interface; an import that is not WASI at all is refused at
//! load, by name ([`imports`], which also builds the linker). Each call runs under a CPU deadline
//! ([`deadline`]) and a memory cap ([`memory`]), both kept in the store's [`StoreState`].
mod clocks;
mod deadline;
mod host;
mod imports;
mod memory;
mod random;
mod wasi_io;

use wasmtime::component::ResourceTable;
use wasmtime::{Engine, ResourceLimiter};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use std::sync::Arc;

use crate::loads::BackendLoads;
use crate::stderr::LogStream;
use crate::types::Limits;
use clocks::FrozenClock;
use deadline::Deadline;
use memory::MemoryCap;

pub(crate) use deadline::{start_epoch_ticker, ticks};
pub(crate) use imports::{deny_the_rest, linker, unknown_import};

/// Per-store data: the WASI context, the resource table, the memory limiter and the
/// state of the CPU deadline.
pub(crate) struct StoreState {
    wasi: WasiCtx,
    table: ResourceTable,
    limiter: MemoryCap,
    deadline: Deadline,
    /// The policy's stdout/stderr, to reset its per-call allowance.
    log: LogStream,
    /// The most one `wasi:random` call may ask for.
    random_cap: u64,
    /// Why a host import refused a call (a sandbox bound), for the fault's kind and detail.
    limit_hit: Option<String>,
    /// The router's per-backend counters, read by `host.in-flight`.
    loads: Arc<BackendLoads>,
    /// The `now-ns` of the call in progress, for the probe gate's rate limit.
    now_ns: u64,
    /// Whether the policy named a probe path (so `host.probe` may accept).
    may_probe: bool,
    /// Backends whose probe `host.probe` accepted during this call, for the router to send.
    probes: Vec<u32>,
}

impl StoreState {
    /// The sandbox of one instance: its log lines are prefixed with `label`, its random
    /// stream comes from `seed`, and `limits` bound each call.
    pub(crate) fn new(label: &str, seed: u64, limits: Limits, loads: Arc<BackendLoads>) -> Self {
        let log = LogStream::new(label, limits.log_bytes_per_call, limits.log_bytes_per_sec);
        let wasi = WasiCtx::builder()
            .stdout(log.clone())
            .stderr(log.clone())
            .wall_clock(FrozenClock)
            .monotonic_clock(FrozenClock)
            .secure_random(random::stream(seed))
            .insecure_random(random::stream(seed))
            .insecure_random_seed(random::seed(seed))
            .allow_blocking_current_thread(false)
            .build();
        StoreState {
            wasi,
            table: ResourceTable::new(),
            limiter: MemoryCap::new(limits.memory_bytes),
            deadline: Deadline::new(limits.deadline),
            log,
            random_cap: limits.random_bytes_per_call as u64,
            limit_hit: None,
            loads,
            now_ns: 0,
            may_probe: false,
            probes: Vec::new(),
        }
    }

    /// Sets the time of the call about to start (the probe gate's clock).
    pub(crate) fn set_now(&mut self, now_ns: u64) {
        self.now_ns = now_ns;
    }

    /// Lets `host.probe` accept (the policy named a probe path).
    pub(crate) fn allow_probes(&mut self) {
        self.may_probe = true;
    }

    /// Makes `host.probe` refuse.
    pub(crate) fn forbid_probes(&mut self) {
        self.may_probe = false;
    }

    /// The probes accepted since the last call to this; each must be sent or released.
    pub(crate) fn take_probes(&mut self) -> Vec<u32> {
        std::mem::take(&mut self.probes)
    }

    /// Starts a new call's deadline and output allowance; returns the ticks until its
    /// first check.
    pub(crate) fn arm_deadline(&mut self) -> u64 {
        self.log.start_call();
        self.deadline.arm()
    }

    /// Ends a call: what it cost in CPU time (policy and host work), and whether that was
    /// over its deadline.
    pub(crate) fn finish_call(&mut self) -> (std::time::Duration, bool) {
        self.deadline.finish()
    }

    /// The sandbox bound a host import refused since the last call of this, if any.
    pub(crate) fn take_limit_hit(&mut self) -> Option<String> {
        if self.log.take_violation() {
            return Some(format!(
                "a write to stdout/stderr over the {} bytes check-write permits",
                crate::stderr::WRITE_MAX
            ));
        }
        self.limit_hit.take()
    }

    /// Starts the deadline of instantiation and `configure`, which get more room for
    /// one-time work; returns the ticks until its first check.
    pub(crate) fn arm_setup_deadline(&mut self) -> u64 {
        self.deadline.arm_setup()
    }

    /// For `Store::epoch_deadline_callback`.
    pub(crate) fn on_deadline(&mut self) -> wasmtime::UpdateDeadline {
        self.deadline.on_expiry()
    }

    /// The random context with its per-call cap, for the linker.
    fn random(&mut self) -> random::Capped<'_> {
        random::Capped {
            ctx: self.wasi.random(),
            cap: self.random_cap,
            hit: &mut self.limit_hit,
        }
    }

    /// For `Store::limiter`.
    pub(crate) fn limiter(&mut self) -> &mut dyn ResourceLimiter {
        &mut self.limiter
    }

    /// Whether a memory grow was refused since the last call to `take_memory_hit`.
    pub(crate) fn take_memory_hit(&mut self) -> bool {
        self.limiter.take_hit()
    }
}

impl WasiView for StoreState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

/// Builds the engine: epoch interruption for the CPU deadline, and no component-model
/// concurrency (it roughly triples the cost of each call; see wasmtime#12836).
pub(crate) fn engine() -> wasmtime::Result<Engine> {
    let mut config = wasmtime::Config::new();
    config.epoch_interruption(true);
    config.concurrency_support(false);
    Engine::new(&config)
}
