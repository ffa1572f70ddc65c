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
//! detection does, then probed again; the requests a crash cuts at once are one failure,
//! not one each (`state.rs`).
//!
//! Requests in flight come from the host (`host.in-flight`, contract 0.2), which counts
//! every request exactly, whoever chose it and however it ended. Under 0.1 this policy
//! counted them itself, and a request the client abandoned was never observed: each abort
//! stayed in the count for good, so the slow backends clients give up on stayed penalised
//! after they recovered. An abort now tells the cost what it does tell: the backend had not
//! answered after that long (a lower bound, applied only when it raises the cost).
use std::cell::RefCell;

use common::Rng;

mod state;
use state::{Backend, Sample};

wit_bindgen::generate!({ path: "../../wit", world: "router" });

use exports::switchyard::policy::policy::{
    Guest, Observation, PolicyInfo, ProbeResult, Request, Score, Setup,
};
use switchyard::policy::host;
use switchyard::policy::types::Outcome;

#[derive(Default)]
struct State {
    decay_ns: f64,
    penalty_ns: f64,
    eject_ns: f64,
    backends: Vec<Backend>,
    rng: Option<Rng>,
}

impl State {
    fn cost(&self, i: usize, now_ns: u64) -> f64 {
        self.backends[i].cost_at(now_ns, self.decay_ns)
    }

    /// Cost times requests in flight; infinite while ejected. The ejection matters: a dead
    /// backend fails in microseconds, so with a busy fleet even a penalised cost times
    /// one request in flight would look cheaper than a healthy backend times fifty.
    fn load(&self, i: usize, now_ns: u64) -> f64 {
        if self.backends[i].ejected(now_ns) {
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
                backends: vec![Backend::new(default_rtt_ms * 1e6, setup.now_ns); n],
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
            let sample = Sample {
                now_ns: o.now_ns,
                latency_ns: o.latency_ns,
                failed: o.outcome != Outcome::Response || o.status >= 500,
            };
            let (decay, penalty, eject) = (s.decay_ns, s.penalty_ns, s.eject_ns);
            let b = &mut s.backends[i];
            if o.outcome == Outcome::Aborted {
                b.aborted(sample);
            } else {
                b.finished(sample, decay, penalty, eject);
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
