//! The study's adaptive choice (probe each backend once, then lowest score), shared by sma
//! and ewma.

/// How an exchange ended, as a latency score weighs it. Free of WIT types: map your
/// bindings' `outcome` (and a 5xx status) to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// A response that is not a 5xx.
    Ok,
    /// A connect error, timeout, broken connection or 5xx.
    Failed,
    /// The client hung up first (contract 0.2's `aborted`).
    Aborted,
}

/// The latency sample (ms) an exchange gives a latency score currently at `current`, or
/// `None` when it says nothing new. A failure counts as at least `penalty_ms`, so a dead
/// backend that fails fast does not look fast. An abort is a lower bound (the backend had
/// not answered after that long), so it counts only when it says the backend is slower
/// than believed, or nothing was known: a backend clients abandon is not taken for a fast
/// one, and an impatient client does not make a fast backend look slow.
pub fn sample_ms(
    ended: Ended,
    latency_ns: u64,
    penalty_ms: f64,
    current: Option<f64>,
) -> Option<f64> {
    let ms = latency_ns as f64 / 1e6;
    match ended {
        Ended::Ok => Some(ms),
        Ended::Failed => Some(ms.max(penalty_ms)),
        Ended::Aborted => current.is_none_or(|c| ms > c).then_some(ms),
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

    #[test]
    fn an_abort_counts_only_when_it_raises_the_estimate() {
        const MS: u64 = 1_000_000;
        assert_eq!(sample_ms(Ended::Ok, 5 * MS, 1000.0, Some(50.0)), Some(5.0));
        assert_eq!(sample_ms(Ended::Failed, 5 * MS, 1000.0, None), Some(1000.0));
        assert_eq!(
            sample_ms(Ended::Aborted, 80 * MS, 1000.0, Some(50.0)),
            Some(80.0)
        );
        assert_eq!(sample_ms(Ended::Aborted, 50 * MS, 1000.0, Some(50.0)), None);
        assert_eq!(sample_ms(Ended::Aborted, 20 * MS, 1000.0, Some(50.0)), None);
        assert_eq!(sample_ms(Ended::Aborted, 20 * MS, 1000.0, None), Some(20.0));
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
