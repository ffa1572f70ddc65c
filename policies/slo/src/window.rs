//! What `slo` knows of one backend: the latencies of its latest `capacity` requests by
//! the time they were *sent*, from which the plan reads a mean, a quantile and the fraction
//! over a target.
//!
//! Why by send time, and only once settled: answers arrive in the order they finish, so
//! the newest answers over-represent fast requests (a slow request sent at the same time is
//! still running). A window of the newest answers therefore swings with every change of a
//! backend's share: more requests to A first bring A's fast answers, then, 400 ms later, a
//! wave of slow ones, and a plan built on that wave drops A altogether. A sample joins the
//! window only once `lag` has passed since its request was sent, `lag` being the slowest
//! latency the backend has recently shown (capped): by then every request sent at that
//! moment has almost certainly answered, so the window is a fair sample by send time.
//!
//! Raw samples rather than a histogram because the decisions hinge on small differences:
//! in the study a target of 205 ms must tell B's steady 200 ms from "over", which a
//! log-bucketed histogram (10 % wide buckets) cannot. Samples are microseconds in `u32`
//! (71 minutes at most, far above any timeout).
use std::collections::VecDeque;

/// Samples waiting to settle, at most: beyond this the oldest settles early, so a backend
/// answering at a huge rate cannot grow the policy's memory without bound.
const MAX_PENDING: usize = 1024;

/// A ring of settled latencies (microseconds) in send order, and the unsettled ones.
#[derive(Debug, Clone, Default)]
pub struct Window {
    /// (sample, the exchange's own latency): they differ for a failure, whose sample is
    /// the failure penalty; lags come from the latter, so a backend that fails fast is
    /// judged fast, not after a penalty-long lag.
    /// Kept in send order too (an answer settling late goes where its send belongs), so
    /// the ring drops the oldest *sent*: dropping the oldest settled would keep late slow
    /// answers longer than the fast ones sent with them.
    samples: VecDeque<(u64, u32, u32)>,
    capacity: usize,
    /// Sum of `samples`, kept so the mean is O(1).
    sum: u64,
    /// (sent at, sample, latency) of answers not yet settled, in send order.
    pending: VecDeque<(u64, u32, u32)>,
}

impl Window {
    pub fn new(capacity: usize) -> Self {
        Window {
            capacity: capacity.max(1),
            ..Window::default()
        }
    }

    /// An answer to a request sent at `sent_ns` that took `latency_us`, counted as
    /// `sample_us` (the same, or the failure penalty).
    pub fn push(&mut self, sent_ns: u64, sample_us: u32, latency_us: u32) {
        // Answers mostly come in send order for a steady backend: search from the back.
        let at = self
            .pending
            .iter()
            .rposition(|&(t, _, _)| t <= sent_ns)
            .map_or(0, |i| i + 1);
        self.pending.insert(at, (sent_ns, sample_us, latency_us));
        if self.pending.len() > MAX_PENDING {
            if let Some(p) = self.pending.pop_front() {
                self.settle_one(p);
            }
        }
    }

    /// Settles every answer to a request sent at least `lag_ns` before `now_ns`.
    pub fn settle(&mut self, now_ns: u64, lag_ns: u64) {
        while let Some(&p) = self.pending.front() {
            if p.0.saturating_add(lag_ns) > now_ns {
                break;
            }
            self.pending.pop_front();
            self.settle_one(p);
        }
    }

    fn settle_one(&mut self, (sent, sample, latency): (u64, u32, u32)) {
        self.sum += u64::from(sample);
        let at = self
            .samples
            .iter()
            .rposition(|&(t, _, _)| t <= sent)
            .map_or(0, |i| i + 1);
        self.samples.insert(at, (sent, sample, latency));
        if self.samples.len() > self.capacity {
            if let Some((_, old, _)) = self.samples.pop_front() {
                self.sum -= u64::from(old);
            }
        }
    }

    /// Drops settled samples sent before `now_ns - max_age_ns`, so what a backend did
    /// long ago (while it was down, say) does not outweigh what little it has done since.
    pub fn expire(&mut self, now_ns: u64, max_age_ns: u64) {
        let cut = now_ns.saturating_sub(max_age_ns);
        while let Some(&(sent, sample, _)) = self.samples.front() {
            if sent >= cut {
                break;
            }
            self.samples.pop_front();
            self.sum -= u64::from(sample);
        }
    }

    /// Settled samples.
    pub fn len(&self) -> usize {
        self.samples.len()
    }

    /// The slowest latency settled or waiting, in microseconds: the lag to settle by.
    pub fn slowest_us(&self) -> u32 {
        let settled = self.samples.iter().map(|&(_, _, l)| l).max().unwrap_or(0);
        let waiting = self.pending.iter().map(|&(_, _, l)| l).max().unwrap_or(0);
        settled.max(waiting)
    }

    /// Mean latency in microseconds; `None` before any settled sample.
    pub fn mean_us(&self) -> Option<f64> {
        (!self.samples.is_empty()).then(|| self.sum as f64 / self.samples.len() as f64)
    }

    /// Fraction of settled samples strictly above `target_us`; `None` before any.
    pub fn over(&self, target_us: f64) -> Option<f64> {
        if self.samples.is_empty() {
            return None;
        }
        let n = self
            .samples
            .iter()
            .filter(|&&(_, s, _)| f64::from(s) > target_us)
            .count();
        Some(n as f64 / self.samples.len() as f64)
    }

    /// The `q` quantile (nearest rank), using `scratch` so no call allocates once warm.
    /// O(len) by selection, not a sort: it runs for every backend at every plan update.
    pub fn quantile_us(&self, q: f64, scratch: &mut Vec<u32>) -> Option<u32> {
        if self.samples.is_empty() {
            return None;
        }
        scratch.clear();
        scratch.extend(self.samples.iter().map(|&(_, s, _)| s));
        let n = scratch.len();
        // Nearest rank: the smallest sample with at least q x n samples at or below it.
        let rank = ((q.clamp(0.0, 1.0) * n as f64).ceil() as usize).clamp(1, n) - 1;
        let (_, v, _) = scratch.select_nth_unstable(rank);
        Some(*v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;

    #[test]
    fn the_ring_keeps_the_newest_settled_and_its_statistics() {
        let mut w = Window::new(4);
        assert_eq!((w.mean_us(), w.over(1.0)), (None, None));
        for (i, s) in [10, 20, 30, 40, 50, 60].into_iter().enumerate() {
            w.push(i as u64 * MS, s, s);
        }
        assert_eq!(w.len(), 0, "nothing settled yet");
        w.settle(5 * MS + 100, 100);
        // 30, 40, 50, 60 remain.
        assert_eq!(w.len(), 4);
        assert_eq!(w.mean_us(), Some(45.0));
        assert_eq!(w.over(40.0), Some(0.5));
        let mut scratch = Vec::new();
        assert_eq!(w.quantile_us(0.5, &mut scratch), Some(40));
        assert_eq!(w.quantile_us(0.95, &mut scratch), Some(60));
        assert_eq!(w.quantile_us(0.0, &mut scratch), Some(30));
    }

    /// The study's A under a burst: 90 requests sent at once, answered in the order they
    /// finish. The newest answers would be all 400 ms ones; settled by send time, a third.
    #[test]
    fn a_burst_is_judged_by_send_time_not_by_who_answered_last() {
        let cycle = [10u64, 15, 20, 400, 400, 400, 10, 15, 20];
        let mut answers: Vec<(u64, u64)> = (0..90).map(|i| (i, cycle[i as usize % 9])).collect();
        answers.sort_by_key(|&(sent, lat)| sent + lat * MS);
        let mut w = Window::new(27);
        for &(sent, lat) in &answers {
            w.push(sent, (lat * 1000) as u32, (lat * 1000) as u32);
        }
        assert_eq!(w.slowest_us(), 400_000);
        w.settle(500 * MS, 400 * MS);
        // The last 27 sent, requests 63..89: three whole cycles, a third of them slow.
        assert_eq!(w.over(205_000.0), Some(1.0 / 3.0));
    }

    #[test]
    fn the_studys_a_over_200_ms_is_a_third_and_its_mean_143() {
        let mut w = Window::new(90);
        for i in 0..900u64 {
            let ms = [10, 15, 20, 400, 400, 400, 10, 15, 20][i as usize % 9];
            w.push(i * MS, ms * 1000, ms * 1000);
        }
        w.settle(2000 * MS, 400 * MS);
        assert_eq!(w.over(205_000.0), Some(1.0 / 3.0));
        let mean = w.mean_us().unwrap_or(0.0) / 1000.0;
        assert!((mean - 143.33).abs() < 0.01, "{mean}");
    }

    #[test]
    fn a_fast_failure_lags_by_its_own_latency_not_the_penalty() {
        let mut w = Window::new(10);
        w.push(0, 1_000_000, 100);
        assert_eq!(w.slowest_us(), 100);
        w.settle(MS, 100_000);
        assert_eq!((w.len(), w.mean_us()), (1, Some(1e6)));
    }

    #[test]
    fn old_samples_expire() {
        let mut w = Window::new(10);
        w.push(0, 5, 5);
        w.push(10 * MS, 7, 7);
        w.settle(20 * MS, 0);
        w.expire(20 * MS, 15 * MS);
        assert_eq!((w.len(), w.mean_us()), (1, Some(7.0)));
    }

    #[test]
    fn pending_is_bounded() {
        let mut w = Window::new(10);
        for i in 0..(MAX_PENDING as u64 + 5) {
            w.push(i, 1, 1);
        }
        assert_eq!(w.len(), 5, "the overflow settled early");
    }
}
