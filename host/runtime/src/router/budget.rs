//! The CPU budget over time: what the live instance's calls may cost per second.
//!
//! The per-call deadline bounds one call, not their sum: a policy spending 4 ms a call at
//! 250 calls a second takes a whole core, and every call runs under the routing lock. So
//! each call's cost (CPU time, host work included, as `sandbox::deadline` measures it) is
//! added up over one-second windows of the epoch ticker's clock (a relaxed atomic load,
//! not a clock read), and a window over the budget is a [`FaultKind::Budget`] fault. The
//! window starts afresh after a fault, so a policy that stays over its budget faults about
//! once a second and the breaker disables it within its window (5 faults in 10 s).
use std::time::Duration;

use crate::instance::Fault;
use crate::sandbox::ticks;
use crate::types::FaultKind;

/// Ticks (milliseconds) in one window.
const WINDOW_TICKS: u64 = 1000;

/// The spending of one policy generation in the current window.
#[derive(Debug)]
pub(super) struct CpuBudget {
    /// Per window; `None`: unbounded.
    limit: Option<Duration>,
    window_start: u64,
    used: Duration,
}

impl CpuBudget {
    pub(super) fn new(limit: Option<Duration>) -> Self {
        CpuBudget {
            limit,
            window_start: ticks(),
            used: Duration::ZERO,
        }
    }

    /// Adds a call's `cost` and turns the call's `result` into a budget fault when the
    /// window is over budget. A call that faulted already keeps its own fault (a deadline
    /// fault is the likeliest call to cross the budget, and must be reported as such).
    pub(super) fn charge<T>(
        &mut self,
        result: Result<T, Fault>,
        cost: Duration,
    ) -> Result<T, Fault> {
        let Some(limit) = self.limit else {
            return result;
        };
        let over = self.add(ticks(), cost, limit);
        match (result, over) {
            (Err(fault), _) => Err(fault),
            (Ok(_), Some(fault)) => Err(fault),
            (ok, None) => ok,
        }
    }

    /// [`CpuBudget::charge`] at tick `now` (tests pass it in).
    fn add(&mut self, now: u64, cost: Duration, limit: Duration) -> Option<Fault> {
        if now.saturating_sub(self.window_start) >= WINDOW_TICKS {
            self.window_start = now;
            self.used = Duration::ZERO;
        }
        self.used += cost;
        if self.used <= limit {
            return None;
        }
        let fault = Fault {
            kind: FaultKind::Budget,
            detail: format!(
                "used {:.1} ms of CPU within one second (policy and host work); the budget is {} ms a second (--policy-cpu-budget)",
                self.used.as_secs_f64() * 1e3,
                limit.as_millis()
            ),
        };
        self.window_start = now;
        self.used = Duration::ZERO;
        Some(fault)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn spending_within_a_window_adds_up_to_the_budget() {
        let mut b = CpuBudget::new(Some(250 * MS));
        b.window_start = 0;
        // With a 250 ms budget: 62 calls of 4 ms: 248 ms, within budget; the 63rd goes over.
        for i in 0..62 {
            assert!(b.add(i * 4, 4 * MS, 250 * MS).is_none(), "call {i}");
        }
        let f = b.add(250, 4 * MS, 250 * MS).expect("over budget");
        assert_eq!(f.kind, FaultKind::Budget);
        assert!(
            f.detail.contains("252.0 ms") && f.detail.contains("--policy-cpu-budget"),
            "{}",
            f.detail
        );
        // The window starts afresh after the fault.
        assert!(b.add(251, 4 * MS, 250 * MS).is_none());
    }

    #[test]
    fn a_new_window_forgets_the_last_one() {
        let mut b = CpuBudget::new(Some(250 * MS));
        b.window_start = 0;
        assert!(b.add(10, 240 * MS, 250 * MS).is_none());
        assert!(b.add(1010, 240 * MS, 250 * MS).is_none());
        assert!(b.add(1500, 20 * MS, 250 * MS).is_some());
    }

    #[test]
    fn a_call_that_faulted_keeps_its_own_fault() {
        let mut b = CpuBudget::new(Some(MS));
        let deadline = Fault {
            kind: FaultKind::Deadline,
            detail: String::new(),
        };
        let r = b.charge(Err::<u32, Fault>(deadline), 6 * MS);
        assert_eq!(r.unwrap_err().kind, FaultKind::Deadline);
    }

    #[test]
    fn no_limit_never_faults() {
        let mut b = CpuBudget::new(None);
        assert!(b
            .charge(Ok::<u32, Fault>(1), Duration::from_secs(5))
            .is_ok());
    }
}
