//! Stride scheduling (Waldspurger and Weihl, 1995): each backend advances by
//! `1 / share` whenever it is picked, and the one furthest behind goes next, so over any
//! run of picks each backend's count is within one of `share x picks`. Deterministic
//! (the simulator's runs replay exactly) and O(log n) a pick with a binary heap, where
//! smooth weighted round-robin would scan every backend on every request.
use std::cmp::Ordering;
use std::collections::BinaryHeap;

use common::Rng;

/// A backend's next turn: the smallest `pass` goes first; ties go to the lower index.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Turn {
    pass: f64,
    backend: usize,
    stride: f64,
}

impl Eq for Turn {}

impl Ord for Turn {
    fn cmp(&self, other: &Self) -> Ordering {
        // Reversed: BinaryHeap is a max-heap.
        other
            .pass
            .total_cmp(&self.pass)
            .then(other.backend.cmp(&self.backend))
    }
}

impl PartialOrd for Turn {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

#[derive(Debug, Clone, Default)]
pub struct Stride {
    heap: BinaryHeap<Turn>,
    /// The pass of the latest pick: a rebuilt schedule starts from here.
    now: f64,
}

impl Stride {
    /// Replaces the shares. Each backend's first turn falls at a random point within its
    /// first stride, so a rebuild (every plan update) does not send a burst to the
    /// backends whose turn would otherwise all come at once.
    pub fn set(&mut self, shares: &[f64], rng: &mut Rng) {
        self.heap.clear();
        for (backend, &share) in shares.iter().enumerate() {
            if share > 0.0 && share.is_finite() {
                let stride = 1.0 / share;
                let phase = (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
                self.heap.push(Turn {
                    pass: self.now + stride * phase,
                    backend,
                    stride,
                });
            }
        }
    }

    /// The next backend, or `None` when no backend has a share.
    pub fn next(&mut self) -> Option<usize> {
        let mut turn = self.heap.pop()?;
        self.now = turn.pass;
        let backend = turn.backend;
        turn.pass += turn.stride;
        self.heap.push(turn);
        Some(backend)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picks_follow_the_shares_closely() {
        let mut s = Stride::default();
        let mut rng = Rng::new(1);
        s.set(&[0.15, 0.85, 0.0], &mut rng);
        let mut counts = [0usize; 3];
        for _ in 0..1000 {
            if let Some(b) = s.next() {
                counts[b] += 1;
            }
        }
        assert!((149..=151).contains(&counts[0]), "{counts:?}");
        assert_eq!(counts[2], 0);
    }

    #[test]
    fn an_empty_plan_picks_nothing() {
        let mut s = Stride::default();
        s.set(&[0.0, f64::NAN], &mut Rng::new(1));
        assert_eq!(s.next(), None);
    }
}
