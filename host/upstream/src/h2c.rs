//! HTTP/2 upstreams (h2c, prior knowledge): a few long-lived connections per backend that
//! carry every request as a stream.
//!
//! Why: with HTTP/1.1 every request costs its own write and read on its own upstream
//! socket, and on loopback that kernel work is most of a proxy's CPU. Streams queued while
//! the connection task was busy go out in one write and come back in one read. Streams are
//! independent, so a slow response holds up nobody else (unlike HTTP/1.1 pipelining).
//!
//! Built on the `h2` crate directly rather than hyper's HTTP/2 client, which spawns a task
//! and a channel round trip per request; here the request's own task awaits its stream.
use std::future::poll_fn;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::{Request, Response};

use super::body::{Body, BoxError, H2Body};
use super::Upload;
use super::{Lease, Upstream, UpstreamError};

/// Stream window: what one response may have in flight before its client reads it.
const STREAM_WINDOW: u32 = 1 << 20;
/// Connection window, shared by all streams: large, so that a few slow clients holding
/// their stream windows cannot stall the others.
const CONNECTION_WINDOW: u32 = 64 << 20;

/// Connections one slot may grow to when the backend's stream limit is reached.
const MAX_CONNS_PER_SLOT: usize = 64;

/// One backend's multiplexed connections: slots used in turn, each with as many
/// connections as the backend's stream limit requires.
pub(super) struct Mux {
    slots: Vec<Slot>,
    next: AtomicUsize,
    /// PING interval, and how long a PING may go unanswered; None: no PINGs.
    keepalive: Option<Duration>,
    /// The backend's SETTINGS_MAX_CONCURRENT_STREAMS, learnt from the first response;
    /// unlimited until then.
    stream_limit: AtomicUsize,
}

#[derive(Default)]
struct Slot {
    live: Mutex<Vec<Conn>>,
    /// Held while connecting, so a burst of requests opens one connection, not one each.
    connecting: tokio::sync::Mutex<()>,
}

#[derive(Clone)]
struct Conn {
    sender: h2::client::SendRequest<Bytes>,
    /// Set by the connection's task when it ends (backend closed, GOAWAY, I/O error).
    closed: Arc<AtomicBool>,
    /// Streams reserved on it and not yet finished.
    in_flight: Arc<AtomicUsize>,
}

/// A stream's claim on its connection's capacity, given back when the response body is
/// done with (or the exchange failed).
pub(super) struct InFlight(Arc<AtomicUsize>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Mux {
    pub(super) fn new(connections: usize, keepalive: Option<Duration>) -> Self {
        Mux {
            slots: (0..connections.max(1)).map(|_| Slot::default()).collect(),
            next: AtomicUsize::new(0),
            keepalive,
            stream_limit: AtomicUsize::new(usize::MAX),
        }
    }

    fn slot(&self) -> &Slot {
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.slots.len();
        // In range: reduced modulo the length, which `new` makes at least 1.
        &self.slots[i]
    }
}

impl Slot {
    fn live(&self) -> std::sync::MutexGuard<'_, Vec<Conn>> {
        // Poisoning needs a panic while holding this lock, and nothing in here panics.
        self.live.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A stream on an open connection below the backend's limit, if there is one.
    fn reserve(&self, limit: usize) -> Option<(Conn, InFlight)> {
        let mut live = self.live();
        live.retain(|c| !c.closed.load(Ordering::Acquire));
        live.iter().find_map(|c| {
            c.in_flight
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                    (n < limit).then_some(n + 1)
                })
                .ok()
                .map(|_| (c.clone(), InFlight(c.in_flight.clone())))
        })
    }

    /// A stream on one of the slot's connections, opening another when all are at the
    /// backend's limit; `true` if the connection was already open.
    async fn conn(&self, up: &Upstream) -> Result<(Conn, InFlight, bool), UpstreamError> {
        let limit = up.mux.stream_limit.load(Ordering::Relaxed);
        if let Some((c, f)) = self.reserve(limit) {
            return Ok((c, f, true));
        }
        let _connecting = self.connecting.lock().await;
        // Another request may have connected, or streams ended, while this one waited.
        if let Some((c, f)) = self.reserve(limit) {
            return Ok((c, f, true));
        }
        {
            let live = self.live();
            if live.len() >= MAX_CONNS_PER_SLOT {
                // At the cap: the least busy connection; HTTP/2 queues the stream there.
                if let Some(c) = live
                    .iter()
                    .min_by_key(|c| c.in_flight.load(Ordering::Acquire))
                {
                    c.in_flight.fetch_add(1, Ordering::AcqRel);
                    return Ok((c.clone(), InFlight(c.in_flight.clone()), true));
                }
            }
        }
        let conn = connect(up).await?;
        conn.in_flight.fetch_add(1, Ordering::AcqRel);
        let claim = InFlight(conn.in_flight.clone());
        self.live().push(conn.clone());
        Ok((conn, claim, false))
    }

    fn forget(&self, dead: &Conn) {
        dead.closed.store(true, Ordering::Release);
        self.live()
            .retain(|c| !Arc::ptr_eq(&c.closed, &dead.closed));
    }
}

/// Sends `req` as a new stream and waits for the response head.
///
/// A connection found dead or going away before the stream opens is replaced and the
/// request sent on the new one. A bodyless idempotent request that the backend refused
/// unprocessed (REFUSED_STREAM, or above the last stream id of its GOAWAY, which HTTP/2
/// guarantees it did not act on) is sent once more on a fresh connection. So a backend
/// restarting gracefully fails no request.
pub(super) async fn send(
    up: &Arc<Upstream>,
    req: Request<Upload>,
) -> Result<(Response<Body>, Lease), UpstreamError> {
    let slot = up.mux.slot();
    let (head, body) = req.into_parts();
    let eos = http_body::Body::is_end_stream(&body);
    // The copy that makes a resend possible; only bodyless idempotent requests get one.
    let mut spare = (eos && head.method.is_idempotent()).then(|| head.clone());
    let mut head = Some(head);
    let mut body = Some(body);
    let mut last_error: Option<UpstreamError> = None;
    for _attempt in 0..2 {
        let Some(h) = head.take().or_else(|| spare.take()) else {
            break;
        };
        let (conn, claim, reused) = slot.conn(up).await?;
        let mut sender = match conn.sender.clone().ready().await {
            Ok(s) => s,
            Err(e) => {
                tracing::debug!("h2 connection to {} unusable ({e}); reconnecting", up.addr);
                slot.forget(&conn);
                head = Some(h);
                last_error = Some(UpstreamError::Broken(e.into()));
                continue;
            }
        };
        let (response, stream) = match sender.send_request(Request::from_parts(h, ()), eos) {
            Ok(sent) => sent,
            Err(e) => {
                slot.forget(&conn);
                last_error = Some(UpstreamError::Broken(e.into()));
                continue;
            }
        };
        if let Some(b) = body.take().filter(|_| !eos) {
            tokio::spawn(pipe(b, stream));
        }
        match response.await {
            Ok(resp) => {
                if reused {
                    up.stats.reused.fetch_add(1, Ordering::Relaxed);
                }
                // A response means the backend's SETTINGS have arrived, limit included.
                up.mux
                    .stream_limit
                    .store(conn.sender.current_max_send_streams(), Ordering::Relaxed);
                let (mut parts, recv) = resp.into_parts();
                // The client side speaks HTTP/1.1.
                parts.version = http::Version::HTTP_11;
                let body = Body::H2(H2Body::new(recv, &parts.headers, claim));
                return Ok((Response::from_parts(parts, body), Lease::none(reused)));
            }
            Err(e) => {
                let unprocessed = e.reason() == Some(h2::Reason::REFUSED_STREAM)
                    || (e.is_go_away() && e.is_remote());
                if e.is_io() || e.is_go_away() {
                    slot.forget(&conn);
                }
                if !unprocessed {
                    return Err(UpstreamError::Broken(explain(e)));
                }
                tracing::debug!("{} did not process a stream ({e})", up.addr);
                last_error = Some(UpstreamError::Broken(e.into()));
            }
        }
    }
    Err(last_error.unwrap_or_else(|| UpstreamError::Broken("h2 request not sent".into())))
}

/// Whether the peer's bytes could not even be read as HTTP/2 frames: an HTTP/1.1-only
/// server answers the HTTP/2 preface with a `400` that parses as an oversized frame.
fn not_http2(e: &h2::Error) -> bool {
    !e.is_remote()
        && matches!(
            e.reason(),
            Some(h2::Reason::FRAME_SIZE_ERROR | h2::Reason::PROTOCOL_ERROR)
        )
}

/// The error, with the likely fix when the backend does not speak h2c at all.
fn explain(e: h2::Error) -> BoxError {
    if not_http2(&e) {
        format!(
            "{e} (the backend does not seem to speak HTTP/2 with prior knowledge: use --upstream-protocol http1 for it)"
        )
        .into()
    } else {
        e.into()
    }
}

/// Copies the client's request body into the stream as flow control allows.
async fn pipe(mut body: Upload, mut tx: h2::SendStream<Bytes>) {
    loop {
        let frame = match body.frame().await {
            None => {
                let _ = tx.send_data(Bytes::new(), true);
                return;
            }
            Some(Err(_)) => {
                // The client broke off mid-body: the backend must not take it as complete.
                tx.send_reset(h2::Reason::CANCEL);
                return;
            }
            Some(Ok(frame)) => frame,
        };
        let frame = match frame.into_data() {
            Ok(mut data) => {
                while !data.is_empty() {
                    tx.reserve_capacity(data.len());
                    let granted = match poll_fn(|cx| tx.poll_capacity(cx)).await {
                        Some(Ok(0)) => continue,
                        Some(Ok(n)) => n,
                        // The stream was reset or the connection is gone.
                        _ => return,
                    };
                    let chunk = data.split_to(granted.min(data.len()));
                    if tx.send_data(chunk, false).is_err() {
                        return;
                    }
                }
                continue;
            }
            Err(frame) => frame,
        };
        if let Ok(trailers) = frame.into_trailers() {
            let _ = tx.send_trailers(trailers);
            return;
        }
    }
}

async fn connect(up: &Upstream) -> Result<Conn, UpstreamError> {
    let stream = super::open(up).await?;
    let (sender, mut connection) = h2::client::Builder::new()
        .initial_window_size(STREAM_WINDOW)
        .initial_connection_window_size(CONNECTION_WINDOW)
        .enable_push(false)
        .handshake::<_, Bytes>(stream)
        .await
        .map_err(|e| UpstreamError::Broken(e.into()))?;
    let closed = Arc::new(AtomicBool::new(false));
    let flag = closed.clone();
    let addr = up.addr;
    let pings = up
        .mux
        .keepalive
        .and_then(|every| Some((connection.ping_pong()?, every)));
    tokio::spawn(async move {
        let ended = async {
            if let Err(e) = (&mut connection).await {
                if not_http2(&e) {
                    tracing::warn!("h2c connection to {addr}: {}", explain(e));
                } else {
                    tracing::debug!("h2 connection to {addr} ended: {e}");
                }
            }
        };
        match pings {
            Some((pings, every)) => {
                tokio::select! {
                    _ = ended => {}
                    silent = keepalive(pings, every) => if let Some(after) = silent {
                        tracing::warn!(
                            "h2 connection to {addr} dropped: no answer to PING within {after:?}"
                        );
                    },
                }
            }
            None => ended.await,
        }
        // Dropping the connection fails the streams still on it, and the flag sends the
        // next requests to a new one.
        flag.store(true, Ordering::Release);
    });
    Ok(Conn {
        sender,
        closed,
        in_flight: Arc::new(AtomicUsize::new(0)),
    })
}

/// PINGs the backend every `every`; returns once a PING went unanswered for as long (a
/// backend host that vanished without closing TCP would otherwise hold its slot's
/// requests until they time out, for as long as the kernel keeps the socket: minutes).
/// `None` if the connection ended first.
async fn keepalive(mut pings: h2::PingPong, every: Duration) -> Option<Duration> {
    loop {
        tokio::time::sleep(every).await;
        pings.send_ping(h2::Ping::opaque()).ok()?;
        match tokio::time::timeout(every, poll_fn(|cx| pings.poll_pong(cx))).await {
            Ok(Ok(_)) => {}
            Ok(Err(_)) => return None,
            Err(_) => return Some(every),
        }
    }
}
