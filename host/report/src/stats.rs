//! The numbers of one run, computed from its records.
use std::cmp::Ordering;
use std::collections::BTreeMap;

use super::Record;

/// What one run amounts to: the row of the summary table and of the shares table.
#[derive(Debug, Clone, PartialEq)]
pub struct RunStats {
    /// The configuration, e.g. "adaptive_ewma" or "round-robin @ study".
    pub label: String,
    pub requests: u64,
    /// The span the requests were served in, seconds (see [`RunStats::compute`]).
    pub duration_s: f64,
    pub req_per_s: f64,
    pub mean_ms: f64,
    pub p50_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    /// Requests that got a 5xx or no response (see [`Record::is_error`]), or whatever the
    /// caller of [`RunStats::compute_with`] counted.
    pub errors: u64,
    /// `errors / requests`, 0 for an empty run.
    pub error_rate: f64,
    /// One entry per backend, in the order given to [`RunStats::compute`] (then any others
    /// in natural order), including backends that received nothing: a starved backend is
    /// exactly what a shares table must show.
    pub backends: Vec<BackendStats>,
    /// Every routing mode seen, by name; more than one means the host's fallback routed
    /// some requests after a policy fault.
    pub routing_modes: Vec<ModeCount>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct BackendStats {
    pub backend: String,
    pub requests: u64,
    /// Fraction of the run's requests, 0..=1.
    pub share: f64,
    pub mean_ms: f64,
    pub p95_ms: f64,
    pub errors: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModeCount {
    pub mode: String,
    pub requests: u64,
}

impl RunStats {
    /// Computes the statistics of `records`.
    ///
    /// `backends` fixes the order of the per-backend rows and columns and makes backends
    /// that served nothing appear with 0; pass `&[]` when unknown (a log file), and backends
    /// come in natural order (`B2` before `B10`).
    ///
    /// `duration_s` is the run's length when the caller knows it (the simulator does). When
    /// `None`, it is estimated from the records as the span from the earliest request start
    /// (`t_ms - latency_ms`) to the latest finish, which for a log is the closest thing to
    /// "how long the load ran".
    pub fn compute(
        label: &str,
        records: &[Record],
        backends: &[String],
        duration_s: Option<f64>,
    ) -> RunStats {
        Self::compute_with(label, records, backends, duration_s, |_, r| r.is_error())
    }

    /// [`RunStats::compute`] with the caller's definition of an error, given the record's
    /// index and the record. A proxy log knows more than a [`Record`] holds: its `outcome`
    /// column marks a backend connection that broke after a 200 as an error, which the
    /// status alone cannot tell, so `analyze` decides per row.
    pub fn compute_with(
        label: &str,
        records: &[Record],
        backends: &[String],
        duration_s: Option<f64>,
        is_error: impl Fn(usize, &Record) -> bool,
    ) -> RunStats {
        let requests = records.len() as u64;
        let mut latencies: Vec<f64> = records.iter().map(|r| r.latency_ms).collect();
        latencies.sort_by(f64::total_cmp);
        let failed: Vec<bool> = records
            .iter()
            .enumerate()
            .map(|(i, r)| is_error(i, r))
            .collect();
        let errors = failed.iter().filter(|&&f| f).count() as u64;

        let duration_s = duration_s.unwrap_or_else(|| span_ms(records) / 1000.0);
        let req_per_s = if duration_s > 0.0 {
            requests as f64 / duration_s
        } else {
            0.0
        };

        // BTreeMaps, not HashMaps: iteration order must not depend on a random hasher.
        let mut by_backend: BTreeMap<&str, (Vec<f64>, u64)> = BTreeMap::new();
        let mut modes: BTreeMap<&str, u64> = BTreeMap::new();
        for (r, &failed) in records.iter().zip(&failed) {
            let entry = by_backend.entry(r.backend.as_str()).or_default();
            entry.0.push(r.latency_ms);
            entry.1 += u64::from(failed);
            *modes.entry(r.routing_mode.as_str()).or_default() += 1;
        }
        let mut names: Vec<String> = backends.to_vec();
        let mut extra: Vec<&str> = by_backend
            .keys()
            .copied()
            .filter(|k| !backends.iter().any(|b| b == k))
            .collect();
        extra.sort_by(|a, b| natural_cmp(a, b));
        names.extend(extra.into_iter().map(str::to_string));

        let backends = names
            .into_iter()
            .map(|name| {
                let (mut lat, errors) = by_backend.remove(name.as_str()).unwrap_or_default();
                lat.sort_by(f64::total_cmp);
                BackendStats {
                    requests: lat.len() as u64,
                    share: ratio(lat.len() as u64, requests),
                    mean_ms: mean(&lat),
                    p95_ms: percentile(&lat, 95.0),
                    errors,
                    backend: name,
                }
            })
            .collect();

        RunStats {
            label: label.to_string(),
            requests,
            duration_s,
            req_per_s,
            mean_ms: mean(&latencies),
            p50_ms: percentile(&latencies, 50.0),
            p95_ms: percentile(&latencies, 95.0),
            p99_ms: percentile(&latencies, 99.0),
            max_ms: latencies.last().copied().unwrap_or(0.0),
            errors,
            error_rate: ratio(errors, requests),
            backends,
            routing_modes: modes
                .into_iter()
                .map(|(mode, requests)| ModeCount {
                    mode: mode.to_string(),
                    requests,
                })
                .collect(),
        }
    }

    /// The fraction of requests `backend` served (0 when it is unknown or got none).
    pub fn share(&self, backend: &str) -> f64 {
        self.backend(backend).map_or(0.0, |b| b.share)
    }

    pub fn backend(&self, backend: &str) -> Option<&BackendStats> {
        self.backends.iter().find(|b| b.backend == backend)
    }
}

/// Nearest-rank percentile of ascending `sorted` values: the smallest value such that at
/// least `p` percent of the values are less than or equal to it, i.e. `sorted[ceil(p/100 *
/// n) - 1]`. Always an observed latency (no interpolation), so p100 is the max and the
/// result does not depend on how a tool interpolates. 0 for no values.
///
/// This is the report's quantile (`simulate`, `analyze`, REPORT.md): exact, over every
/// latency of the run. The proxy's live figures use two others, so the same run's p95 can
/// differ slightly between the dashboard and the report: per second, nearest rank over
/// that second's latencies in whole microseconds (`host/src/telemetry/stats.rs`, `Open`);
/// in the running totals, an HDR histogram at 3 significant figures (within 0.1%).
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    let n = sorted.len() as u64;
    if n == 0 {
        return 0.0;
    }
    // In hundredths of a percent with integer arithmetic: the float rank `p / 100 * n`
    // can land just above a whole number (`0.07 * 100.0` is 7.000000000000001), whose
    // ceiling would be one rank too high.
    let basis_points = (p.clamp(0.0, 100.0) * 100.0).round() as u64;
    let rank = (basis_points * n).div_ceil(10_000).clamp(1, n);
    sorted[(rank - 1) as usize]
}

/// Compares names with their digit runs as numbers, so `B2 < B10` and `A < B`.
pub fn natural_cmp(a: &str, b: &str) -> Ordering {
    let (mut a, mut b) = (a, b);
    loop {
        match (a.is_empty(), b.is_empty()) {
            (true, true) => return Ordering::Equal,
            (true, false) => return Ordering::Less,
            (false, true) => return Ordering::Greater,
            _ => {}
        }
        let (ca, ra) = chunk(a);
        let (cb, rb) = chunk(b);
        let digits = |s: &str| s.bytes().all(|c| c.is_ascii_digit());
        let ord = if digits(ca) && digits(cb) {
            let (ta, tb) = (ca.trim_start_matches('0'), cb.trim_start_matches('0'));
            ta.len().cmp(&tb.len()).then_with(|| ta.cmp(tb))
        } else {
            ca.cmp(cb)
        };
        // Equal numbers with different zero padding ("01" vs "1") still need an order.
        let ord = ord.then_with(|| ca.cmp(cb));
        if ord != Ordering::Equal {
            return ord;
        }
        (a, b) = (ra, rb);
    }
}

/// The leading run of digits or of non-digits, and the rest.
fn chunk(s: &str) -> (&str, &str) {
    let first_is_digit = s.as_bytes().first().is_some_and(u8::is_ascii_digit);
    let end = s
        .bytes()
        .position(|c| c.is_ascii_digit() != first_is_digit)
        .unwrap_or(s.len());
    s.split_at(end)
}

fn mean(values: &[f64]) -> f64 {
    if values.is_empty() {
        0.0
    } else {
        values.iter().sum::<f64>() / values.len() as f64
    }
}

fn ratio(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        part as f64 / whole as f64
    }
}

fn span_ms(records: &[Record]) -> f64 {
    let start = records
        .iter()
        .map(|r| r.t_ms - r.latency_ms)
        .fold(f64::INFINITY, f64::min);
    let end = records
        .iter()
        .map(|r| r.t_ms)
        .fold(f64::NEG_INFINITY, f64::max);
    if end > start {
        end - start
    } else {
        0.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(t_ms: f64, backend: &str, latency_ms: f64, status: u16) -> Record {
        Record {
            t_ms,
            backend: backend.into(),
            latency_ms,
            status,
            routing_mode: "round-robin".into(),
        }
    }

    #[test]
    fn nearest_rank_percentiles() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&v, 50.0), 50.0);
        assert_eq!(percentile(&v, 95.0), 95.0);
        assert_eq!(percentile(&v, 99.0), 99.0);
        assert_eq!(percentile(&v, 100.0), 100.0);
        assert_eq!(percentile(&v, 0.0), 1.0);
        assert_eq!(percentile(&[7.0], 99.0), 7.0);
        assert_eq!(percentile(&[], 50.0), 0.0);
        // ceil(0.95 * 20) = 19th value.
        let w: Vec<f64> = (1..=20).map(f64::from).collect();
        assert_eq!(percentile(&w, 95.0), 19.0);
    }

    #[test]
    fn natural_order() {
        let mut v = vec!["B10", "B2", "A", "B1", "b", "B02"];
        v.sort_by(|a, b| natural_cmp(a, b));
        assert_eq!(v, ["A", "B1", "B02", "B2", "B10", "b"]);
    }

    proptest::proptest! {
        /// The nearest rank: at least p% of the values are <= the result, and fewer than p%
        /// are strictly below it; always an observed value.
        #[test]
        fn percentile_is_the_nearest_rank(
            mut values in proptest::collection::vec(0u32..1000, 1..300),
            p in 0u32..=10_000,
        ) {
            values.sort_unstable();
            let sorted: Vec<f64> = values.iter().map(|&v| f64::from(v)).collect();
            let p = f64::from(p) / 100.0;
            let q = percentile(&sorted, p);
            let n = sorted.len() as f64;
            let at_most = sorted.iter().filter(|&&v| v <= q).count() as f64;
            let below = sorted.iter().filter(|&&v| v < q).count() as f64;
            proptest::prop_assert!(sorted.contains(&q));
            proptest::prop_assert!(at_most * 100.0 >= p * n - 1e-6, "p{p} of {sorted:?} = {q}");
            proptest::prop_assert!(below * 100.0 < p * n + 1e-6 || below == 0.0, "p{p} of {sorted:?} = {q}");
        }

        /// A total order that agrees with numbers on digit runs: antisymmetric, transitive,
        /// equal only for equal strings, and `xN < xM` exactly when N < M.
        #[test]
        fn natural_cmp_is_a_total_order(
            a in "[ab0-9]{0,6}", b in "[ab0-9]{0,6}", c in "[ab0-9]{0,6}",
            n in 0u32..100_000, m in 0u32..100_000,
        ) {
            proptest::prop_assert_eq!(natural_cmp(&a, &b), natural_cmp(&b, &a).reverse());
            proptest::prop_assert_eq!(natural_cmp(&a, &b) == Ordering::Equal, a == b);
            let mut v = [a.as_str(), b.as_str(), c.as_str()];
            v.sort_by(|x, y| natural_cmp(x, y));
            proptest::prop_assert!(natural_cmp(v[0], v[2]) != Ordering::Greater);
            proptest::prop_assert_eq!(natural_cmp(&format!("B{n}"), &format!("B{m}")), n.cmp(&m));
        }
    }

    #[test]
    fn stats_count_errors_shares_and_starved_backends() {
        let records = vec![
            rec(100.0, "B", 100.0, 200),
            rec(200.0, "A", 50.0, 500),
            rec(300.0, "B", 300.0, 0),
            rec(400.0, "B", 10.0, 200),
        ];
        let known = ["A".to_string(), "B".to_string(), "C".to_string()];
        let s = RunStats::compute("x", &records, &known, None);
        assert_eq!(s.requests, 4);
        assert_eq!(s.errors, 2);
        assert_eq!(s.error_rate, 0.5);
        assert_eq!(s.duration_s, 0.4);
        assert_eq!(s.req_per_s, 10.0);
        assert_eq!(s.mean_ms, 115.0);
        assert_eq!(s.max_ms, 300.0);
        assert_eq!(s.p50_ms, 50.0);
        let names: Vec<_> = s.backends.iter().map(|b| b.backend.as_str()).collect();
        assert_eq!(names, ["A", "B", "C"]);
        assert_eq!(s.share("B"), 0.75);
        assert_eq!(s.backend("C").map(|b| b.requests), Some(0));
        assert_eq!(s.routing_modes.len(), 1);
        let empty = RunStats::compute("none", &[], &[], None);
        assert_eq!(
            (empty.requests, empty.mean_ms, empty.req_per_s),
            (0, 0.0, 0.0)
        );
    }
}
