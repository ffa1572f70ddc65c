//! One backend's cost and ejection, free of WIT types so that the rules are tested natively.
//!
//! Failures in a row are counted per failure *event*, not per failed request: when a
//! backend crashes, every request it had in flight fails within microseconds of each
//! other, and counting each as one more failure in a row would eject it for the 30 s cap
//! after a single crash (issue 16). A failure counts only if its request was sent after
//! the last counted failure happened: those sent before had no chance to see the backend
//! had failed. Envoy's outlier detection has the same blind spot and covers it with its
//! interval; here the request's own start time draws the line, exactly.

/// How long failures may eject a backend for, at most.
pub const MAX_EJECT_NS: f64 = 30e9;

#[derive(Debug, Clone, Copy, Default)]
pub struct Backend {
    /// Nanoseconds.
    pub cost: f64,
    pub stamp_ns: u64,
    /// Failure events in a row, and until when the backend is ejected because of them.
    pub failures: u32,
    pub ejected_until_ns: u64,
    /// When the last counted failure was observed.
    pub failed_at_ns: u64,
}

/// What one finished request tells about its backend.
#[derive(Debug, Clone, Copy)]
pub struct Sample {
    /// When it finished, and how long it took.
    pub now_ns: u64,
    pub latency_ns: u64,
    pub failed: bool,
}

impl Backend {
    pub fn new(cost: f64, now_ns: u64) -> Self {
        Backend {
            cost,
            stamp_ns: now_ns,
            ..Backend::default()
        }
    }

    /// The cost as it stands at `now`: decayed towards zero since the last sample, so an
    /// idle backend slowly becomes worth another try.
    pub fn cost_at(&self, now_ns: u64, decay_ns: f64) -> f64 {
        let elapsed = now_ns.saturating_sub(self.stamp_ns) as f64;
        self.cost * (-elapsed / decay_ns).exp()
    }

    pub fn ejected(&self, now_ns: u64) -> bool {
        now_ns < self.ejected_until_ns
    }

    /// An abandoned request: a lower bound on the RTT, so it can only raise the cost (as a peak).
    pub fn aborted(&mut self, s: Sample) {
        if s.latency_ns as f64 > self.cost {
            self.cost = s.latency_ns as f64;
            self.stamp_ns = self.stamp_ns.max(s.now_ns);
        }
    }

    /// A finished request; a failure counts at least `penalty_ns` as its RTT.
    pub fn finished(&mut self, s: Sample, decay_ns: f64, penalty_ns: f64, eject_ns: f64) {
        let rtt = if s.failed {
            (s.latency_ns as f64).max(penalty_ns)
        } else {
            s.latency_ns as f64
        };
        let elapsed = s.now_ns.saturating_sub(self.stamp_ns) as f64;
        let w = (-elapsed / decay_ns).exp();
        self.cost = if rtt > self.cost {
            rtt
        } else {
            self.cost * w + rtt * (1.0 - w)
        };
        self.stamp_ns = self.stamp_ns.max(s.now_ns);
        if !s.failed {
            self.failures = 0;
            self.ejected_until_ns = 0;
            return;
        }
        let sent_ns = s.now_ns.saturating_sub(s.latency_ns);
        if self.failures > 0 && sent_ns <= self.failed_at_ns {
            // In flight when the counted failure happened: the same event.
            return;
        }
        // Eject for longer the longer it keeps failing (capped), then let one request
        // probe it again.
        self.failures = self.failures.saturating_add(1);
        self.failed_at_ns = s.now_ns;
        let eject = (eject_ns * f64::from(self.failures.min(30))).min(MAX_EJECT_NS);
        self.ejected_until_ns = s.now_ns + eject as u64;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;
    const DECAY: f64 = 10e9;
    const PENALTY: f64 = 1e9;
    const EJECT: f64 = 1e9;

    fn fail(b: &mut Backend, now_ms: u64, latency_ms: u64) {
        let s = Sample {
            now_ns: now_ms * MS,
            latency_ns: latency_ms * MS,
            failed: true,
        };
        b.finished(s, DECAY, PENALTY, EJECT);
    }

    #[test]
    fn requests_cut_by_one_crash_are_one_failure() {
        let mut b = Backend::new(40.0 * MS as f64, 0);
        // Fifty requests sent over the 40 ms before the crash at 30 s, all cut at once.
        for i in 0..50 {
            fail(&mut b, 30_000, 1 + i * 40 / 50);
        }
        assert_eq!(b.failures, 1);
        assert_eq!(b.ejected_until_ns, 31_000 * MS);
    }

    #[test]
    fn each_probe_that_fails_is_a_new_failure() {
        let mut b = Backend::new(40.0 * MS as f64, 0);
        fail(&mut b, 30_000, 10);
        // The probe after the ejection: sent at 31 s, refused at once.
        fail(&mut b, 31_000, 0);
        assert_eq!(b.failures, 2);
        assert_eq!(b.ejected_until_ns, 33_000 * MS);
        fail(&mut b, 33_001, 1);
        assert_eq!(b.failures, 3);
        assert!(b.ejected(35_000 * MS) && !b.ejected(36_001 * MS));
    }

    #[test]
    fn a_success_clears_the_count_and_the_ejection_is_capped() {
        let mut b = Backend::new(40.0 * MS as f64, 0);
        for k in 0..40u64 {
            fail(&mut b, 1000 * (k + 1), 0);
        }
        assert_eq!(b.failures, 40);
        assert_eq!(b.ejected_until_ns, 40_000 * MS + MAX_EJECT_NS as u64);
        let ok = Sample {
            now_ns: 80_000 * MS,
            latency_ns: 40 * MS,
            failed: false,
        };
        b.finished(ok, DECAY, PENALTY, EJECT);
        assert_eq!((b.failures, b.ejected_until_ns), (0, 0));
    }
}
