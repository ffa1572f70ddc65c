//! Simple moving average: each backend's score is the mean of its last `window` latencies
//! (default 3, as in the study); the lowest score wins. Backends without a sample are
//! probed first. Unlike the study, failures count: a connect error, timeout or 5xx is
//! recorded as `failure-penalty-ms` (default 1000), so a dead backend stops being chosen.
use std::cell::RefCell;
use std::collections::VecDeque;

use common::Probes;

wit_bindgen::generate!({ path: "../../wit", world: "router" });

use exports::switchyard::policy::policy::{
    Guest, Observation, PolicyInfo, ProbeResult, Request, Score, Setup,
};
use switchyard::policy::types::Outcome;

#[derive(Default)]
struct State {
    window: usize,
    penalty_ms: f64,
    samples: Vec<VecDeque<f64>>,
    means: Vec<Option<f64>>,
    probes: Probes,
    rr: usize,
}

thread_local! {
    static STATE: RefCell<State> = RefCell::default();
}

/// The study's failure rule (connect error, timeout, broken, 5xx), and contract 0.2's aborts.
fn ended(o: &Observation) -> common::Ended {
    match o.outcome {
        Outcome::Aborted => common::Ended::Aborted,
        Outcome::Response if o.status < 500 => common::Ended::Ok,
        _ => common::Ended::Failed,
    }
}

struct Sma;

impl Guest for Sma {
    fn configure(setup: Setup) -> Result<PolicyInfo, String> {
        common::reject_unknown(&setup.config, &["window", "failure-penalty-ms"])?;
        let window = common::config_usize(&setup.config, "window", 3, 1..=10_000)?;
        let penalty_ms =
            common::config_f64(&setup.config, "failure-penalty-ms", 1000.0, 0.0..=3.6e6)?;
        let n = setup.backends.len();
        STATE.with_borrow_mut(|s| {
            *s = State {
                window,
                penalty_ms,
                samples: vec![VecDeque::with_capacity(window); n],
                means: vec![None; n],
                probes: Probes::new(n),
                rr: 0,
            }
        });
        Ok(PolicyInfo {
            name: "adaptive_sma".into(),
            score_label: "sma".into(),
            headers: Vec::new(),
            response_headers: Vec::new(),
            probe_path: None,
        })
    }

    fn choose(_request: Request) -> u32 {
        STATE.with_borrow_mut(|s| common::choose_lowest(&mut s.probes, &s.means, &mut s.rr) as u32)
    }

    fn observe(o: Observation) {
        STATE.with_borrow_mut(|s| {
            let i = o.backend as usize;
            let Some(window) = s.samples.get_mut(i) else {
                return;
            };
            let Some(sample) = common::sample_ms(ended(&o), o.latency_ns, s.penalty_ms, s.means[i])
            else {
                return;
            };
            if window.len() == s.window {
                window.pop_front();
            }
            window.push_back(sample);
            s.means[i] = Some(window.iter().sum::<f64>() / window.len() as f64);
            s.probes.record(i);
        })
    }

    fn probed(_answer: ProbeResult) {}

    fn scores() -> Vec<Score> {
        STATE.with_borrow(|s| {
            common::measured(&s.means)
                .map(|(backend, value)| Score { backend, value })
                .collect()
        })
    }
}

export!(Sma);
