//! The per-call CPU deadline, and the epoch ticker that makes it fire.
//!
//! [`Deadline`] is the one place that converts between durations and epoch ticks: the
//! ticker's period is [`TICK`], and the engine checks a call's deadline once per tick.
//!
//! A deadline is CPU time, host work included, not wall time: on a busy machine a thread
//! can lose the CPU for milliseconds in the middle of a healthy call. Reading the thread's
//! CPU clock costs a system call (about 0.3 us here, more than a whole cheap policy call),
//! so it is read only at the ticks a call lives through, never at the start of a call:
//! - until the first tick, the call is charged its wall time, but at most one tick (it
//!   cannot have run for longer than the wall time, and a call preempted before its first
//!   tick must not be charged the preemption);
//! - from then on, the thread's CPU clock, read at each tick.
//!
//! So the tolerance is one tick either way: a call is interrupted once it has used its
//! deadline, checked every millisecond, so it runs at most `deadline + 1 ms` of CPU; a
//! call that uses less than `deadline - 1 ms` is never interrupted. Both assume the ticker
//! thread runs on time: if it is starved, the first tick comes late and the call is
//! charged only one tick for what it ran before it. A hard cap of
//! `WALL_CAP` times the deadline bounds the wall time of a call whose thread is starved.
//! [`Deadline::finish`] returns what the call cost, for the per-second budget.
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use wasmtime::{Engine, UpdateDeadline};

/// The epoch ticker's period: how often a running call's deadline is checked.
pub(crate) const TICK: Duration = Duration::from_millis(1);

/// What instantiation and the first call (`configure`) may use, whatever the per-call
/// deadline: they may do one-time work.
const SETUP: Duration = Duration::from_millis(500);

/// A call's wall time may reach this many times its deadline before it is interrupted
/// whatever its CPU time (a starved thread must still give the lock back).
const WALL_CAP: u32 = 10;

/// The CPU deadline of one call.
#[derive(Debug)]
pub(super) struct Deadline {
    /// The per-call deadline.
    limit: Duration,
    /// The deadline of the call in progress (`limit`, or `SETUP` for set-up calls).
    this_call: Duration,
    /// When the call in progress started.
    started: Instant,
    /// CPU time charged up to the first tick (its wall time, at most one tick), once
    /// that tick has come.
    before_first_tick: Option<Duration>,
    /// The thread's CPU clock at the call's first tick.
    cpu_mark: Duration,
}

impl Deadline {
    /// The deadline for calls that may use `limit` of CPU time.
    pub(super) fn new(limit: Duration) -> Self {
        Deadline {
            limit,
            this_call: limit,
            started: Instant::now(),
            before_first_tick: None,
            cpu_mark: Duration::ZERO,
        }
    }

    /// Starts a new call's deadline; returns the ticks until its first check.
    pub(super) fn arm(&mut self) -> u64 {
        self.arm_for(self.limit)
    }

    /// Like [`Deadline::arm`], for instantiation and `configure`, which get at least
    /// `SETUP`.
    pub(super) fn arm_setup(&mut self) -> u64 {
        self.arm_for(self.limit.max(SETUP))
    }

    fn arm_for(&mut self, limit: Duration) -> u64 {
        self.this_call = limit;
        self.started = Instant::now();
        self.before_first_tick = None;
        1
    }

    /// Called by the engine at each tick a call lives through: interrupt it, or check
    /// again at the next tick.
    pub(super) fn on_expiry(&mut self) -> UpdateDeadline {
        let used = self.used(thread_cpu_time(), self.started.elapsed());
        let wall_cap = self.this_call.saturating_mul(WALL_CAP);
        if used >= self.this_call || self.started.elapsed() >= wall_cap {
            return UpdateDeadline::Interrupt;
        }
        UpdateDeadline::Continue(1)
    }

    /// The CPU time the call has used, given the thread's CPU clock `cpu` and the call's
    /// wall time `wall` now (tests pass them in).
    fn used(&mut self, cpu: Duration, wall: Duration) -> Duration {
        match self.before_first_tick {
            None => {
                let charged = wall.min(TICK);
                self.before_first_tick = Some(charged);
                self.cpu_mark = cpu;
                charged
            }
            Some(charged) => charged + cpu.saturating_sub(self.cpu_mark),
        }
    }

    /// Ends the call: what it cost (policy and host work), and whether that was over its
    /// deadline (host work after the last check can push it over). A call that saw no
    /// tick is charged its wall time, at most one tick, and reads no clock but the
    /// monotonic one.
    pub(super) fn finish(&mut self) -> (Duration, bool) {
        let wall = self.started.elapsed();
        if self.before_first_tick.is_none() {
            return (wall.min(TICK), false);
        }
        let used = self.used(thread_cpu_time(), wall);
        (used, used > self.this_call + TICK)
    }
}

/// CPU time this thread has used. Called at each tick a call lives through, and when a
/// call that saw a tick ends: never for the common call, shorter than a tick.
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
    // No per-thread CPU clock: time since the first call instead, which makes the
    // deadline a plain wall-time one.
    static START: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    START.get_or_init(Instant::now).elapsed()
}

/// Milliseconds since the first runtime started (advanced every tick): a clock that costs
/// a relaxed load, for the per-second CPU budget. One thread for the process advances it, however many
/// engines (and epoch tickers) there are.
static TICKS: AtomicU64 = AtomicU64::new(0);
static CLOCK: std::sync::Once = std::sync::Once::new();

/// See [`TICKS`].
pub(crate) fn ticks() -> u64 {
    TICKS.load(Ordering::Relaxed)
}

/// Starts the thread that advances the engine's epoch every [`TICK`], which is what makes
/// call deadlines fire. It stops by itself when the engine is dropped.
pub(crate) fn start_epoch_ticker(engine: &Engine) {
    CLOCK.call_once(|| {
        let _ = std::thread::Builder::new()
            .name("policy-clock".into())
            .spawn(|| {
                // Set from elapsed time, not counted: sleeps overshoot (by a lot on a
                // loaded machine), and a window of 1000 ticks must stay one second.
                let start = Instant::now();
                loop {
                    std::thread::sleep(TICK);
                    let ms = u64::try_from(start.elapsed().as_millis()).unwrap_or(u64::MAX);
                    TICKS.store(ms, Ordering::Relaxed);
                }
            });
    });
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

    #[test]
    fn until_the_first_tick_a_call_is_charged_its_wall_time_at_most_one_tick() {
        let mut d = Deadline::new(5 * MS);
        d.arm();
        // Preempted for 30 ms before its first tick: charged one tick, not 30 ms.
        assert_eq!(d.used(100 * MS, 30 * MS), MS);
        // From then on, the CPU clock: 3 ms more of CPU, whatever the wall time.
        assert_eq!(d.used(103 * MS, 90 * MS), 4 * MS);
        let mut d = Deadline::new(5 * MS);
        d.arm();
        assert_eq!(
            d.used(7 * MS, Duration::from_micros(300)),
            Duration::from_micros(300)
        );
    }

    #[test]
    fn a_call_under_its_deadline_minus_a_tick_is_never_interrupted() {
        // Charged at most one tick before the first, then exact: 3.9 ms of CPU on a 5 ms
        // deadline passes even when the worst case is charged up front.
        let mut d = Deadline::new(5 * MS);
        d.arm();
        assert!(d.used(Duration::ZERO, 50 * MS) < 5 * MS);
        assert!(d.used(Duration::from_micros(2900), 60 * MS) < 5 * MS);
    }

    #[test]
    fn setup_calls_get_more_room() {
        let mut d = Deadline::new(5 * MS);
        assert_eq!(d.arm_setup(), 1);
        assert_eq!(d.this_call, SETUP);
        d.arm();
        assert_eq!(d.this_call, 5 * MS);
        let mut long = Deadline::new(Duration::from_secs(2));
        long.arm_setup();
        assert_eq!(long.this_call, Duration::from_secs(2));
    }

    #[test]
    fn arming_starts_a_fresh_call() {
        let mut d = Deadline::new(5 * MS);
        d.arm();
        d.used(10 * MS, MS);
        d.arm();
        assert_eq!(d.before_first_tick, None);
        // A call that saw no tick is charged its wall time and is never over.
        let (cost, over) = d.finish();
        assert!(cost <= TICK && !over);
    }
}
