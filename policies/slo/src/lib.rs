//! A tail-aware policy: the lowest mean latency that keeps a latency quantile within its
//! target. Latency-chasing policies (the study's SMA and EWMA, peak-ewma) send everything
//! to whatever looks fastest and pay for it in the tail when the fastest backend is also
//! the most erratic; round-robin ignores both. `slo` learns each backend's latency
//! distribution (its newest `window` samples) and, every `update-ms`, solves for the shares
//! that minimise the mean subject to "at most `1 - quantile` of requests over the target"
//! (`plan`), then deals requests out in exactly those shares (`stride`). Requests still
//! unanswered past the target count as over it (`outstanding`), so a slow mode shows up
//! before its answers do.
//!
//! On the study's backends (A: 3 of every 9 of its requests take 400 ms, mean 143 ms; B:
//! 200 ms; C: 250 ms) the answer is A about 12 %, B the rest, C only what exploration
//! sends: in the simulator p95 200 ms with a mean near 193.5 ms, where the best adaptive policies before it
//! reached p95 202 ms at a mean of 200 ms (sma/ewma) or a mean of 198 ms at p95 401 ms
//! (peak-ewma).
//!
//! Settings (`--policy-arg`), defaults in brackets:
//! - `quantile` [0.95] and `target-ms` [auto]: the latency objective. Auto is
//!   `1 + slack` [0.025] times the lowest of the backends' own `quantile` latencies: the
//!   tail may be no worse than the best single backend's, give or take the slack.
//! - `margin` [0.15]: plans for `(1 - quantile) x (1 - margin)` over target, so sampling
//!   noise does not push the tail over.
//! - `explore` [0.01]: that fraction of requests goes evenly to every backend, so a
//!   backend the plan leaves out is still measured and can come back.
//! - `window` [200] samples per backend, `min-samples` [10] before its numbers are used
//!   (until then it gets an equal share), `update-ms` [100], `smoothing` [0.5] (how far
//!   each update raises a share towards the new plan; cuts apply at once), `tie` [0.05]
//!   (backends within 5 % of a planned one share its traffic, each request going to the
//!   less busy of two of them), `failure-penalty-ms` [1000] (what a failed
//!   exchange counts as), `max-lag-ms` [2000] (an answer joins the statistics once the
//!   backend's slowest recent latency or the target, whichever is less and at most this,
//!   has passed since its request was sent: see `window` for why; also the longest
//!   warm-up at even shares), `eject-ms` [1000] (a backend that fails is passed
//!   over for this long times its failures in a row, at most 30 s; 0 turns it off),
//!   `max-age-ms` [10000] (samples older than this are forgotten, so a backend that was
//!   down comes back within about that long once exploration finds it up).
//!
//! Where it loses: it assumes a backend's latency does not depend on its share. When it
//! does (capacity-bound backends), each plan changes what the next one measures and the
//! shares settle only through `smoothing`; load-aware policies (least-request, prequal,
//! peak-ewma) handle that better (the `fleet` scenario: mean 246 ms against peak-ewma's
//! 29). And a backend it has planned out is re-measured only by exploration, so it comes
//! back over seconds, not milliseconds.
mod outstanding;
mod plan;
mod stride;
mod window;

use std::cell::RefCell;
use std::collections::VecDeque;

use common::Rng;

wit_bindgen::generate!({ path: "../../wit", world: "router" });

use exports::switchyard::policy::policy::{
    Guest, Observation, PolicyInfo, ProbeResult, Request, Score, Setup,
};
use switchyard::policy::host;
use switchyard::policy::types::{Origin, Outcome};

use outstanding::Outstanding;
use plan::Point;
use stride::Stride;
use window::Window;

const SETTINGS: &[&str] = &[
    "quantile",
    "target-ms",
    "slack",
    "margin",
    "explore",
    "window",
    "min-samples",
    "update-ms",
    "smoothing",
    "tie",
    "failure-penalty-ms",
    "max-lag-ms",
    "eject-ms",
    "max-age-ms",
];

#[derive(Debug, Clone, Default)]
struct Settings {
    quantile: f64,
    /// `None`: auto.
    target_us: Option<f64>,
    slack: f64,
    margin: f64,
    explore: f64,
    window: usize,
    min_samples: usize,
    update_ns: u64,
    smoothing: f64,
    tie: f64,
    penalty_us: u32,
    max_lag_ns: u64,
    eject_ns: u64,
    max_age_ns: u64,
}

impl Settings {
    fn parse(config: &[(String, String)]) -> Result<Self, String> {
        common::reject_unknown(config, SETTINGS)?;
        let target_ms = common::config_f64(config, "target-ms", 0.0, 0.0..=3.6e6)?;
        // At most 2,000 samples: every update scans each backend's window.
        let window = common::config_usize(config, "window", 200, 10..=2_000)?;
        Ok(Settings {
            quantile: common::config_f64(config, "quantile", 0.95, 0.5..=0.9999)?,
            target_us: (target_ms > 0.0).then_some(target_ms * 1e3),
            slack: common::config_f64(config, "slack", 0.025, 0.0..=10.0)?,
            margin: common::config_f64(config, "margin", 0.15, 0.0..=0.9)?,
            explore: common::config_f64(config, "explore", 0.01, 0.0..=0.5)?,
            window,
            min_samples: common::config_usize(config, "min-samples", 10, 1..=window)?,
            update_ns: (common::config_f64(config, "update-ms", 100.0, 1.0..=60_000.0)? * 1e6)
                as u64,
            smoothing: common::config_f64(config, "smoothing", 0.5, 0.01..=1.0)?,
            tie: common::config_f64(config, "tie", 0.05, 0.0..=1.0)?,
            penalty_us: (common::config_f64(config, "failure-penalty-ms", 1000.0, 0.0..=3.6e6)?
                * 1e3) as u32,
            max_lag_ns: (common::config_f64(config, "max-lag-ms", 2000.0, 0.0..=600_000.0)? * 1e6)
                as u64,
            eject_ns: (common::config_f64(config, "eject-ms", 1000.0, 0.0..=3.6e6)? * 1e6) as u64,
            max_age_ns: (common::config_f64(config, "max-age-ms", 10_000.0, 100.0..=3.6e6)? * 1e6)
                as u64,
        })
    }
}

#[derive(Default)]
struct State {
    settings: Settings,
    ids: Vec<String>,
    windows: Vec<Window>,
    /// The shares requests are dealt in (the smoothed plan), summing to 1.
    shares: Vec<f64>,
    stride: Stride,
    /// The latest plan's groups of near-equal backends, and each backend's group.
    groups: Vec<Vec<usize>>,
    group_of: Vec<Option<usize>>,
    /// When the plan was last updated; `None` before the first.
    updated_ns: Option<u64>,
    /// The target in force, for display.
    target_us: f64,
    scratch: Vec<u32>,
    rng: Option<Rng>,
    ejected: Vec<Ejection>,
    /// The latest automatic targets, oldest first.
    targets: VecDeque<f64>,
    outstanding: Vec<Outstanding>,
    /// The first `choose` since `configure`: the warm-up runs from there (a proxy may be
    /// configured long before its first request).
    first_choose_ns: Option<u64>,
}

/// Automatic targets the one in force is the median of (2.1 s at the default `update-ms`):
/// see `State::target_us`.
const TARGET_HISTORY: usize = 21;

/// Unanswered sends older than this are forgotten (far beyond any proxy timeout).
const FORGET_SENDS_NS: u64 = 600_000_000_000;

/// The mean assumed of a backend none of whose requests has answered yet but some of
/// which are overdue, in targets.
const UNANSWERED_MEAN: f64 = 10.0;

/// How many turns `choose` passes over ejected backends before taking one anyway.
const EJECTED_SKIPS: usize = 4;

/// Failures in a row, and until when they keep a backend out.
///
/// Why a plan is not enough: a dead backend refuses in microseconds, so the clients it
/// fails come straight back, and in the one update (`update-ms`) it takes the plan to drop
/// it, 100 connections fail thousands of requests. Ejection acts on the first failure.
#[derive(Debug, Clone, Copy, Default)]
struct Ejection {
    failures: u32,
    until_ns: u64,
}

impl Ejection {
    /// As peak-ewma (and Envoy's outlier detection): out for `eject_ns` times the failures
    /// in a row, at most 30 s.
    /// A success resets the failures in a row but not an ejection running (a request in
    /// flight when it began can still answer); failures during an ejection are the
    /// requests that were in flight at the crash and do not lengthen it: one crash is one
    /// failure event.
    fn record(&mut self, outcome: Outcome, status: u16, now_ns: u64, eject_ns: u64) {
        match outcome {
            Outcome::Response if status < 500 => self.failures = 0,
            Outcome::Aborted => {}
            _ if eject_ns > 0 && now_ns < self.until_ns => {}
            _ if eject_ns > 0 => {
                self.failures = self.failures.saturating_add(1);
                let out = eject_ns
                    .saturating_mul(u64::from(self.failures))
                    .min(30_000_000_000);
                self.until_ns = now_ns.saturating_add(out);
            }
            _ => {}
        }
    }
}

// === impl State ===

impl State {
    /// New settings or backends. Windows and requests outstanding are kept by backend id,
    /// so a `configure` that only adds or removes backends does not forget what was learnt
    /// about the others (nor leave their answers to match newer sends).
    fn configure(&mut self, setup: &Setup, settings: Settings) {
        let mut old: Vec<(String, (Window, Outstanding))> = std::mem::take(&mut self.ids)
            .into_iter()
            .zip(
                std::mem::take(&mut self.windows)
                    .into_iter()
                    .zip(std::mem::take(&mut self.outstanding)),
            )
            .collect();
        let n = setup.backends.len();
        let same_window = settings.window == self.settings.window;
        (self.windows, self.outstanding) = setup
            .backends
            .iter()
            .map(|b| match old.iter().position(|(id, _)| *id == b.id) {
                Some(i) if same_window => old.swap_remove(i).1,
                Some(i) => (Window::new(settings.window), old.swap_remove(i).1 .1),
                None => (Window::new(settings.window), Outstanding::default()),
            })
            .unzip();
        self.ids = setup.backends.iter().map(|b| b.id.clone()).collect();
        self.settings = settings;
        self.shares = vec![1.0 / n.max(1) as f64; n];
        self.ejected = vec![Ejection::default(); n];
        self.targets.clear();
        self.first_choose_ns = None;
        self.groups.clear();
        self.group_of = vec![None; n];
        self.updated_ns = None;
        self.rng = Some(Rng::new(setup.seed));
    }

    /// The target for this update: the setting, or the median of the last
    /// `TARGET_HISTORY` automatic targets (the best backend's own quantile). Why a median:
    /// that quantile comes from the backend's latest `window` requests, a fraction of a
    /// second on a busy backend, and one hiccup there (a stalled core) would otherwise lift
    /// the target over a slower backend's steady latency and send it traffic (seen live:
    /// C's 250 ms became "within target" for a second when B's p95 blipped to 260 ms).
    fn target_us(&mut self, now_ns: u64) -> Option<f64> {
        if let Some(t) = self.settings.target_us {
            return Some(t);
        }
        // The best backend's quantile means nothing until every backend has answered
        // enough (else the first to answer, with only its fast answers in, sets a target
        // that every other backend misses), or until `max-lag` has passed.
        let (min, warm) = (self.settings.min_samples, self.settings.max_lag_ns);
        let started = *self.first_choose_ns.get_or_insert(now_ns);
        if self.windows.iter().any(|w| w.len() < min) && now_ns.saturating_sub(started) < warm {
            return None;
        }
        let now = self.auto_target_us(now_ns)?;
        if self.targets.len() == TARGET_HISTORY {
            self.targets.pop_front();
        }
        self.targets.push_back(now);
        let mut sorted: Vec<f64> = self.targets.iter().copied().collect();
        sorted.sort_by(f64::total_cmp);
        sorted.get(sorted.len() / 2).copied()
    }

    /// The lowest of the backends' own `quantile` latencies, times `1 + slack`. A
    /// backend's quantile over its answers alone is too low while its slow requests are
    /// still out (its fast ones answered first): one whose requests unanswered for longer
    /// than that quantile are more than `1 - quantile` of the lot cannot set the target.
    fn auto_target_us(&mut self, now_ns: u64) -> Option<f64> {
        let (q, min) = (self.settings.quantile, self.settings.min_samples);
        let scratch = &mut self.scratch;
        let mut best: Option<u32> = None;
        for (w, out) in self.windows.iter().zip(&self.outstanding) {
            if w.len() < min {
                continue;
            }
            let Some(v) = w.quantile_us(q, scratch) else {
                continue;
            };
            let late = out.older_than(now_ns, u64::from(v) * 1000) as f64;
            if late / (w.len() as f64 + late) > 1.0 - q {
                continue;
            }
            best = Some(best.map_or(v, |b| b.min(v)));
        }
        best.map(|b| f64::from(b) * (1.0 + self.settings.slack))
    }

    /// Re-plans: solves for the shares, then moves the dealt shares part of the way.
    fn update(&mut self, now_ns: u64) {
        self.updated_ns = Some(now_ns);
        let n = self.windows.len();
        // Once a target is known, answers settle after it rather than after the slowest
        // latency: a request sent before `now - target` has either answered or is overdue,
        // and overdue ones are counted as over, so the fraction over is exact there.
        let max_lag = self.settings.max_lag_ns;
        let target_lag = (self.target_us > 0.0).then_some((self.target_us * 1e3) as u64);
        for w in &mut self.windows {
            let slowest = u64::from(w.slowest_us()) * 1000;
            w.settle(
                now_ns,
                target_lag.map_or(slowest, |t| t.min(slowest)).min(max_lag),
            );
            w.expire(now_ns, self.settings.max_age_ns);
        }
        let Some(target) = self.target_us(now_ns) else {
            return;
        };
        self.target_us = target;
        let s = &self.settings;
        let target_ns = (target * 1e3) as u64;
        let measured: Vec<Point> = (self.windows.iter().enumerate())
            .filter_map(|(backend, w)| {
                // Overdue requests are over already: count them with the settled ones.
                let overdue = self
                    .outstanding
                    .get(backend)
                    .map_or(0, |o| o.older_than(now_ns, target_ns));
                if w.len() + overdue < s.min_samples {
                    return None;
                }
                let (settled, overdue) = (w.len() as f64, overdue as f64);
                Some(Point {
                    backend,
                    over: (w.over(target).unwrap_or(1.0) * settled + overdue) / (settled + overdue),
                    // Nothing answered yet, only overdue: as slow as it can be assumed.
                    mean: w.mean_us().unwrap_or(UNANSWERED_MEAN * target),
                })
            })
            .collect();
        // Until every backend is measured, or `max-lag` has passed, the shares stay even:
        // a plan over some of the backends would send the rest's share to whichever
        // answered first, before its slow answers could be known.
        let started = self.first_choose_ns.unwrap_or(now_ns);
        if measured.len() < n && now_ns.saturating_sub(started) < max_lag {
            return;
        }
        // Exploration goes to every backend; backends still being measured get an equal
        // share each; the plan divides what is left.
        let (explore, fair) = (s.explore / n as f64, 1.0 / n as f64);
        let unmeasured = n - measured.len();
        let planned = (1.0 - s.explore - fair * unmeasured as f64).max(0.0);
        let explore_over: f64 = measured.iter().map(|p| explore * p.over).sum();
        let budget = (1.0 - s.quantile) * (1.0 - s.margin);
        let lp_budget = if planned > 0.0 {
            (budget - explore_over) / planned
        } else {
            0.0
        };
        let plan = plan::solve(&measured, lp_budget, s.tie, n);
        let mut next: Vec<f64> = plan.shares.iter().map(|x| explore + planned * x).collect();
        self.group_of = vec![None; n];
        for (g, members) in plan.groups.iter().enumerate() {
            for &b in members {
                self.group_of[b] = Some(g);
            }
        }
        self.groups = plan.groups;
        let mut in_plan = vec![false; n];
        measured.iter().for_each(|p| in_plan[p.backend] = true);
        for (share, planned) in next.iter_mut().zip(&in_plan) {
            if !planned {
                *share += fair;
            }
        }
        let total: f64 = next.iter().sum();
        if total <= 0.0 || !total.is_finite() {
            return;
        }
        // Down at once, up by `smoothing`: a backend found over its part of the tail
        // budget costs the tail for every request it still gets, while one found better
        // can wait a few updates to be sure.
        for (share, want) in self.shares.iter_mut().zip(&next) {
            let want = want / total;
            *share = if want < *share {
                want
            } else {
                *share + s.smoothing * (want - *share)
            };
        }
        let total: f64 = self.shares.iter().sum();
        if total > 0.0 {
            self.shares.iter_mut().for_each(|x| *x /= total);
        }
        let rng = self.rng.get_or_insert_with(|| Rng::new(0));
        self.stride.set(&self.shares, rng);
    }

    fn choose(&mut self, now_ns: u64) -> u32 {
        let due = self
            .updated_ns
            .is_none_or(|t| now_ns.saturating_sub(t) >= self.settings.update_ns);
        if due {
            self.update(now_ns);
        }
        // An ejected backend's turn passes to the next. A backend with most of the share
        // has most of the turns, so after a few the best-planned backend still in is taken
        // (an O(n) scan, only while something is ejected), and only if all are out the
        // planned one.
        let usable = |s: &Self, i: usize| s.ejected.get(i).is_none_or(|e| now_ns >= e.until_ns);
        let mut pick = None;
        for _ in 0..EJECTED_SKIPS {
            match self.stride.next() {
                Some(i) if i < self.windows.len() => {
                    pick = Some(i);
                    if usable(self, i) {
                        break;
                    }
                }
                _ => break,
            }
        }
        if let Some(i) = pick.filter(|&i| !usable(self, i)) {
            pick = (0..self.shares.len())
                .filter(|&j| usable(self, j))
                .max_by(|&a, &b| self.shares[a].total_cmp(&self.shares[b]))
                .or(Some(i));
        }
        let pick = match pick {
            Some(i) => self.less_busy_in_group(i, now_ns),
            // Nothing planned yet (no backend measured): a random backend.
            None => {
                let rng = self.rng.get_or_insert_with(|| Rng::new(0));
                rng.below(self.windows.len().max(1))
            }
        };
        if let Some(o) = self.outstanding.get_mut(pick) {
            o.sent(now_ns);
        }
        pick as u32
    }

    /// `i`, or another member of its group of near-equal backends if that one has fewer
    /// requests in flight (power of two choices): the plan cannot tell them apart, their
    /// queues can.
    fn less_busy_in_group(&mut self, i: usize, now_ns: u64) -> usize {
        let Some(members) = self
            .group_of
            .get(i)
            .copied()
            .flatten()
            .and_then(|g| self.groups.get(g))
        else {
            return i;
        };
        let rng = self.rng.get_or_insert_with(|| Rng::new(0));
        let Some(&j) = members.get(rng.below(members.len())) else {
            return i;
        };
        let usable = self.ejected.get(j).is_none_or(|e| now_ns >= e.until_ns);
        if usable && host::in_flight(j as u32) < host::in_flight(i as u32) {
            j
        } else {
            i
        }
    }

    fn observe(&mut self, o: &Observation) {
        let penalty = self.settings.penalty_us;
        let Some(w) = self.windows.get_mut(o.backend as usize) else {
            return;
        };
        let us = u32::try_from(o.latency_ns / 1000).unwrap_or(u32::MAX);
        let sample = match o.outcome {
            Outcome::Response if o.status < 500 => us,
            // A lower bound: the client gave up after this long.
            Outcome::Aborted => us,
            _ => us.max(penalty),
        };

        w.push(o.now_ns.saturating_sub(o.latency_ns), sample, us);
        if o.origin == Origin::Chosen {
            if let Some(out) = self.outstanding.get_mut(o.backend as usize) {
                out.answered(o.now_ns.saturating_sub(o.latency_ns));
                out.forget_older_than(o.now_ns, FORGET_SENDS_NS);
            }
        }
        if let Some(e) = self.ejected.get_mut(o.backend as usize) {
            e.record(o.outcome, o.status, o.now_ns, self.settings.eject_ns);
        }
    }
}

thread_local! {
    static STATE: RefCell<State> = RefCell::default();
}

struct Slo;

impl Guest for Slo {
    fn configure(setup: Setup) -> Result<PolicyInfo, String> {
        let settings = Settings::parse(&setup.config)?;
        STATE.with_borrow_mut(|s| s.configure(&setup, settings));
        Ok(PolicyInfo {
            name: "slo".into(),
            score_label: "share".into(),
            headers: Vec::new(),
            response_headers: Vec::new(),
            probe_path: None,
        })
    }

    fn choose(request: Request) -> u32 {
        STATE.with_borrow_mut(|s| s.choose(request.now_ns))
    }

    fn observe(o: Observation) {
        STATE.with_borrow_mut(|s| s.observe(&o));
    }

    fn probed(_answer: ProbeResult) {}

    /// The share of requests each backend is being dealt, in percent.
    fn scores() -> Vec<Score> {
        STATE.with_borrow(|s| {
            (s.shares.iter().enumerate())
                .map(|(i, x)| Score {
                    backend: i as u32,
                    value: x * 100.0,
                })
                .collect()
        })
    }
}

export!(Slo);

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(p: &[(&str, &str)]) -> Vec<(String, String)> {
        common::pairs(p)
    }

    #[test]
    fn settings_are_checked_and_named() {
        let s = Settings::parse(&[]).unwrap_or_default();
        assert_eq!((s.quantile, s.target_us, s.window), (0.95, None, 200));
        let e = Settings::parse(&cfg(&[("quantile", "2")])).unwrap_err();
        assert!(e.contains("quantile=2"), "{e}");
        let e = Settings::parse(&cfg(&[("p95", "200")])).unwrap_err();
        assert!(e.contains("unknown setting `p95`"), "{e}");
        let e = Settings::parse(&cfg(&[("window", "20"), ("min-samples", "30")])).unwrap_err();
        assert!(e.contains("min-samples=30"), "{e}");
        let s = Settings::parse(&cfg(&[("target-ms", "205")])).unwrap_or_default();
        assert_eq!(s.target_us, Some(205_000.0));
    }
}
