//! Live aggregates over request events: a window the console drains every second, and
//! running totals.
use hdrhistogram::Histogram;

use super::{EventOutcome, RequestEvent};

/// Latencies are recorded in microseconds, up to an hour, 3 significant digits.
fn histogram() -> Histogram<u64> {
    // Bounds are constants that hdrhistogram accepts (low 1, high >= 2*low, sigfig <= 5).
    Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("valid histogram bounds")
}

/// Aggregates over a span of requests.
#[derive(Clone)]
pub struct Window {
    pub requests: u64,
    pub errors: u64,
    pub faults: u64,
    pub per_backend: Vec<u64>,
    pub reused: u64,
    latency_us: Histogram<u64>,
}

impl Window {
    fn new(backends: usize) -> Self {
        Window {
            requests: 0,
            errors: 0,
            faults: 0,
            per_backend: vec![0; backends],
            reused: 0,
            latency_us: histogram(),
        }
    }

    fn record(&mut self, e: &RequestEvent) {
        self.requests += 1;
        if e.status >= 500 || e.outcome != EventOutcome::Response {
            self.errors += 1;
        }
        if e.fault.is_some() {
            self.faults += 1;
        }
        if e.reused {
            self.reused += 1;
        }
        if let Some(c) = self.per_backend.get_mut(e.backend) {
            *c += 1;
        }
        self.latency_us
            .saturating_record((e.latency_ns / 1000).max(1));
    }

    pub fn mean_ms(&self) -> f64 {
        self.latency_us.mean() / 1000.0
    }

    pub fn quantile_ms(&self, q: f64) -> f64 {
        self.latency_us.value_at_quantile(q) as f64 / 1000.0
    }

    pub fn max_ms(&self) -> f64 {
        self.latency_us.max() as f64 / 1000.0
    }

    /// Share of requests per backend, 0..1.
    pub fn shares(&self) -> Vec<f64> {
        let total = self.requests.max(1) as f64;
        self.per_backend.iter().map(|&c| c as f64 / total).collect()
    }
}

pub struct Live {
    window: Window,
    total: Window,
}

/// Totals so far.
pub type Snapshot = Window;

impl Live {
    pub fn new(backends: usize) -> Self {
        Live {
            window: Window::new(backends),
            total: Window::new(backends),
        }
    }

    pub fn record(&mut self, e: &RequestEvent) {
        self.window.record(e);
        self.total.record(e);
    }

    pub fn take_window(&mut self) -> Window {
        let fresh = Window::new(self.window.per_backend.len());
        std::mem::replace(&mut self.window, fresh)
    }

    pub fn snapshot(&self) -> Snapshot {
        self.total.clone()
    }
}
