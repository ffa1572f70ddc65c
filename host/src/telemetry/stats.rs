//! Live aggregates over request events: one summary per wall-clock second (the last ten
//! minutes are kept, for the console and the dashboard's charts), running totals, and the
//! latest requests.
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use hdrhistogram::Histogram;
use switchyard_report::log;

use super::{Outcome, RequestEvent};

/// Seconds of history kept.
pub const HISTORY_SECS: usize = 600;
/// Latest requests kept.
pub(super) const RECENT: usize = 100;

/// Per-backend figures for one second.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BackendSecond {
    pub requests: u64,
    pub errors: u64,
    pub mean_ms: f64,
    pub p95_ms: f64,
}

/// One wall-clock second of traffic, summarised.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Second {
    /// Unix time, whole seconds.
    pub unix: u64,
    pub requests: u64,
    pub errors: u64,
    pub faults: u64,
    pub reused: u64,
    pub mean_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
    pub backends: Vec<BackendSecond>,
}

impl Second {
    /// Share of requests per backend, 0..1.
    pub fn shares(&self) -> Vec<f64> {
        let total = self.requests.max(1) as f64;
        self.backends
            .iter()
            .map(|b| b.requests as f64 / total)
            .collect()
    }
}

/// Collects one second's events; summarised when the second is over.
struct Open {
    unix: u64,
    errors: Vec<u64>,
    faults: u64,
    reused: u64,
    /// Latencies in microseconds, per backend.
    latencies: Vec<Vec<u32>>,
}

impl Open {
    fn new(unix: u64, backends: usize) -> Self {
        Open {
            unix,
            errors: vec![0; backends],
            faults: 0,
            reused: 0,
            latencies: vec![Vec::new(); backends],
        }
    }

    fn close(self) -> Second {
        let mut all: Vec<u32> = self.latencies.iter().flatten().copied().collect();
        let backends = self
            .latencies
            .into_iter()
            .zip(&self.errors)
            .map(|(mut l, &errors)| BackendSecond {
                requests: l.len() as u64,
                errors,
                mean_ms: mean_ms(&l),
                p95_ms: quantile_ms(&mut l, 0.95),
            })
            .collect();
        Second {
            unix: self.unix,
            requests: all.len() as u64,
            errors: self.errors.iter().sum(),
            faults: self.faults,
            reused: self.reused,
            mean_ms: mean_ms(&all),
            p95_ms: quantile_ms(&mut all, 0.95),
            p99_ms: quantile_ms(&mut all, 0.99),
            backends,
        }
    }
}

fn mean_ms(us: &[u32]) -> f64 {
    if us.is_empty() {
        return 0.0;
    }
    us.iter().map(|&x| x as f64).sum::<f64>() / us.len() as f64 / 1000.0
}

/// The per-second quantile: nearest rank, `ceil(q * n)`, over the second's latencies in
/// whole microseconds. One of three quantile definitions (see `switchyard_report::percentile`
/// for the report's exact one; the running totals use an HDR histogram at 3 significant
/// figures), so the dashboard's p95 and `analyze`'s for the same run can differ slightly.
fn quantile_ms(us: &mut [u32], q: f64) -> f64 {
    if us.is_empty() {
        return 0.0;
    }
    let rank = ((q * us.len() as f64).ceil() as usize).clamp(1, us.len()) - 1;
    let (_, v, _) = us.select_nth_unstable(rank);
    *v as f64 / 1000.0
}

/// Upper bounds, in nanoseconds, of the cumulative latency buckets kept per backend for
/// Prometheus (`le` labels 0.0005 .. 10 seconds; a final +Inf bucket catches the rest).
/// Fixed bounds, unlike the HDR histogram, so scrapes can be aggregated across processes.
pub const LATENCY_BUCKETS_NS: [u64; 14] = [
    500_000,
    1_000_000,
    2_500_000,
    5_000_000,
    10_000_000,
    25_000_000,
    50_000_000,
    100_000_000,
    250_000_000,
    500_000_000,
    1_000_000_000,
    2_500_000_000,
    5_000_000_000,
    10_000_000_000,
];

/// One backend's latencies since start, bucketed by [`LATENCY_BUCKETS_NS`].
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LatencyBuckets {
    /// Per-bucket (not cumulative) counts; the last entry is the +Inf overflow.
    counts: [u64; LATENCY_BUCKETS_NS.len() + 1],
    /// Sum of all latencies, nanoseconds.
    pub sum_ns: u64,
}

impl LatencyBuckets {
    fn record(&mut self, latency_ns: u64) {
        let i = LATENCY_BUCKETS_NS.partition_point(|&upper| upper < latency_ns);
        self.counts[i] += 1;
        self.sum_ns = self.sum_ns.saturating_add(latency_ns);
    }

    /// (upper bound in seconds, cumulative count) for each bucket, +Inf last
    /// (`f64::INFINITY`), as Prometheus histograms expose them.
    pub fn cumulative(&self) -> Vec<(f64, u64)> {
        let mut total = 0;
        self.counts
            .iter()
            .enumerate()
            .map(|(i, &c)| {
                total += c;
                let upper = LATENCY_BUCKETS_NS
                    .get(i)
                    .map(|&ns| ns as f64 / 1e9)
                    .unwrap_or(f64::INFINITY);
                (upper, total)
            })
            .collect()
    }

    pub fn count(&self) -> u64 {
        self.counts.iter().sum()
    }
}

/// Running totals since start.
#[derive(Clone)]
pub struct Totals {
    pub requests: u64,
    pub errors: u64,
    pub faults: u64,
    pub reused: u64,
    pub per_backend: Vec<u64>,
    /// Failed requests per backend: 5xx, or no complete response because of the backend
    /// (a client hanging up is not the backend's failure, so aborts are not counted).
    pub per_backend_errors: Vec<u64>,
    /// Latency distribution per backend, for the admin port's Prometheus histogram.
    pub per_backend_latency: Vec<LatencyBuckets>,
    latency_us: Histogram<u64>,
}

impl Totals {
    fn new(backends: usize) -> Self {
        Totals {
            requests: 0,
            errors: 0,
            faults: 0,
            reused: 0,
            per_backend: vec![0; backends],
            per_backend_errors: vec![0; backends],
            per_backend_latency: vec![LatencyBuckets::default(); backends],
            // Constant bounds that hdrhistogram accepts (low >= 1, high >= 2 * low, sigfig <= 5).
            latency_us: Histogram::new_with_bounds(1, 3_600_000_000, 3)
                .expect("valid histogram bounds"),
        }
    }

    pub fn mean_ms(&self) -> f64 {
        self.latency_us.mean() / 1000.0
    }

    /// The quantile since start, from the HDR histogram: within 0.1% (3 significant
    /// figures) of the exact value, not the report's exact nearest rank.
    pub fn quantile_ms(&self, q: f64) -> f64 {
        self.latency_us.value_at_quantile(q) as f64 / 1000.0
    }

    pub fn max_ms(&self) -> f64 {
        self.latency_us.max() as f64 / 1000.0
    }

    pub fn shares(&self) -> Vec<f64> {
        let total = self.requests.max(1) as f64;
        self.per_backend.iter().map(|&c| c as f64 / total).collect()
    }
}

/// A request as the dashboard's "latest requests" table shows it.
#[derive(Debug, Clone)]
pub struct Recent {
    pub at: SystemTime,
    pub backend: usize,
    pub latency_ms: f64,
    pub status: u16,
    pub outcome: Outcome,
    pub routing_mode: Arc<str>,
}

pub(super) struct Live {
    backends: usize,
    open: Option<Open>,
    history: VecDeque<Second>,
    totals: Totals,
    recent: VecDeque<Recent>,
}

impl Live {
    pub(super) fn new(backends: usize) -> Self {
        Live {
            backends,
            open: None,
            history: VecDeque::with_capacity(HISTORY_SECS),
            totals: Totals::new(backends),
            recent: VecDeque::with_capacity(RECENT),
        }
    }

    pub(super) fn record(&mut self, e: &RequestEvent) {
        let unix = unix_secs(e.at);
        self.roll(unix);
        // 5xx or no complete response because of the backend; a client hanging up is not
        // the backend's failure (nor the proxy's). The log's definition, so `analyze` counts
        // the same errors from the CSV.
        let failed = log::failed(e.status, Some(e.outcome.as_str()));
        let us = (e.latency_ns / 1000).clamp(1, u32::MAX as u64) as u32;
        let open = self
            .open
            .get_or_insert_with(|| Open::new(unix, self.backends));
        if let Some(l) = open.latencies.get_mut(e.backend) {
            l.push(us);
            if failed {
                open.errors[e.backend] += 1;
            }
        }
        open.faults += u64::from(e.fault.is_some());
        open.reused += u64::from(e.reused);

        let t = &mut self.totals;
        t.requests += 1;
        t.errors += u64::from(failed);
        t.faults += u64::from(e.fault.is_some());
        t.reused += u64::from(e.reused);
        if let Some(c) = t.per_backend.get_mut(e.backend) {
            *c += 1;
        }
        if let Some(c) = t.per_backend_errors.get_mut(e.backend) {
            *c += u64::from(failed);
        }
        if let Some(l) = t.per_backend_latency.get_mut(e.backend) {
            l.record(e.latency_ns);
        }
        t.latency_us.saturating_record(u64::from(us));

        if self.recent.len() == RECENT {
            self.recent.pop_front();
        }
        self.recent.push_back(Recent {
            at: e.at,
            backend: e.backend,
            latency_ms: e.latency_ns as f64 / 1e6,
            status: e.status,
            outcome: e.outcome,
            routing_mode: e.routing_mode.clone(),
        });
    }

    /// Closes the open second if `unix` is past it (called on every event and on idle ticks).
    pub(super) fn roll(&mut self, unix: u64) {
        if self.open.as_ref().is_some_and(|o| o.unix < unix) {
            if let Some(open) = self.open.take() {
                if self.history.len() == HISTORY_SECS {
                    self.history.pop_front();
                }
                self.history.push_back(open.close());
            }
        }
    }

    /// Completed seconds after `after` (unix), oldest first.
    pub(super) fn seconds_after(&self, after: u64) -> Vec<Second> {
        self.history
            .iter()
            .filter(|s| s.unix > after)
            .cloned()
            .collect()
    }

    pub(super) fn totals(&self) -> Totals {
        self.totals.clone()
    }

    pub(super) fn recent(&self) -> Vec<Recent> {
        self.recent.iter().cloned().collect()
    }
}

/// Unix time in whole seconds (0 before the epoch): the key of a per-second window.
pub fn unix_secs(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Unix time in fractional seconds (0 before the epoch), as the admin API reports instants.
pub fn unix_f64(t: SystemTime) -> f64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}
