//! Helpers shared by the bundled policies. Deliberately free of WIT types so that any
//! policy crate can use it whatever bindings it generates.

/// Reads an `f64` config value, or `default` when the key is absent.
///
/// Errors name the key, the bad value and the accepted range, because the message is
/// shown to the operator as is.
pub fn config_f64(
    config: &[(String, String)],
    key: &str,
    default: f64,
    range: std::ops::RangeInclusive<f64>,
) -> Result<f64, String> {
    match lookup(config, key) {
        None => Ok(default),
        Some(raw) => match raw.trim().parse::<f64>() {
            Ok(v) if range.contains(&v) => Ok(v),
            _ => Err(format!(
                "{key}={raw} is invalid: expected a number from {} to {}",
                range.start(),
                range.end()
            )),
        },
    }
}

/// Reads a `usize` config value, or `default` when the key is absent.
pub fn config_usize(
    config: &[(String, String)],
    key: &str,
    default: usize,
    range: std::ops::RangeInclusive<usize>,
) -> Result<usize, String> {
    match lookup(config, key) {
        None => Ok(default),
        Some(raw) => match raw.trim().parse::<usize>() {
            Ok(v) if range.contains(&v) => Ok(v),
            _ => Err(format!(
                "{key}={raw} is invalid: expected a whole number from {} to {}",
                range.start(),
                range.end()
            )),
        },
    }
}

/// Rejects keys the policy does not know, so a typo (`aplha=0.3`) is not silently ignored.
pub fn reject_unknown(config: &[(String, String)], known: &[&str]) -> Result<(), String> {
    for (k, _) in config {
        if !known.contains(&k.as_str()) {
            return Err(format!(
                "unknown setting `{k}`: this policy accepts {}",
                if known.is_empty() {
                    "no settings".to_string()
                } else {
                    known.join(", ")
                }
            ));
        }
    }
    Ok(())
}

fn lookup<'a>(config: &'a [(String, String)], key: &str) -> Option<&'a str> {
    // Last one wins, like repeated command-line flags.
    config
        .iter()
        .rev()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

/// SplitMix64: tiny, fast and good enough for picking backends; seeded by the host so
/// simulator runs are reproducible.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (n > 0), by multiply-shift (no modulo bias worth caring about).
    pub fn below(&mut self, n: usize) -> usize {
        ((self.next_u64() >> 32) * n as u64 >> 32) as usize
    }
}

/// Tracks which backends still need a first sample, and which have a probe in flight.
///
/// The study's adaptive policies "first probe every backend that has no sample yet"; with
/// 100 concurrent connections a naive version sends all of them to the first unmeasured
/// backend. This sends one probe per unmeasured backend and lets the rest go by score.
#[derive(Debug, Default, Clone)]
pub struct Probes {
    measured: Vec<bool>,
    in_flight: Vec<bool>,
}

impl Probes {
    pub fn new(n: usize) -> Self {
        Probes {
            measured: vec![false; n],
            in_flight: vec![false; n],
        }
    }

    /// An unmeasured backend without a probe in flight, marking it probed.
    pub fn next_probe(&mut self) -> Option<usize> {
        let i = (0..self.measured.len()).find(|&i| !self.measured[i] && !self.in_flight[i])?;
        self.in_flight[i] = true;
        Some(i)
    }

    pub fn is_measured(&self, i: usize) -> bool {
        self.measured.get(i).copied().unwrap_or(false)
    }

    pub fn record(&mut self, i: usize) {
        if let Some(m) = self.measured.get_mut(i) {
            *m = true;
        }
    }
}

/// The study's adaptive choice, shared by sma and ewma: each unmeasured backend gets one
/// probe, then the lowest score wins; while every probe is still in flight (no score yet),
/// requests are spread round-robin with `rr`.
pub fn choose_lowest(probes: &mut Probes, scores: &[Option<f64>], rr: &mut usize) -> usize {
    if let Some(i) = probes.next_probe() {
        return i;
    }
    match lowest(scores.iter().copied()) {
        Some(i) => i,
        None => {
            *rr = rr.wrapping_add(1);
            *rr % scores.len().max(1)
        }
    }
}

/// The measured scores as (backend index, value), for a policy's `scores()`.
pub fn measured(scores: &[Option<f64>]) -> impl Iterator<Item = (u32, f64)> + '_ {
    scores
        .iter()
        .enumerate()
        .filter_map(|(i, s)| s.map(|v| (i as u32, v)))
}

/// The lowest-scoring measured backend; ties go to the lower index (as the study's `min`).
pub fn lowest(scores: impl Iterator<Item = Option<f64>>) -> Option<usize> {
    let mut best: Option<(usize, f64)> = None;
    for (i, s) in scores.enumerate() {
        if let Some(s) = s {
            if best.is_none_or(|(_, b)| s < b) {
                best = Some((i, s));
            }
        }
    }
    best.map(|(i, _)| i)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn config_values_parse_and_validate() {
        let c = cfg(&[("alpha", "0.3"), ("window", "x")]);
        assert_eq!(config_f64(&c, "alpha", 0.2, 0.0..=1.0), Ok(0.3));
        assert_eq!(config_f64(&c, "beta", 0.2, 0.0..=1.0), Ok(0.2));
        assert!(config_usize(&c, "window", 3, 1..=1000)
            .unwrap_err()
            .contains("window=x"));
        assert!(reject_unknown(&c, &["alpha"])
            .unwrap_err()
            .contains("window"));
    }

    #[test]
    fn rng_below_stays_in_range_and_spreads() {
        let mut r = Rng::new(7);
        let mut seen = [0u32; 3];
        for _ in 0..3000 {
            seen[r.below(3)] += 1;
        }
        assert!(seen.iter().all(|&c| c > 800), "{seen:?}");
    }

    #[test]
    fn probes_each_backend_once() {
        let mut p = Probes::new(3);
        assert_eq!(p.next_probe(), Some(0));
        assert_eq!(p.next_probe(), Some(1));
        p.record(0);
        assert_eq!(p.next_probe(), Some(2));
        assert_eq!(p.next_probe(), None);
        assert!(p.is_measured(0) && !p.is_measured(1));
    }

    #[test]
    fn lowest_prefers_first_on_ties_and_skips_unmeasured() {
        assert_eq!(lowest([None, Some(2.0), Some(2.0)].into_iter()), Some(1));
        assert_eq!(lowest([None, None].into_iter()), None);
    }
}
