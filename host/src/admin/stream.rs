//! The live feed: a sampler task wakes once per wall-clock second, reads what the proxy
//! already aggregates, and broadcasts one update to every open page as a Server-Sent
//! Event. Pages never see individual requests beyond the latest few rows, so the feed
//! costs the same whatever the request rate.
//!
//! Each update carries the state (as `/api/state`), the seconds completed since the last
//! update, markers for swaps and faults, the latest requests paired with the policy's
//! scores sampled at that tick (the study's table, without calling the policy per
//! request), and upstream connection rates. A page that connects first gets a snapshot of
//! the same shape holding the last five minutes.
use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::{header, Response, StatusCode};
use serde::Serialize;
use switchyard_runtime::FaultKind;
use tokio::sync::{broadcast, mpsc, watch};

use super::body::AdminBody;
use super::state::{self, ScoresState, State};
use super::Ctx;
use crate::telemetry::{unix_f64, unix_secs, Second};

/// History a new page receives, seconds.
const SNAPSHOT_SECS: u64 = 300;
/// Latest requests kept for the table.
const ROWS: usize = 20;
/// Markers kept (swaps and faults), and connection-rate samples kept.
const MARKERS: usize = 200;
const CONN_SAMPLES: usize = SNAPSHOT_SECS as usize;
/// Open event streams allowed at once.
const MAX_STREAMS: usize = 64;
/// How far into each second the sampler wakes: late enough for the telemetry thread to
/// have closed the previous second.
const PHASE: f64 = 0.2;
const X_ACCEL_BUFFERING: header::HeaderName = header::HeaderName::from_static("x-accel-buffering");

/// One second of traffic, as the charts use it.
#[derive(Debug, Clone, Serialize)]
pub(super) struct SecondView {
    pub unix: u64,
    pub requests: u64,
    pub errors: u64,
    pub faults: u64,
    pub reused: u64,
    pub mean_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
    /// Per backend, in backend order.
    pub backends: Vec<BackendSecondView>,
}

#[derive(Debug, Clone, Serialize)]
pub(super) struct BackendSecondView {
    pub requests: u64,
    pub errors: u64,
    /// `None` when the backend served nothing that second (a gap, not a zero).
    pub mean_ms: Option<f64>,
    pub p95_ms: Option<f64>,
}

impl From<&Second> for SecondView {
    fn from(s: &Second) -> Self {
        SecondView {
            unix: s.unix,
            requests: s.requests,
            errors: s.errors,
            faults: s.faults,
            reused: s.reused,
            mean_ms: s.mean_ms,
            p95_ms: s.p95_ms,
            p99_ms: s.p99_ms,
            backends: s
                .backends
                .iter()
                .map(|b| BackendSecondView {
                    requests: b.requests,
                    errors: b.errors,
                    mean_ms: (b.requests > 0).then_some(b.mean_ms),
                    p95_ms: (b.requests > 0).then_some(b.p95_ms),
                })
                .collect(),
        }
    }
}

/// Something to draw on the latency chart.
#[derive(Debug, Clone, Serialize)]
pub(super) struct Marker {
    pub id: u64,
    /// Unix seconds.
    pub at: f64,
    /// "swap", "failed_swap", "fault" or "disabled".
    pub kind: &'static str,
    pub label: String,
}

/// A recent request with the policy's scores sampled at the tick that first saw it.
#[derive(Debug, Clone, Serialize)]
pub(super) struct Row {
    pub id: u64,
    pub at: f64,
    pub backend: String,
    pub latency_ms: f64,
    pub status: u16,
    pub outcome: &'static str,
    pub routing_mode: String,
    pub scores: Vec<Option<f64>>,
}

/// Upstream connections opened and requests on reused connections, per second, over the
/// interval ending at `at` (from the upstreams' own counters).
#[derive(Debug, Clone, Serialize)]
pub(super) struct ConnSample {
    pub at: f64,
    pub opened: f64,
    pub reused: f64,
}

#[derive(Debug, Serialize)]
pub(super) struct Update {
    /// "snapshot" (first message on a stream) or "tick".
    pub kind: &'static str,
    pub now: f64,
    pub state: State,
    pub seconds: Vec<SecondView>,
    pub markers: Vec<Marker>,
    pub recent: Vec<Row>,
    pub conns: Vec<ConnSample>,
}

/// The sampler's output: the broadcast of updates and what a new page needs to catch up.
pub(super) struct Hub {
    tx: broadcast::Sender<Bytes>,
    kept: Mutex<Kept>,
    streams: Arc<AtomicUsize>,
}

#[derive(Default)]
struct Kept {
    markers: VecDeque<Marker>,
    rows: VecDeque<Row>,
    conns: VecDeque<ConnSample>,
    next_id: u64,
}

impl Kept {
    fn id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }
}

fn push<T>(q: &mut VecDeque<T>, cap: usize, items: &[T])
where
    T: Clone,
{
    for item in items {
        if q.len() == cap {
            q.pop_front();
        }
        q.push_back(item.clone());
    }
}

impl Hub {
    pub(super) fn new() -> Hub {
        let (tx, _) = broadcast::channel(8);
        Hub {
            tx,
            kept: Mutex::new(Kept::default()),
            streams: Arc::new(AtomicUsize::new(0)),
        }
    }

    fn kept(&self) -> MutexGuard<'_, Kept> {
        // Only plain pushes happen under this lock; a poisoned one is still consistent.
        self.kept.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// What the sampler compares against to see what changed since its last tick.
struct Prev {
    unix: u64,
    generation: u64,
    name: String,
    disabled: bool,
    faults: [u64; 4],
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
}

fn conn_totals(ctx: &Ctx) -> (u64, u64) {
    ctx.app.shared.upstreams.iter().fold((0, 0), |(o, r), u| {
        (
            o + u.stats.opened.load(Ordering::Relaxed),
            r + u.stats.reused.load(Ordering::Relaxed),
        )
    })
}

/// Ticks once per second until stopped.
pub(super) async fn run_sampler(ctx: Arc<Ctx>, mut stop: watch::Receiver<bool>) {
    let mut prev = Prev::new(&ctx);
    loop {
        let now = unix_f64(SystemTime::now());
        let next = now.floor() + 1.0 + PHASE;
        let wait = Duration::from_secs_f64((next - now).clamp(0.05, 2.0));
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = super::stopped(&mut stop) => return,
        }
        let update = tick(&ctx, &mut prev);
        if let Some(frame) = frame(&update) {
            // No receivers is fine: nobody has the page open.
            let _ = ctx.hub.tx.send(frame);
        }
    }
}

/// Samples everything once, records markers and rows, and returns the update to send.
fn tick(ctx: &Ctx, prev: &mut Prev) -> Update {
    let app = &ctx.app;
    let now_t = SystemTime::now();
    let now = unix_f64(now_t);
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

    let mut markers = Vec::new();
    let policy = &state.policy;
    if policy.generation != prev.generation {
        let swaps = policy.generation.saturating_sub(prev.generation);
        let label = if swaps > 1 {
            format!("{} → {} ({swaps} swaps)", prev.name, policy.name)
        } else {
            format!("{} → {}", prev.name, policy.name)
        };
        let id = kept.id();
        markers.push(Marker {
            id,
            at: policy.loaded_at,
            kind: "swap",
            label,
        });
        prev.generation = policy.generation;
        prev.name = policy.name.clone();
    }
    let failed = state.counters.failed_swaps;
    if failed > prev.failed_swaps {
        let id = kept.id();
        markers.push(Marker {
            id,
            at: now,
            kind: "failed_swap",
            label: format!(
                "swap refused ×{}, kept {}",
                failed - prev.failed_swaps,
                policy.name
            ),
        });
        prev.failed_swaps = failed;
    }
    let c = app.shared.router.counters();
    for (i, kind) in FaultKind::ALL.iter().enumerate() {
        let n = c.fault_count(*kind);
        if n > prev.faults[i] {
            let id = kept.id();
            markers.push(Marker {
                id,
                at: now,
                kind: "fault",
                label: format!("{} fault ×{}", kind.as_str(), n - prev.faults[i]),
            });
            prev.faults[i] = n;
        }
    }
    if policy.disabled && !prev.disabled {
        let id = kept.id();
        markers.push(Marker {
            id,
            at: now,
            kind: "disabled",
            label: format!("{} disabled: host round-robin", policy.name),
        });
    }
    prev.disabled = policy.disabled;

    let ids: Vec<String> = state.backends.iter().map(|b| b.id.clone()).collect();
    let values = scores.map(|s: ScoresState| s.values).unwrap_or_default();
    let fresh: Vec<_> = app
        .telemetry
        .recent()
        .into_iter()
        .filter(|r| r.at > prev.recent_at)
        .collect();
    if let Some(last) = fresh.last() {
        prev.recent_at = last.at;
    }
    let skip = fresh.len().saturating_sub(ROWS);
    let recent: Vec<Row> = fresh
        .into_iter()
        .skip(skip)
        .map(|r| Row {
            id: kept.id(),
            at: unix_f64(r.at),
            backend: ids.get(r.backend).cloned().unwrap_or_else(|| "?".into()),
            latency_ms: r.latency_ms,
            status: r.status,
            outcome: r.outcome.as_str(),
            routing_mode: r.routed_by.to_string(),
            scores: values.clone(),
        })
        .collect();

    let (opened, reused) = conn_totals(ctx);
    let dt = (now - prev.at).max(1e-3);
    let conns = vec![ConnSample {
        at: now,
        opened: opened.saturating_sub(prev.opened) as f64 / dt,
        reused: reused.saturating_sub(prev.reused) as f64 / dt,
    }];
    prev.at = now;
    prev.opened = opened;
    prev.reused = reused;

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

/// What a page that just connected needs: the last five minutes and the current state.
fn snapshot(ctx: &Ctx) -> Update {
    let now_t = SystemTime::now();
    let app = &ctx.app;
    let seconds = app
        .telemetry
        .seconds_after(unix_secs(now_t).saturating_sub(SNAPSHOT_SECS))
        .iter()
        .map(SecondView::from)
        .collect();
    let totals = app.telemetry.totals();
    let state = state::build(ctx, &totals, state::current_scores(ctx));
    let kept = ctx.hub.kept();
    Update {
        kind: "snapshot",
        now: unix_f64(now_t),
        state,
        seconds,
        markers: kept.markers.iter().cloned().collect(),
        recent: kept.rows.iter().cloned().collect(),
        conns: kept.conns.iter().cloned().collect(),
    }
}

/// One SSE message: the update as a single `data:` line (compact JSON has no newlines).
fn frame(update: &Update) -> Option<Bytes> {
    match serde_json::to_string(update) {
        Ok(json) => Some(Bytes::from(format!("data: {json}\n\n"))),
        Err(e) => {
            tracing::warn!("cannot encode the dashboard update: {e}");
            None
        }
    }
}

/// Counts an open stream until dropped.
struct StreamSlot(Arc<AtomicUsize>);

impl Drop for StreamSlot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// `GET /api/stream`: the snapshot, then every tick until the client leaves or the admin
/// server stops. The forwarding task holds no reference to the proxy's state, so shutdown
/// never waits for it.
pub(super) fn response(ctx: &Ctx) -> Response<AdminBody> {
    let streams = ctx.hub.streams.clone();
    if streams.fetch_add(1, Ordering::Relaxed) >= MAX_STREAMS {
        streams.fetch_sub(1, Ordering::Relaxed);
        return super::text(
            StatusCode::SERVICE_UNAVAILABLE,
            "too many open dashboard streams; close some pages\n",
        );
    }
    let slot = StreamSlot(streams);
    // Subscribe before the snapshot so no tick falls in between (the page drops repeats).
    let mut ticks = ctx.hub.tx.subscribe();
    let first = frame(&snapshot(ctx));
    let mut stop = ctx.stop.clone();
    let (tx, rx) = mpsc::channel::<Bytes>(8);
    tokio::spawn(async move {
        let _slot = slot;
        let hello = Bytes::from_static(b"retry: 2000\n\n");
        for b in std::iter::once(hello).chain(first) {
            if tx.send(b).await.is_err() {
                return;
            }
        }
        loop {
            tokio::select! {
                msg = ticks.recv() => match msg {
                    // A page that stops reading loses ticks instead of holding memory.
                    Ok(b) => match tx.try_send(b) {
                        Ok(()) | Err(mpsc::error::TrySendError::Full(_)) => {}
                        Err(mpsc::error::TrySendError::Closed(_)) => return,
                    },
                    Err(broadcast::error::RecvError::Lagged(_)) => {}
                    Err(broadcast::error::RecvError::Closed) => return,
                },
                _ = super::stopped(&mut stop) => return,
                _ = tx.closed() => return,
            }
        }
    });
    super::with_headers(
        Response::new(AdminBody::Stream(rx)),
        &[
            (header::CONTENT_TYPE, "text/event-stream"),
            (header::CACHE_CONTROL, "no-store"),
            // Tells nginx (a common reverse proxy in front of dashboards) not to buffer.
            (X_ACCEL_BUFFERING, "no"),
        ],
    )
}
