//! Passive ejection, as Envoy's outlier detection (`consecutive_5xx`, default 5): after
//! `eject-after` failures in a row (connect errors, timeouts, broken exchanges, 5xx) a
//! backend is ejected for `eject-ms` times the number of ejections in a row (capped at
//! 30 s); once that has passed it gets traffic again, and its next failure ejects it at
//! once, for longer. A success resets the failures in a row; the ejections in a row are
//! forgotten once the backend has gone `eject-ms` past its last ejection without one. Aborted exchanges say nothing and are ignored.
//!
//! A threshold above one matters more for hashing than for a latency policy: ejecting on
//! a single 5xx would move a backend's keys away every time it answered one error, and
//! moving keys is what a hashing policy exists to avoid.

/// The longest single ejection.
const MAX_EJECT_NS: u64 = 30_000_000_000;

#[derive(Clone, Copy, Default, Debug, PartialEq, Eq)]
pub struct Backend {
    failures: u32,
    ejections: u32,
    until_ns: u64,
}

impl Backend {
    pub fn ejected(&self, now_ns: u64) -> bool {
        now_ns < self.until_ns
    }

    pub fn until_ns(&self) -> u64 {
        self.until_ns
    }
}

/// The ejection rule: `after` failures in a row (0: never eject), for `eject_ns` each time.
#[derive(Clone, Copy, Debug)]
pub struct Rule {
    pub after: u32,
    pub eject_ns: u64,
}

impl Rule {
    /// Records one exchange of `b` that ended at `now_ns`; true when it ejected `b`.
    pub fn record(&self, b: &mut Backend, failed: bool, now_ns: u64) -> bool {
        if !failed {
            // As Envoy: a success resets the failures in a row, not an ejection running
            // (a request in flight when it began can still answer), nor the count of
            // ejections in a row, which only a full ejection-free period clears.
            b.failures = 0;
            if !b.ejected(now_ns) && now_ns >= b.until_ns.saturating_add(self.eject_ns) {
                b.ejections = 0;
            }
            return false;
        }
        b.failures = b.failures.saturating_add(1);
        // Requests that were in flight when the backend failed keep failing for a moment:
        // they do not extend an ejection already running.
        if self.after == 0 || b.failures < self.after || b.ejected(now_ns) {
            return false;
        }
        b.ejections = b.ejections.saturating_add(1);
        let ns = self
            .eject_ns
            .saturating_mul(u64::from(b.ejections))
            .min(MAX_EJECT_NS);
        b.until_ns = now_ns.saturating_add(ns);
        ns > 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;

    #[test]
    fn ejects_after_failures_in_a_row_for_longer_each_time() {
        let rule = Rule {
            after: 3,
            eject_ns: 1000 * MS,
        };
        let mut b = Backend::default();
        assert!(!rule.record(&mut b, true, 0));
        assert!(!rule.record(&mut b, true, 1));
        assert!(!rule.record(&mut b, false, 2), "a success resets the count");
        assert!(!rule.record(&mut b, true, 3) && !rule.record(&mut b, true, 4));
        assert!(rule.record(&mut b, true, 5));
        assert!(b.ejected(5) && b.ejected(5 + 999 * MS) && !b.ejected(5 + 1000 * MS));
        assert!(
            !rule.record(&mut b, true, 6),
            "in-flight failures do not extend it"
        );
        let t = 5 + 1000 * MS;
        assert!(
            rule.record(&mut b, true, t),
            "the next failure after it ejects again"
        );
        assert_eq!(b.until_ns(), t + 2000 * MS);
        // A request in flight since before the ejection answers: the ejection stands.
        rule.record(&mut b, false, t + 10 * MS);
        assert!(
            b.ejected(t + 1000 * MS),
            "a success does not lift a running ejection"
        );
        rule.record(&mut b, false, t + 3000 * MS);
        assert_eq!(
            (b.failures, b.ejections),
            (0, 0),
            "an ejection-free period forgets"
        );
    }

    #[test]
    fn zero_never_ejects_and_the_time_is_capped() {
        let never = Rule {
            after: 0,
            eject_ns: 1000 * MS,
        };
        let mut b = Backend::default();
        for t in 0..100 {
            assert!(!never.record(&mut b, true, t));
        }
        let rule = Rule {
            after: 1,
            eject_ns: 20_000 * MS,
        };
        let mut b = Backend::default();
        rule.record(&mut b, true, 0);
        let t = b.until_ns();
        rule.record(&mut b, true, t);
        assert_eq!(b.until_ns(), t + MAX_EJECT_NS);
    }
}
