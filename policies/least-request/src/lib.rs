//! Least request, Envoy's default load balancer (`LEAST_REQUEST`), on the host's exact
//! count of requests in flight per backend (`host.in-flight`).
//!
//! Envoy (<https://www.envoyproxy.io/docs/envoy/latest/intro/arch_overview/upstream/load_balancing/load_balancers#weighted-least-request>,
//! settings in
//! <https://www.envoyproxy.io/docs/envoy/latest/api-v3/extensions/load_balancing_policies/least_request/v3/least_request.proto>):
//!
//! - **All weights equal**: draw `choice_count` hosts at random (default 2, "power of two
//!   choices") and take the one with the fewest active requests; on a tie the first drawn.
//!   Here the same, except that the draws are distinct (Envoy's may repeat a host, so with
//!   two hosts its busier one still wins a quarter of the time), and a `choice-count` of at
//!   least the number of backends compares them all (Envoy's FULL_SCAN). Ties go to the
//!   first drawn, which, the draw order being random, is each tied backend equally often.
//! - **Unequal weights**: an earliest-deadline-first schedule (weighted round-robin) where
//!   a host's weight is `weight / (active_requests + 1)^active_request_bias`, computed when
//!   it is picked (default bias 1.0; 0 is plain weighted round-robin). Here the same, with
//!   Envoy's tie-break (equal deadlines: the one scheduled first) and a seeded random
//!   start. Not done: recent Envoy also uses the schedule for equal weights when the bias
//!   is set explicitly; here equal weights always mean choices. Weight 0 (Envoy refuses
//!   it) drains a backend while other weights differ.
//!
//! Settings (`--policy-arg`): `choice-count` (default 2, 1..=1024; 1 is random) and
//! `active-request-bias` (default 1.0, 0..=10). Scores: requests in flight per backend,
//! the very number the policy decides by.
//!
//! Cost per request: O(choice-count) unweighted (one `host.in-flight` per choice), O(log n)
//! weighted (one heap pop and push, one in-flight read, one `powf` unless bias is 0 or 1).
//!
//! What it wins: it needs no latency samples, so it reacts at once and cannot herd onto a
//! backend that merely looked fast (the study's SMA/EWMA failure); backends that serve
//! fewer requests at once, or slower, hold more in flight and get fewer new ones, so it
//! follows capacity without being told it. Where it loses: in-flight counts see only the
//! load this proxy sends, not how fast a backend serves it: with equal concurrency a slow
//! backend and a fast one look alike, so latency-aware policies (peak-EWMA) beat it when
//! backends differ in speed rather than capacity. A backend that fails fast holds few
//! requests and attracts more (no outlier ejection here). With unequal weights a backend's
//! load is only looked at when it is picked, so it never fully drains; and under load the
//! shares drift from the weights towards even, as Envoy's do: at equal latency in-flight
//! counts grow with the pick rates, which settle near `weight^(1 / (1 + bias))` (weights
//! 3:1 split about 63:37 at the default bias; bias 0 keeps 75:25).
use std::cell::RefCell;

use common::Rng;

mod pick;

use pick::Picker;

wit_bindgen::generate!({ path: "../../wit", world: "router" });

use exports::switchyard::policy::policy::{
    Guest, Observation, PolicyInfo, ProbeResult, Request, Score, Setup,
};
use switchyard::policy::host;

/// Far above the default 2 (the gain beyond 2 is small), low enough that a typo cannot
/// make every request read thousands of counts.
const MAX_CHOICES: usize = 1024;

struct State {
    picker: Picker,
    rng: Rng,
    n: usize,
}

thread_local! {
    static STATE: RefCell<Option<State>> = const { RefCell::new(None) };
}

fn in_flight(i: usize) -> u32 {
    u32::try_from(i).map_or(0, host::in_flight)
}

struct LeastRequest;

impl Guest for LeastRequest {
    fn configure(setup: Setup) -> Result<PolicyInfo, String> {
        common::reject_unknown(&setup.config, &["choice-count", "active-request-bias"])?;
        let choice_count = common::config_usize(&setup.config, "choice-count", 2, 1..=MAX_CHOICES)?;
        let bias = common::config_f64(&setup.config, "active-request-bias", 1.0, 0.0..=10.0)?;
        // A backend without a weight counts as weight 1, as in Envoy and our rr.
        let weights: Vec<u32> = setup
            .backends
            .iter()
            .map(|b| b.weight.unwrap_or(1))
            .collect();
        let mut rng = Rng::new(setup.seed);
        let picker = Picker::new(&weights, choice_count, bias, &mut rng, in_flight);
        STATE.set(Some(State {
            picker,
            rng,
            n: weights.len(),
        }));
        Ok(PolicyInfo {
            name: "least_request".into(),
            score_label: "in-flight".into(),
            headers: Vec::new(),
            response_headers: Vec::new(),
            probe_path: None,
        })
    }

    fn choose(_request: Request) -> u32 {
        STATE.with_borrow_mut(|s| match s {
            // The picker only returns indices below n <= u32::MAX.
            Some(s) => s.picker.pick(&mut s.rng, in_flight) as u32,
            None => 0,
        })
    }

    /// Nothing to learn: the host counts requests in flight exactly, whoever routed them.
    fn observe(_observation: Observation) {}

    fn probed(_answer: ProbeResult) {}

    fn scores() -> Vec<Score> {
        let n = STATE.with_borrow(|s| s.as_ref().map_or(0, |s| s.n));
        (0..n.min(u32::MAX as usize) as u32)
            .map(|i| Score {
                backend: i,
                value: f64::from(host::in_flight(i)),
            })
            .collect()
    }
}

export!(LeastRequest);
