//! The simulator's event queue. Its (time, insertion sequence) order is the determinism
//! guarantee: simultaneous events come out in the order they were scheduled, never in
//! whatever order a heap leaves equal keys. No crate adds anything to a `BinaryHeap` here.
use std::cmp::Ordering;
use std::collections::BinaryHeap;

/// A min-queue of events by (time, insertion sequence). The sequence makes simultaneous
/// events come out in the order they were scheduled, instead of in whatever order the heap
/// happens to leave equal keys.
pub struct EventQueue<E> {
    heap: BinaryHeap<Entry<E>>,
    seq: u64,
}

impl<E> EventQueue<E> {
    pub fn with_capacity(capacity: usize) -> Self {
        EventQueue {
            heap: BinaryHeap::with_capacity(capacity),
            seq: 0,
        }
    }

    pub fn push(&mut self, time_ns: u64, event: E) {
        self.heap.push(Entry {
            time_ns,
            seq: self.seq,
            event,
        });
        self.seq += 1;
    }

    /// The earliest event and its time.
    pub fn pop(&mut self) -> Option<(u64, E)> {
        self.heap.pop().map(|e| (e.time_ns, e.event))
    }

    pub fn is_empty(&self) -> bool {
        self.heap.is_empty()
    }
}

struct Entry<E> {
    time_ns: u64,
    seq: u64,
    event: E,
}

impl<E> Entry<E> {
    fn key(&self) -> (u64, u64) {
        (self.time_ns, self.seq)
    }
}

impl<E> PartialEq for Entry<E> {
    fn eq(&self, other: &Self) -> bool {
        self.key() == other.key()
    }
}

impl<E> Eq for Entry<E> {}

impl<E> PartialOrd for Entry<E> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl<E> Ord for Entry<E> {
    /// Reversed, so that std's max-heap pops the earliest key first.
    fn cmp(&self, other: &Self) -> Ordering {
        other.key().cmp(&self.key())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queue_orders_by_time_then_insertion() {
        let mut q = EventQueue::with_capacity(4);
        q.push(5, "c");
        q.push(1, "a");
        q.push(5, "d");
        q.push(1, "b");
        let order: Vec<_> = std::iter::from_fn(|| q.pop()).collect();
        assert_eq!(order, [(1, "a"), (1, "b"), (5, "c"), (5, "d")]);
        assert!(q.is_empty());
    }

    proptest::proptest! {
        /// Whatever the pushes, events come out sorted by time, and events at the same time
        /// in the order they were pushed: the determinism the engine rests on.
        #[test]
        fn pops_in_time_then_push_order(times in proptest::collection::vec(0u64..20, 0..200)) {
            let mut q = EventQueue::with_capacity(times.len());
            for (i, &t) in times.iter().enumerate() {
                q.push(t, i);
            }
            let popped: Vec<(u64, usize)> = std::iter::from_fn(|| q.pop()).collect();
            let mut expected: Vec<(u64, usize)> = times.iter().copied().zip(0..).collect();
            expected.sort();
            proptest::prop_assert_eq!(popped, expected);
            proptest::prop_assert!(q.is_empty());
        }
    }
}
