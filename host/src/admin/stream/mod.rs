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
//!
//! `views` holds the JSON shapes, `sampler` the once-a-second diff, `sse` the per-page
//! stream; this module, the [`Hub`] they share.
mod sampler;
mod sse;
mod views;

use std::collections::VecDeque;
use std::sync::atomic::AtomicUsize;
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;
use tokio::sync::broadcast;

pub(super) use sampler::run as run_sampler;
pub(super) use sse::response;
use views::{ConnSample, Marker, Row};

/// History a new page receives, seconds.
const SNAPSHOT_SECS: u64 = 300;
/// Latest requests kept for the table.
const ROWS: usize = 20;
/// Markers kept (swaps and faults), and connection-rate samples kept.
const MARKERS: usize = 200;
const CONN_SAMPLES: usize = SNAPSHOT_SECS as usize;
/// Open event streams allowed at once.
const MAX_STREAMS: usize = 64;

/// The sampler's output: the broadcast of updates and what a new page needs to catch up.
pub(super) struct Hub {
    tx: broadcast::Sender<Bytes>,
    kept: Mutex<Kept>,
    streams: Arc<AtomicUsize>,
}

/// What a page that connects later catches up with, and the ids that let pages drop
/// repeats.
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

    fn marker(&mut self, at: f64, kind: &'static str, label: String) -> Marker {
        Marker {
            id: self.id(),
            at,
            kind,
            label,
        }
    }
}

/// Appends `items`, dropping the oldest beyond `cap`.
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
