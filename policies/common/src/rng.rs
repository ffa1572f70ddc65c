//! The crate's only source of randomness, so every helper is reproducible from a seed.

/// SplitMix64: tiny, fast and good enough for picking backends; seeded by the host so
/// simulator runs are reproducible.
#[derive(Debug, Clone)]
pub struct Rng(u64);

/// SplitMix64's finaliser: a bijection of `u64` that spreads every input bit over the
/// output, for decorrelating one hash from another.
pub fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        mix(self.0)
    }

    /// Uniform in `0..n` (n > 0), by multiply-shift (no modulo bias worth caring about).
    /// Never panics: `n == 0` gives 0, and the wrapping multiply (identical to a plain
    /// one for every `n < 2^32`) keeps the result below `n` even for larger `n`.
    pub fn below(&mut self, n: usize) -> usize {
        ((self.next_u64() >> 32).wrapping_mul(n as u64) >> 32) as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rng_below_stays_in_range_and_spreads() {
        let mut r = Rng::new(7);
        let mut seen = [0u32; 3];
        for _ in 0..3000 {
            seen[r.below(3)] += 1;
        }
        assert!(seen.iter().all(|&c| c > 800), "{seen:?}");
    }
}
