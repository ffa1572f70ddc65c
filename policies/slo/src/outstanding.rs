//! The requests this instance sent to one backend that have not been answered yet, by
//! send time: those older than the target are over it already, whatever their answer.
//!
//! Why: settled statistics (`window`) learn of a slow request only once it answers. When
//! a backend's share grows (at start, above all), its fast answers come back first and it
//! looks perfect until its slow ones arrive; counting the overdue ones as over the target
//! tells the plan at `target` what it would otherwise learn at `lag`.
//!
//! Answers are matched to sends by time: an observation's send time is its end minus its
//! latency, which the host measures from a moment just after `choose`, so the nearest
//! earlier send is taken (the oldest if none is earlier). Only this instance's own
//! requests are counted (`origin::chosen`); the contract observes each exactly once.
use std::collections::VecDeque;

/// Sends remembered per backend at most; older ones are forgotten first.
const MAX_SENDS: usize = 1024;

#[derive(Debug, Clone, Default)]
pub struct Outstanding {
    /// Send times, oldest first.
    sent: VecDeque<u64>,
}

impl Outstanding {
    pub fn sent(&mut self, now_ns: u64) {
        if self.sent.len() == MAX_SENDS {
            self.sent.pop_front();
        }
        self.sent.push_back(now_ns);
    }

    /// The request sent at about `sent_ns` has been answered.
    pub fn answered(&mut self, sent_ns: u64) {
        let at = self.sent.partition_point(|&t| t <= sent_ns);
        self.sent.remove(at.saturating_sub(1));
    }

    /// Requests unanswered for longer than `age_ns` at `now_ns`.
    pub fn older_than(&self, now_ns: u64, age_ns: u64) -> usize {
        let cut = now_ns.saturating_sub(age_ns);
        self.sent.partition_point(|&t| t < cut)
    }

    /// Forgets sends older than `age_ns`: the host has ended them long ago (its timeout),
    /// so an entry that old was never matched.
    pub fn forget_older_than(&mut self, now_ns: u64, age_ns: u64) {
        let n = self.older_than(now_ns, age_ns);
        self.sent.drain(..n);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_match_the_nearest_earlier_send_and_the_rest_age() {
        let mut o = Outstanding::default();
        for t in [0, 10, 20, 30] {
            o.sent(t);
        }
        // Sent at 10 (the host stamps it a little after choose).
        o.answered(11);
        assert_eq!(o.sent, [0, 20, 30]);
        // Earlier than any send: the oldest goes.
        let mut p = o.clone();
        p.answered(0);
        p.answered(0);
        assert_eq!(p.sent, [30]);
        assert_eq!(o.older_than(35, 10), 2);
        assert_eq!(o.older_than(35, 100), 0);
        o.forget_older_than(35, 10);
        assert_eq!(o.sent, [30]);
    }

    #[test]
    fn memory_is_bounded() {
        let mut o = Outstanding::default();
        for t in 0..(MAX_SENDS as u64 + 10) {
            o.sent(t);
        }
        assert_eq!(o.sent.len(), MAX_SENDS);
        assert_eq!(o.sent.front(), Some(&10));
    }
}
