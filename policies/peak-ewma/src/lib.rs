//! Power-of-two-choices over peak-EWMA load, as in Finagle and Linkerd: a backend's cost is
//! an EWMA of its latency that jumps straight up to any slower sample (the "peak") and
//! decays with time (`decay-ms`, default 10 s), multiplied by its requests in flight + 1.
//! Each request compares two backends drawn at random and takes the cheaper one.
//!
//! What it fixes in the study's EWMA: time decay lets a backend that was slow (or dead) be
//! retried once it has been idle a while, instead of never being measured again; the
//! in-flight factor stops 100 concurrent requests from all piling onto the one backend that
//! looked fastest a moment ago; random pairs avoid the herd. A backend that fails is
//! ejected for `eject-ms` (default 1 s) times its failures in a row, as Envoy's outlier
//! detection does, then probed again.
//!
//! Requests in flight come from the host (`host.in-flight`, contract 0.2), which counts
//! every request exactly, whoever chose it and however it ended. Under 0.1 this policy
//! counted them itself, and a request the client abandoned was never observed: each abort
//! stayed in the count for good, so the slow backends clients give up on stayed penalised
//! after they recovered. An abort now tells the cost what it does tell: the backend had not
//! answered after that long (a lower bound, applied only when it raises the cost).
use std::cell::RefCell;

use common::Rng;

wit_bindgen::generate!({ path: "../../wit", world: "router" });

use exports::switchyard::policy::policy::{
    Guest, Observation, PolicyInfo, ProbeResult, Request, Score, Setup,
};
use switchyard::policy::host;
use switchyard::policy::types::Outcome;

#[derive(Clone, Copy, Default)]
struct Backend {
    /// Nanoseconds.
    cost: f64,
    stamp_ns: u64,
    /// Failures in a row, and until when the backend is ejected because of them.
    failures: u32,
    ejected_until_ns: u64,
}

#[derive(Default)]
struct State {
    decay_ns: f64,
    penalty_ns: f64,
    eject_ns: f64,
    backends: Vec<Backend>,
    rng: Option<Rng>,
}

impl State {
    /// The cost as it stands at `now`: decayed towards zero since the last sample, so an
    /// idle backend slowly becomes worth another try.
    fn cost(&self, i: usize, now_ns: u64) -> f64 {
        let b = &self.backends[i];
        let elapsed = now_ns.saturating_sub(b.stamp_ns) as f64;
        b.cost * (-elapsed / self.decay_ns).exp()
    }

    /// Cost times requests in flight; infinite while ejected. The ejection matters: a dead
    /// backend fails in microseconds, so with a busy fleet even a penalised cost times
    /// one request in flight would look cheaper than a healthy backend times fifty.
    fn load(&self, i: usize, now_ns: u64) -> f64 {
        let b = &self.backends[i];
        if now_ns < b.ejected_until_ns {
            return f64::INFINITY;
        }
        self.cost(i, now_ns) * (f64::from(host::in_flight(i as u32)) + 1.0)
    }
}

thread_local! {
    static STATE: RefCell<State> = RefCell::default();
}

struct PeakEwma;

impl Guest for PeakEwma {
    fn configure(setup: Setup) -> Result<PolicyInfo, String> {
        common::reject_unknown(
            &setup.config,
            &[
                "decay-ms",
                "default-rtt-ms",
                "failure-penalty-ms",
                "eject-ms",
            ],
        )?;
        let decay_ms = common::config_f64(&setup.config, "decay-ms", 10_000.0, 1.0..=3.6e6)?;
        let default_rtt_ms = common::config_f64(&setup.config, "default-rtt-ms", 1.0, 0.0..=3.6e6)?;
        let penalty_ms =
            common::config_f64(&setup.config, "failure-penalty-ms", 1000.0, 0.0..=3.6e6)?;
        let eject_ms = common::config_f64(&setup.config, "eject-ms", 1000.0, 0.0..=3.6e6)?;
        let n = setup.backends.len();
        STATE.with_borrow_mut(|s| {
            *s = State {
                decay_ns: decay_ms * 1e6,
                eject_ns: eject_ms * 1e6,
                penalty_ns: penalty_ms * 1e6,
                backends: vec![
                    Backend {
                        cost: default_rtt_ms * 1e6,
                        stamp_ns: setup.now_ns,
                        failures: 0,
                        ejected_until_ns: 0,
                    };
                    n
                ],
                rng: Some(Rng::new(setup.seed)),
            }
        });
        Ok(PolicyInfo {
            name: "p2c_peak_ewma".into(),
            score_label: "peak-ewma".into(),
            headers: Vec::new(),
            response_headers: Vec::new(),
            probe_path: None,
        })
    }

    fn choose(request: Request) -> u32 {
        STATE.with_borrow_mut(|s| {
            let n = s.backends.len();
            if n <= 1 {
                return 0;
            }
            let rng = s.rng.get_or_insert_with(|| Rng::new(0));
            let a = rng.below(n);
            let b = (a + 1 + rng.below(n - 1)) % n;
            let now = request.now_ns;
            let pick = if s.load(b, now) < s.load(a, now) {
                b
            } else {
                a
            };
            pick as u32
        })
    }

    fn observe(o: Observation) {
        STATE.with_borrow_mut(|s| {
            let i = o.backend as usize;
            if i >= s.backends.len() {
                return;
            }
            if o.outcome == Outcome::Aborted {
                // A lower bound on the RTT: it can only raise the cost (as a peak).
                let b = &mut s.backends[i];
                if o.latency_ns as f64 > b.cost {
                    b.cost = o.latency_ns as f64;
                    b.stamp_ns = b.stamp_ns.max(o.now_ns);
                }
                return;
            }
            let failed = o.outcome != Outcome::Response || o.status >= 500;
            let rtt = if failed {
                (o.latency_ns as f64).max(s.penalty_ns)
            } else {
                o.latency_ns as f64
            };
            let b = &mut s.backends[i];
            let elapsed = o.now_ns.saturating_sub(b.stamp_ns) as f64;
            let w = (-elapsed / s.decay_ns).exp();
            b.cost = if rtt > b.cost {
                rtt
            } else {
                b.cost * w + rtt * (1.0 - w)
            };
            b.stamp_ns = b.stamp_ns.max(o.now_ns);
            if failed {
                // Eject for longer the longer it keeps failing (capped at 30 s), then let
                // one request probe it again.
                b.failures = b.failures.saturating_add(1);
                let eject = (s.eject_ns * f64::from(b.failures.min(30))).min(30e9);
                b.ejected_until_ns = o.now_ns + eject as u64;
            } else {
                b.failures = 0;
                b.ejected_until_ns = 0;
            }
        })
    }

    fn probed(_answer: ProbeResult) {}

    fn scores() -> Vec<Score> {
        STATE.with_borrow(|s| {
            let now = s.backends.iter().map(|b| b.stamp_ns).max().unwrap_or(0);
            (0..s.backends.len())
                .map(|i| Score {
                    backend: i as u32,
                    value: s.cost(i, now) / 1e6,
                })
                .collect()
        })
    }
}

export!(PeakEwma);
