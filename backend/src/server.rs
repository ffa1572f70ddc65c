//! Accept loop, request routing and response bodies.
//!
//! Profile requests are counted in [`Load`] from receipt to response; with
//! `report_load` their responses carry the load headers, and `GET /probe`
//! always answers with them without touching the cycle, the capacity gate,
//! the error rate or the counts (see [`crate::load`]).

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::Duration;

use http_body_util::BodyExt;
use hyper::body::{Body, Bytes, Frame, Incoming, SizeHint};
use hyper::header::{HeaderValue, CONTENT_LENGTH, CONTENT_TYPE};
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use switchyard_listener::Draining;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;

use crate::load::Load;
use crate::profile::{BackendConfig, Profile};

/// How long in-flight requests may finish after shutdown is requested before
/// their connections are cut; longer than any study step.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// `/bytes/N` is sent in slices of this size, so large transfers never hold
/// more than one chunk in memory.
const CHUNK: usize = 64 * 1024;
/// The pattern `(i*31+7) mod 251` repeats every 251 bytes.
const PATTERN_PERIOD: u64 = 251;

/// State shared by every connection of one backend.
pub(crate) struct Shared {
    pub profile: Profile,
    pub gate: Option<Semaphore>,
    pub requests: AtomicU64,
    pub connections: AtomicU64,
    pub h2_max_streams: Option<u32>,
    pub load: Load,
    /// Whether profile responses carry the load headers (`/probe` always does).
    pub report_load: bool,
}

impl Shared {
    pub(crate) fn new(profile: Profile, cfg: &BackendConfig) -> Self {
        Self {
            profile,
            gate: cfg.capacity.map(Semaphore::new),
            requests: AtomicU64::new(0),
            connections: AtomicU64::new(0),
            h2_max_streams: cfg.h2_max_streams,
            load: Load::new(cfg.capacity),
            report_load: cfg.report_load,
        }
    }
}

/// Serves until `shutdown` resolves, then stops accepting, lets in-flight
/// requests finish (up to [`SHUTDOWN_GRACE`]) and closes idle keep-alive
/// connections (the project's one accept loop, `switchyard-listener`).
pub(crate) async fn run(
    listener: TcpListener,
    shared: Arc<Shared>,
    shutdown: impl Future<Output = ()>,
) {
    let connection = |stream: TcpStream, _peer, draining| {
        shared.connections.fetch_add(1, Ordering::Relaxed);
        connection(stream, shared.clone(), draining)
    };
    switchyard_listener::serve(listener, connection, shutdown, SHUTDOWN_GRACE).await;
}

async fn connection(stream: TcpStream, shared: Arc<Shared>, draining: Draining) {
    let max_streams = shared.h2_max_streams;
    let service = service_fn(move |req| handle(shared.clone(), req));
    // HTTP/1.1 and h2c (prior knowledge) on every connection.
    let mut builder =
        hyper_util::server::conn::auto::Builder::new(hyper_util::rt::TokioExecutor::new());
    if let Some(max) = max_streams {
        builder.http2().max_concurrent_streams(max);
    }
    let conn = builder.serve_connection(TokioIo::new(stream), service);
    switchyard_listener::until_drained(conn, draining).await;
}

async fn handle(
    shared: Arc<Shared>,
    req: Request<Incoming>,
) -> Result<Response<ReplyBody>, Infallible> {
    let method = req.method();
    let path = req.uri().path();
    let reply = if (method == Method::POST || method == Method::PUT) && path == "/echo" {
        echo(req)
    } else if method == Method::GET && path == "/health" {
        text(StatusCode::OK, Bytes::from_static(b"ok"))
    } else if method == Method::GET && path == "/probe" {
        probe(&shared)
    } else if method == Method::GET && path == "/version" {
        // Which protocol reached us (HTTP/1.1, or HTTP/2.0 from an h2c proxy).
        text(StatusCode::OK, Bytes::from(format!("{:?}", req.version())))
    } else if let (true, Some(n)) = (method == Method::GET, path.strip_prefix("/bytes/")) {
        pattern(n)
    } else if let (true, Some(ms)) = (method == Method::GET, path.strip_prefix("/stall/")) {
        stall(ms)
    } else {
        profile_reply(&shared, req.into_body()).await
    };
    Ok(reply)
}

/// Advances the cycle at receipt, so the order of steps follows arrival
/// order even when requests overlap.
async fn profile_reply(shared: &Shared, body: Incoming) -> Response<ReplyBody> {
    // In flight from receipt, so a request still sending its body or queued
    // at the gate is load a balancer should see.
    let mut ticket = shared.load.arrive();
    let index = shared.requests.fetch_add(1, Ordering::Relaxed);
    let profile = &shared.profile;
    let step = profile.step(index);
    let failed = profile.fails(index);
    drain(body).await;
    // A closed semaphore cannot happen (it is never closed); serve unthrottled if it did.
    let _permit = match &shared.gate {
        Some(gate) => gate.acquire().await.ok(),
        None => None,
    };
    ticket.start_service();
    if let Some(delay) = step.delay {
        tokio::time::sleep(delay).await;
    }
    let (status, body) = if failed {
        (
            StatusCode::INTERNAL_SERVER_ERROR,
            profile.error_body.clone(),
        )
    } else {
        (StatusCode::OK, step.ok_body.clone())
    };
    let mut resp = text(status, body);
    let headers = resp.headers_mut();
    headers.insert(profile.id_header.clone(), profile.id.clone());
    headers.insert(profile.latency_header.clone(), step.latency_header.clone());
    // Finished before the permit is released (it drops after this), so the
    // report never counts a queued request that has not really started.
    let left = ticket.finish();
    if shared.report_load {
        left.write_headers(headers);
    }
    resp
}

/// Answers at once with the current load, as a Prequal probe expects: no
/// cycle step, no permit, no error roll, and not itself counted, so probing
/// never changes what it measures.
fn probe(shared: &Shared) -> Response<ReplyBody> {
    let mut resp = text(StatusCode::OK, Bytes::new());
    shared.load.snapshot().write_headers(resp.headers_mut());
    resp
}

/// Reads the request body to its end so the connection stays reusable;
/// a broken body only means the connection will close after this response.
async fn drain(mut body: Incoming) {
    if body.is_end_stream() {
        return;
    }
    while let Some(Ok(_)) = body.frame().await {}
}

fn text(status: StatusCode, body: Bytes) -> Response<ReplyBody> {
    let mut resp = Response::new(ReplyBody::Full(Some(body)));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}

fn echo(req: Request<Incoming>) -> Response<ReplyBody> {
    let (parts, body) = req.into_parts();
    let mut resp = Response::new(ReplyBody::Echo(body));
    if let Some(ct) = parts.headers.get(CONTENT_TYPE) {
        resp.headers_mut().insert(CONTENT_TYPE, ct.clone());
    }
    resp
}

fn pattern(count: &str) -> Response<ReplyBody> {
    let Ok(len) = count.parse::<u64>() else {
        return text(
            StatusCode::BAD_REQUEST,
            Bytes::from_static(b"expected /bytes/N with N a byte count"),
        );
    };
    let mut resp = Response::new(ReplyBody::Pattern {
        offset: 0,
        remaining: len,
    });
    let headers = resp.headers_mut();
    headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    headers.insert(CONTENT_LENGTH, HeaderValue::from(len));
    resp
}

/// `first\n`, then a pause of `ms`, then `rest\n`: a backend that stalls mid-body, for
/// testing a proxy's body timeout. The length is declared, so a cut-off shows.
fn stall(ms: &str) -> Response<ReplyBody> {
    let Ok(ms) = ms.parse::<u64>() else {
        return text(
            StatusCode::BAD_REQUEST,
            Bytes::from_static(b"expected /stall/MS with MS a pause in milliseconds"),
        );
    };
    let mut resp = Response::new(ReplyBody::Stall {
        first: Some(Bytes::from_static(b"first\n")),
        pause: Box::pin(tokio::time::sleep(Duration::from_millis(ms))),
        rest: Some(Bytes::from_static(b"rest\n")),
    });
    let headers = resp.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    headers.insert(CONTENT_LENGTH, HeaderValue::from(11u64));
    resp
}

/// Byte `i` of every `/bytes/N` response, exposed so clients can verify payloads.
pub fn pattern_byte(i: u64) -> u8 {
    ((i % PATTERN_PERIOD * 31 + 7) % PATTERN_PERIOD) as u8
}

/// One chunk plus a period of slack, so any offset's chunk is a zero-copy slice.
fn pattern_buffer() -> &'static Bytes {
    static BUF: OnceLock<Bytes> = OnceLock::new();
    BUF.get_or_init(|| {
        (0..(CHUNK as u64 + PATTERN_PERIOD))
            .map(pattern_byte)
            .collect::<Vec<u8>>()
            .into()
    })
}

/// Response body for every route; an enum rather than a boxed trait object
/// to keep the hot path free of per-request allocations.
pub(crate) enum ReplyBody {
    Full(Option<Bytes>),
    /// Frames are forwarded as they arrive, so echoing never buffers a whole body.
    Echo(Incoming),
    Pattern {
        offset: u64,
        remaining: u64,
    },
    Stall {
        first: Option<Bytes>,
        pause: Pin<Box<tokio::time::Sleep>>,
        rest: Option<Bytes>,
    },
}

impl Body for ReplyBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        match self.get_mut() {
            ReplyBody::Full(data) => Poll::Ready(data.take().map(|d| Ok(Frame::data(d)))),
            ReplyBody::Echo(incoming) => Pin::new(incoming).poll_frame(cx),
            ReplyBody::Pattern { offset, remaining } => {
                if *remaining == 0 {
                    return Poll::Ready(None);
                }
                let len = (*remaining).min(CHUNK as u64) as usize;
                let start = (*offset % PATTERN_PERIOD) as usize;
                *offset += len as u64;
                *remaining -= len as u64;
                let chunk = pattern_buffer().slice(start..start + len);
                Poll::Ready(Some(Ok(Frame::data(chunk))))
            }
            ReplyBody::Stall { first, pause, rest } => {
                if let Some(first) = first.take() {
                    return Poll::Ready(Some(Ok(Frame::data(first))));
                }
                std::task::ready!(pause.as_mut().poll(cx));
                Poll::Ready(rest.take().map(|r| Ok(Frame::data(r))))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            ReplyBody::Full(data) => data.as_ref().is_none_or(Bytes::is_empty),
            ReplyBody::Echo(incoming) => incoming.is_end_stream(),
            ReplyBody::Pattern { remaining, .. } => *remaining == 0,
            ReplyBody::Stall { rest, .. } => rest.is_none(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            ReplyBody::Full(data) => {
                SizeHint::with_exact(data.as_ref().map_or(0, |d| d.len() as u64))
            }
            ReplyBody::Echo(incoming) => incoming.size_hint(),
            ReplyBody::Pattern { remaining, .. } => SizeHint::with_exact(*remaining),
            ReplyBody::Stall { first, rest, .. } => SizeHint::with_exact(
                first.as_ref().map_or(0, |b| b.len() as u64)
                    + rest.as_ref().map_or(0, |b| b.len() as u64),
            ),
        }
    }
}
