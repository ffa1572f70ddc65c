//! The per-call CPU deadline, and the epoch ticker that makes it fire.
use std::time::Duration;

use wasmtime::Engine;

/// The CPU deadline of one call, in windows of epoch ticks.
///
/// Epoch ticks measure wall time, and on a busy machine a thread can lose the CPU for
/// milliseconds in the middle of a healthy call. So a deadline is checked in two halves:
/// when a window of ticks ends, the thread's CPU time is noted; when the next one ends,
/// the call is interrupted only if the thread was actually running for at least half of
/// that window. A policy spinning in a loop is stopped at about the deadline; one that
/// was merely descheduled is not. A hard cap of `MAX_WINDOWS` windows bounds the wall time.
pub(super) struct Deadline {
    pub(super) window_ticks: u64,
    pub(super) window: Duration,
    pub(super) cpu_mark: Option<Duration>,
    pub(super) windows: u32,
}

const MAX_WINDOWS: u32 = 20;

impl Deadline {
    pub(super) fn on_expiry(&mut self) -> wasmtime::UpdateDeadline {
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
