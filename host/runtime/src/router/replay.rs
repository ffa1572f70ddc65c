//! The ring of recent observations that warm-starts a new or replacement instance.
//!
//! A new instance is fed a snapshot of the ring off the routing lock, while traffic keeps
//! adding observations. `seen` counts every observation ever recorded, so that the ones
//! added meanwhile can be found and fed, in passes still off the lock, before the instance
//! goes live.
use std::collections::VecDeque;

use crate::instance::Delivery;
use crate::types::{Observation, Origin, Ticket};

/// An observation as the ring keeps it: the exchange, where it went and on which attempt.
/// Who chose it does not matter any more: a replay is always [`Origin::Replay`].
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Recorded {
    pub(super) backend: usize,
    pub(super) attempt: u32,
    pub(super) obs: Observation,
}

impl Recorded {
    pub(super) fn new(ticket: &Ticket, obs: Observation) -> Self {
        Recorded {
            backend: ticket.backend,
            attempt: ticket.attempt,
            obs,
        }
    }

    /// How it is fed to a new instance.
    pub(super) fn replayed(&self) -> Delivery<'_> {
        Delivery {
            backend: self.backend,
            attempt: self.attempt,
            origin: Origin::Replay,
            obs: &self.obs,
        }
    }
}

/// The last `cap` observations, oldest first, and how many were ever recorded.
#[derive(Debug)]
pub(super) struct Replay {
    ring: VecDeque<Recorded>,
    cap: usize,
    seen: u64,
}

impl Replay {
    /// A ring keeping the last `cap` observations (0: none, a cold start).
    pub(super) fn new(cap: usize) -> Self {
        Replay {
            ring: VecDeque::with_capacity(cap),
            cap,
            seen: 0,
        }
    }

    /// Keeps `o`, forgetting the oldest observation if the ring is full.
    pub(super) fn record(&mut self, o: Recorded) {
        self.seen += 1;
        if self.cap == 0 {
            return;
        }
        if self.ring.len() >= self.cap {
            self.ring.pop_front();
        }
        self.ring.push_back(o);
    }

    /// The observations in the ring, oldest first, and the `seen` count they go up to.
    pub(super) fn snapshot(&self) -> (Vec<Recorded>, u64) {
        (self.ring.iter().cloned().collect(), self.seen)
    }

    /// The latest observation of each of `n` backends the ring holds (for rehearsals).
    pub(super) fn latest_per_backend(&self, n: usize) -> Vec<Option<Observation>> {
        let mut latest = vec![None; n];
        for r in self.ring.iter().rev() {
            if let Some(slot @ None) = latest.get_mut(r.backend) {
                *slot = Some(r.obs.clone());
            }
        }
        latest
    }

    /// How many observations were ever recorded.
    pub(super) fn seen(&self) -> u64 {
        self.seen
    }

    /// Observations recorded after a snapshot that returned `seen` (as many as the ring
    /// still has: those pushed out since are lost).
    pub(super) fn since(&self, seen: u64) -> Vec<Recorded> {
        self.newest_since(seen, usize::MAX)
    }

    /// Like [`Replay::since`], but at most the newest `max` of them.
    pub(super) fn newest_since(&self, seen: u64, max: usize) -> Vec<Recorded> {
        // `seen` came from this ring, and the count only grows; saturating all the same,
        // so that a stale value returns nothing instead of panicking.
        let missed = usize::try_from(self.seen.saturating_sub(seen)).unwrap_or(usize::MAX);
        let skip = self.ring.len().saturating_sub(missed.min(max));
        self.ring.iter().skip(skip).cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::types::Outcome;

    /// An observation told apart by its time.
    fn obs(t: u64) -> Recorded {
        Recorded {
            backend: 0,
            attempt: 1,
            obs: Observation::new(t, 1, 200, Outcome::Response),
        }
    }

    fn times(v: &[Recorded]) -> Vec<u64> {
        v.iter().map(|o| o.obs.now_ns).collect()
    }

    #[test]
    fn since_returns_what_came_after_the_snapshot() {
        let mut r = Replay::new(8);
        (0..3).for_each(|t| r.record(obs(t)));
        let (snapshot, seen) = r.snapshot();
        assert_eq!((times(&snapshot), seen), (vec![0, 1, 2], 3));
        assert!(r.since(seen).is_empty());
        (3..5).for_each(|t| r.record(obs(t)));
        assert_eq!(times(&r.since(seen)), [3, 4]);
    }

    #[test]
    fn the_ring_wraps_and_catch_up_loses_what_was_pushed_out() {
        let mut r = Replay::new(4);
        (0..6).for_each(|t| r.record(obs(t)));
        let (snapshot, seen) = r.snapshot();
        assert_eq!((times(&snapshot), seen), (vec![2, 3, 4, 5], 6));
        // Six more while the new instance was being fed: only the last four are left.
        (6..12).for_each(|t| r.record(obs(t)));
        assert_eq!(times(&r.since(seen)), [8, 9, 10, 11]);
    }

    #[test]
    fn newest_since_keeps_only_the_newest() {
        let mut r = Replay::new(8);
        (0..6).for_each(|t| r.record(obs(t)));
        assert_eq!(times(&r.newest_since(1, 2)), [4, 5]);
        assert_eq!(times(&r.newest_since(4, 5)), [4, 5]);
    }

    #[test]
    fn a_zero_cap_keeps_nothing_but_counts() {
        let mut r = Replay::new(0);
        (0..3).for_each(|t| r.record(obs(t)));
        assert_eq!(r.snapshot(), (vec![], 3));
        assert!(r.since(0).is_empty());
    }

    proptest! {
        /// For any capacity, and any snapshot taken after `before` observations: the
        /// snapshot is the last `cap` of those, and catching up after `after` more returns
        /// exactly the newer ones the ring still holds, so that snapshot + catch-up is
        /// the tail of the whole sequence, without gaps or repeats when nothing was lost.
        #[test]
        fn snapshot_then_since_is_the_tail(cap in 0usize..12, before in 0u64..40, after in 0u64..40) {
            let mut r = Replay::new(cap);
            (0..before).for_each(|t| r.record(obs(t)));
            let (snapshot, seen) = r.snapshot();
            prop_assert_eq!(seen, before);
            let first_kept = before.saturating_sub(cap as u64);
            prop_assert_eq!(times(&snapshot), (first_kept..before).collect::<Vec<_>>());
            (before..before + after).for_each(|t| r.record(obs(t)));
            let end = before + after;
            let first_left = end.saturating_sub(cap as u64).max(before);
            prop_assert_eq!(times(&r.since(seen)), (first_left..end).collect::<Vec<_>>());
        }
    }
}
