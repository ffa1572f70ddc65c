//! `GET /api/stream`: Server-Sent Events, written by hand (the format is one `data:` line
//! per message). A page that connects first gets a snapshot of the last five minutes, then
//! every tick the sampler broadcasts.
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::SystemTime;

use bytes::Bytes;
use http::header::{self, HeaderName};
use http::{Response, StatusCode};
use tokio::sync::{broadcast, mpsc};

use super::views::{SecondView, Update};
use super::{MAX_STREAMS, SNAPSHOT_SECS};
use crate::admin::body::AdminBody;
use crate::admin::{state, Ctx};
use crate::telemetry::{unix_f64, unix_secs};

/// Tells nginx (often in front of dashboards) not to buffer the stream.
const X_ACCEL_BUFFERING: HeaderName = HeaderName::from_static("x-accel-buffering");

/// One SSE message: the update as a single `data:` line (compact JSON has no newlines).
pub(super) fn frame(update: &Update) -> Option<Bytes> {
    match serde_json::to_string(update) {
        Ok(json) => Some(Bytes::from(format!("data: {json}\n\n"))),
        Err(e) => {
            tracing::warn!("cannot encode the dashboard update: {e}");
            None
        }
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
pub(in crate::admin) fn response(ctx: &Ctx) -> Response<AdminBody> {
    let streams = ctx.hub.streams.clone();
    if streams.fetch_add(1, Ordering::Relaxed) >= MAX_STREAMS {
        streams.fetch_sub(1, Ordering::Relaxed);
        return crate::admin::text(
            StatusCode::SERVICE_UNAVAILABLE,
            "too many open dashboard streams; close some pages\n",
        );
    }
    let slot = StreamSlot(streams);
    // Subscribe before the snapshot so no tick falls in between (the page drops repeats).
    let ticks = ctx.hub.tx.subscribe();
    let first = frame(&snapshot(ctx));
    let (tx, rx) = mpsc::channel::<Bytes>(8);
    tokio::spawn(forward(slot, first, ticks, tx, ctx.stop.clone()));
    crate::admin::with_headers(
        Response::new(AdminBody::Stream(rx)),
        &[
            (header::CONTENT_TYPE, "text/event-stream"),
            (header::CACHE_CONTROL, "no-store"),
            (X_ACCEL_BUFFERING, "no"),
        ],
    )
}

/// Sends the reconnect delay and the snapshot, then each tick, until the page or the
/// server goes away.
async fn forward(
    _slot: StreamSlot,
    first: Option<Bytes>,
    mut ticks: broadcast::Receiver<Bytes>,
    tx: mpsc::Sender<Bytes>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
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
            _ = crate::admin::stopped(&mut stop) => return,
            _ = tx.closed() => return,
        }
    }
}
