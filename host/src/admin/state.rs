//! `/api/state`: what the proxy is doing now, as JSON. The same structure heads every
//! event-stream update, so the page and curl see one vocabulary.
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};

use http::StatusCode;
use serde::Serialize;
use switchyard_runtime::{Backend, Counters, FaultKind, PolicyStatus, Scores, FALLBACK_NAME};
use switchyard_upstream::ConnStats;

use super::body::AdminBody;
use super::Ctx;
use crate::telemetry::{unix_f64, Totals};

#[derive(Debug, Clone, Serialize)]
pub(super) struct StateView {
    pub version: &'static str,
    /// The proxy's client-facing address.
    pub listen: String,
    pub admin: String,
    /// "persistent" or "non-persistent".
    pub upstream: &'static str,
    /// http1, or h2c (multiplexed HTTP/2).
    pub upstream_protocol: &'static str,
    pub backends: Vec<BackendState>,
    pub policy: PolicyState,
    pub totals: TotalsState,
    pub counters: CounterState,
}

#[derive(Debug, Clone, Serialize)]
pub(super) struct BackendState {
    pub id: String,
    pub url: String,
    pub weight: Option<u32>,
    pub requests: u64,
    pub errors: u64,
    /// Share of all requests since start, 0..1.
    pub share: f64,
    pub mean_ms: f64,
    pub connections: ConnState,
}

#[derive(Debug, Clone, Copy, Default, Serialize)]
pub(super) struct ConnState {
    pub opened: u64,
    pub reused: u64,
    pub failed_connects: u64,
}

#[derive(Debug, Clone, Serialize)]
pub(super) struct PolicyState {
    /// The policy's own name: the CSV `routing_mode` of the requests it routes.
    pub name: String,
    /// What requests are routed by right now: `name`, or the host's round-robin while the
    /// policy is disabled or its instance is being replaced.
    pub routing_mode: String,
    pub file: String,
    pub generation: u64,
    /// Unix seconds.
    pub loaded_at: f64,
    pub disabled: bool,
    pub live: bool,
    pub scores: Option<ScoresState>,
}

/// The policy's per-backend scores, e.g. EWMA latency in ms.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(super) struct ScoresState {
    pub label: String,
    /// One entry per backend, in backend order; `None` where the policy has no score yet.
    pub values: Vec<Option<f64>>,
}

impl ScoresState {
    pub(super) fn new(s: Scores, backends: usize) -> Self {
        let mut values = vec![None; backends];
        for (i, v) in s.values {
            if let Some(slot) = values.get_mut(i) {
                *slot = Some(v).filter(|v| v.is_finite());
            }
        }
        ScoresState {
            label: s.label,
            values,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub(super) struct TotalsState {
    pub requests: u64,
    pub errors: u64,
    pub error_rate: f64,
    pub faults: u64,
    pub reused: u64,
    pub mean_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

#[derive(Debug, Clone, Serialize)]
pub(super) struct CounterState {
    pub choose_calls: u64,
    pub observe_calls: u64,
    /// Mean time of one policy call, microseconds.
    pub mean_call_us: f64,
    pub fallback_routed: u64,
    /// Count by fault kind (every kind present).
    pub faults: BTreeMap<&'static str, u64>,
    pub swaps: u64,
    pub failed_swaps: u64,
    pub rebuilds: u64,
    pub breaker_trips: u64,
    /// Faults of the display twin behind the scores (routing never notices them).
    pub display_faults: u64,
    /// Warm starts cut short by their replay budget.
    pub replays_cut: u64,
}

/// Finite or zero: JSON has no NaN.
fn finite(v: f64) -> f64 {
    if v.is_finite() {
        v
    } else {
        0.0
    }
}

/// Builds the state. `scores` is passed in so the sampler calls the policy once per tick.
pub(super) fn build(ctx: &Ctx, totals: &Totals, scores: Option<ScoresState>) -> StateView {
    let shared = &ctx.app.shared;
    let router = &shared.router;
    let backends = router
        .backends()
        .iter()
        .enumerate()
        .map(|(i, b)| {
            let connections = shared.upstreams.get(i).map(|u| ConnState::from(&u.stats));
            BackendState::new(b, i, totals, connections.unwrap_or_default())
        })
        .collect();
    StateView {
        version: env!("CARGO_PKG_VERSION"),
        listen: ctx.app.listen.to_string(),
        admin: ctx.addr.to_string(),
        upstream: shared.upstreams.mode().as_str(),
        upstream_protocol: shared.upstreams.protocol().as_str(),
        backends,
        policy: PolicyState::new(&router.status(), scores),
        totals: TotalsState::from(totals),
        counters: CounterState::from(router.counters()),
    }
}

impl BackendState {
    /// Backend `i` with its share of `totals`.
    fn new(b: &Backend, i: usize, totals: &Totals, connections: ConnState) -> Self {
        let requests = totals.per_backend.get(i).copied().unwrap_or(0);
        let latency = totals.per_backend_latency.get(i);
        BackendState {
            id: b.id.clone(),
            url: b.url.clone(),
            weight: b.weight,
            requests,
            errors: totals.per_backend_errors.get(i).copied().unwrap_or(0),
            share: finite(requests as f64 / totals.requests.max(1) as f64),
            mean_ms: latency.map_or(0.0, |l| {
                finite(l.sum_ns as f64 / 1e6 / l.count().max(1) as f64)
            }),
            connections,
        }
    }
}

impl From<&ConnStats> for ConnState {
    fn from(s: &ConnStats) -> Self {
        ConnState {
            opened: s.opened.load(Ordering::Relaxed),
            reused: s.reused.load(Ordering::Relaxed),
            failed_connects: s.failed_connects.load(Ordering::Relaxed),
        }
    }
}

impl PolicyState {
    fn new(status: &PolicyStatus, scores: Option<ScoresState>) -> Self {
        let routing_mode = if status.live && !status.disabled {
            status.name.to_string()
        } else {
            FALLBACK_NAME.to_string()
        };
        PolicyState {
            name: status.name.to_string(),
            routing_mode,
            file: status.file.display().to_string(),
            generation: status.generation,
            loaded_at: unix_f64(status.loaded_at),
            disabled: status.disabled,
            live: status.live,
            scores,
        }
    }
}

impl From<&Totals> for TotalsState {
    fn from(totals: &Totals) -> Self {
        TotalsState {
            requests: totals.requests,
            errors: totals.errors,
            error_rate: finite(totals.errors as f64 / totals.requests.max(1) as f64),
            faults: totals.faults,
            reused: totals.reused,
            mean_ms: finite(totals.mean_ms()),
            p95_ms: finite(totals.quantile_ms(0.95)),
            p99_ms: finite(totals.quantile_ms(0.99)),
            max_ms: finite(totals.max_ms()),
        }
    }
}

impl From<&Counters> for CounterState {
    fn from(c: &Counters) -> Self {
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        CounterState {
            choose_calls: load(&c.choose_calls),
            observe_calls: load(&c.observe_calls),
            mean_call_us: finite(
                load(&c.call_ns) as f64 / 1e3 / load(&c.timed_calls).max(1) as f64,
            ),
            fallback_routed: load(&c.fallback_routed),
            faults: FaultKind::ALL
                .iter()
                .map(|&k| (k.as_str(), c.fault_count(k)))
                .collect(),
            swaps: load(&c.swaps),
            failed_swaps: load(&c.failed_swaps),
            rebuilds: load(&c.rebuilds),
            breaker_trips: load(&c.breaker_trips),
            display_faults: load(&c.display_faults),
            replays_cut: load(&c.replays_cut),
        }
    }
}

/// The policy's scores now (one `scores` call into the policy, off the request path).
pub(super) fn current_scores(ctx: &Ctx) -> Option<ScoresState> {
    let shared = &ctx.app.shared;
    shared
        .router
        .scores(shared.now_ns())
        .map(|s| ScoresState::new(s, shared.router.backends().len()))
}

pub(super) fn response(ctx: &Ctx) -> http::Response<AdminBody> {
    let totals = ctx.app.telemetry.totals();
    let state = build(ctx, &totals, current_scores(ctx));
    super::json(StatusCode::OK, &state)
}
