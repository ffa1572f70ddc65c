//! Weighted round-robin over ORCA load reports: gRPC's `weighted_round_robin` (gRFC A58;
//! Envoy's `client_side_weighted_round_robin` is the same design).
//!
//! The rule. Every response may carry an `endpoint-load-metrics: TEXT …` header (ORCA).
//! From the newest one, each backend's weight is
//!
//! ```text
//! weight = qps / (utilization + eps/qps · error_penalty)
//! ```
//!
//! with `qps = rps_fractional` and `utilization = application_utilization` if above 0,
//! else `cpu_utilization` (`common::orca::weight`). A weight is the rate a backend serves
//! per unit of its own load, i.e. an estimate of its capacity. Once per update period the
//! weights are read and gRPC's static stride scheduler is rebuilt from them; every pick
//! between rebuilds is O(1) amortised and needs no state but a counter.
//!
//! Settings (`--policy-arg`), defaults from A58:
//! - `blackout-ms` (10000): a weight is ignored until the backend has reported for this
//!   long since it started reporting (or since its weight expired);
//! - `expiration-ms` (180000): a weight older than this is ignored;
//! - `update-ms` (1000, at least 100): how often weights are re-read;
//! - `error-penalty` (1.0): A58's `error_utilization_penalty`.
//!
//! Backends whose weight is ignored, or that never reported, get the mean of the usable
//! weights; with fewer than two usable weights the policy is plain round-robin.
//!
//! Followed from gRPC C-core (`weighted_round_robin.cc`, `static_stride_scheduler.cc`):
//! the weight formula and its zero rule (a report without qps or utilisation is ignored),
//! the blackout and expiration bookkeeping, the scheduler itself (16-bit weights, the
//! largest scaled to 65535, others capped at 10× and raised to 1 % of the mean), a counter
//! shared with the round-robin fallback that starts at a seeded offset.
//!
//! Where it differs, because of what a policy here can see and do:
//! - Reports arrive per request in a response header, as gRPC's per-call mode (trailing
//!   metadata); there is no out-of-band stream. JSON and BIN forms are not decoded.
//! - No timers: the rebuild happens in the first `choose` at least `update-ms` after the
//!   previous one, using its `now_ns`.
//! - No connectivity state: gRPC leaves non-READY subchannels out of the rotation and
//!   restarts the blackout when one reconnects. Here every backend stays in, and the
//!   blackout restarts when a report arrives after the weight expired.
//! - `update-ms` below 100 is refused rather than silently raised to 100 ms.
//!
//! What it wins: when backends report, it spreads by what each can serve (unequal or
//! changing capacity) from the backend's own account rather than from latency samples,
//! with stable weights and no herding. Where it loses: without reports it is round-robin;
//! it reacts in seconds, not requests (1 s rebuilds, 10 s blackout, and the backend's own
//! rate window); and it has no failure handling of its own: a backend that fails fast
//! without reporting errors keeps its last weight until that expires.
use std::cell::RefCell;

mod balancer;
mod stride;
mod weights;

use balancer::Balancer;
use common::orca;
use weights::Settings;

wit_bindgen::generate!({ path: "../../wit", world: "router" });

use exports::switchyard::policy::policy::{
    Guest, Observation, PolicyInfo, ProbeResult, Request, Score, Setup,
};

#[derive(Default)]
struct State {
    /// `None` until the first `configure`.
    balancer: Option<Balancer>,
    /// Whether a refused report has been logged: one line says the backend's header is
    /// malformed; one per response would only fill the log.
    warned: bool,
}

thread_local! {
    static STATE: RefCell<State> = RefCell::default();
}

struct WrrOrca;

impl Guest for WrrOrca {
    fn configure(setup: Setup) -> Result<PolicyInfo, String> {
        let settings = Settings::from_config(&setup.config)?;
        let ids: Vec<String> = setup.backends.into_iter().map(|b| b.id).collect();
        STATE.with_borrow_mut(|s| match s.balancer.as_mut() {
            Some(b) => b.reconfigure(settings, ids, setup.now_ns),
            None => s.balancer = Some(Balancer::new(settings, ids, setup.seed)),
        });
        Ok(PolicyInfo {
            name: "wrr_orca".into(),
            score_label: "weight".into(),
            headers: Vec::new(),
            response_headers: vec![orca::HEADER.into()],
            probe_path: None,
        })
    }

    fn choose(request: Request) -> u32 {
        STATE.with_borrow_mut(|s| {
            s.balancer
                .as_mut()
                .map_or(0, |b| b.pick(request.now_ns) as u32)
        })
    }

    fn observe(o: Observation) {
        let Some(headers) = o.headers else { return };
        STATE.with_borrow_mut(|s| match orca::from_headers(&headers) {
            Some(Ok(report)) => {
                if let Some(b) = s.balancer.as_mut() {
                    b.report(o.backend as usize, &report, o.now_ns);
                }
            }
            Some(Err(e)) if !s.warned => {
                s.warned = true;
                eprintln!(
                    "backend {}: {e} (further refused reports are not logged)",
                    o.backend
                );
            }
            _ => {}
        })
    }

    fn probed(_answer: ProbeResult) {}

    fn scores() -> Vec<Score> {
        STATE.with_borrow(|s| {
            let weights = s.balancer.as_ref().map(Balancer::weights);
            weights
                .unwrap_or_default()
                .into_iter()
                .enumerate()
                .map(|(i, value)| Score {
                    backend: i as u32,
                    value,
                })
                .collect()
        })
    }
}

export!(WrrOrca);
