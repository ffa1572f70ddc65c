//! Random draws as pure functions of (seed, index).
//!
//! A backend's i-th request always gets the same latency and the same success or failure,
//! whatever order the requests of other connections interleave in: no shared generator
//! state means no hidden ordering dependency, and a scenario change elsewhere does not shift
//! every later draw. `backend` and the simulator both draw from this crate, so a simulated
//! error rate fails the very requests the real backend would.
//!
//! Hand-written rather than `rand_xoshiro::SplitMix64`: crate generators are sequential,
//! and the design needs the i-th draw without the i-1 before it.

/// The i-th output of a splitmix64 stream started at `seed`.
pub fn splitmix64_at(seed: u64, index: u64) -> u64 {
    let mut z = seed.wrapping_add(index.wrapping_add(1).wrapping_mul(0x9E37_79B9_7F4A_7C15));
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Uniform in [0, 1) with 53 bits of precision.
pub fn unit(bits: u64) -> f64 {
    (bits >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
}

/// Whether the `index`-th request fails at `rate`: see [`FailureRate`].
pub fn fails(seed: u64, index: u64, rate: f64) -> bool {
    FailureRate::new(rate).fails(seed, index)
}

/// An error rate as a threshold on the top 53 bits of a draw, computed once: the backend
/// decides every request with it, the simulator too.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FailureRate {
    threshold: u64,
}

impl FailureRate {
    /// `rate` in [0, 1]; 0 never fails, 1 always does.
    pub fn new(rate: f64) -> FailureRate {
        FailureRate {
            threshold: (rate * (1u64 << 53) as f64) as u64,
        }
    }

    /// Whether the `index`-th draw of stream `seed` fails.
    pub fn fails(self, seed: u64, index: u64) -> bool {
        self.threshold != 0 && (splitmix64_at(seed, index) >> 11) < self.threshold
    }
}

/// A standard normal draw (Box-Muller) from two independent uniform draws.
pub fn standard_normal(a: u64, b: u64) -> f64 {
    // 1 - unit is in (0, 1], so the logarithm is finite.
    let u1 = 1.0 - unit(a);
    let u2 = unit(b);
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Pins the stream: the backend's recorded runs and the simulator's scenarios depend on
    /// these exact values, so a change here must be deliberate.
    #[test]
    fn the_stream_is_pinned() {
        assert_eq!(splitmix64_at(0, 0), 0xE220_A839_7B1D_CDAF);
        assert_eq!(splitmix64_at(0, 1), 0x6E78_9E6A_A1B9_65F4);
        assert_eq!(splitmix64_at(42, 7), splitmix64_at(42, 7));
        let rate = FailureRate::new(0.25);
        let failed: Vec<u64> = (0..16).filter(|&i| rate.fails(9, i)).collect();
        assert_eq!(
            failed,
            (0..16).filter(|&i| fails(9, i, 0.25)).collect::<Vec<_>>()
        );
    }

    #[test]
    fn draws_have_the_right_moments() {
        let n = 200_000u64;
        let normals: Vec<f64> = (0..n)
            .map(|i| standard_normal(splitmix64_at(7, 2 * i), splitmix64_at(7, 2 * i + 1)))
            .collect();
        let mean = normals.iter().sum::<f64>() / n as f64;
        let var = normals.iter().map(|z| (z - mean).powi(2)).sum::<f64>() / n as f64;
        assert!(mean.abs() < 0.01, "{mean}");
        assert!((var - 1.0).abs() < 0.01, "{var}");
        let failed = (0..n).filter(|&i| fails(3, i, 0.1)).count() as f64 / n as f64;
        assert!((failed - 0.1).abs() < 0.005, "{failed}");
        assert!((0..1000).all(|i| fails(3, i, 1.0)));
        assert!(!(0..1000).any(|i| fails(3, i, 0.0)));
    }
}
