//! Consistent hashing with bounded loads (Mirrokni, Thorup, Zadimoghaddam, "Consistent
//! Hashing with Bounded Loads", arXiv 1608.01350), over the Maglev table.
//!
//! A backend of weight `w` (out of `W`, the weights of the usable backends) may hold at most
//! `ceil(c * (m + 1) * w / W)` requests in flight, `m` being the requests in flight now and
//! `+ 1` the one being placed; unweighted that is `ceil(c * (m + 1) / n)`. Because the
//! capacities add up to at least `c * (m + 1) > m`, some usable backend always has room.
//!
//! The walk. A key hashes to slot `s0 = h mod M`; when that slot's backend is full (or
//! ejected, or already tried by this request), the key visits slots `s0 + j * stride mod M`
//! for `j = 1, 2, ..`, with `stride = 1 + remix(h) mod (M - 1)` its own. Why this sequence:
//! - it follows table slots, so a backend is visited in proportion to its slots (weights
//!   hold for the overflow too) and a key's second choice is as stable as its first: the
//!   hot key always overflows onto the same backend, which keeps its cache warm too;
//! - each key has its own stride (double hashing; `M` is prime so every stride reaches
//!   every slot), so the keys of a full or dead backend scatter over all the others in a
//!   pseudo-random order, as Envoy's hash-seeded shuffle does (arXiv 1908.08762), instead
//!   of cascading onto one neighbour as the next-slot walk of a ring does;
//! - each step is O(1) and needs no generator state: the same key walks the same way in
//!   every instance.
//!
//! Each backend is judged once per walk (`Marks`). After `WALK_LIMIT` slots (only when
//! nearly everything is full or ejected) a linear scan finds any usable backend with
//! room; failing that, the least loaded usable backend relative to its capacity; failing
//! that (everything ejected), the key's own backend, since an outlier detector that has
//! ejected every backend is more likely wrong than the backends all dead.

/// Slots visited before falling back to a scan; at c = 1.25 at most 80 % of the weight
/// can be full, so a walk this long misses room with odds below 1 in 10^6.
pub const WALK_LIMIT: usize = 64;

/// What the walk asks about a backend.
pub trait View {
    /// Not ejected, has slots, and not already tried by this request.
    fn usable(&self, i: usize) -> bool;
    /// Requests in flight now (the host's count).
    fn in_flight(&mut self, i: usize) -> u64;
    /// Its capacity: `u64::MAX` when bounded loads are off.
    fn capacity(&self, i: usize) -> u64;
}

/// `ceil(factor_milli / 1000 * (total + 1) * w / w_sum)`, at least 1, in exact integer
/// arithmetic (no float rounding pushing 2.0 to 3). `u64::MAX` when `w_sum` is 0.
pub fn capacity(factor_milli: u64, total: u64, w: u64, w_sum: u64) -> u64 {
    if w_sum == 0 {
        return u64::MAX;
    }
    let num = u128::from(factor_milli)
        .saturating_mul(u128::from(total) + 1)
        .saturating_mul(u128::from(w));
    let den = 1000 * u128::from(w_sum);
    u64::try_from(num.div_ceil(den)).unwrap_or(u64::MAX).max(1)
}

/// Which backends one walk has judged already: a stamp per backend, so starting a walk is
/// O(1) instead of clearing a set.
#[derive(Default)]
pub struct Marks {
    stamp: Vec<u32>,
    epoch: u32,
}

impl Marks {
    /// Starts a walk over `n` backends.
    pub fn start(&mut self, n: usize) {
        if self.stamp.len() != n || self.epoch == u32::MAX {
            self.stamp = vec![0; n];
            self.epoch = 0;
        }
        self.epoch += 1;
    }

    /// True the first time `i` is seen in this walk.
    pub fn first(&mut self, i: usize) -> bool {
        match self.stamp.get_mut(i) {
            Some(s) if *s != self.epoch => {
                *s = self.epoch;
                true
            }
            _ => false,
        }
    }
}

/// The slot sequence of a key with hash `h` over a table of `m` slots.
pub fn slots(h: u64, m: usize) -> impl Iterator<Item = usize> {
    let m = m.max(1) as u64;
    let stride = if m > 1 {
        1 + crate::hash::remix(h) % (m - 1)
    } else {
        0
    };
    let mut slot = h % m;
    std::iter::from_fn(move || {
        let here = slot;
        slot = (slot + stride) % m;
        Some(here as usize)
    })
}

/// The backend for a key with hash `h`: see the module doc. `n` backends; `table` slots.
pub fn pick(table: &[u32], n: usize, h: u64, marks: &mut Marks, view: &mut impl View) -> usize {
    let Some(&home) = table.get((h % table.len().max(1) as u64) as usize) else {
        return 0;
    };
    let home = home as usize;
    marks.start(n);
    let mut least = None;
    for slot in slots(h, table.len()).take(WALK_LIMIT) {
        let Some(&i) = table.get(slot) else { break };
        let i = i as usize;
        if marks.first(i) && has_room(i, view, &mut least) {
            return i;
        }
    }
    for k in 0..n {
        let i = (home + k) % n;
        if marks.first(i) && has_room(i, view, &mut least) {
            return i;
        }
    }
    least.map_or(home, |(_, i)| i)
}

/// Whether `i` is usable and below its capacity; a usable backend that is full is kept in
/// `least` if it is the least overloaded so far (load / capacity, in 32.32 fixed point).
fn has_room(i: usize, view: &mut impl View, least: &mut Option<(u128, usize)>) -> bool {
    if !view.usable(i) {
        return false;
    }
    let (load, cap) = (view.in_flight(i), view.capacity(i));
    if load < cap {
        return true;
    }
    let ratio = (u128::from(load) << 32) / u128::from(cap.max(1));
    if least.is_none_or(|(r, _)| ratio < r) {
        *least = Some((ratio, i));
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hash::xxh64;
    use crate::table;

    /// A pool in memory: loads, ejections, and the bound over the usable backends.
    struct Fake {
        load: Vec<u64>,
        out: Vec<bool>,
        factor_milli: Option<u64>,
    }

    impl Fake {
        fn new(n: usize, factor_milli: Option<u64>) -> Fake {
            Fake {
                load: vec![0; n],
                out: vec![false; n],
                factor_milli,
            }
        }
        fn total(&self) -> u64 {
            self.load.iter().sum()
        }
        fn bound(&self) -> u64 {
            let usable = self.out.iter().filter(|&&o| !o).count() as u64;
            capacity(self.factor_milli.unwrap_or(1250), self.total(), 1, usable)
        }
    }

    impl View for Fake {
        fn usable(&self, i: usize) -> bool {
            !self.out[i]
        }
        fn in_flight(&mut self, i: usize) -> u64 {
            self.load[i]
        }
        fn capacity(&self, _i: usize) -> u64 {
            self.factor_milli.map_or(u64::MAX, |_| self.bound())
        }
    }

    fn pool(n: usize) -> Vec<u32> {
        let ids: Vec<String> = (0..n).map(|i| format!("b{i}")).collect();
        let names: Vec<&str> = ids.iter().map(String::as_str).collect();
        table::build(&names, &vec![1; n], table::DEFAULT_SIZE)
    }

    #[test]
    fn capacity_is_the_exact_ceiling() {
        // ceil(1.25 * 8 / 5) = 2 exactly, not 3 through float rounding.
        assert_eq!(capacity(1250, 7, 1, 5), 2);
        assert_eq!(capacity(1250, 8, 1, 5), 3);
        assert_eq!(capacity(1250, 0, 1, 10), 1);
        assert_eq!(capacity(1000, 99, 1, 10), 10);
        // Weighted: 3 of 4 shares of ceil(1.5 * 100).
        assert_eq!(capacity(1500, 99, 3, 4), 113);
        assert_eq!(capacity(1250, 5, 1, 0), u64::MAX);
        assert_eq!(capacity(u64::MAX, u64::MAX, u64::MAX, 1), u64::MAX);
    }

    /// One request in flight per step on average, 30 % of them for one hot key: returns
    /// the largest `load + 1 - bound` seen at placement (<= 0: the bound always held) and
    /// the hot key's share of its home backend's placements.
    fn hot_stream(factor_milli: Option<u64>) -> (i64, f64) {
        let n = 5;
        let table = pool(n);
        let mut fake = Fake::new(n, factor_milli);
        let mut marks = Marks::default();
        let mut rng = common::Rng::new(42);
        let mut flying: Vec<usize> = Vec::new();
        let hot = xxh64(b"hot-user", 0);
        let home = table[(hot % table.len() as u64) as usize] as usize;
        let (mut worst, mut hot_home, mut hot_all) = (i64::MIN, 0u32, 0u32);
        for _ in 0..100_000 {
            // Keep about 100 in flight: finish a random one when above.
            if flying.len() >= 100 {
                let done = flying.swap_remove(rng.below(flying.len()));
                fake.load[done] -= 1;
            }
            let is_hot = rng.below(10) < 3;
            let h = if is_hot {
                hot
            } else {
                xxh64(format!("user-{}", rng.below(10_000)).as_bytes(), 0)
            };
            let bound = fake.bound();
            let i = pick(&table, n, h, &mut marks, &mut fake);
            worst = worst.max(fake.load[i] as i64 + 1 - bound as i64);
            if is_hot {
                hot_all += 1;
                hot_home += u32::from(i == home);
            }
            fake.load[i] += 1;
            flying.push(i);
        }
        (worst, f64::from(hot_home) / f64::from(hot_all))
    }

    #[test]
    fn bounded_loads_hold_with_a_hot_key() {
        let (worst, home_share) = hot_stream(Some(1250));
        assert!(
            worst <= 0,
            "a backend went {worst} above ceil(c (m + 1) / n)"
        );
        // The hot key still goes home whenever its backend has room.
        assert!(home_share > 0.3, "{home_share}");
        // Plain Maglev (no bound) piles the hot key's 30 % on one backend: far above it.
        let (worst, home_share) = hot_stream(None);
        assert!(worst > 10, "{worst}");
        assert_eq!(home_share, 1.0);
    }

    #[test]
    fn an_ejected_backend_moves_only_its_keys_and_scatters_them() {
        let n = 5;
        let table = pool(n);
        let mut fake = Fake::new(n, Some(1250));
        let mut marks = Marks::default();
        let keys: Vec<u64> = (0..10_000)
            .map(|k| xxh64(format!("user-{k}").as_bytes(), 0))
            .collect();
        let before: Vec<usize> = keys
            .iter()
            .map(|&h| pick(&table, n, h, &mut marks, &mut fake))
            .collect();
        fake.out[2] = true;
        let mut landed = vec![0u32; n];
        for (&h, &was) in keys.iter().zip(&before) {
            let now = pick(&table, n, h, &mut marks, &mut fake);
            if was == 2 {
                landed[now] += 1;
            } else {
                assert_eq!(now, was, "a key of a live backend moved");
            }
        }
        assert_eq!(landed[2], 0);
        let moved: u32 = landed.iter().sum();
        for (i, &k) in landed.iter().enumerate().filter(|&(i, _)| i != 2) {
            let share = f64::from(k) / f64::from(moved);
            assert!((share - 0.25).abs() < 0.05, "backend {i} took {share}");
        }
        // Everything ejected: the key's own backend (the detector is more likely wrong).
        fake.out = vec![true; n];
        for (&h, &was) in keys.iter().zip(&before).take(100) {
            assert_eq!(pick(&table, n, h, &mut marks, &mut fake), was);
        }
    }

    #[test]
    fn when_all_are_full_the_least_loaded_wins() {
        struct Full(Vec<u64>);
        impl View for Full {
            fn usable(&self, _: usize) -> bool {
                true
            }
            fn in_flight(&mut self, i: usize) -> u64 {
                self.0[i]
            }
            fn capacity(&self, _: usize) -> u64 {
                2
            }
        }
        let table = pool(4);
        let mut marks = Marks::default();
        let mut full = Full(vec![5, 3, 9, 4]);
        for k in 0..50u64 {
            assert_eq!(
                pick(&table, 4, xxh64(&k.to_le_bytes(), 0), &mut marks, &mut full),
                1
            );
        }
        assert_eq!(pick(&[], 0, 7, &mut marks, &mut full), 0);
    }

    #[test]
    fn every_stride_reaches_every_slot() {
        let m = 1009;
        for h in [0u64, 1, 12345, u64::MAX] {
            let mut seen = vec![false; m];
            for s in slots(h, m).take(m) {
                seen[s] = true;
            }
            assert!(seen.iter().all(|&x| x), "hash {h}");
        }
        assert_eq!(slots(9, 1).take(3).collect::<Vec<_>>(), [0, 0, 0]);
    }
}
