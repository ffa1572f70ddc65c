//! What a simulated backend reports about its load, as `backend --report-load` does: the
//! ORCA `endpoint-load-metrics` TEXT header and Prequal's `x-prequal-rif` and
//! `x-prequal-latency-us`, measured at the moment of the report (a response leaving or a
//! probe arriving).
//!
//! The model decides each exchange at arrival, so the tracker only needs every accepted
//! request's end time: requests in flight at `t` are those that arrived by `t` and end
//! after it. Reports come in time order (the event loop's), so ended requests can be
//! popped for good. Unlike `backend/`, whose one-second rate is a sliding estimate over
//! 100 ms buckets, the rate here is exact: the simulator has every end time.
use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};

const SECOND_NS: u64 = 1_000_000_000;
/// Latencies the median is taken over, as in `backend/`.
const RECENT: usize = 16;

/// One backend's load at a moment.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Load {
    /// Requests in flight: queued or in service.
    pub rif: u32,
    /// In service over capacity; `None` when capacity is unlimited.
    pub utilization: Option<f64>,
    /// Requests completed in the last second.
    pub rps: f64,
    /// Median latency of the last 16 completed, in microseconds (0 before any).
    pub latency_us: u64,
}

impl Load {
    /// The headers `backend/` sends, as (lower-case name, value).
    pub fn headers(&self) -> [(&'static str, String); 3] {
        let mut orca = String::from("TEXT ");
        if let Some(u) = self.utilization {
            orca += &format!("application_utilization:{u:.3},");
        }
        orca += &format!(
            "rps_fractional:{:.3},named_metrics.rif:{}",
            self.rps, self.rif
        );
        [
            ("endpoint-load-metrics", orca),
            ("x-prequal-rif", self.rif.to_string()),
            ("x-prequal-latency-us", self.latency_us.to_string()),
        ]
    }
}

/// The requests a backend is working on, and the recent ones it finished.
#[derive(Debug, Default)]
pub struct LoadTracker {
    /// (end, latency) of accepted requests not yet known to have ended.
    open: BinaryHeap<Reverse<(u64, u64)>>,
    /// End times within the last second, oldest first.
    ended: VecDeque<u64>,
    /// Latencies of the last `RECENT` ended, oldest first.
    recent: VecDeque<u64>,
}

impl LoadTracker {
    /// A request accepted at `arrival_ns` that the backend finishes at `end_ns` (whatever
    /// the proxy or the client do meanwhile: the backend keeps working).
    /// Arrivals come in time order, so this also forgets what ended before: the tracker
    /// holds only requests in flight and the last second's ends, however long the run.
    pub fn accept(&mut self, arrival_ns: u64, end_ns: u64) {
        self.advance(arrival_ns);
        self.open
            .push(Reverse((end_ns, end_ns.saturating_sub(arrival_ns))));
    }

    /// The load at `now_ns` (not before the previous call's), with `capacity` slots.
    pub fn at(&mut self, now_ns: u64, capacity: Option<usize>) -> Load {
        self.advance(now_ns);
        let rif = self.open.len();
        Load {
            rif: u32::try_from(rif).unwrap_or(u32::MAX),
            utilization: capacity.map(|c| rif.min(c) as f64 / c.max(1) as f64),
            rps: self.ended.len() as f64,
            latency_us: median(&self.recent) / 1_000,
        }
    }

    /// Moves the requests that ended by `now_ns` from in flight to the recent ones.
    fn advance(&mut self, now_ns: u64) {
        while let Some(&Reverse((end, latency))) = self.open.peek() {
            if end > now_ns {
                break;
            }
            self.open.pop();
            self.ended.push_back(end);
            if self.recent.len() == RECENT {
                self.recent.pop_front();
            }
            self.recent.push_back(latency);
        }
        while self
            .ended
            .front()
            .is_some_and(|&e| now_ns.saturating_sub(e) >= SECOND_NS)
        {
            self.ended.pop_front();
        }
    }
}

/// The median, the mean of the two middle values for an even count, as `backend/`.
fn median(values: &VecDeque<u64>) -> u64 {
    let mut v: Vec<u64> = values.iter().copied().collect();
    v.sort_unstable();
    match v.len() {
        0 => 0,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;

    #[test]
    fn in_flight_utilisation_rate_and_median_at_a_moment() {
        let mut t = LoadTracker::default();
        t.accept(0, 10 * MS);
        t.accept(0, 30 * MS);
        t.accept(5 * MS, 40 * MS);
        let at0 = t.at(5 * MS, Some(2));
        assert_eq!(
            (at0.rif, at0.utilization, at0.rps, at0.latency_us),
            (3, Some(1.0), 0.0, 0)
        );
        // At 10 ms the first has ended, and does not count itself.
        let at10 = t.at(10 * MS, Some(2));
        assert_eq!((at10.rif, at10.utilization, at10.rps), (2, Some(1.0), 1.0));
        assert_eq!(at10.latency_us, 10_000);
        let at40 = t.at(40 * MS, None);
        assert_eq!((at40.rif, at40.utilization, at40.rps), (0, None, 3.0));
        assert_eq!(at40.latency_us, 30_000, "median of 10, 30 and 35 ms");
        assert_eq!(
            t.at(10 * MS + SECOND_NS, None).rps,
            2.0,
            "exactly a second later: gone"
        );
    }

    #[test]
    fn the_headers_are_backends() {
        let load = Load {
            rif: 3,
            utilization: Some(0.5),
            rps: 12.0,
            latency_us: 800,
        };
        let [(orca_name, orca), rif, latency] = load.headers();
        assert_eq!(orca_name, "endpoint-load-metrics");
        assert_eq!(
            orca,
            "TEXT application_utilization:0.500,rps_fractional:12.000,named_metrics.rif:3"
        );
        assert_eq!(rif, ("x-prequal-rif", "3".to_string()));
        assert_eq!(latency, ("x-prequal-latency-us", "800".to_string()));
        let unlimited = Load {
            utilization: None,
            ..load
        };
        assert_eq!(
            unlimited.headers()[0].1,
            "TEXT rps_fractional:12.000,named_metrics.rif:3"
        );
    }
}
