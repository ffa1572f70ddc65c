//! The sandbox a policy runs in: which WASI it gets, its CPU deadline and memory cap.
//!
//! Policies are built for `wasm32-wasip2`, so Rust's std makes them import some WASI even
//! when they never touch it. The host links only what cannot leak or block:
//! - `wasi:clocks`: frozen at zero. Time reaches a policy as `now-ns` in each call, so
//!   the simulator can run it in virtual time.
//! - `wasi:random`: a deterministic stream from the policy's seed (std's `HashMap` needs it).
//! - `wasi:cli` stdout/stderr: line-buffered into the host's log with the policy's name;
//!   stdin is empty, the environment and arguments are empty, `exit` traps.
//! - `wasi:filesystem/preopens`: an empty list, so `std::fs` fails with an error instead
//!   of trapping.
//! - `wasi:io`: streams and pollables implemented synchronously here, never blocking.
//!   (wasmtime-wasi's own sync versions call `Handle::block_on`, which panics on a Tokio
//!   worker thread, i.e. on the proxy's request path.)
//!
//! - `wasi:filesystem/types`: linked, but unreachable without a preopened directory.
//!
//! A policy importing anything else (sockets, HTTP, ...) is refused at load, by name.
mod clocks;
mod deadline;
mod imports;
mod memory;
mod wasi_io;

use std::time::Duration;

use wasmtime::component::ResourceTable;
use wasmtime::{Engine, ResourceLimiter};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use crate::stderr::LogStream;
use clocks::FrozenClock;
use deadline::Deadline;
use memory::MemoryCap;

pub(crate) use deadline::start_epoch_ticker;
pub(crate) use imports::{forbidden_import, linker};

/// Per-store data: the WASI context, the resource table, the memory limiter and the
/// state of the CPU deadline.
pub(crate) struct StoreState {
    wasi: WasiCtx,
    table: ResourceTable,
    limiter: MemoryCap,
    deadline: Deadline,
}

impl StoreState {
    pub(crate) fn new(label: &str, seed: u64, memory_bytes: usize) -> Self {
        let log = LogStream::new(label);
        let mut random = Vec::with_capacity(256);
        let mut x = seed;
        for _ in 0..32 {
            x = splitmix(x);
            random.extend_from_slice(&x.to_le_bytes());
        }
        let wasi = WasiCtx::builder()
            .stdout(log.clone())
            .stderr(log)
            .wall_clock(FrozenClock)
            .monotonic_clock(FrozenClock)
            .secure_random(wasmtime_wasi::Deterministic::new(random.clone()))
            .insecure_random(wasmtime_wasi::Deterministic::new(random))
            .insecure_random_seed(u128::from(splitmix(seed ^ 0x5EED)))
            .allow_blocking_current_thread(false)
            .build();
        StoreState {
            wasi,
            table: ResourceTable::new(),
            limiter: MemoryCap {
                max_bytes: memory_bytes,
                hit: false,
            },
            deadline: Deadline {
                window_ticks: 1,
                window: Duration::ZERO,
                cpu_mark: None,
                windows: 0,
            },
        }
    }

    /// Sets the deadline's window (half the per-call deadline, in ticks of `tick`).
    pub(crate) fn set_deadline_window(&mut self, window_ticks: u64, tick: Duration) {
        self.deadline.window_ticks = window_ticks;
        self.deadline.window = tick * window_ticks as u32;
    }

    /// Starts a new call's deadline; returns the ticks until its first check.
    pub(crate) fn arm_deadline(&mut self) -> u64 {
        self.deadline.cpu_mark = None;
        self.deadline.windows = 0;
        self.deadline.window_ticks
    }

    /// For `Store::epoch_deadline_callback`.
    pub(crate) fn on_deadline(&mut self) -> wasmtime::UpdateDeadline {
        self.deadline.on_expiry()
    }

    pub(crate) fn limiter(&mut self) -> &mut dyn ResourceLimiter {
        &mut self.limiter
    }

    /// Whether a memory grow was refused since the last call to `take_memory_hit`.
    pub(crate) fn take_memory_hit(&mut self) -> bool {
        std::mem::take(&mut self.limiter.hit)
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

fn splitmix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Builds the engine: epoch interruption for the CPU deadline, and no component-model
/// concurrency (it roughly triples the cost of each call; see wasmtime#12836).
pub(crate) fn engine() -> wasmtime::Result<Engine> {
    let mut config = wasmtime::Config::new();
    config.epoch_interruption(true);
    config.concurrency_support(false);
    Engine::new(&config)
}
