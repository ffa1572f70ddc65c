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
use std::time::Duration;

use wasmtime::component::{HasData, Linker, Resource, ResourceTable};
use wasmtime::{Engine, ResourceLimiter};
use wasmtime_wasi::p2::bindings::sync::io::{poll, streams};
use wasmtime_wasi::p2::{DynPollable, StreamError};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use crate::stderr::LogStream;

/// Per-store data: the WASI context, the resource table, the memory limiter and the
/// state of the CPU deadline.
pub(crate) struct StoreState {
    wasi: WasiCtx,
    table: ResourceTable,
    limiter: MemoryCap,
    deadline: Deadline,
}

/// The CPU deadline of one call, in windows of epoch ticks.
///
/// Epoch ticks measure wall time, and on a busy machine a thread can lose the CPU for
/// milliseconds in the middle of a healthy call. So a deadline is checked in two halves:
/// when a window of ticks ends, the thread's CPU time is noted; when the next one ends,
/// the call is interrupted only if the thread was actually running for at least half of
/// that window. A policy spinning in a loop is stopped at about the deadline; one that
/// was merely descheduled is not. A hard cap of `MAX_WINDOWS` windows bounds the wall time.
struct Deadline {
    window_ticks: u64,
    window: Duration,
    cpu_mark: Option<Duration>,
    windows: u32,
}

const MAX_WINDOWS: u32 = 20;

impl Deadline {
    fn on_expiry(&mut self) -> wasmtime::UpdateDeadline {
        let cpu = thread_cpu_time();
        self.windows += 1;
        let busy = self
            .cpu_mark
            .is_some_and(|mark| cpu.saturating_sub(mark) >= self.window / 2);
        if busy || self.windows >= MAX_WINDOWS {
            return wasmtime::UpdateDeadline::Interrupt;
        }
        self.cpu_mark = Some(cpu);
        wasmtime::UpdateDeadline::Continue(self.window_ticks)
    }
}

/// CPU time this thread has used. Called only when a deadline window ends (rarely).
#[cfg(unix)]
fn thread_cpu_time() -> Duration {
    // rustix's safe wrapper over clock_gettime(CLOCK_THREAD_CPUTIME_ID), a clock every
    // Unix the proxy runs on has; it cannot fail for this clock id.
    let ts = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
    Duration::new(
        ts.tv_sec.max(0) as u64,
        ts.tv_nsec.clamp(0, 999_999_999) as u32,
    )
}

#[cfg(not(unix))]
fn thread_cpu_time() -> Duration {
    // No per-thread CPU clock: treat every window as busy (a plain wall-time deadline).
    Duration::from_secs(u64::MAX / 4)
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

/// Caps linear memory, remembering that it refused a grow so that the trap which follows
/// (Rust aborts on allocation failure) is reported as a memory fault, not a plain trap.
struct MemoryCap {
    max_bytes: usize,
    hit: bool,
}

impl ResourceLimiter for MemoryCap {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let ok = desired <= self.max_bytes;
        self.hit |= !ok;
        Ok(ok)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= 100_000)
    }
}

struct FrozenClock;

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

/// Builds the engine: epoch interruption for the CPU deadline, and no component-model
/// concurrency (it roughly triples the cost of each call; see wasmtime#12836).
pub(crate) fn engine() -> wasmtime::Result<Engine> {
    let mut config = wasmtime::Config::new();
    config.epoch_interruption(true);
    config.concurrency_support(false);
    Engine::new(&config)
}

/// The linker with the WASI subset described at the top of this module.
pub(crate) fn linker(engine: &Engine) -> wasmtime::Result<Linker<StoreState>> {
    use wasmtime_wasi::cli::{WasiCli, WasiCliView};
    use wasmtime_wasi::clocks::{WasiClocks, WasiClocksView};
    use wasmtime_wasi::filesystem::{WasiFilesystem, WasiFilesystemView};
    use wasmtime_wasi::p2::bindings::{cli, clocks, filesystem, random};
    let mut l = Linker::new(engine);
    clocks::wall_clock::add_to_linker::<_, WasiClocks>(&mut l, |t: &mut StoreState| t.clocks())?;
    clocks::monotonic_clock::add_to_linker::<_, WasiClocks>(&mut l, |t: &mut StoreState| {
        t.clocks()
    })?;
    filesystem::preopens::add_to_linker::<_, WasiFilesystem>(&mut l, |t: &mut StoreState| {
        t.filesystem()
    })?;
    // Safe to link for real: every operation needs a descriptor, and with no preopens a
    // policy can never obtain one.
    wasmtime_wasi::p2::bindings::sync::filesystem::types::add_to_linker::<_, WasiFilesystem>(
        &mut l,
        |t: &mut StoreState| t.filesystem(),
    )?;
    random::random::add_to_linker::<_, wasmtime_wasi::random::WasiRandom>(
        &mut l,
        |t: &mut StoreState| t.wasi.random(),
    )?;
    random::insecure::add_to_linker::<_, wasmtime_wasi::random::WasiRandom>(
        &mut l,
        |t: &mut StoreState| t.wasi.random(),
    )?;
    random::insecure_seed::add_to_linker::<_, wasmtime_wasi::random::WasiRandom>(
        &mut l,
        |t: &mut StoreState| t.wasi.random(),
    )?;
    cli::exit::add_to_linker::<_, WasiCli>(&mut l, |t: &mut StoreState| t.cli())?;
    cli::environment::add_to_linker::<_, WasiCli>(&mut l, |t: &mut StoreState| t.cli())?;
    cli::stdin::add_to_linker::<_, WasiCli>(&mut l, |t: &mut StoreState| t.cli())?;
    cli::stdout::add_to_linker::<_, WasiCli>(&mut l, |t: &mut StoreState| t.cli())?;
    cli::stderr::add_to_linker::<_, WasiCli>(&mut l, |t: &mut StoreState| t.cli())?;
    cli::terminal_input::add_to_linker::<_, WasiCli>(&mut l, |t: &mut StoreState| t.cli())?;
    cli::terminal_output::add_to_linker::<_, WasiCli>(&mut l, |t: &mut StoreState| t.cli())?;
    cli::terminal_stdin::add_to_linker::<_, WasiCli>(&mut l, |t: &mut StoreState| t.cli())?;
    cli::terminal_stdout::add_to_linker::<_, WasiCli>(&mut l, |t: &mut StoreState| t.cli())?;
    cli::terminal_stderr::add_to_linker::<_, WasiCli>(&mut l, |t: &mut StoreState| t.cli())?;
    wasmtime_wasi::p2::bindings::io::error::add_to_linker::<_, ErrorIo>(
        &mut l,
        |t: &mut StoreState| &mut t.table,
    )?;
    poll::add_to_linker::<_, SyncIo>(&mut l, |t: &mut StoreState| Table(&mut t.table))?;
    streams::add_to_linker::<_, SyncIo>(&mut l, |t: &mut StoreState| Table(&mut t.table))?;
    Ok(l)
}

struct ErrorIo;

impl HasData for ErrorIo {
    type Data<'a> = &'a mut ResourceTable;
}

/// Interfaces [`linker`] provides (any 0.2.x version). A policy importing any other WASI
/// interface (sockets, HTTP, ...) is refused at load.
const LINKED: &[&str] = &[
    "wasi:clocks/wall-clock",
    "wasi:clocks/monotonic-clock",
    "wasi:filesystem/preopens",
    "wasi:filesystem/types",
    "wasi:random/random",
    "wasi:random/insecure",
    "wasi:random/insecure-seed",
    "wasi:cli/exit",
    "wasi:cli/environment",
    "wasi:cli/stdin",
    "wasi:cli/stdout",
    "wasi:cli/stderr",
    "wasi:cli/terminal-input",
    "wasi:cli/terminal-output",
    "wasi:cli/terminal-stdin",
    "wasi:cli/terminal-stdout",
    "wasi:cli/terminal-stderr",
    "wasi:io/error",
    "wasi:io/poll",
    "wasi:io/streams",
];

/// The first import of `component` that the sandbox does not provide, if any (e.g. a
/// policy that uses `std::net` imports `wasi:sockets/tcp`).
pub(crate) fn forbidden_import(
    component: &wasmtime::component::Component,
    engine: &Engine,
) -> Option<String> {
    let ty = component.component_type();
    let names: Vec<String> = ty
        .imports(engine)
        .map(|(name, _)| name.to_string())
        .collect();
    names.into_iter().find(|name| {
        let unversioned = name.split('@').next().unwrap_or(name);
        !LINKED.contains(&unversioned) && unversioned.starts_with("wasi:")
    })
}

/// `wasi:io` for policies, implemented without ever blocking: the only streams a policy
/// can reach are its log output (always ready) and an empty stdin.
struct SyncIo;

impl HasData for SyncIo {
    type Data<'a> = Table<'a>;
}

/// The resource table, wrapped so that the WASI traits can be implemented for it here.
struct Table<'a>(&'a mut ResourceTable);

impl poll::Host for Table<'_> {
    fn poll(&mut self, pollables: Vec<Resource<DynPollable>>) -> wasmtime::Result<Vec<u32>> {
        // Nothing a policy can wait on ever becomes ready later (clocks are frozen, there
        // is no network), so report everything ready rather than hang.
        Ok((0..pollables.len() as u32).collect())
    }
}

impl poll::HostPollable for Table<'_> {
    fn ready(&mut self, _p: Resource<DynPollable>) -> wasmtime::Result<bool> {
        Ok(true)
    }
    fn block(&mut self, _p: Resource<DynPollable>) -> wasmtime::Result<()> {
        Ok(())
    }
    fn drop(&mut self, p: Resource<DynPollable>) -> wasmtime::Result<()> {
        self.0.delete(p)?;
        Ok(())
    }
}

type OutRes = Resource<wasmtime_wasi::p2::DynOutputStream>;
type InRes = Resource<wasmtime_wasi::p2::DynInputStream>;
type StreamResult<T> = Result<T, StreamError>;

impl streams::Host for Table<'_> {
    fn convert_stream_error(&mut self, err: StreamError) -> wasmtime::Result<streams::StreamError> {
        match err {
            StreamError::Closed => Ok(streams::StreamError::Closed),
            StreamError::LastOperationFailed(e) => {
                Ok(streams::StreamError::LastOperationFailed(self.0.push(e)?))
            }
            StreamError::Trap(e) => Err(e),
        }
    }
}

impl streams::HostOutputStream for Table<'_> {
    fn drop(&mut self, s: OutRes) -> wasmtime::Result<()> {
        self.0.delete(s)?;
        Ok(())
    }
    fn check_write(&mut self, s: OutRes) -> StreamResult<u64> {
        Ok(self.0.get_mut(&s)?.check_write()? as u64)
    }
    fn write(&mut self, s: OutRes, bytes: Vec<u8>) -> StreamResult<()> {
        self.0.get_mut(&s)?.write(bytes.into())
    }
    fn blocking_write_and_flush(&mut self, s: OutRes, bytes: Vec<u8>) -> StreamResult<()> {
        let stream = self.0.get_mut(&s)?;
        stream.write(bytes.into())?;
        stream.flush()
    }
    fn flush(&mut self, s: OutRes) -> StreamResult<()> {
        self.0.get_mut(&s)?.flush()
    }
    fn blocking_flush(&mut self, s: OutRes) -> StreamResult<()> {
        self.0.get_mut(&s)?.flush()
    }
    fn subscribe(&mut self, s: OutRes) -> wasmtime::Result<Resource<DynPollable>> {
        wasmtime_wasi::p2::subscribe(self.0, s)
    }
    fn write_zeroes(&mut self, s: OutRes, len: u64) -> StreamResult<()> {
        let len = usize::try_from(len).unwrap_or(usize::MAX).min(1 << 20);
        self.0.get_mut(&s)?.write(vec![0; len].into())
    }
    fn blocking_write_zeroes_and_flush(&mut self, s: OutRes, len: u64) -> StreamResult<()> {
        let len = usize::try_from(len).unwrap_or(usize::MAX).min(1 << 20);
        let stream = self.0.get_mut(&s)?;
        stream.write(vec![0; len].into())?;
        stream.flush()
    }
    fn splice(&mut self, _dst: OutRes, _src: InRes, _len: u64) -> StreamResult<u64> {
        Ok(0)
    }
    fn blocking_splice(&mut self, _dst: OutRes, _src: InRes, _len: u64) -> StreamResult<u64> {
        Ok(0)
    }
}

impl streams::HostInputStream for Table<'_> {
    fn drop(&mut self, s: InRes) -> wasmtime::Result<()> {
        self.0.delete(s)?;
        Ok(())
    }
    fn read(&mut self, _s: InRes, _len: u64) -> StreamResult<Vec<u8>> {
        Err(StreamError::Closed)
    }
    fn blocking_read(&mut self, _s: InRes, _len: u64) -> StreamResult<Vec<u8>> {
        Err(StreamError::Closed)
    }
    fn skip(&mut self, _s: InRes, _len: u64) -> StreamResult<u64> {
        Err(StreamError::Closed)
    }
    fn blocking_skip(&mut self, _s: InRes, _len: u64) -> StreamResult<u64> {
        Err(StreamError::Closed)
    }
    fn subscribe(&mut self, s: InRes) -> wasmtime::Result<Resource<DynPollable>> {
        wasmtime_wasi::p2::subscribe(self.0, s)
    }
}

/// Starts the thread that advances the engine's epoch every `tick`, which is what makes
/// call deadlines fire. It stops by itself when the engine is dropped.
pub(crate) fn start_epoch_ticker(engine: &Engine, tick: Duration) {
    let weak = engine.weak();
    let _ = std::thread::Builder::new()
        .name("policy-epoch".into())
        .spawn(move || loop {
            std::thread::sleep(tick);
            match weak.upgrade() {
                Some(engine) => engine.increment_epoch(),
                None => break,
            }
        });
}
