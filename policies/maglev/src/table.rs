//! The Maglev lookup table (Eisenbud et al., "Maglev: A Fast and Reliable Software Network
//! Load Balancer", NSDI '16, section 3.4, "populate"), weighted as Envoy's `maglev_lb.cc`.
//!
//! Each backend gets a permutation of the table's `M` slots from two hashes of its id:
//! `offset = xxh64(id, 0) mod M`, `skip = xxh64(id, 1) mod (M - 1) + 1`, permutation
//! `j -> (offset + j * skip) mod M`. `M` is prime, so every `skip` is coprime to it and the
//! permutation visits every slot. Backends then take turns, each claiming the next slot of
//! its permutation that is still empty, until the table is full. With equal weights every
//! backend ends with `M / N` slots give or take one; removing a backend leaves most slots
//! of the others where they were ("minimal disruption", not an absolute guarantee).
//!
//! Weights, as Envoy: a backend takes its turn in round `k` only if `k * w >= t * w_max`,
//! `t` being the turns it has had, so a backend of weight `w_max / 3` claims a slot every
//! third round. The rounds are scheduled with a heap keyed by (round, rank), which gives
//! exactly that order without visiting every backend in every round (a pool of one heavy
//! backend and 9,999 light ones would otherwise cost N x M checks).
//!
//! Cost: about `M * ln(M / N)` slot probes (the last empty slots take the longest to find:
//! coupon collecting; 2.9 M probes for N = 3, 10.5 M for N = 100), against a bitmap of
//! taken slots that stays in L1, plus `M log N` heap steps when weights differ; O(M log M)
//! in all. `build_time` (an ignored test) prints it.
use std::cmp::Reverse;
use std::collections::BinaryHeap;

use crate::hash::xxh64;

/// The default table size, a prime: a quarter of Envoy's 65537, because a build of that
/// takes 2 to 3 ms in wasm, close to the proxy's 5 ms per-call CPU deadline on a busy
/// machine (see [`MAX_SIZE`]); 16411 slots still give each of 100 backends 164 of them.
pub const DEFAULT_SIZE: usize = 16_411;
/// The largest table accepted: Envoy's default. The build costs about `M ln(M / N)` probes
/// (a tenth of that for three backends); in wasm 65537 slots take 2 to 3 ms and 131071
/// take 4 to 6 ms (`maglev_build_time_in_wasm` in the host's tests), while `configure` must
/// finish within the proxy's 5 ms CPU deadline per call: a build past it is a fault, and
/// the rebuilt instance would build again. Envoy allows up to 5,000,011, but it builds off
/// the request path.
pub const MAX_SIZE: usize = 65_537;

const EMPTY: u32 = u32::MAX;

/// Whether `m` is prime (trial division: at most ~260 steps for sizes we accept).
pub fn is_prime(m: usize) -> bool {
    if m < 2 {
        return false;
    }
    if m.is_multiple_of(2) {
        return m == 2;
    }
    let mut d = 3usize;
    while d.saturating_mul(d) <= m {
        if m.is_multiple_of(d) {
            return false;
        }
        d += 2;
    }
    true
}

/// One backend's permutation, walked as it claims slots.
struct Perm {
    index: u32,
    weight: u64,
    pos: u64,
    skip: u64,
    turns: u64,
    /// Where the permutation starts, and `skip`'s inverse mod M: slot `s` is entry
    /// `(s - offset) * inverse mod M` of the permutation.
    offset: u64,
    inverse: u64,
}

/// Builds the table: slot -> index into `ids`. `weights[i] == 0` gives backend `i` no slot.
/// The result depends only on the (id, weight) pairs, not on their order in `ids`: the same
/// pool gives the same table in every instance and every proxy. Empty when `m < 2`, no
/// backend has a weight, or `ids` and `weights` differ in length.
pub fn build(ids: &[&str], weights: &[u64], m: usize) -> Vec<u32> {
    if m < 2 || ids.len() != weights.len() || ids.len() >= EMPTY as usize {
        return Vec::new();
    }
    let m64 = m as u64;
    // Ranked by id (then index, for duplicate ids) so that ties between backends claiming
    // in the same round do not depend on the order the host lists them in.
    let mut order: Vec<usize> = (0..ids.len()).filter(|&i| weights[i] > 0).collect();
    order.sort_by(|&a, &b| ids[a].cmp(ids[b]).then(a.cmp(&b)));
    let mut perms: Vec<Perm> = order
        .iter()
        .map(|&i| {
            let offset = xxh64(ids[i].as_bytes(), 0) % m64;
            let skip = xxh64(ids[i].as_bytes(), 1) % (m64 - 1) + 1;
            Perm {
                index: i as u32,
                weight: weights[i],
                pos: offset,
                skip,
                turns: 0,
                offset,
                inverse: inverse_mod(skip, m64),
            }
        })
        .collect();
    let Some(max_weight) = perms.iter().map(|p| p.weight).max() else {
        return Vec::new();
    };
    let mut table = Table {
        slots: vec![EMPTY; m],
        taken: vec![0; m.div_ceil(64)],
        m: m64,
        left: m,
        endgame: m.isqrt() / 3,
        empty: None,
    };
    if perms.iter().all(|p| p.weight == max_weight) {
        fill_in_turns(&mut table, &mut perms);
    } else {
        fill_weighted(&mut table, &mut perms, max_weight);
    }
    table.slots
}

/// Equal weights: every backend takes a turn every round, in rank order.
fn fill_in_turns(table: &mut Table, perms: &mut [Perm]) {
    while table.left > 0 {
        for p in perms.iter_mut() {
            if table.left == 0 || !table.claim(p) {
                return;
            }
        }
    }
}

/// Weights: a backend's turns are scheduled by round, ties broken by rank.
fn fill_weighted(table: &mut Table, perms: &mut [Perm], max_weight: u64) {
    // Every backend's first turn is in round 1.
    let mut heap: BinaryHeap<Reverse<(u64, usize)>> =
        (0..perms.len()).map(|rank| Reverse((1, rank))).collect();
    while table.left > 0 {
        let Some(Reverse((round, rank))) = heap.pop() else {
            return;
        };
        let Some(p) = perms.get_mut(rank) else {
            return;
        };
        if !table.claim(p) {
            return;
        }
        p.turns += 1;
        // The first round k after this one with k * w >= turns * w_max (at most one turn
        // per round); turns <= M and w_max <= u32::MAX, so the product fits in u64.
        let due = p.turns.saturating_mul(max_weight).div_ceil(p.weight);
        heap.push(Reverse((due.max(round + 1), rank)));
    }
}

/// The table being filled, with a bitmap of the slots taken: the probes of the populate
/// loop then touch 8 KiB instead of the 256 KiB table.
///
/// The endgame: with `k` slots left a probe finds one with odds `k / M`, so the last
/// slots cost the most probes (the last `sqrt(M)` are a third to a half of the build). From
/// `sqrt(M) / 3` left on the empty slots are listed and a backend's turn takes the one that comes first
/// in its permutation (its entry number is `(s - offset) / skip mod M`, and every slot
/// before its current entry is taken): `k` multiplications instead of `M / k` probes, and
/// exactly the slot the probing would have found (a test checks the whole table against
/// the paper's loop); 15 to 25 % faster in all.
struct Table {
    slots: Vec<u32>,
    taken: Vec<u64>,
    m: u64,
    /// Slots still empty.
    left: usize,
    /// Switch to listing the empty slots at this many left.
    endgame: usize,
    empty: Option<Vec<u64>>,
}

impl Table {
    /// Gives `p` its next slot; false when none is left (or a broken invariant).
    fn claim(&mut self, p: &mut Perm) -> bool {
        let slot = match &mut self.empty {
            Some(empty) => take_first(empty, p, self.m),
            None => self.probe(p),
        };
        let Some(slot) = slot else {
            return false;
        };
        let slot = slot as usize;
        if let (Some(word), Some(cell)) = (self.taken.get_mut(slot / 64), self.slots.get_mut(slot))
        {
            *word |= 1 << (slot % 64);
            *cell = p.index;
        }
        self.left -= 1;
        if self.empty.is_none() && self.left <= self.endgame {
            self.empty = Some(self.list_empty());
        }
        true
    }

    /// The next empty slot of `p`'s permutation by probing. The permutation visits every
    /// slot within `m` steps (`skip` is coprime to the prime `m`), so while the table has
    /// an empty slot this finds one; the bound only guards against a broken invariant.
    fn probe(&mut self, p: &mut Perm) -> Option<u64> {
        for _ in 0..self.m {
            let slot = p.pos;
            p.pos += p.skip;
            if p.pos >= self.m {
                p.pos -= self.m;
            }
            let word = self.taken.get((slot / 64) as usize)?;
            if word & (1 << (slot % 64)) == 0 {
                return Some(slot);
            }
        }
        None
    }

    fn list_empty(&self) -> Vec<u64> {
        (0..self.m)
            .filter(|&s| {
                self.taken
                    .get((s / 64) as usize)
                    .is_some_and(|w| w & (1 << (s % 64)) == 0)
            })
            .collect()
    }
}

/// Removes and returns the empty slot that comes first in `p`'s permutation.
fn take_first(empty: &mut Vec<u64>, p: &Perm, m: u64) -> Option<u64> {
    let entry = |s: u64| (s + m - p.offset) % m * p.inverse % m;
    let (at, _) = empty.iter().enumerate().min_by_key(|&(_, &s)| entry(s))?;
    Some(empty.swap_remove(at))
}

/// `a^-1 mod m` for a prime `m` and `0 < a < m` (extended Euclid); 0 if there is none.
fn inverse_mod(a: u64, m: u64) -> u64 {
    let (mut r0, mut r1) = (i128::from(m), i128::from(a % m));
    let (mut t0, mut t1) = (0i128, 1i128);
    while r1 != 0 {
        let q = r0 / r1;
        (r0, r1) = (r1, r0 - q * r1);
        (t0, t1) = (t1, t0 - q * t1);
    }
    if r0 != 1 {
        return 0;
    }
    u64::try_from(t0.rem_euclid(i128::from(m))).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("backend-{i}")).collect()
    }

    fn counts(table: &[u32], n: usize) -> Vec<usize> {
        let mut c = vec![0; n];
        for &b in table {
            c[b as usize] += 1;
        }
        c
    }

    fn lookup<'a>(table: &[u32], ids: &'a [&str], key: &str) -> &'a str {
        ids[table[(xxh64(key.as_bytes(), 0) % table.len() as u64) as usize] as usize]
    }

    #[test]
    fn primes() {
        let primes: Vec<usize> = (0..30).filter(|&m| is_prime(m)).collect();
        assert_eq!(primes, [2, 3, 5, 7, 11, 13, 17, 19, 23, 29]);
        assert!(is_prime(DEFAULT_SIZE) && is_prime(MAX_SIZE) && is_prime(131_071));
        assert!(is_prime(5_000_011));
        assert!(!is_prime(65_535) && !is_prime(65_539 * 3));
    }

    #[test]
    fn the_table_is_full_and_balanced() {
        for n in [1, 3, 5, 10, 100] {
            let owned = ids(n);
            let names: Vec<&str> = owned.iter().map(String::as_str).collect();
            let table = build(&names, &vec![1; n], DEFAULT_SIZE);
            assert_eq!(table.len(), DEFAULT_SIZE);
            let c = counts(&table, n);
            let fair = DEFAULT_SIZE as f64 / n as f64;
            for (i, &k) in c.iter().enumerate() {
                // Turns alternate until the table is full: at most one slot apart.
                assert!((k as f64 - fair).abs() <= 1.0, "n {n}: backend {i} has {k}");
            }
        }
    }

    #[test]
    fn weights_give_proportional_slots() {
        let names = ["a", "b", "c", "d"];
        let weights = [1, 2, 3, 0];
        let table = build(&names, &weights, DEFAULT_SIZE);
        let c = counts(&table, 4);
        assert_eq!(c[3], 0, "weight 0 gets no slot");
        for i in 0..3 {
            let want = DEFAULT_SIZE as f64 * weights[i] as f64 / 6.0;
            assert!(
                (c[i] as f64 - want).abs() / want < 0.01,
                "{}: {} slots, want {want}",
                names[i],
                c[i]
            );
        }
    }

    #[test]
    fn the_order_of_backends_does_not_matter() {
        let a = build(&["x", "y", "z"], &[1, 1, 2], 1009);
        let b = build(&["z", "x", "y"], &[2, 1, 1], 1009);
        let by_id_a: Vec<&str> = a.iter().map(|&i| ["x", "y", "z"][i as usize]).collect();
        let by_id_b: Vec<&str> = b.iter().map(|&i| ["z", "x", "y"][i as usize]).collect();
        assert_eq!(by_id_a, by_id_b);
    }

    #[test]
    fn removing_one_of_n_moves_about_one_nth_of_the_keys() {
        let keys: Vec<String> = (0..10_000).map(|k| format!("user-{k}")).collect();
        for n in [3, 5, 10] {
            let owned = ids(n);
            let all: Vec<&str> = owned.iter().map(String::as_str).collect();
            let before = build(&all, &vec![1; n], DEFAULT_SIZE);
            // Remove each backend in turn: the bound must hold whichever leaves.
            for gone in 0..n {
                let rest: Vec<&str> = all.iter().copied().filter(|&s| s != all[gone]).collect();
                let after = build(&rest, &vec![1; n - 1], DEFAULT_SIZE);
                let moved = keys
                    .iter()
                    .filter(|k| lookup(&before, &all, k) != lookup(&after, &rest, k))
                    .count();
                let bound = 10_000.0 * (1.0 / n as f64 + 0.02);
                assert!(
                    (moved as f64) <= bound,
                    "n {n}, removing {}: {moved} keys moved, bound {bound}",
                    all[gone]
                );
                // Every key of the backend that left moved, and (almost) nothing else.
                let owned_by_gone = keys
                    .iter()
                    .filter(|k| lookup(&before, &all, k) == all[gone])
                    .count();
                assert!(moved >= owned_by_gone);
            }
        }
    }

    /// The paper's populate loop as written, probing to the very last slot.
    fn reference(ids: &[&str], m: usize) -> Vec<u32> {
        let mut order: Vec<usize> = (0..ids.len()).collect();
        order.sort_by_key(|&i| ids[i]);
        let m64 = m as u64;
        let mut next: Vec<(u64, u64)> = order
            .iter()
            .map(|&i| {
                let b = ids[i].as_bytes();
                (xxh64(b, 0) % m64, xxh64(b, 1) % (m64 - 1) + 1)
            })
            .collect();
        let mut table = vec![EMPTY; m];
        let mut filled = 0;
        while filled < m {
            for (r, (pos, skip)) in next.iter_mut().enumerate() {
                while table[*pos as usize] != EMPTY {
                    *pos = (*pos + *skip) % m64;
                }
                table[*pos as usize] = order[r] as u32;
                filled += 1;
                if filled == m {
                    break;
                }
            }
        }
        table
    }

    #[test]
    fn the_endgame_shortcut_builds_the_papers_table() {
        for (n, m) in [(3, 1009), (10, DEFAULT_SIZE), (37, 10_007)] {
            let owned = ids(n);
            let names: Vec<&str> = owned.iter().map(String::as_str).collect();
            assert_eq!(build(&names, &vec![1; n], m), reference(&names, m), "n {n}");
        }
        assert_eq!(inverse_mod(3, 7), 5);
        assert_eq!(inverse_mod(0, 7), 0);
    }

    #[test]
    fn degenerate_inputs_give_an_empty_table() {
        assert!(build(&[], &[], DEFAULT_SIZE).is_empty());
        assert!(build(&["a"], &[0], DEFAULT_SIZE).is_empty());
        assert!(build(&["a"], &[1], 1).is_empty());
        assert!(build(&["a", "b"], &[1], 7).is_empty());
        assert_eq!(build(&["a", "b", "c"], &[1, 1, 1], 2).len(), 2);
    }

    /// `cargo test --release -p maglev -- --ignored --nocapture build_time`
    #[test]
    #[ignore]
    fn build_time() {
        let cases = [
            (3, DEFAULT_SIZE),
            (10, DEFAULT_SIZE),
            (100, DEFAULT_SIZE),
            (1000, DEFAULT_SIZE),
            (10, 131_071),
        ];
        for (n, m) in cases {
            let owned = ids(n);
            let names: Vec<&str> = owned.iter().map(String::as_str).collect();
            // The fastest of 20: the least disturbed by whatever else the machine runs.
            let best = (0..20)
                .map(|_| {
                    let t = std::time::Instant::now();
                    std::hint::black_box(build(&names, &vec![1; n], m));
                    t.elapsed().as_secs_f64() * 1e3
                })
                .fold(f64::INFINITY, f64::min);
            println!("n {n} m {m}: {best:.3} ms");
        }
    }
}
