//! Prequal's per-query rule, free of WIT types so it runs (and is tested) natively.
//!
//! [`common::pool::ProbePool`] already holds the pool, the HCL selection, the RIF
//! compensation, the reuse budget and the alternating removal. What is left here is the
//! glue the paper describes around it: how many probes a query asks for, which answers
//! and reports go into the pool, when an entry is removed, what failures do, and the
//! random fall back. Nothing here panics on any input.

use common::pool::{self, ProbePool};
use common::Rng;

/// The response headers a Prequal backend answers probes with (and, with
/// `--report-load`, piggybacks on every response).
pub const RIF_HEADER: &str = "x-prequal-rif";
pub const LATENCY_HEADER: &str = "x-prequal-latency-us";

/// The paper's `r_probe`: probes asked for per query.
pub const DEFAULT_PROBES_PER_QUERY: f64 = 3.0;
/// The paper removes `r_remove = 1` entry per query while `r_probe = 3` answers arrive per
/// query, i.e. one removal per 3 answers. Here the host's gate (one probe per backend per
/// 10 ms) and the backends' piggybacked reports decide how many answers arrive, not the
/// policy, so the ratio is what is kept: one removal per this many answers pooled.
/// Removing one per query instead would, whenever queries outnumber answers (a busy
/// proxy in front of a few backends), empty the pool into random fall back.
pub const ANSWERS_PER_REMOVAL: u32 = 3;

/// Draws the random fall back makes at most to avoid failing backends: with half of them
/// failing, 8 draws all land on failing ones once in 256 fall backs.
const FALLBACK_DRAWS: usize = 8;

/// Validated settings, with the paper's defaults.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    /// `r_probe`; a fraction is rounded at random per query, 0 relies on piggybacked
    /// reports alone.
    pub probes_per_query: f64,
    /// `m`, entries pooled at most (one per backend: the newest).
    pub pool_size: usize,
    /// Entries older than this are ineligible.
    pub probe_age_ns: u64,
    /// `Q_RIF`: an entry above this quantile of the pooled RIFs is hot.
    pub q_rif: f64,
    /// `b_reuse`: queries one entry may route.
    pub max_uses: u32,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            probes_per_query: DEFAULT_PROBES_PER_QUERY,
            pool_size: pool::DEFAULT_CAP,
            probe_age_ns: pool::DEFAULT_MAX_AGE_NS,
            q_rif: pool::DEFAULT_Q_RIF,
            max_uses: pool::DEFAULT_MAX_USES,
        }
    }
}

/// Every key [`Settings::parse`] accepts.
pub const KEYS: [&str; 5] = [
    "probes-per-query",
    "pool-size",
    "probe-age-ms",
    "q-rif",
    "max-uses",
];

impl Settings {
    /// Reads `--policy-arg` pairs; every error names the key and the accepted range.
    pub fn parse(config: &[(String, String)]) -> Result<Settings, String> {
        common::reject_unknown(config, &KEYS)?;
        let d = Settings::default();
        // At most 16 probes a query: probe_targets is O(k²), and the paper finds no gain
        // far above 3.
        let probes_per_query =
            common::config_f64(config, "probes-per-query", d.probes_per_query, 0.0..=16.0)?;
        // Below 2 the pool could never route (HCL needs 2 eligible entries); the upper
        // bound keeps choose's O(pool size) work well inside the host's CPU deadline.
        let pool_size = common::config_usize(config, "pool-size", d.pool_size, 2..=256)?;
        let age_ms = common::config_f64(
            config,
            "probe-age-ms",
            d.probe_age_ns as f64 / 1e6,
            1.0..=60_000.0,
        )?;
        let q_rif = common::config_f64(config, "q-rif", d.q_rif, 0.0..=1.0)?;
        let max_uses = common::config_usize(config, "max-uses", d.max_uses as usize, 1..=1000)?;
        Ok(Settings {
            probes_per_query,
            pool_size,
            // 1 ms to 60 s in nanoseconds: far inside u64.
            probe_age_ns: (age_ms * 1e6) as u64,
            q_rif,
            max_uses: u32::try_from(max_uses).unwrap_or(pool::DEFAULT_MAX_USES),
        })
    }
}

/// A backend's load as it reported it: `(rif, latency_us)` from the two headers, or
/// `None` unless both are present and parse.
pub fn load_report(headers: &[(String, String)]) -> Option<(u32, u64)> {
    let value = |name: &str| {
        headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.trim())
    };
    let rif = value(RIF_HEADER)?.parse().ok()?;
    let latency_us = value(LATENCY_HEADER)?.parse().ok()?;
    Some((rif, latency_us))
}

/// One Prequal client: the pool plus what the policy remembers between calls.
#[derive(Debug, Clone)]
pub struct Prequal {
    settings: Settings,
    n_backends: usize,
    pool: ProbePool,
    rng: Rng,
    /// Answers pooled since the last removal.
    answers_since_removal: u32,
    /// Whether each backend's last word was a failure (a failed request or probe), until
    /// a success or a report says otherwise: the random fall back avoids these.
    failing: Vec<bool>,
    /// The latest latency each backend reported, in microseconds: the scores.
    last_latency_us: Vec<Option<u64>>,
    /// Reused for the probe targets so choose does not allocate.
    targets: Vec<u32>,
}

impl Prequal {
    pub fn new(settings: Settings, n_backends: usize, seed: u64) -> Self {
        let pool = ProbePool::new(settings.pool_size, settings.probe_age_ns, settings.q_rif)
            .with_max_uses(settings.max_uses);
        Prequal {
            settings,
            n_backends,
            pool,
            rng: Rng::new(seed),
            answers_since_removal: 0,
            failing: vec![false; n_backends],
            last_latency_us: vec![None; n_backends],
            targets: Vec::new(),
        }
    }

    /// Routes one query at `now_ns`: asks `probe` (the host's `probe`, which may refuse)
    /// for this query's probes, then picks by HCL from the pool, or uniformly at random
    /// while fewer than 2 entries are usable. `tried` are the backends this client request
    /// already went to; a retry avoids them when any other is left. Always below the
    /// backend count (0 when there are none). O(pool size + probes), plus O(backends ×
    /// tried) on a retry that the pool sent back to a backend it already tried.
    pub fn choose(
        &mut self,
        now_ns: u64,
        tried: &[u32],
        mut probe: impl FnMut(u32) -> bool,
    ) -> u32 {
        let n = self.n_backends;
        if n == 0 {
            return 0;
        }
        let k = self.probes_this_query();
        pool::probe_targets(&mut self.rng, n, k, &mut self.targets);
        for &b in &self.targets {
            // A refusal (probe in flight, or the host's rate limit) just means fewer
            // answers: the pool keeps routing on what it has.
            probe(b);
        }
        let pick = match self.pool.select(now_ns) {
            Some(b) if (b as usize) < n => b,
            _ => self.random_backend(),
        };
        if tried.contains(&pick) {
            return self.untried(tried).unwrap_or(pick);
        }
        pick
    }

    /// Pools a load report (a probe answer or piggybacked headers) that `backend` sent at
    /// `now_ns`, and removes one entry every [`ANSWERS_PER_REMOVAL`] answers.
    pub fn report(&mut self, backend: u32, rif: u32, latency_us: u64, now_ns: u64) {
        let Some(last) = self.last_latency_us.get_mut(backend as usize) else {
            return; // Not a backend of this setup: pooling it could route out of range.
        };
        *last = Some(latency_us);
        self.succeeded(backend);
        self.pool.insert(backend, rif, latency_us, now_ns);
        self.answers_since_removal += 1;
        if self.answers_since_removal >= ANSWERS_PER_REMOVAL {
            self.answers_since_removal = 0;
            self.pool.remove_one(now_ns);
        }
    }

    /// A request to (or a probe of) `backend` failed: drop its entry, because a backend
    /// that fails fast looks fast and idle and its entry would otherwise attract traffic.
    /// The random fall back avoids it too until it answers a probe or a request; without
    /// that, a dead backend takes its share of every query the pool cannot route (on
    /// fail-recover.toml, 5.7% of requests failed instead of 0.02%).
    pub fn failed(&mut self, backend: u32) {
        self.pool.forget(backend);
        if let Some(f) = self.failing.get_mut(backend as usize) {
            *f = true;
        }
    }

    /// A request to `backend` succeeded (whether or not it carried a report).
    pub fn succeeded(&mut self, backend: u32) {
        if let Some(f) = self.failing.get_mut(backend as usize) {
            *f = false;
        }
    }

    /// `(backend, latest reported latency in ms)` for every backend that reported.
    pub fn latencies_ms(&self) -> impl Iterator<Item = (u32, f64)> + '_ {
        self.last_latency_us
            .iter()
            .enumerate()
            .filter_map(|(i, l)| l.map(|us| (i as u32, us as f64 / 1e3)))
    }

    /// `r_probe` for this query: the whole part, plus one with the fraction's probability
    /// (the paper's random rounding of a fractional rate).
    fn probes_this_query(&mut self) -> usize {
        let r = self.settings.probes_per_query;
        let whole = r.floor();
        let extra = self.unit() < r - whole;
        // r is validated to 0..=16, so the cast is exact.
        whole as usize + usize::from(extra)
    }

    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64 {
        (self.rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// The paper's fall back: a uniformly random backend, redrawn (a bounded number of
    /// times, to keep choose O(1) here) while the draw is failing. If every draw fails,
    /// the last stands: with every backend failing, any is as good.
    fn random_backend(&mut self) -> u32 {
        let mut pick = 0;
        for _ in 0..FALLBACK_DRAWS {
            // below(n) < n, and n came from a list the host indexes with u32.
            pick = self.rng.below(self.n_backends);
            if !self.failing.get(pick).copied().unwrap_or(false) {
                break;
            }
        }
        pick as u32
    }

    /// A uniformly random backend not in `tried`, if any is left.
    fn untried(&mut self, tried: &[u32]) -> Option<u32> {
        let n = self.n_backends as u32;
        let left = (0..n).filter(|b| !tried.contains(b)).count();
        if left == 0 {
            return None;
        }
        let nth = self.rng.below(left);
        (0..n).filter(|b| !tried.contains(b)).nth(nth)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;

    fn cfg(p: &[(&str, &str)]) -> Vec<(String, String)> {
        common::pairs(p)
    }

    /// A client over `n` backends that never probes, so tests set the pool by hand.
    fn quiet(n: usize) -> Prequal {
        let settings = Settings {
            probes_per_query: 0.0,
            ..Settings::default()
        };
        Prequal::new(settings, n, 1)
    }

    /// Pools entries received at `now_ns` straight into the pool, bypassing
    /// [`Prequal::report`]'s removals, so a test of the rule sees exactly these.
    fn fill(p: &mut Prequal, entries: &[(u32, u32, u64)], now_ns: u64) {
        for &(b, rif, latency_us) in entries {
            p.pool.insert(b, rif, latency_us, now_ns);
        }
    }

    fn no_probes(_: u32) -> bool {
        panic!("this test asked for no probes")
    }

    #[test]
    fn defaults_are_the_papers() {
        let s = Settings::parse(&[]).unwrap();
        assert_eq!(s, Settings::default());
        assert_eq!(s.probes_per_query, 3.0);
        assert_eq!(s.pool_size, 16);
        assert_eq!(s.probe_age_ns, 1_000 * MS);
        assert!((s.q_rif - 2f64.powf(-0.25)).abs() < 1e-12);
        assert_eq!(s.max_uses, 16);
    }

    #[test]
    fn settings_parse_and_errors_name_the_key() {
        let s = Settings::parse(&cfg(&[
            ("probes-per-query", "1.5"),
            ("pool-size", "8"),
            ("probe-age-ms", "250"),
            ("q-rif", "0.6"),
            ("max-uses", "2"),
        ]))
        .unwrap();
        assert_eq!(
            (
                s.probes_per_query,
                s.pool_size,
                s.probe_age_ns,
                s.q_rif,
                s.max_uses
            ),
            (1.5, 8, 250 * MS, 0.6, 2)
        );
        for (key, bad) in [
            ("probes-per-query", "17"),
            ("probes-per-query", "-1"),
            ("pool-size", "1"),
            ("pool-size", "many"),
            ("probe-age-ms", "0"),
            ("probe-age-ms", "NaN"),
            ("q-rif", "1.5"),
            ("max-uses", "0"),
        ] {
            let err = Settings::parse(&cfg(&[(key, bad)])).unwrap_err();
            assert!(err.starts_with(&format!("{key}={bad} is invalid")), "{err}");
        }
        let err = Settings::parse(&cfg(&[("qrif", "0.5")])).unwrap_err();
        assert!(err.contains("`qrif`") && err.contains("q-rif"), "{err}");
    }

    #[test]
    fn picks_the_coldest_fast_probe_and_excludes_hot_even_when_faster() {
        let mut p = Prequal::new(
            Settings {
                probes_per_query: 0.0,
                q_rif: 0.5,
                ..Settings::default()
            },
            4,
            1,
        );
        // RIFs 1, 2, 3, 9: with q = 0.5 the threshold is the 2nd smallest, 2, so only
        // backends 1 and 2 are cold. Backend 0 is the fastest but hot.
        fill(
            &mut p,
            &[(0, 9, 100), (1, 1, 9_000), (2, 2, 5_000), (3, 3, 4_000)],
            0,
        );
        assert_eq!(p.choose(0, &[], no_probes), 2, "cold and faster than 1");
    }

    #[test]
    fn all_hot_routes_to_the_lowest_rif() {
        // q = 0: the threshold is the lowest reported RIF, 4. Once backend 1 (RIF 4, the
        // only cold one) has been chosen, compensation makes it 5: every entry is hot, and
        // the lowest RIF wins whatever its latency.
        let mut p = Prequal::new(
            Settings {
                probes_per_query: 0.0,
                q_rif: 0.0,
                ..Settings::default()
            },
            3,
            1,
        );
        fill(&mut p, &[(0, 6, 10), (1, 4, 900), (2, 5, 9_000)], 0);
        assert_eq!(p.choose(0, &[], no_probes), 1, "the only cold entry");
        assert_eq!(
            p.choose(0, &[], no_probes),
            1,
            "all hot: 1 and 2 at RIF 5, 1 is faster"
        );
        assert_eq!(p.choose(0, &[], no_probes), 2, "all hot: 1 is at RIF 6 now");
    }

    #[test]
    fn stale_probes_are_ignored() {
        let mut p = quiet(3);
        // Backend 0 reported idle and fast at 0 s; 1 and 2 busier and slower at 1 s.
        fill(&mut p, &[(0, 0, 10)], 0);
        fill(&mut p, &[(1, 3, 5_000), (2, 3, 6_000)], 1_000 * MS);
        // Exactly the probe age (1 s) old: still eligible, and the best.
        assert_eq!(p.choose(1_000 * MS, &[], no_probes), 0);
        // Half a second later it is stale, however good it looks.
        let picks: Vec<u32> = (0..4)
            .map(|_| p.choose(1_500 * MS, &[], no_probes))
            .collect();
        assert!(!picks.contains(&0), "stale backend 0 chosen: {picks:?}");
        assert_eq!(picks[0], 1);
        assert!(p.pool.entries().iter().all(|e| e.backend != 0));
    }

    #[test]
    fn falls_back_to_random_below_two_entries() {
        let mut p = quiet(4);
        p.report(3, 0, 10, 0);
        let mut seen = [0u32; 4];
        for _ in 0..400 {
            seen[p.choose(0, &[], no_probes) as usize] += 1;
        }
        assert!(seen.iter().all(|&c| c > 60), "not uniform: {seen:?}");
    }

    #[test]
    fn the_random_fall_back_avoids_failing_backends_until_they_answer() {
        let mut p = quiet(3);
        p.failed(1);
        let picks: Vec<u32> = (0..300).map(|_| p.choose(0, &[], no_probes)).collect();
        assert!(!picks.contains(&1), "failing backend drawn");
        assert!(picks.contains(&0) && picks.contains(&2));
        // A probe answer (or a good response) brings it back.
        p.report(1, 0, 10, 0);
        let picks: Vec<u32> = (0..300).map(|_| p.choose(0, &[], no_probes)).collect();
        assert!(picks.contains(&1));
        p.failed(1);
        p.succeeded(1);
        p.failed(u32::MAX);
        p.succeeded(u32::MAX);
        assert!(p.failing.iter().all(|f| !f));
        // All failing: still routes somewhere in range.
        (0..3).for_each(|b| p.failed(b));
        assert!(p.choose(0, &[], no_probes) < 3);
    }

    #[test]
    fn failure_forgets_the_backend() {
        let mut p = quiet(3);
        fill(&mut p, &[(0, 0, 10), (1, 0, 20), (2, 0, 30)], 0);
        p.failed(0);
        assert_eq!(p.choose(0, &[], no_probes), 1);
    }

    #[test]
    fn probes_the_papers_three_random_backends_per_query() {
        let mut p = Prequal::new(Settings::default(), 10, 7);
        let mut asked = Vec::new();
        for _ in 0..100 {
            let before = asked.len();
            p.choose(0, &[], |b| {
                asked.push(b);
                false
            });
            let mut this: Vec<u32> = asked[before..].to_vec();
            this.sort_unstable();
            this.dedup();
            assert_eq!(this.len(), 3, "three distinct targets");
        }
        assert!(asked.iter().all(|&b| b < 10));
        // Refused probes change nothing: with an empty pool every pick is random.
        assert!(p.pool.is_empty());
    }

    #[test]
    fn fractional_probe_rate_rounds_at_random() {
        let settings = Settings {
            probes_per_query: 0.25,
            ..Settings::default()
        };
        let mut p = Prequal::new(settings, 10, 3);
        let mut asked = 0;
        for _ in 0..4000 {
            p.choose(0, &[], |_| {
                asked += 1;
                true
            });
        }
        assert!(
            (800..1200).contains(&asked),
            "{asked} probes for 4000 queries"
        );
    }

    #[test]
    fn removes_one_entry_per_three_answers_alternating_oldest_and_worst() {
        let mut p = Prequal::new(
            Settings {
                probes_per_query: 0.0,
                q_rif: 0.5,
                ..Settings::default()
            },
            8,
            1,
        );
        p.report(0, 1, 10, 0);
        p.report(1, 1, 20, 1);
        assert_eq!(p.pool.len(), 2);
        p.report(2, 9, 30, 2);
        // The third answer triggers a removal of the oldest: backend 0.
        let pooled: Vec<u32> = p.pool.entries().iter().map(|e| e.backend).collect();
        assert_eq!(pooled, [1, 2]);
        p.report(3, 1, 40, 3);
        p.report(4, 1, 50, 4);
        p.report(5, 1, 60, 5);
        // Then the worst: backend 2, the one above the median RIF of 1.
        let pooled: Vec<u32> = p.pool.entries().iter().map(|e| e.backend).collect();
        assert_eq!(pooled, [1, 3, 4, 5]);
    }

    #[test]
    fn reports_from_unknown_backends_are_ignored() {
        let mut p = quiet(2);
        p.report(2, 0, 1, 0);
        p.report(u32::MAX, 0, 1, 0);
        p.report(1, 0, 50, 0);
        assert!(p.pool.entries().iter().all(|e| e.backend < 2));
        for _ in 0..50 {
            assert!(p.choose(0, &[], no_probes) < 2);
        }
    }

    #[test]
    fn a_retry_avoids_the_backends_already_tried() {
        let mut p = quiet(3);
        fill(&mut p, &[(0, 0, 10), (1, 0, 20)], 0);
        for _ in 0..20 {
            assert_eq!(p.choose(0, &[0, 1], no_probes), 2);
        }
        // Every backend tried: the pool's pick stands.
        assert!(p.choose(0, &[0, 1, 2], no_probes) < 3);
    }

    #[test]
    fn no_backends_is_zero_and_does_not_probe() {
        let mut p = Prequal::new(Settings::default(), 0, 1);
        assert_eq!(p.choose(0, &[], no_probes), 0);
    }

    #[test]
    fn load_reports_need_both_headers() {
        let h = |pairs: &[(&str, &str)]| cfg(pairs);
        assert_eq!(
            load_report(&h(&[(RIF_HEADER, "3"), (LATENCY_HEADER, " 1200 ")])),
            Some((3, 1200))
        );
        assert_eq!(load_report(&h(&[(RIF_HEADER, "3")])), None);
        assert_eq!(load_report(&h(&[(LATENCY_HEADER, "9")])), None);
        assert_eq!(
            load_report(&h(&[(RIF_HEADER, "-1"), (LATENCY_HEADER, "9")])),
            None
        );
        assert_eq!(
            load_report(&h(&[(RIF_HEADER, "1"), (LATENCY_HEADER, "x")])),
            None
        );
    }

    #[test]
    fn scores_are_the_latest_reported_latency_in_ms() {
        let mut p = quiet(3);
        p.report(2, 0, 1_500, 0);
        p.report(2, 0, 2_500, 1);
        assert_eq!(p.latencies_ms().collect::<Vec<_>>(), [(2, 2.5)]);
    }
}
