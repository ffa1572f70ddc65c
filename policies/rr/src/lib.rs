//! Round-robin: the study's baseline. With weights (`--backend ID=URL,weight=N`) it becomes
//! smooth weighted round-robin (nginx's algorithm: no bursts to the heaviest backend).
use std::cell::RefCell;

wit_bindgen::generate!({ path: "../../wit", world: "router" });

use exports::switchyard::policy::policy::{
    Guest, Observation, PolicyInfo, ProbeResult, Request, Score, Setup,
};

#[derive(Default)]
struct State {
    next: usize,
    n: usize,
    /// (weight, current) per backend; empty when unweighted.
    weighted: Vec<(i64, i64)>,
}

thread_local! {
    static STATE: RefCell<State> = RefCell::default();
}

struct RoundRobin;

impl Guest for RoundRobin {
    fn configure(setup: Setup) -> Result<PolicyInfo, String> {
        common::reject_unknown(&setup.config, &[])?;
        let n = setup.backends.len();
        let weighted = if setup.backends.iter().any(|b| b.weight.is_some()) {
            setup
                .backends
                .iter()
                .map(|b| (i64::from(b.weight.unwrap_or(1)), 0))
                .collect()
        } else {
            Vec::new()
        };
        STATE.with_borrow_mut(|s| {
            *s = State {
                next: 0,
                n,
                weighted,
            }
        });
        Ok(PolicyInfo {
            name: "round-robin".into(),
            score_label: String::new(),
            headers: Vec::new(),
            response_headers: Vec::new(),
            probe_path: None,
        })
    }

    fn choose(_request: Request) -> u32 {
        STATE.with_borrow_mut(|s| {
            if !s.weighted.is_empty() {
                let total: i64 = s.weighted.iter().map(|w| w.0).sum();
                let mut best = 0;
                for i in 0..s.weighted.len() {
                    s.weighted[i].1 += s.weighted[i].0;
                    if s.weighted[i].1 > s.weighted[best].1 {
                        best = i;
                    }
                }
                s.weighted[best].1 -= total;
                return best as u32;
            }
            let i = s.next;
            s.next = if i + 1 >= s.n { 0 } else { i + 1 };
            i as u32
        })
    }

    fn observe(_observation: Observation) {}

    fn probed(_answer: ProbeResult) {}

    fn scores() -> Vec<Score> {
        Vec::new()
    }
}

export!(RoundRobin);
