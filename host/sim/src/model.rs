//! One simulated backend: what happens to a request sent to it at a given virtual time.
//!
//! Everything about an exchange is decided when the request arrives, as `backend/` does:
//! the cycle step and the failure draw are taken at receipt, and with a FIFO queue the
//! service start is known then too (the earliest moment one of the `capacity` slots frees,
//! since everyone ahead was admitted earlier). The scenario's changes are fixed in advance,
//! so a crash that will cut the request off is known at arrival as well. The engine then
//! needs just one event per request: its end.
use std::cmp::Reverse;
use std::collections::BinaryHeap;

use switchyard_runtime::Outcome;

use super::load::{Load, LoadTracker};
use super::scenario::{BackendSpec, Change, Latency, Settings, MAX_LATENCY_MS};
use switchyard_rng as rng;

/// Stream tag mixed into the seed for latency draws, so they are independent of the
/// failure draws, which use the seed as is (like `backend/`).
const LATENCY_STREAM: u64 = 0x6c61_7465_6e63_7921;

/// How one exchange ends, from the proxy's point of view.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Exchange {
    pub end_ns: u64,
    /// HTTP status the client gets: the backend's, or the proxy's 502/504.
    pub status: u16,
    pub outcome: Outcome,
}

impl Exchange {
    /// The status the policy observes: 0 when no response came from the backend.
    pub fn observed_status(&self) -> u16 {
        match self.outcome {
            Outcome::Response => self.status,
            _ => 0,
        }
    }
}

pub struct BackendModel<'a> {
    spec: &'a BackendSpec,
    now: Settings,
    /// Index of the first change not applied yet.
    next_change: usize,
    seed: u64,
    /// Requests received since the (re)start: the cycle position.
    received: u64,
    /// When each service slot is next free; exactly `capacity` entries, none if unlimited.
    slots: BinaryHeap<Reverse<u64>>,
    timeout_ns: Option<u64>,
    connect_error_ns: u64,
    /// Every accepted request's end, for load reports.
    load: LoadTracker,
}

impl<'a> BackendModel<'a> {
    pub fn new(
        spec: &'a BackendSpec,
        seed: u64,
        timeout_ns: Option<u64>,
        connect_error_ns: u64,
    ) -> Self {
        let mut model = BackendModel {
            spec,
            now: spec.initial.clone(),
            next_change: 0,
            seed,
            received: 0,
            slots: BinaryHeap::new(),
            timeout_ns,
            connect_error_ns,
            load: LoadTracker::default(),
        };
        model.resize(0, spec.initial.capacity);
        model
    }

    /// A request arriving at `now_ns` (non-decreasing from call to call).
    pub fn serve(&mut self, now_ns: u64) -> Exchange {
        self.apply_changes(now_ns);
        if !self.now.up {
            return Exchange {
                end_ns: now_ns.saturating_add(self.connect_error_ns),
                status: 502,
                outcome: Outcome::ConnectError,
            };
        }
        let index = self.received;
        self.received += 1;
        let service = self.service_ns(index);
        let start = match self.slots.pop() {
            Some(Reverse(free)) => free.max(now_ns),
            None => now_ns,
        };
        let done = start.saturating_add(service);
        if self.now.capacity.is_some() {
            self.slots.push(Reverse(done));
        }
        let mut exchange = Exchange {
            end_ns: done,
            status: if rng::fails(self.seed, index, self.now.error_rate) {
                500
            } else {
                200
            },
            outcome: Outcome::Response,
        };
        if let Some(crash) = self.next_crash(now_ns) {
            if crash < exchange.end_ns {
                exchange = Exchange {
                    end_ns: crash,
                    status: 502,
                    outcome: Outcome::Broken,
                };
            }
        }
        self.load.accept(now_ns, exchange.end_ns);
        if let Some(timeout) = self.timeout_ns {
            // The backend keeps working on it (its slot stays taken); only the proxy gives up.
            if exchange.end_ns - now_ns > timeout {
                exchange = Exchange {
                    end_ns: now_ns + timeout,
                    status: 504,
                    outcome: Outcome::Timeout,
                };
            }
        }
        exchange
    }

    /// Whether responses carry load headers.
    pub fn reports_load(&self) -> bool {
        self.spec.report_load
    }

    /// The backend's load at `now_ns` (not before the last report's), or `None` while it
    /// is down (a probe gets a refused connection).
    pub fn load_at(&mut self, now_ns: u64) -> Option<Load> {
        self.apply_changes(now_ns);
        self.now.up.then(|| self.load.at(now_ns, self.now.capacity))
    }

    fn apply_changes(&mut self, now_ns: u64) {
        let spec: &'a BackendSpec = self.spec;
        let changes: &'a [Change] = &spec.changes;
        while let Some(c) = changes.get(self.next_change).filter(|c| c.at_ns <= now_ns) {
            self.next_change += 1;
            if let Some(latency) = &c.latency {
                self.now.latency = latency.clone();
            }
            if let Some(rate) = c.error_rate {
                self.now.error_rate = rate;
            }
            if let Some(capacity) = c.capacity {
                self.resize(c.at_ns, capacity);
            }
            match c.up {
                Some(true) if !self.now.up => {
                    // A restarted process: cycle from the first step, no one in service
                    // (requests in flight at the crash were cut off then).
                    self.now.up = true;
                    self.received = 0;
                    let capacity = self.now.capacity;
                    self.slots.clear();
                    self.resize(c.at_ns, capacity);
                }
                Some(up) => self.now.up = up,
                None => {}
            }
        }
    }

    /// Changes the number of service slots at `at_ns`. Dropping the earliest-free slots
    /// leaves the later ones, so the next request starts when in-service requests fall
    /// below the new limit, which is what a semaphore resized downwards does.
    fn resize(&mut self, at_ns: u64, capacity: Option<usize>) {
        self.now.capacity = capacity;
        let Some(want) = capacity else {
            self.slots.clear();
            return;
        };
        // From unlimited to limited, the requests already in service are not tracked: the
        // limit applies to arrivals from `at_ns` on.
        while self.slots.len() > want {
            self.slots.pop();
        }
        while self.slots.len() < want {
            self.slots.push(Reverse(at_ns));
        }
    }

    /// When the backend next goes down after `now_ns`, if it is up until then.
    fn next_crash(&self, now_ns: u64) -> Option<u64> {
        self.spec.changes[self.next_change..]
            .iter()
            .find(|c| c.up == Some(false) && c.at_ns > now_ns)
            .map(|c| c.at_ns)
    }

    fn service_ns(&self, index: u64) -> u64 {
        let draw = |k: u64| rng::splitmix64_at(self.seed ^ LATENCY_STREAM, 2 * index + k);
        let ns = match &self.now.latency {
            Latency::Cycle(steps) => {
                // A validated cycle is never empty; an empty one would mean zero latency.
                let len = steps.len().max(1) as u64;
                return steps.get((index % len) as usize).copied().unwrap_or(0);
            }
            Latency::Exponential { mean_ns } => -mean_ns * (1.0 - rng::unit(draw(0))).ln(),
            Latency::LogNormal { mu, sigma } => {
                (mu + sigma * rng::standard_normal(draw(0), draw(1))).exp()
            }
            Latency::Uniform { min_ns, max_ns } => min_ns + (max_ns - min_ns) * rng::unit(draw(0)),
        };
        ns.round().clamp(0.0, MAX_LATENCY_MS * 1e6) as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario::Scenario;

    fn model_of(toml: &str) -> (Scenario, u64) {
        (Scenario::parse(toml, "t.toml").unwrap(), 1)
    }

    const MS: u64 = 1_000_000;

    #[test]
    fn cycle_capacity_and_fifo_queueing() {
        let (s, seed) = model_of("[[backend]]\nid = \"A\"\ncycle_ms = [10, 20]\ncapacity = 2\n");
        let mut m = BackendModel::new(&s.backends[0], seed, None, 100_000);
        // Two slots: the first two start at once, the third waits for the first to finish.
        assert_eq!(m.serve(0).end_ns, 10 * MS);
        assert_eq!(m.serve(0).end_ns, 20 * MS);
        assert_eq!(m.serve(0).end_ns, 20 * MS);
        assert_eq!(m.serve(0).end_ns, 40 * MS);
        // Arriving after everything finished: no wait.
        assert_eq!(m.serve(100 * MS).end_ns, 110 * MS);
    }

    #[test]
    fn crash_cuts_requests_in_flight_and_restart_resets_the_cycle() {
        let (s, seed) = model_of(
            "[[backend]]\nid = \"A\"\ncycle_ms = [10, 500]\n\
             [[backend.change]]\nat = \"100ms\"\nstate = \"down\"\n\
             [[backend.change]]\nat = \"200ms\"\nstate = \"up\"\n",
        );
        let mut m = BackendModel::new(&s.backends[0], seed, None, 100_000);
        assert_eq!(m.serve(0).end_ns, 10 * MS);
        let cut = m.serve(0);
        assert_eq!(
            (cut.end_ns, cut.status, cut.outcome),
            (100 * MS, 502, Outcome::Broken)
        );
        let refused = m.serve(150 * MS);
        assert_eq!(refused.outcome, Outcome::ConnectError);
        assert_eq!(refused.end_ns, 150 * MS + 100_000);
        assert_eq!(refused.observed_status(), 0);
        assert_eq!(m.serve(200 * MS).end_ns, 210 * MS);
    }

    #[test]
    fn timeouts_errors_and_distributions() {
        let (s, seed) = model_of(
            "timeout = \"50ms\"\n[[backend]]\nid = \"A\"\ncycle_ms = [10, 80]\nerror_rate = 1.0\n\
             [[backend]]\nid = \"B\"\nlatency = { dist = \"exponential\", mean_ms = 20 }\n",
        );
        let mut a = BackendModel::new(&s.backends[0], seed, s.timeout_ns, 100_000);
        assert_eq!(a.serve(0).status, 500);
        let t = a.serve(0);
        assert_eq!(
            (t.end_ns, t.status, t.outcome),
            (50 * MS, 504, Outcome::Timeout)
        );
        let mut b = BackendModel::new(&s.backends[1], seed, None, 100_000);
        let n = 20_000;
        let mean = (0..n).map(|_| b.serve(0).end_ns as f64).sum::<f64>() / n as f64;
        assert!((mean / MS as f64 - 20.0).abs() < 0.5, "{mean}");
    }
}
