//! One client connection: TLS first when the listener has it, then HTTP/1.1 or HTTP/2
//! (ALPN over TLS; the client preface, "prior knowledge", on the plain listener), each
//! with the edge's limits.
//!
//! Why not hyper-util's `auto::Builder`: its HTTP/1 side (0.1.21) cannot set
//! `max_header_size`, which is `--max-header-bytes` (431 beyond it). Here each protocol
//! gets hyper's own builder with every setting it has; the plain listener tells them apart
//! by the connection's first read (`sniff`), which HTTP/1 then parses as its own.
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http::{Request, Response};
use hyper::body::Incoming;
use hyper::rt::bounds::Http2ServerConnExec;
use hyper::server::conn::{http1, http2};
use hyper::service::Service;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use switchyard_listener::{until_drained, until_drained_by, Draining};
use tokio::net::TcpStream;

use super::sniff::Sniffed;
use super::tls::Terminator;
use super::{EdgeLimits, ProxyBody};

/// hyper's default header-line limit (`http1::Builder::max_headers`).
const HYPER_MAX_HEADERS: usize = 100;

/// Streams one HTTP/2 client may have open at once. 100 is the minimum RFC 9113 §6.5.2
/// asks a peer not to go below, and about nginx's 128: enough for a browser's page, and
/// it bounds what one connection can make the proxy hold (each stream may be a request
/// in flight to a backend).
pub(super) const H2_MAX_CONCURRENT_STREAMS: u32 = 100;

/// Both protocols' servers, configured once.
pub(super) struct Protocols {
    h1: http1::Builder,
    h2: http2::Builder<TokioExecutor>,
    header_timeout: Duration,
}

impl Protocols {
    pub(super) fn new(limits: &EdgeLimits) -> Self {
        let mut h1 = http1::Builder::new();
        h1.keep_alive(true)
            .timer(TokioTimer::new())
            .header_read_timeout(limits.header_timeout)
            .max_header_size(limits.max_header_bytes);
        // hyper's own limit is 100 on the stack; setting any other moves the parsed headers
        // to the heap (hyper measures ~5 % per request), so only a non-default value is set.
        if limits.max_headers != HYPER_MAX_HEADERS {
            h1.max_headers(limits.max_headers);
        }
        let mut h2 = http2::Builder::new(TokioExecutor::new());
        h2.timer(TokioTimer::new())
            .max_concurrent_streams(H2_MAX_CONCURRENT_STREAMS)
            // The same bound on a head as HTTP/1's; beyond it h2 answers 431.
            .max_header_list_size(u32::try_from(limits.max_header_bytes).unwrap_or(u32::MAX))
            // A client gone without closing TCP is noticed (no PONG within 20 s).
            .keep_alive_interval(limits.header_timeout);
        Protocols {
            h1,
            h2,
            header_timeout: limits.header_timeout,
        }
    }
}

/// Serves one accepted connection until it ends or the drain finishes it.
pub(super) async fn serve<S>(
    tcp: TcpStream,
    client: SocketAddr,
    service: S,
    protocols: Arc<Protocols>,
    tls: Option<Arc<Terminator>>,
    mut draining: Draining,
) where
    S: Service<Request<Incoming>, Response = Response<ProxyBody>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    TokioExecutor: Http2ServerConnExec<S::Future, ProxyBody>,
{
    let Some(tls) = tls else {
        // Bounded like a head: a client that sends nothing is gone after --header-timeout.
        let sniffed = tokio::select! {
            // The sniff first: it is usually ready at once, and then nothing else is set up.
            biased;
            sniffed = tokio::time::timeout(protocols.header_timeout, Sniffed::read(tcp)) => {
                match sniffed {
                    Ok(Ok(sniffed)) => sniffed,
                    _ => return,
                }
            }
            () = draining.started() => return,
        };
        let (io, h2) = sniffed;
        return speak(TokioIo::new(io), h2, service, &protocols, draining).await;
    };
    let accepted = tokio::select! {
        biased;
        accepted = tls.accept(tcp, client) => accepted,
        () = draining.started() => return,
    };
    if let Some(a) = accepted {
        speak(TokioIo::new(a.stream), a.h2, service, &protocols, draining).await;
    }
}

/// HTTP/1.1 or HTTP/2 on an established stream.
async fn speak<I, S>(io: I, h2: bool, service: S, protocols: &Protocols, draining: Draining)
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    S: Service<Request<Incoming>, Response = Response<ProxyBody>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    TokioExecutor: Http2ServerConnExec<S::Future, ProxyBody>,
{
    if h2 {
        until_drained(protocols.h2.serve_connection(io, service), draining).await;
    } else {
        // Upgrades enabled: a request the backend switches to another protocol (WebSocket)
        // leaves its tunnel for the connection's task (`proxy::tunnel`).
        let h1 = protocols.h1.serve_connection(io, service).with_upgrades();
        until_drained_by(h1, draining, |c| c.graceful_shutdown()).await;
    }
}
