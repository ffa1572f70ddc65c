//! The least-request rule itself, free of WIT types: requests in flight arrive through a
//! closure (`in_flight(i)`, the host's exact count for backend `i`), randomness through a
//! seeded [`Rng`], so every rule here is tested natively with made-up loads.
use std::cmp::Ordering;
use std::collections::BinaryHeap;

use common::Rng;

/// How one request is routed: chosen once per `configure` from the backends' weights.
#[derive(Debug, Clone)]
pub enum Picker {
    /// All weights equal: the fewest in flight among `choice-count` random backends.
    Choices(Choices),
    /// Unequal weights: earliest-deadline-first over load-scaled weights.
    Weighted(Schedule),
}

impl Picker {
    /// `weights[i]` is backend `i`'s weight (1 when the operator gave none). Equal weights
    /// pick by choices, as Envoy does (it builds no schedule when the weights are all
    /// equal); unequal weights by the schedule, which they leave at least one weight > 0.
    pub fn new(
        weights: &[u32],
        choice_count: usize,
        bias: f64,
        rng: &mut Rng,
        in_flight: impl FnMut(usize) -> u32,
    ) -> Self {
        if weights.windows(2).all(|w| w[0] == w[1]) {
            Picker::Choices(Choices::new(weights.len(), choice_count))
        } else {
            // Up to n - 1 picks randomise the start, as Envoy's `createWithPicks(seed)`
            // does, so proxies seeded differently do not all start on the same backend.
            let pre_picks = rng.below(weights.len());
            Picker::Weighted(Schedule::new(weights, bias, pre_picks, in_flight))
        }
    }

    /// The backend for one request; 0 when there are no backends.
    pub fn pick(&mut self, rng: &mut Rng, in_flight: impl FnMut(usize) -> u32) -> usize {
        match self {
            Picker::Choices(c) => c.pick(rng, in_flight),
            Picker::Weighted(s) => s.pick(in_flight),
        }
    }
}

/// Power of `k` choices: draws `k` distinct backends and keeps the least loaded.
#[derive(Debug, Clone)]
pub struct Choices {
    /// A permutation of the backends; each draw partially reshuffles it in place.
    order: Vec<u32>,
    k: usize,
}

impl Choices {
    /// `k` is clamped to `1..=n`: `k >= n` compares every backend (Envoy's FULL_SCAN).
    pub fn new(n: usize, k: usize) -> Self {
        // Backend indices are u32 on the wire, so no more than that can be addressed.
        let n = n.min(u32::MAX as usize);
        Choices {
            order: (0..n as u32).collect(),
            k: k.clamp(1, n.max(1)),
        }
    }

    /// `k` distinct backends (all of them if fewer), uniformly at random and in random
    /// order: a partial Fisher-Yates shuffle, O(k) whatever the number of backends.
    ///
    /// Why not Envoy's `k` independent draws: those can draw the same backend twice, so
    /// with 2 backends the busier one still wins a quarter of the time. Distinct draws
    /// always compare `k` different backends; otherwise the rule is Envoy's.
    pub fn draw(&mut self, rng: &mut Rng) -> &[u32] {
        let n = self.order.len();
        let k = self.k.min(n);
        for j in 0..k {
            // below(n - j) < n - j, so j + it < n: always in range.
            let r = j + rng.below(n - j);
            self.order.swap(j, r);
        }
        &self.order[..k]
    }

    pub fn pick(&mut self, rng: &mut Rng, in_flight: impl FnMut(usize) -> u32) -> usize {
        fewest(self.draw(rng), in_flight).unwrap_or(0)
    }
}

/// The drawn backend with the fewest requests in flight; on a tie the one drawn first.
/// The draw order is random, so a tie goes to each tied backend equally often: what
/// Envoy's N_CHOICES gets by keeping the first (`<`, not `<=`) and its FULL_SCAN by
/// reservoir sampling.
pub fn fewest(drawn: &[u32], mut in_flight: impl FnMut(usize) -> u32) -> Option<usize> {
    let mut best: Option<(usize, u32)> = None;
    for &b in drawn {
        let load = in_flight(b as usize);
        if best.is_none_or(|(_, l)| load < l) {
            best = Some((b as usize, load));
        }
    }
    best.map(|(b, _)| b)
}

/// Envoy's dynamic weight: `weight / (in_flight + 1)^bias`. Bias 0 is the static weight
/// (plain weighted round-robin), bias 1 a plain division (Envoy special-cases it too).
/// Positive and finite for `weight >= 1`, any `u32` load and `bias <= 10`
/// (`(2^32)^10 = 2^320` is well inside an f64), so `1 / it` is a finite step.
pub fn effective_weight(weight: u32, in_flight: u32, bias: f64) -> f64 {
    let w = f64::from(weight);
    let active = f64::from(in_flight) + 1.0;
    if bias == 0.0 {
        w
    } else if bias == 1.0 {
        w / active
    } else {
        w / active.powf(bias)
    }
}

/// Envoy's EDF scheduler (`edf_scheduler.h`): each backend waits in a min-heap under a
/// deadline; a pick pops the earliest, moves the clock to it and puts the backend back
/// `1 / effective_weight` later, its weight computed from its load at that moment. Equal
/// deadlines go to the backend that was (re)inserted first. O(log n) per pick: one heap
/// pop, one push and one weight computation, however many backends.
///
/// As in Envoy, only the picked backend's weight is refreshed: the others keep the
/// deadline their load gave them when they were last picked, until they are picked again.
#[derive(Debug, Clone)]
pub struct Schedule {
    weights: Vec<u32>,
    bias: f64,
    heap: BinaryHeap<Entry>,
    now: f64,
    inserted: u64,
}

impl Schedule {
    /// Backends of weight 0 are left out (Envoy refuses weight 0; here it drains the
    /// backend). `pre_picks` picks are made straight away, to start the schedule part way
    /// round. O((n + pre_picks) log n), once per `configure`.
    pub fn new(
        weights: &[u32],
        bias: f64,
        pre_picks: usize,
        mut in_flight: impl FnMut(usize) -> u32,
    ) -> Self {
        let mut s = Schedule {
            weights: weights.to_vec(),
            bias,
            heap: BinaryHeap::with_capacity(weights.len()),
            now: 0.0,
            inserted: 0,
        };
        for (i, &w) in weights.iter().enumerate() {
            if w > 0 {
                s.insert(i, in_flight(i));
            }
        }
        for _ in 0..pre_picks {
            s.pick(&mut in_flight);
        }
        s
    }

    /// The backend with the earliest deadline, rescheduled by its current load; 0 when the
    /// schedule is empty (no backend has a weight, which `Picker::new` rules out).
    pub fn pick(&mut self, mut in_flight: impl FnMut(usize) -> u32) -> usize {
        let Some(top) = self.heap.pop() else {
            return 0;
        };
        self.now = top.deadline;
        self.insert(top.backend, in_flight(top.backend));
        top.backend
    }

    fn insert(&mut self, backend: usize, in_flight: u32) {
        let weight = self.weights.get(backend).copied().unwrap_or(0);
        let w = effective_weight(weight, in_flight, self.bias);
        self.heap.push(Entry {
            deadline: self.now + 1.0 / w,
            inserted: self.inserted,
            backend,
        });
        self.inserted += 1;
    }
}

#[derive(Debug, Clone)]
struct Entry {
    deadline: f64,
    inserted: u64,
    backend: usize,
}

// BinaryHeap pops the greatest: reverse both keys so the earliest deadline, then the
// earliest insertion, comes first. total_cmp gives a total order even for odd floats.
impl Ord for Entry {
    fn cmp(&self, other: &Self) -> Ordering {
        other
            .deadline
            .total_cmp(&self.deadline)
            .then(other.inserted.cmp(&self.inserted))
    }
}

impl PartialOrd for Entry {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for Entry {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Entry {}

#[cfg(test)]
mod tests {
    use super::*;

    /// How often each backend is picked in `picks` picks under fixed loads.
    fn shares(p: &mut Picker, loads: &[u32], picks: usize, seed: u64) -> Vec<f64> {
        let mut rng = Rng::new(seed);
        let mut counts = vec![0usize; loads.len()];
        for _ in 0..picks {
            counts[p.pick(&mut rng, |i| loads[i])] += 1;
        }
        counts.iter().map(|&c| c as f64 / picks as f64).collect()
    }

    fn picker(weights: &[u32], k: usize, bias: f64, loads: &[u32]) -> Picker {
        Picker::new(weights, k, bias, &mut Rng::new(9), |i| loads[i])
    }

    #[test]
    fn three_choices_of_three_always_take_the_idle_one() {
        let loads = [5, 0, 3];
        let mut p = picker(&[1, 1, 1], 3, 1.0, &loads);
        assert!(matches!(p, Picker::Choices(_)));
        assert_eq!(shares(&mut p, &loads, 1000, 1), [0.0, 1.0, 0.0]);
    }

    #[test]
    fn two_choices_take_the_less_busy_of_the_pair_drawn() {
        let loads = [5, 0, 3];
        let mut c = Choices::new(3, 2);
        let mut rng = Rng::new(2);
        let mut wins = [0usize; 3];
        for _ in 0..3000 {
            let drawn = c.draw(&mut rng).to_vec();
            assert_eq!(drawn.len(), 2);
            assert_ne!(drawn[0], drawn[1], "distinct");
            let pick = fewest(&drawn, |i| loads[i]).unwrap();
            let other = drawn.iter().map(|&b| b as usize).find(|&b| b != pick);
            assert!(loads[pick] < loads[other.unwrap()], "{drawn:?} -> {pick}");
            wins[pick] += 1;
        }
        // The busiest never wins; the idle one wins whenever drawn (2/3 of pairs).
        assert_eq!(wins[0], 0);
        assert!((1900..2100).contains(&wins[1]), "{wins:?}");
    }

    #[test]
    fn ties_go_to_the_first_drawn_so_evenly_among_the_tied() {
        assert_eq!(fewest(&[2, 0, 1], |_| 4), Some(2));
        assert_eq!(fewest(&[1, 0], |i| [3, 3][i]), Some(1));
        assert_eq!(fewest(&[], |_| 0), None);
        // 0 and 2 tie for least; 1 is busier and never wins.
        let loads = [1, 7, 1];
        let mut p = picker(&[1, 1, 1], 3, 1.0, &loads);
        let s = shares(&mut p, &loads, 10_000, 3);
        assert_eq!(s[1], 0.0);
        assert!((s[0] - 0.5).abs() < 0.02, "{s:?}");
    }

    #[test]
    fn choices_are_distinct_clamped_and_cheap_on_big_pools() {
        let mut rng = Rng::new(4);
        for n in 0..8 {
            for k in 1..10 {
                let mut c = Choices::new(n, k);
                let mut d = c.draw(&mut rng).to_vec();
                assert_eq!(d.len(), k.min(n), "n={n} k={k}");
                d.sort_unstable();
                d.dedup();
                assert_eq!(d.len(), k.min(n));
                assert!(d.iter().all(|&b| (b as usize) < n));
            }
        }
        // No backends: 0, and one backend: itself.
        assert_eq!(Choices::new(0, 2).pick(&mut rng, |_| 0), 0);
        assert_eq!(Choices::new(1, 2).pick(&mut rng, |_| 9), 0);
        // 10,000 backends, one idle: 2 choices find it about 2 in 10,000 times.
        let mut c = Choices::new(10_000, 2);
        let idle = (0..100_000)
            .filter(|_| c.pick(&mut rng, |i| u32::from(i != 77)) == 77)
            .count();
        assert!((10..40).contains(&idle), "{idle}");
    }

    #[test]
    fn weights_three_to_one_at_zero_load_split_75_25() {
        let loads = [0, 0];
        let mut p = picker(&[3, 1], 2, 1.0, &loads);
        assert!(matches!(p, Picker::Weighted(_)));
        assert_eq!(shares(&mut p, &loads, 4000, 5), [0.75, 0.25]);
        // Smoothly, as EDF is: never more than 3 in a row to the heavy one.
        let mut rng = Rng::new(5);
        let seq: Vec<usize> = (0..40).map(|_| p.pick(&mut rng, |_| 0)).collect();
        assert!(seq.windows(4).all(|w| w.contains(&1)), "{seq:?}");
    }

    #[test]
    fn equal_deadlines_go_to_the_backend_scheduled_first() {
        // Deadlines 1, 0.5, 1: B goes first and comes back at 1.0, behind A and C, which
        // were queued earlier; then B's 1.5 and 2.0 come before A's and C's 2.0 again.
        let mut s = Schedule::new(&[1, 2, 1], 1.0, 0, |_| 0);
        let seq: Vec<usize> = (0..8).map(|_| s.pick(|_| 0)).collect();
        assert_eq!(seq, [1, 0, 2, 1, 1, 0, 2, 1]);
        // Pre-picks start the same cycle further on.
        let mut s = Schedule::new(&[1, 2, 1], 1.0, 2, |_| 0);
        let seq: Vec<usize> = (0..6).map(|_| s.pick(|_| 0)).collect();
        assert_eq!(seq, [2, 1, 1, 0, 2, 1]);
    }

    #[test]
    fn bias_zero_keeps_pure_weights_under_unequal_load() {
        let loads = [50, 0];
        let mut p = picker(&[3, 1], 2, 0.0, &loads);
        assert_eq!(shares(&mut p, &loads, 4000, 6), [0.75, 0.25]);
    }

    #[test]
    fn bias_one_shifts_traffic_away_from_the_loaded_backend() {
        // 3 / (5 + 1) = 0.5 against 1 / (0 + 1) = 1: the heavy backend gets a third.
        let loads = [5, 0];
        let mut p = picker(&[3, 1], 2, 1.0, &loads);
        let s = shares(&mut p, &loads, 3000, 7);
        assert!((s[0] - 1.0 / 3.0).abs() < 0.01, "{s:?}");
        // A stronger bias shifts further: 3 / 6^2 = 1/12 against 1.
        let mut p = picker(&[3, 1], 2, 2.0, &loads);
        let s = shares(&mut p, &loads, 3000, 7);
        assert!((s[0] - 1.0 / 13.0).abs() < 0.01, "{s:?}");
    }

    #[test]
    fn weight_zero_drains_and_equal_weights_use_choices() {
        let loads = [0, 0, 0];
        let mut p = picker(&[0, 2, 1], 2, 1.0, &loads);
        let s = shares(&mut p, &loads, 3000, 8);
        assert_eq!(s[0], 0.0);
        assert!((s[1] - 2.0 / 3.0).abs() < 0.01, "{s:?}");
        assert!(matches!(
            picker(&[4, 4, 4], 2, 1.0, &loads),
            Picker::Choices(_)
        ));
        let mut p = picker(&[0, 5, 0], 2, 1.0, &loads);
        assert_eq!(shares(&mut p, &loads, 100, 8), [0.0, 1.0, 0.0]);
        assert!(matches!(
            picker(&[0, 0], 2, 1.0, &loads),
            Picker::Choices(_)
        ));
    }

    #[test]
    fn effective_weight_is_envoys_formula_and_stays_finite() {
        assert_eq!(effective_weight(3, 5, 0.0), 3.0);
        assert_eq!(effective_weight(3, 5, 1.0), 0.5);
        assert_eq!(effective_weight(8, 3, 0.5), 4.0);
        let tiny = effective_weight(1, u32::MAX, 10.0);
        assert!(tiny > 0.0 && (1.0 / tiny).is_finite(), "{tiny}");
    }

    #[test]
    fn same_seed_same_picks() {
        let run = |seed| {
            let loads = [2, 1, 0, 1];
            let mut p = picker(&[1, 1, 1, 1], 2, 1.0, &loads);
            let mut rng = Rng::new(seed);
            (0..50)
                .map(|_| p.pick(&mut rng, |i| loads[i]))
                .collect::<Vec<_>>()
        };
        assert_eq!(run(1), run(1));
        assert_ne!(run(1), run(2));
    }
}
