//! Prequal's probe pool and hot-cold lexicographic (HCL) selection (Wydrowski et al.,
//! "Load is not what you should balance: Introducing Prequal", NSDI '24).
//!
//! Per query a Prequal policy:
//! 1. asks for probes of a few random backends ([`probe_targets`], the paper's
//!    `r_probe = 3`) and [`ProbePool::insert`]s the answers (or the same `rif` and latency
//!    piggybacked on responses) as they arrive, off the request path;
//! 2. routes with [`ProbePool::select`], falling back to a uniformly random backend when
//!    it returns `None` (fewer than 2 usable probes);
//! 3. calls [`ProbePool::remove_one`] once (the paper's `r_remove = 1`);
//! 4. calls [`ProbePool::forget`] for a backend whose request failed.
//!
//! The pool holds no clock: every call that ages entries takes `now_ns`.

use crate::Rng;
use std::cmp::Reverse;

/// Pool size `m`: "a pool size of 16 suffices" (paper, via prequal-rs and poise-rs).
pub const DEFAULT_CAP: usize = 16;
/// Entries older than this are ineligible: 1 s in the paper.
pub const DEFAULT_MAX_AGE_NS: u64 = 1_000_000_000;
/// The paper's `Q_RIF = 2^-0.25 ≈ 0.84`; its good range is 0.6–0.9. prequal-rs uses 0.6
/// because "the paper's 0.84 herded onto few replicas at high load in our simulation".
pub const DEFAULT_Q_RIF: f64 = 0.840_896_415_253_714_5;
/// Uses allowed per entry before it is dropped. See [`ProbePool::with_max_uses`].
pub const DEFAULT_MAX_USES: u32 = 16;
/// Entries preallocated at most, whatever `cap` says, so a silly cap cannot exhaust memory
/// up front.
const PREALLOC: usize = 64;

/// One pooled probe answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Probe {
    pub backend: u32,
    /// Requests in flight: as reported, plus 1 per time this entry was selected.
    pub rif: u32,
    /// The RIF the backend reported, which is what the hot/cold quantile is taken over.
    pub reported_rif: u32,
    /// The backend's latency estimate at its current RIF, in microseconds.
    pub latency_us: u64,
    /// When the answer arrived.
    pub recv_ns: u64,
    /// Selections left before the entry is dropped.
    pub uses_left: u32,
}

/// A Prequal probe pool: at most `cap` entries, the newest per backend.
#[derive(Debug, Clone)]
pub struct ProbePool {
    entries: Vec<Probe>,
    /// Reused for the quantile so selection does not allocate.
    scratch: Vec<u32>,
    cap: usize,
    max_age_ns: u64,
    q_rif: f64,
    max_uses: u32,
    remove_oldest_next: bool,
}

impl Default for ProbePool {
    /// The paper's defaults: 16 entries, 1 s, `Q_RIF = 2^-0.25`, 16 uses.
    fn default() -> Self {
        ProbePool::new(DEFAULT_CAP, DEFAULT_MAX_AGE_NS, DEFAULT_Q_RIF)
    }
}

impl ProbePool {
    /// A pool of at most `cap` entries (0 disables pooling: [`select`](Self::select) is
    /// always `None`), whose entries expire `max_age_ns` after arrival, with hot entries
    /// being those above the `q_rif` quantile. `q_rif` is clamped to `0..=1` (NaN gives
    /// [`DEFAULT_Q_RIF`]); 0 degenerates to RIF-only control, 1 to latency-only.
    pub fn new(cap: usize, max_age_ns: u64, q_rif: f64) -> Self {
        let q_rif = if q_rif.is_nan() {
            DEFAULT_Q_RIF
        } else {
            q_rif.clamp(0.0, 1.0)
        };
        ProbePool {
            entries: Vec::with_capacity(cap.min(PREALLOC) + 1),
            scratch: Vec::with_capacity(cap.min(PREALLOC)),
            cap,
            max_age_ns,
            q_rif,
            max_uses: DEFAULT_MAX_USES,
            remove_oldest_next: true,
        }
    }

    /// Sets the reuse budget `b_reuse`: how many queries one probe answer may route
    /// (at least 1).
    ///
    /// The paper derives it from the probe and removal rates, `m` and `n` with δ = 1, and
    /// the two re-implementations disagree on the formula (lb-algorithms.md §1, step 3);
    /// with the paper's `r_probe = 3`, `r_remove = 1` and `n ≫ m` both give 1 or 2.
    /// The default, 16, is instead prequal-rs's `max_reuse` cap, which it uses when probes
    /// cannot keep up (non-positive denominator). Here the host decides how many probes
    /// really arrive (often just piggybacked headers), so a budget of 1–2 would empty the
    /// pool into random fallback; the +1 RIF compensation per use already makes a reused
    /// entry turn hot, so the budget is a backstop. A policy that issues its own probes at
    /// the paper's rate should set 2.
    pub fn with_max_uses(mut self, max_uses: u32) -> Self {
        self.max_uses = max_uses.max(1);
        self
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The pooled entries, oldest insertion first (for a policy's `scores()` or tests).
    pub fn entries(&self) -> &[Probe] {
        &self.entries
    }

    /// Pools a probe answer received at `now_ns`, replacing the backend's previous entry
    /// (only the newest per backend is kept, as in prequal-rs) and evicting the oldest
    /// entry when that makes the pool exceed `cap`. An answer older than the backend's
    /// pooled one (reordered delivery) is dropped; so is one older than every entry of a
    /// full pool, since it would be the oldest.
    pub fn insert(&mut self, backend: u32, rif: u32, latency_us: u64, now_ns: u64) {
        if self
            .entries
            .iter()
            .any(|e| e.backend == backend && e.recv_ns > now_ns)
        {
            return;
        }
        self.entries.retain(|e| e.backend != backend);
        self.entries.push(Probe {
            backend,
            rif,
            reported_rif: rif,
            latency_us,
            recv_ns: now_ns,
            uses_left: self.max_uses,
        });
        if self.entries.len() > self.cap {
            let oldest = self.oldest();
            self.take(oldest);
        }
    }

    /// The backend to route to by the HCL rule, or `None` when fewer than 2 entries are
    /// eligible (the paper's fall back to a uniformly random backend, which the caller
    /// does with its own [`Rng`]).
    ///
    /// Entries older than `max_age_ns` (strictly: one exactly `max_age_ns` old is still
    /// eligible) are dropped first. An entry is hot when its RIF is above the `q_rif`
    /// quantile of the pooled *reported* RIFs (the pool is the client's sample of the
    /// fleet's RIF distribution). The cold entry with the lowest latency wins, else (all
    /// hot, possible once compensation has raised RIFs) the lowest RIF. Ties go to the
    /// other key, then to the earliest entry.
    ///
    /// Compensation: the chosen entry's RIF rises by 1, because this query adds load its
    /// probe predates, and it loses one use; at 0 it is dropped.
    pub fn select(&mut self, now_ns: u64) -> Option<u32> {
        self.expire(now_ns);
        if self.entries.len() < 2 {
            return None;
        }
        let threshold = self.hot_threshold();
        let cold = self
            .entries
            .iter()
            .enumerate()
            .filter(|(_, e)| e.rif <= threshold)
            .min_by_key(|(_, e)| (e.latency_us, e.rif));
        let (i, _) = cold.or_else(|| {
            self.entries
                .iter()
                .enumerate()
                .min_by_key(|(_, e)| (e.rif, e.latency_us))
        })?;
        let e = self.entries.get_mut(i)?;
        e.rif = e.rif.saturating_add(1);
        e.uses_left = e.uses_left.saturating_sub(1);
        let (backend, spent) = (e.backend, e.uses_left == 0);
        if spent {
            self.take(Some(i));
        }
        Some(backend)
    }

    /// Removes one entry, alternating (starting with the oldest) between the oldest entry
    /// and the worst: the hot entry with the highest RIF, or if none is hot the one with
    /// the highest latency. Selection consumes the best entries first, so without the
    /// worst-removal the pool would drift towards describing the fleet as busier than it
    /// is; without the oldest-removal stale entries would linger. Expired entries are
    /// dropped first and do not count. Returns the removed entry's backend.
    pub fn remove_one(&mut self, now_ns: u64) -> Option<u32> {
        self.expire(now_ns);
        let i = if self.remove_oldest_next {
            self.oldest()
        } else {
            self.worst()
        };
        let removed = self.take(i)?;
        self.remove_oldest_next = !self.remove_oldest_next;
        Some(removed.backend)
    }

    /// Drops the backend's entry, if any, returning whether there was one. Call it when a
    /// request to the backend fails: a backend that fails fast looks fast and idle, and
    /// its probe would otherwise keep attracting traffic ("sinkholing"; prequal-rs does
    /// the same).
    pub fn forget(&mut self, backend: u32) -> bool {
        let before = self.entries.len();
        self.entries.retain(|e| e.backend != backend);
        self.entries.len() != before
    }

    fn expire(&mut self, now_ns: u64) {
        let max_age = self.max_age_ns;
        self.entries
            .retain(|e| now_ns.saturating_sub(e.recv_ns) <= max_age);
    }

    /// The `q_rif` quantile (nearest rank: the `⌈q·n⌉`-th smallest, at least the first)
    /// of the reported RIFs; `u32::MAX` for an empty pool.
    fn hot_threshold(&mut self) -> u32 {
        self.scratch.clear();
        self.scratch
            .extend(self.entries.iter().map(|e| e.reported_rif));
        self.scratch.sort_unstable();
        let n = self.scratch.len();
        // q_rif is in 0..=1, so the rank is in 0..=n; the `as` cast saturates anyway.
        let rank = (self.q_rif * n as f64).ceil() as usize;
        let idx = rank.clamp(1, n.max(1)) - 1;
        self.scratch.get(idx).copied().unwrap_or(u32::MAX)
    }

    /// The earliest-received entry; ties go to the earliest inserted.
    fn oldest(&self) -> Option<usize> {
        self.entries
            .iter()
            .enumerate()
            .min_by_key(|(_, e)| e.recv_ns)
            .map(|(i, _)| i)
    }

    /// The entry the paper's "remove worst" rule names; ties go to the earliest entry.
    fn worst(&mut self) -> Option<usize> {
        let threshold = self.hot_threshold();
        let hot = self
            .entries
            .iter()
            .enumerate()
            .filter(|(_, e)| e.rif > threshold)
            .min_by_key(|(_, e)| Reverse((e.rif, e.latency_us)));
        hot.or_else(|| {
            self.entries
                .iter()
                .enumerate()
                .min_by_key(|(_, e)| Reverse((e.latency_us, e.rif)))
        })
        .map(|(i, _)| i)
    }

    fn take(&mut self, i: Option<usize>) -> Option<Probe> {
        // Order-preserving, so "earliest entry" tie-breaks stay meaningful.
        i.filter(|&i| i < self.entries.len())
            .map(|i| self.entries.remove(i))
    }
}

/// Fills `out` (cleared first) with `k` distinct backends drawn uniformly from
/// `0..n_backends`, in random order; fewer when `k > n_backends` (then all of them).
///
/// Uses Floyd's algorithm, which needs exactly `k` draws and no memory beyond `out`
/// (rejection sampling has no bound on its draws), then shuffles, because Floyd's set is
/// uniform but its order is not. Cost is O(k²) from the membership test: meant for the
/// paper's handful of probes per query. Backends above `u32::MAX - 1` are never drawn.
pub fn probe_targets(rng: &mut Rng, n_backends: usize, k: usize, out: &mut Vec<u32>) {
    out.clear();
    let n = n_backends.min(u32::MAX as usize);
    let k = k.min(n);
    out.reserve(k);
    for j in (n - k)..n {
        // below(j + 1) < j + 1 <= n <= u32::MAX, so both casts are lossless.
        let t = rng.below(j + 1) as u32;
        let pick = if out.contains(&t) { j as u32 } else { t };
        out.push(pick);
    }
    for i in (1..out.len()).rev() {
        out.swap(i, rng.below(i + 1));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1_000_000_000;

    fn pool(entries: &[(u32, u32, u64)]) -> ProbePool {
        let mut p = ProbePool::default();
        for &(b, rif, lat) in entries {
            p.insert(b, rif, lat, 0);
        }
        p
    }

    fn backends(p: &ProbePool) -> Vec<u32> {
        p.entries().iter().map(|e| e.backend).collect()
    }

    #[test]
    fn defaults_are_the_papers() {
        assert!((DEFAULT_Q_RIF - 2f64.powf(-0.25)).abs() < 1e-15);
        let p = ProbePool::default();
        assert_eq!((p.cap, p.max_age_ns, p.max_uses), (16, S, 16));
        assert!(p.is_empty());
    }

    #[test]
    fn insert_keeps_the_newest_entry_per_backend() {
        let mut p = ProbePool::default();
        p.insert(1, 5, 100, 10);
        p.insert(2, 5, 100, 11);
        p.insert(1, 7, 50, 12);
        assert_eq!(backends(&p), [2, 1]);
        assert_eq!(p.entries()[1].rif, 7);
        // A reordered, older answer does not replace the newer one.
        p.insert(1, 0, 1, 5);
        assert_eq!(p.entries()[1].rif, 7);
        // Equal times: the later call wins.
        p.insert(1, 9, 50, 12);
        assert_eq!(p.entries()[1].rif, 9);
    }

    #[test]
    fn exactly_full_keeps_all_and_one_more_evicts_the_oldest() {
        let mut p = ProbePool::new(3, S, DEFAULT_Q_RIF);
        p.insert(10, 1, 1, 30);
        p.insert(11, 1, 1, 10);
        p.insert(12, 1, 1, 20);
        assert_eq!(p.len(), 3, "exactly full");
        p.insert(13, 1, 1, 40);
        assert_eq!(backends(&p), [10, 12, 13], "11 was the oldest");
        // An answer older than every entry of a full pool is itself the oldest.
        p.insert(14, 1, 1, 0);
        assert_eq!(backends(&p), [10, 12, 13]);
        // Re-inserting a pooled backend does not evict anyone.
        p.insert(10, 2, 1, 50);
        assert_eq!(backends(&p), [12, 13, 10]);
    }

    #[test]
    fn zero_cap_pools_nothing() {
        let mut p = ProbePool::new(0, S, DEFAULT_Q_RIF);
        p.insert(1, 1, 1, 0);
        p.insert(2, 1, 1, 0);
        assert!(p.is_empty());
        assert_eq!(p.select(0), None);
        assert_eq!(p.remove_one(0), None);
    }

    #[test]
    fn entry_exactly_max_age_old_is_eligible_one_ns_more_is_not() {
        let mut p = ProbePool::new(16, 1000, DEFAULT_Q_RIF);
        p.insert(1, 0, 10, 0);
        p.insert(2, 0, 20, 500);
        assert_eq!(
            p.select(1000),
            Some(1),
            "age 1000 == max_age: still eligible"
        );
        assert_eq!(p.select(1001), None, "1 expired, only 2 left");
        assert_eq!(backends(&p), [2]);
    }

    #[test]
    fn fewer_than_two_eligible_is_none() {
        let mut p = ProbePool::default();
        assert_eq!(p.select(0), None);
        p.insert(1, 0, 10, 0);
        assert_eq!(p.select(0), None);
        assert_eq!(p.entries()[0].rif, 0, "no compensation without a pick");
        p.insert(2, 0, 20, 0);
        assert_eq!(p.select(0), Some(1));
    }

    #[test]
    fn future_entries_count_as_fresh() {
        let mut p = ProbePool::new(16, 10, DEFAULT_Q_RIF);
        p.insert(1, 0, 10, 1_000);
        p.insert(2, 0, 20, 1_000);
        assert_eq!(p.select(0), Some(1));
    }

    #[test]
    fn cold_lowest_latency_beats_hot_lower_latency() {
        // Reported RIFs 1,2,3,10 with q = 0.5: threshold is the 2nd smallest, 2.
        let mut p = ProbePool::new(16, S, 0.5);
        for (b, rif, lat) in [(0, 10, 1), (1, 2, 50), (2, 1, 80), (3, 3, 5)] {
            p.insert(b, rif, lat, 0);
        }
        assert_eq!(p.select(0), Some(1), "cold = {{1, 2}}; 1 is faster");
    }

    #[test]
    fn all_hot_falls_back_to_lowest_rif() {
        let mut p = ProbePool::new(16, S, 0.0);
        p.insert(0, 1, 10, 0);
        p.insert(1, 1, 20, 0);
        p.insert(2, 5, 1, 0);
        assert_eq!(p.select(0), Some(0));
        assert_eq!(p.select(0), Some(1), "0 is now rif 2 > threshold 1");
        // Both compensated to rif 2: all hot (threshold stays the reported 1), lowest RIF
        // then lowest latency.
        assert_eq!(p.select(0), Some(0));
        let rifs: Vec<u32> = p.entries().iter().map(|e| e.rif).collect();
        assert_eq!(rifs, [3, 2, 5]);
    }

    #[test]
    fn q_rif_zero_is_rif_only_and_one_is_latency_only() {
        let entries = [(0, 3, 1), (1, 1, 90), (2, 1, 70), (3, 2, 5)];
        let mut p = ProbePool::new(16, S, 0.0);
        entries.iter().for_each(|&(b, r, l)| p.insert(b, r, l, 0));
        assert_eq!(p.select(0), Some(2), "min RIF, latency breaks the tie");
        let mut p = ProbePool::new(16, S, 1.0);
        entries.iter().for_each(|&(b, r, l)| p.insert(b, r, l, 0));
        assert_eq!(p.select(0), Some(0), "nothing is hot: lowest latency");
    }

    #[test]
    fn q_rif_is_sanitised() {
        assert_eq!(ProbePool::new(4, S, f64::NAN).q_rif, DEFAULT_Q_RIF);
        assert_eq!(ProbePool::new(4, S, -1.0).q_rif, 0.0);
        assert_eq!(ProbePool::new(4, S, 7.0).q_rif, 1.0);
    }

    #[test]
    fn default_quantile_of_sixteen_is_the_fourteenth() {
        let mut p = ProbePool::default();
        (0..16).for_each(|b| p.insert(b, b, 100, 0));
        assert_eq!(p.hot_threshold(), 13, "ceil(0.84 * 16) = 14th smallest");
    }

    #[test]
    fn compensation_spreads_equal_entries_and_budget_drops_them() {
        let mut p = ProbePool::new(16, S, 1.0).with_max_uses(2);
        p.insert(7, 0, 10, 0);
        p.insert(8, 0, 10, 0);
        p.insert(9, 0, 10, 0);
        let picks: Vec<_> = (0..4).map(|_| p.select(0)).collect();
        // q = 1: threshold is the reported 0, so each pick turns its entry hot and the
        // next cold one goes; once all are hot, the lowest RIF (then earliest) wins.
        assert_eq!(picks, [Some(7), Some(8), Some(9), Some(7)]);
        assert_eq!(backends(&p), [8, 9], "7 spent its 2 uses");
        assert_eq!(p.entries()[0].uses_left, 1);
    }

    #[test]
    fn max_uses_is_at_least_one() {
        let mut p = ProbePool::default().with_max_uses(0);
        p.insert(1, 0, 1, 0);
        p.insert(2, 0, 2, 0);
        assert_eq!(p.select(0), Some(1));
        assert_eq!(backends(&p), [2]);
    }

    #[test]
    fn rif_compensation_saturates() {
        let mut p = ProbePool::new(16, S, 1.0);
        p.insert(1, u32::MAX, 1, 0);
        p.insert(2, u32::MAX, 2, 0);
        assert_eq!(p.select(0), Some(1));
        assert_eq!(p.entries()[0].rif, u32::MAX);
    }

    #[test]
    fn remove_one_alternates_oldest_and_worst() {
        let mut p = ProbePool::new(16, S, 0.5);
        p.insert(0, 1, 10, 5); // oldest
        p.insert(1, 9, 1, 6); // hot, highest RIF
        p.insert(2, 2, 99, 7);
        p.insert(3, 1, 20, 8);
        assert_eq!(p.remove_one(10), Some(0), "oldest");
        assert_eq!(p.remove_one(10), Some(1), "worst: hot with highest RIF");
        assert_eq!(p.remove_one(10), Some(2), "oldest");
        p.insert(4, 1, 50, 9);
        // RIFs 1,1: none hot, so the worst is the highest latency.
        assert_eq!(
            p.remove_one(10),
            Some(4),
            "worst: cold with highest latency"
        );
        assert_eq!(p.remove_one(10), Some(3));
        assert_eq!(p.remove_one(10), None);
        assert!(p.is_empty());
    }

    #[test]
    fn remove_one_expires_first_and_does_not_toggle_when_empty() {
        let mut p = ProbePool::new(16, 100, 1.0);
        p.insert(0, 1, 10, 0);
        assert_eq!(p.remove_one(500), None, "expired, nothing to remove");
        p.insert(1, 1, 10, 600);
        p.insert(2, 1, 90, 601);
        assert_eq!(p.remove_one(601), Some(1), "still the oldest's turn");
    }

    #[test]
    fn forget_drops_a_failing_backend() {
        let mut p = pool(&[(1, 0, 1), (2, 0, 2), (3, 0, 3)]);
        assert!(p.forget(1));
        assert!(!p.forget(1));
        assert_eq!(backends(&p), [2, 3]);
        assert_eq!(p.select(0), Some(2));
    }

    #[test]
    fn probe_targets_are_distinct_in_range_and_clamped() {
        let mut rng = Rng::new(1);
        let mut out = vec![99];
        for n in 0..12 {
            for k in 0..15 {
                probe_targets(&mut rng, n, k, &mut out);
                assert_eq!(out.len(), k.min(n), "n={n} k={k}");
                assert!(out.iter().all(|&b| (b as usize) < n));
                let mut s = out.clone();
                s.sort_unstable();
                s.dedup();
                assert_eq!(s.len(), out.len(), "distinct: {out:?}");
            }
        }
        probe_targets(&mut rng, usize::MAX, 3, &mut out);
        assert_eq!(out.len(), 3);
    }

    #[test]
    fn probe_targets_are_reproducible_and_uniform() {
        let (mut a, mut b) = (Vec::new(), Vec::new());
        probe_targets(&mut Rng::new(42), 100, 3, &mut a);
        probe_targets(&mut Rng::new(42), 100, 3, &mut b);
        assert_eq!(a, b);
        let mut rng = Rng::new(3);
        let (mut any, mut first) = ([0u32; 5], [0u32; 5]);
        let mut out = Vec::new();
        for _ in 0..10_000 {
            probe_targets(&mut rng, 5, 2, &mut out);
            out.iter().for_each(|&b| any[b as usize] += 1);
            first[out[0] as usize] += 1;
        }
        // Each backend is in 2/5 of the draws and first in 1/5.
        assert!(any.iter().all(|&c| (3600..4400).contains(&c)), "{any:?}");
        assert!(
            first.iter().all(|&c| (1700..2300).contains(&c)),
            "{first:?}"
        );
    }
}
