//! gRPC's static stride scheduler (`grpc/grpc`
//! `src/core/load_balancing/weighted_round_robin/static_stride_scheduler.cc`, also Java's
//! `WeightedRoundRobinLoadBalancer.StaticStrideScheduler`): weighted round-robin as a pure
//! function of a fixed weight vector and a sequence counter.
//!
//! Construction scales the weights so the largest is 65535 (u16), after two clamps taken
//! from gRPC: no weight above 10× the mean (`MAX_RATIO`, so a pick skips at most ~10
//! slots on average) and none below 1 % of it (`MIN_RATIO`, so a tiny weight is still
//! picked now and then rather than starving). A weight of 0 means "unknown" and gets the
//! mean. A pick walks the sequence `seq = gen·n + i` and takes backend `i` in `w_i` of every
//! 65535 generations, spread by `(w_i·gen + i·32767) mod 65535`; the offset keeps two
//! equal backends from being skipped in the same generation.
//!
//! Cost: O(n) to build, O(max/mean) ≤ ~10 sequence steps per pick on average, and never
//! more than n in a row (the largest weight is 65535, which is never skipped).

/// The largest scaled weight: a backend with it is never skipped.
const MAX_WEIGHT: u16 = u16::MAX;
/// Weights above this multiple of the mean are capped to it.
const MAX_RATIO: f64 = 10.0;
/// Weights below this fraction of the mean are raised to it.
const MIN_RATIO: f64 = 0.01;
/// Spreads the picks of consecutive backends over different generations.
const OFFSET: u64 = MAX_WEIGHT as u64 / 2;

/// Scaled weights, one per backend, each in `1..=65535`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StaticStride {
    weights: Vec<u16>,
}

impl StaticStride {
    /// Builds a scheduler, or `None` when weighting makes no sense: fewer than two
    /// backends, or no positive weight among them (the caller then round-robins).
    /// Non-finite and negative weights count as unknown, like 0.
    pub fn new(weights: &[f64]) -> Option<StaticStride> {
        if weights.len() < 2 {
            return None;
        }
        let known = || {
            weights
                .iter()
                .copied()
                .filter(|w| w.is_finite() && *w > 0.0)
        };
        let count = known().count();
        if count == 0 {
            return None;
        }
        let mean = known().sum::<f64>() / count as f64;
        let max = known().fold(0.0, f64::max).min(MAX_RATIO * mean);
        let scale = f64::from(MAX_WEIGHT) / max;
        let scaled_mean = to_u16(mean * scale);
        let floor = to_u16(f64::from(scaled_mean) * MIN_RATIO).max(1);
        let weights = weights
            .iter()
            .map(|&w| {
                if w.is_finite() && w > 0.0 {
                    to_u16(w.min(max) * scale).max(floor)
                } else {
                    scaled_mean
                }
            })
            .collect();
        Some(StaticStride { weights })
    }

    /// The backend for the next pick, advancing `sequence` past every slot it looked at.
    pub fn pick(&self, sequence: &mut u32) -> usize {
        let n = self.weights.len() as u64;
        // Termination: the largest weight is MAX_WEIGHT, which is never skipped, so this
        // returns within n steps. The bound is there so that no weight vector, however
        // built, can loop forever on the request path.
        for _ in 0..=n {
            let seq = u64::from(*sequence);
            *sequence = sequence.wrapping_add(1);
            let (i, generation) = (seq % n, seq / n);
            let w = u64::from(self.weights[i as usize]);
            let slot = (w * generation + i * OFFSET) % u64::from(MAX_WEIGHT);
            if slot >= u64::from(MAX_WEIGHT) - w {
                return i as usize;
            }
        }
        (u64::from(*sequence) % n) as usize
    }

    /// How many backends it was built for.
    pub fn len(&self) -> usize {
        self.weights.len()
    }

    /// The scaled weights, for tests.
    #[cfg(test)]
    pub fn weights(&self) -> &[u16] {
        &self.weights
    }
}

/// Rounds to the nearest u16, saturating (`as` saturates and maps NaN to 0).
fn to_u16(x: f64) -> u16 {
    x.round() as u16
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counts(s: &StaticStride, picks: usize, start: u32) -> Vec<usize> {
        let mut seq = start;
        let mut c = vec![0; s.weights().len()];
        for _ in 0..picks {
            c[s.pick(&mut seq)] += 1;
        }
        c
    }

    #[test]
    fn shares_are_proportional_to_weights() {
        let s = StaticStride::new(&[1.0, 2.0, 3.0]).unwrap();
        assert_eq!(s.weights(), [21845, 43690, 65535]);
        for start in [0, 12345, u32::MAX - 3000] {
            let c = counts(&s, 6000, start);
            for (got, want) in c.iter().zip([1000.0, 2000.0, 3000.0]) {
                let err = (*got as f64 - want).abs() / want;
                assert!(err < 0.01, "start {start}: {c:?}");
            }
        }
    }

    #[test]
    fn equal_weights_are_plain_round_robin() {
        let s = StaticStride::new(&[5.0, 5.0, 5.0, 5.0]).unwrap();
        let mut seq = 7;
        let picks: Vec<usize> = (0..8).map(|_| s.pick(&mut seq)).collect();
        assert_eq!(picks, [3, 0, 1, 2, 3, 0, 1, 2]);
    }

    #[test]
    fn the_offset_keeps_equal_backends_from_being_skipped_together() {
        // Without gRPC's i·32767 offset, backends 0 and 1 (80 % of the max) would be
        // skipped in the same generations, and backend 2 picked twice in a row.
        let s = StaticStride::new(&[0.8, 0.8, 1.0]).unwrap();
        let mut seq = 0;
        let picks: Vec<usize> = (0..20_000).map(|_| s.pick(&mut seq)).collect();
        assert!(
            picks.windows(2).all(|p| p[0] != p[1]),
            "a backend twice in a row"
        );
    }

    #[test]
    fn unknown_weights_get_the_mean() {
        // Mean of the known is 2, so backend 2 weighs as much as 1.
        let s = StaticStride::new(&[1.0, 2.0, 0.0, 3.0]).unwrap();
        assert_eq!(s.weights()[2], s.weights()[1]);
        let odd = StaticStride::new(&[1.0, 2.0, f64::NAN, 3.0]).unwrap();
        assert_eq!(odd, StaticStride::new(&[1.0, 2.0, -4.0, 3.0]).unwrap());
        assert_eq!(odd, s);
    }

    #[test]
    fn ratios_are_clamped_like_grpc() {
        // Mean 250.5: 500 is under 10× the mean, so it keeps the top; 1 is raised to 1 %.
        let s = StaticStride::new(&[1.0, 500.0]).unwrap();
        let mean = (250.5 * 65535.0 / 500.0_f64).round();
        assert_eq!(s.weights(), [(mean * 0.01).round() as u16, 65535]);
        // One huge weight among 99 of 1: the cap is 10× the mean (which the huge one
        // dominates), the small ones are raised to 1 % of the scaled mean, 6554.
        let mut w = vec![1.0; 99];
        w.push(1e9);
        let s = StaticStride::new(&w).unwrap();
        assert!(
            s.weights()[..99].iter().all(|&x| x == 66),
            "{:?}",
            s.weights()
        );
        assert_eq!(s.weights()[99], 65535);
    }

    #[test]
    fn refuses_what_cannot_be_weighted() {
        assert_eq!(StaticStride::new(&[]), None);
        assert_eq!(StaticStride::new(&[3.0]), None);
        assert_eq!(StaticStride::new(&[0.0, 0.0]), None);
        assert_eq!(StaticStride::new(&[f64::INFINITY, f64::NAN]), None);
        assert!(StaticStride::new(&[f64::MAX, f64::MIN_POSITIVE]).is_some());
    }

    #[test]
    fn every_pick_is_in_range_and_nobody_starves() {
        let s = StaticStride::new(&[1e-300, 1.0, 1e300]).unwrap();
        let c = counts(&s, 10_000, u32::MAX - 5);
        assert!(c.iter().all(|&x| x > 0), "{c:?}");
    }
}
