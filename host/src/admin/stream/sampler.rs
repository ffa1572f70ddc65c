//! The sampler: once per wall-clock second it reads what the proxy already aggregates,
//! compares it with what it saw last time ([`Prev`]), keeps markers, rows and connection
//! rates for pages that connect later, and broadcasts one update.
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use switchyard_runtime::{Counters, FaultKind};
use tokio::sync::watch;

use super::views::{ConnSample, Marker, Row, SecondView, Update};
use super::{push, sse, Kept, CONN_SAMPLES, MARKERS, ROWS};
use crate::admin::state::{self, PolicyState, ScoresState, StateView};
use crate::admin::Ctx;
use crate::telemetry::{unix_f64, unix_secs};

/// How far into each second the sampler wakes: late enough for the telemetry thread to
/// have closed the previous second.
const PHASE: f64 = 0.2;

/// Ticks once per second until stopped.
pub(in crate::admin) async fn run(ctx: Arc<Ctx>, mut stop: watch::Receiver<bool>) {
    let mut prev = Prev::new(&ctx);
    loop {
        let now = unix_f64(SystemTime::now());
        let next = now.floor() + 1.0 + PHASE;
        let wait = Duration::from_secs_f64((next - now).clamp(0.05, 2.0));
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = crate::admin::stopped(&mut stop) => return,
        }
        let update = tick(&ctx, &mut prev);
        if let Some(frame) = sse::frame(&update) {
            // No receivers is fine: nobody has the page open.
            let _ = ctx.hub.tx.send(frame);
        }
    }
}

/// Samples everything once, records markers and rows, and returns the update to send.
fn tick(ctx: &Ctx, prev: &mut Prev) -> Update {
    let app = &ctx.app;
    let now = unix_f64(SystemTime::now());
    let seconds: Vec<SecondView> = app
        .telemetry
        .seconds_after(prev.unix)
        .iter()
        .map(SecondView::from)
        .collect();
    if let Some(last) = seconds.last() {
        prev.unix = last.unix;
    }
    let totals = app.telemetry.totals();
    let scores = state::current_scores(ctx);
    let state = state::build(ctx, &totals, scores.clone());
    let mut kept = ctx.hub.kept();

    let markers = prev.markers(&mut kept, &state, app.shared.router.counters(), now);
    let ids: Vec<&str> = state.backends.iter().map(|b| b.id.as_str()).collect();
    let scores = scores.map(|s: ScoresState| s.values).unwrap_or_default();
    let recent = prev.fresh_rows(ctx, &mut kept, &ids, &scores);
    let conns = vec![prev.conn_sample(ctx, now)];

    push(&mut kept.markers, MARKERS, &markers);
    push(&mut kept.rows, ROWS, &recent);
    push(&mut kept.conns, CONN_SAMPLES, &conns);
    Update {
        kind: "tick",
        now,
        state,
        seconds,
        markers,
        recent,
        conns,
    }
}

/// Upstream connections opened and requests on reused ones, over all backends (the
/// per-backend figures are `/api/state`'s [`ConnState`]).
fn conn_totals(ctx: &Ctx) -> (u64, u64) {
    ctx.app.shared.upstreams.conn_totals()
}

/// What the sampler compares against to see what changed since its last tick.
struct Prev {
    unix: u64,
    generation: u64,
    name: String,
    disabled: bool,
    faults: [u64; FaultKind::ALL.len()],
    failed_swaps: u64,
    recent_at: SystemTime,
    at: f64,
    opened: u64,
    reused: u64,
}

impl Prev {
    fn new(ctx: &Ctx) -> Prev {
        let shared = &ctx.app.shared;
        let status = shared.router.status();
        let c = shared.router.counters();
        let (opened, reused) = conn_totals(ctx);
        let now = SystemTime::now();
        Prev {
            unix: unix_secs(now).saturating_sub(1),
            generation: status.generation,
            name: status.name.to_string(),
            disabled: status.disabled,
            faults: FaultKind::ALL.map(|k| c.fault_count(k)),
            failed_swaps: c.failed_swaps.load(Ordering::Relaxed),
            recent_at: now,
            at: unix_f64(now),
            opened,
            reused,
        }
    }

    /// What to draw for the swaps, refusals, faults and breaker trips since the last tick.
    fn markers(
        &mut self,
        kept: &mut Kept,
        state: &StateView,
        c: &Counters,
        now: f64,
    ) -> Vec<Marker> {
        let policy = &state.policy;
        let mut markers: Vec<Marker> = self.swap_marker(kept, policy).into_iter().collect();
        let failed = state.counters.failed_swaps;
        markers.extend(self.failed_swap_marker(kept, policy, failed, now));
        markers.extend(self.fault_markers(kept, c, now));
        markers.extend(self.disabled_marker(kept, policy, now));
        markers
    }

    /// A marker when the generation moved (at the new policy's load time).
    fn swap_marker(&mut self, kept: &mut Kept, policy: &PolicyState) -> Option<Marker> {
        if policy.generation == self.generation {
            return None;
        }
        let swaps = policy.generation.saturating_sub(self.generation);
        let label = if swaps > 1 {
            format!("{} → {} ({swaps} swaps)", self.name, policy.name)
        } else {
            format!("{} → {}", self.name, policy.name)
        };
        self.generation = policy.generation;
        self.name = policy.name.clone();
        Some(kept.marker(policy.loaded_at, "swap", label))
    }

    /// A marker when swaps were refused since the last tick.
    fn failed_swap_marker(
        &mut self,
        kept: &mut Kept,
        policy: &PolicyState,
        failed: u64,
        now: f64,
    ) -> Option<Marker> {
        if failed <= self.failed_swaps {
            return None;
        }
        let label = format!(
            "swap refused ×{}, kept {}",
            failed - self.failed_swaps,
            policy.name
        );
        self.failed_swaps = failed;
        Some(kept.marker(now, "failed_swap", label))
    }

    /// A marker when the circuit breaker disabled the policy since the last tick.
    fn disabled_marker(
        &mut self,
        kept: &mut Kept,
        policy: &PolicyState,
        now: f64,
    ) -> Option<Marker> {
        let tripped = policy.disabled && !self.disabled;
        self.disabled = policy.disabled;
        tripped.then(|| {
            let label = format!("{} disabled: host round-robin", policy.name);
            kept.marker(now, "disabled", label)
        })
    }

    /// A marker for each fault kind that counted up since the last tick.
    fn fault_markers(&mut self, kept: &mut Kept, c: &Counters, now: f64) -> Vec<Marker> {
        let mut markers = Vec::new();
        for (kind, seen) in FaultKind::ALL.iter().zip(&mut self.faults) {
            let n = c.fault_count(*kind);
            if n > *seen {
                let label = format!("{} fault ×{}", kind.as_str(), n - *seen);
                markers.push(kept.marker(now, "fault", label));
                *seen = n;
            }
        }
        markers
    }

    /// The requests finished since the last tick (the latest [`ROWS`]), each with the
    /// scores sampled now.
    fn fresh_rows(
        &mut self,
        ctx: &Ctx,
        kept: &mut Kept,
        ids: &[&str],
        scores: &[Option<f64>],
    ) -> Vec<Row> {
        let fresh: Vec<_> = ctx
            .app
            .telemetry
            .recent()
            .into_iter()
            .filter(|r| r.at > self.recent_at)
            .collect();
        if let Some(last) = fresh.last() {
            self.recent_at = last.at;
        }
        let skip = fresh.len().saturating_sub(ROWS);
        fresh
            .into_iter()
            .skip(skip)
            .map(|r| Row {
                id: kept.id(),
                at: unix_f64(r.at),
                backend: ids.get(r.backend).map_or("?", |id| id).to_string(),
                latency_ms: r.latency_ms,
                status: r.status,
                outcome: r.outcome.as_str(),
                routing_mode: r.routing_mode.to_string(),
                scores: scores.to_vec(),
            })
            .collect()
    }

    /// Connection rates since the last tick.
    fn conn_sample(&mut self, ctx: &Ctx, now: f64) -> ConnSample {
        let (opened, reused) = conn_totals(ctx);
        let dt = (now - self.at).max(1e-3);
        let sample = ConnSample {
            at: now,
            opened: opened.saturating_sub(self.opened) as f64 / dt,
            reused: reused.saturating_sub(self.reused) as f64 / dt,
        };
        self.at = now;
        self.opened = opened;
        self.reused = reused;
        sample
    }
}
