//! The per-call CPU deadline, and the epoch ticker that makes it fire.
//!
//! [`Deadline`] is the one place that converts between durations and epoch ticks: the
//! ticker's period is [`TICK`], and a deadline given as a [`Duration`] becomes windows of
//! whole ticks here, never at a call site.
use std::time::Duration;

use wasmtime::{Engine, UpdateDeadline};

/// The epoch ticker's period; deadlines are whole ticks.
const TICK: Duration = Duration::from_millis(1);

/// Ticks that instantiation and the first call (`configure`) get before their first
/// check, whatever the per-call deadline: they may do one-time work (500 ms).
const SETUP_TICKS: u64 = 500;

/// A hard cap on the windows of one call, which bounds its wall time even when the
/// thread is descheduled for every window.
const MAX_WINDOWS: u32 = 20;

/// The CPU deadline of one call, in windows of epoch ticks.
///
/// Epoch ticks measure wall time, and on a busy machine a thread can lose the CPU for
/// milliseconds in the middle of a healthy call. So a deadline is checked in two halves:
/// when a window of ticks ends, the thread's CPU time is noted; when the next one ends,
/// the call is interrupted only if the thread was actually running for at least half of
/// that window. A policy spinning in a loop is stopped at about the deadline; one that
/// was merely descheduled is not. A hard cap of `MAX_WINDOWS` windows bounds the wall time.
#[derive(Debug)]
pub(super) struct Deadline {
    /// Half the per-call deadline, in whole ticks (at least one).
    window_ticks: u64,
    /// `window_ticks` as a duration, to compare with CPU time.
    window: Duration,
    /// The thread's CPU time when the previous window of this call ended.
    cpu_mark: Option<Duration>,
    /// Windows of this call that have ended.
    windows: u32,
}

impl Deadline {
    /// The deadline for calls that may use `limit` of CPU time: two windows of half of it.
    pub(super) fn new(limit: Duration) -> Self {
        let window_ticks = (limit.as_nanos() / TICK.as_nanos() / 2).max(1) as u64;
        Deadline {
            window_ticks,
            window: TICK * window_ticks as u32,
            cpu_mark: None,
            windows: 0,
        }
    }

    /// Starts a new call's deadline; returns the ticks until its first check.
    pub(super) fn arm(&mut self) -> u64 {
        self.cpu_mark = None;
        self.windows = 0;
        self.window_ticks
    }

    /// Like [`Deadline::arm`], for instantiation and `configure`: the first check comes
    /// after at least `SETUP_TICKS`.
    pub(super) fn arm_setup(&mut self) -> u64 {
        self.arm().max(SETUP_TICKS)
    }

    /// Called by the engine when a window ends: interrupt, or give the call another window.
    pub(super) fn on_expiry(&mut self) -> UpdateDeadline {
        self.check(thread_cpu_time())
    }

    /// [`Deadline::on_expiry`] with the thread's CPU time `cpu` passed in (tests fake it).
    fn check(&mut self, cpu: Duration) -> UpdateDeadline {
        self.windows += 1;
        let busy = self
            .cpu_mark
            .is_some_and(|mark| cpu.saturating_sub(mark) >= self.window / 2);
        if busy || self.windows >= MAX_WINDOWS {
            return UpdateDeadline::Interrupt;
        }
        self.cpu_mark = Some(cpu);
        UpdateDeadline::Continue(self.window_ticks)
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

/// Starts the thread that advances the engine's epoch every [`TICK`], which is what makes
/// call deadlines fire. It stops by itself when the engine is dropped.
pub(crate) fn start_epoch_ticker(engine: &Engine) {
    let weak = engine.weak();
    let _ = std::thread::Builder::new()
        .name("policy-epoch".into())
        .spawn(move || loop {
            std::thread::sleep(TICK);
            match weak.upgrade() {
                Some(engine) => engine.increment_epoch(),
                None => break,
            }
        });
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    fn continues(u: &UpdateDeadline, ticks: u64) -> bool {
        matches!(u, UpdateDeadline::Continue(t) if *t == ticks)
    }

    #[test]
    fn windows_are_half_the_deadline_in_whole_ticks() {
        let d = Deadline::new(5 * MS);
        assert_eq!((d.window_ticks, d.window), (2, 2 * MS));
        let d = Deadline::new(Duration::from_micros(2500));
        assert_eq!((d.window_ticks, d.window), (1, MS));
        // Below two ticks, still one tick per window.
        assert_eq!(Deadline::new(Duration::ZERO).window_ticks, 1);
        assert_eq!(Deadline::new(MS).window_ticks, 1);
    }

    #[test]
    fn setup_gets_more_room_but_not_less_than_a_window() {
        assert_eq!(Deadline::new(5 * MS).arm_setup(), SETUP_TICKS);
        assert_eq!(Deadline::new(5 * MS).arm(), 2);
        let long = Duration::from_secs(2);
        assert_eq!(Deadline::new(long).arm_setup(), 1000);
    }

    #[test]
    fn a_running_call_is_interrupted_at_the_second_window() {
        let mut d = Deadline::new(4 * MS);
        d.arm();
        // The first window only notes the CPU time.
        assert!(continues(&d.check(10 * MS), 2));
        // The thread ran for the whole second window: stop it.
        assert!(matches!(d.check(12 * MS), UpdateDeadline::Interrupt));
    }

    #[test]
    fn half_a_window_of_cpu_is_enough_to_interrupt() {
        let mut d = Deadline::new(4 * MS);
        d.arm();
        assert!(continues(&d.check(10 * MS), 2));
        assert!(matches!(d.check(11 * MS), UpdateDeadline::Interrupt));
    }

    #[test]
    fn a_descheduled_call_gets_more_windows_up_to_the_cap() {
        let mut d = Deadline::new(4 * MS);
        d.arm();
        let mut cpu = 10 * MS;
        for _ in 1..MAX_WINDOWS {
            // Less than half a window of CPU each time: the thread was not running.
            cpu += Duration::from_micros(900);
            assert!(continues(&d.check(cpu), 2));
        }
        assert!(matches!(d.check(cpu), UpdateDeadline::Interrupt));
    }

    #[test]
    fn arming_starts_a_fresh_call() {
        let mut d = Deadline::new(4 * MS);
        d.arm();
        assert!(continues(&d.check(10 * MS), 2));
        // A new call: its first window notes the CPU time again instead of comparing
        // with the previous call's mark.
        assert_eq!(d.arm(), 2);
        assert!(continues(&d.check(50 * MS), 2));
        assert_eq!(d.windows, 1);
    }
}
