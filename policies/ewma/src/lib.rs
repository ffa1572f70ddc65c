//! Exponentially weighted moving average: `score = alpha * latency + (1 - alpha) * score`
//! (alpha 0.2 by default, as in the study; the first sample sets the score). Lowest wins;
//! backends without a sample are probed first. Failures (connect error, timeout, 5xx) are
//! recorded as `failure-penalty-ms` (default 1000) so a dead backend stops being chosen.
use std::cell::RefCell;

use common::Probes;

wit_bindgen::generate!({ path: "../../wit", world: "router" });

use exports::switchyard::policy::policy::{
    Guest, Observation, PolicyInfo, ProbeResult, Request, Score, Setup,
};
use switchyard::policy::types::Outcome;

#[derive(Default)]
struct State {
    alpha: f64,
    penalty_ms: f64,
    ewma: Vec<Option<f64>>,
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

struct Ewma;

impl Guest for Ewma {
    fn configure(setup: Setup) -> Result<PolicyInfo, String> {
        common::reject_unknown(&setup.config, &["alpha", "failure-penalty-ms"])?;
        let alpha = common::config_f64(&setup.config, "alpha", 0.2, 0.0..=1.0)?;
        let penalty_ms =
            common::config_f64(&setup.config, "failure-penalty-ms", 1000.0, 0.0..=3.6e6)?;
        let n = setup.backends.len();
        STATE.with_borrow_mut(|s| {
            *s = State {
                alpha,
                penalty_ms,
                ewma: vec![None; n],
                probes: Probes::new(n),
                rr: 0,
            }
        });
        Ok(PolicyInfo {
            name: "adaptive_ewma".into(),
            score_label: "ewma".into(),
            headers: Vec::new(),
            response_headers: Vec::new(),
            probe_path: None,
        })
    }

    fn choose(_request: Request) -> u32 {
        STATE.with_borrow_mut(|s| common::choose_lowest(&mut s.probes, &s.ewma, &mut s.rr) as u32)
    }

    fn observe(o: Observation) {
        STATE.with_borrow_mut(|s| {
            let i = o.backend as usize;
            let alpha = s.alpha;
            let penalty = s.penalty_ms;
            let Some(score) = s.ewma.get_mut(i) else {
                return;
            };
            let Some(sample) = common::sample_ms(ended(&o), o.latency_ns, penalty, *score) else {
                return;
            };
            *score = Some(match *score {
                None => sample,
                Some(prev) => alpha * sample + (1.0 - alpha) * prev,
            });
            s.probes.record(i);
        })
    }

    fn probed(_answer: ProbeResult) {}

    fn scores() -> Vec<Score> {
        STATE.with_borrow(|s| {
            common::measured(&s.ewma)
                .map(|(backend, value)| Score { backend, value })
                .collect()
        })
    }
}

export!(Ewma);
