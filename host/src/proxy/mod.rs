//! The listener and forwarding: accepts client connections, asks the router for a backend,
//! relays the exchange through the upstream connections, and reports what happened.
mod body;
mod conn;
pub mod edge;
mod headers;
mod probe;
pub mod request_id;
mod sniff;
pub mod tls;
mod tunnel;
mod upgrade;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use http::{Request, Response, StatusCode, Uri};
use hyper::body::Incoming;
use hyper::service::service_fn;
use switchyard_runtime::{Outcome, RequestView, Router};
use tokio::net::TcpListener;

use body::Completion;
pub use body::ProxyBody;
pub use probe::HttpProber;

use crate::telemetry::EventSink;
use switchyard_upstream::{Upload, UpstreamError, Upstreams};

/// What every request handler shares.
pub struct ProxyState {
    pub router: Router,
    pub upstreams: Upstreams,
    pub events: EventSink,
    /// Requests refused before routing, by reason.
    pub refusals: edge::Refusals,
    /// Client connections open, and whether the ones left at shutdown are being cut.
    pub connections: Arc<switchyard_listener::Connections>,
    pub request_ids: request_id::RequestIds,
    /// The zero of the monotonic `now_ns` that policies see.
    pub epoch: Instant,
}

impl ProxyState {
    pub fn now_ns(&self) -> u64 {
        self.epoch.elapsed().as_nanos() as u64
    }

    /// Backend ids, indexed like events and upstreams.
    pub fn backend_ids(&self) -> Vec<&str> {
        self.router
            .backends()
            .iter()
            .map(|b| b.id.as_str())
            .collect()
    }
}

/// What clients may ask of the listener (README, "Limits").
#[derive(Debug, Clone, Copy)]
pub struct EdgeLimits {
    /// How long requests in flight may take to finish at shutdown.
    pub grace: Duration,
    /// From when a connection is ready for a request (accepted, or its previous response
    /// sent) to the last byte of the request's head: bounds slow heads and idle keep-alive
    /// connections alike (hyper starts the timer when it starts waiting for a head).
    pub header_timeout: Duration,
    /// Request line plus headers, in bytes; beyond it: 431 and the connection closed.
    pub max_header_bytes: usize,
    /// Header lines; beyond it: 431 and the connection closed.
    pub max_headers: usize,
    /// Client connections open at once; at the cap the listener stops accepting.
    pub max_connections: usize,
    /// How long an upgraded connection (WebSocket) may stay without a byte either way.
    pub tunnel_idle_timeout: Duration,
}

/// One client connection, shared by its requests.
struct Peer {
    client: SocketAddr,
    /// Formatted once per connection, not per request.
    client_ip: http::HeaderValue,
    /// The connection is TLS (`X-Forwarded-Proto: https`).
    secure: bool,
    /// Where an upgraded request leaves its tunnel.
    tunnel: tunnel::Slot,
    tunnel_idle: Duration,
}

/// Serves until `shutdown` resolves, then stops accepting and waits up to `grace` for
/// requests in flight to finish; connections still open then are cut. With `tls`, every
/// connection is TLS (HTTP/1.1 or HTTP/2 by ALPN); without, HTTP/1.1 or h2c by preface.
pub async fn serve(
    listener: TcpListener,
    shared: Arc<ProxyState>,
    shutdown: impl std::future::Future<Output = ()>,
    limits: EdgeLimits,
    tls: Option<Arc<tls::Terminator>>,
) -> switchyard_listener::Drained {
    let grace = limits.grace;
    let protocols = Arc::new(conn::Protocols::new(&limits));
    let secure = tls.is_some();
    let connection = |stream, client, draining| {
        let shared = shared.clone();
        let peer = Arc::new(Peer {
            client,
            client_ip: headers::client_ip(client),
            secure,
            tunnel: tunnel::Slot::default(),
            tunnel_idle: limits.tunnel_idle_timeout,
        });
        let requests = peer.clone();
        let service = service_fn(move |req| handle(shared.clone(), requests.clone(), req));
        let serving = conn::serve(
            stream,
            client,
            service,
            protocols.clone(),
            tls.clone(),
            draining,
        );
        async move {
            serving.await;
            // An upgraded request's tunnel runs here, once hyper has let go of the
            // connection: in the same task, so the cap and the shutdown grace cover it.
            if let Some(tunnel) = peer.tunnel.take() {
                tunnel.await;
            }
        }
    };
    let options = switchyard_listener::Options {
        grace,
        max_connections: limits.max_connections,
        connections: shared.connections.clone(),
    };
    let drained = switchyard_listener::serve_with(listener, connection, shutdown, options).await;
    if drained.cut > 0 {
        tracing::warn!(
            "{} connections still had requests in flight after {grace:?}; stopping anyway",
            drained.cut
        );
    }
    drained
}

/// The request as the policy may read it.
struct View<'a> {
    req: &'a Request<Incoming>,
    client: SocketAddr,
}

impl RequestView for View<'_> {
    fn method(&self) -> &str {
        self.req.method().as_str()
    }
    fn path_and_query(&self) -> &str {
        self.req
            .uri()
            .path_and_query()
            .map(|p| p.as_str())
            .unwrap_or("/")
    }
    fn authority(&self) -> &str {
        self.req
            .headers()
            .get(http::header::HOST)
            .and_then(|h| h.to_str().ok())
            .or_else(|| self.req.uri().authority().map(|a| a.as_str()))
            .unwrap_or("")
    }
    fn client(&self) -> Option<SocketAddr> {
        Some(self.client)
    }
    fn header(&self, name: &str) -> Option<&str> {
        self.req.headers().get(name).and_then(|v| v.to_str().ok())
    }
    fn for_each_header(&self, f: &mut dyn FnMut(&str, &str)) {
        for (name, value) in self.req.headers() {
            if let Ok(value) = value.to_str() {
                f(name.as_str(), value);
            }
        }
    }
}

async fn handle(
    shared: Arc<ProxyState>,
    peer: Arc<Peer>,
    mut req: Request<Incoming>,
) -> Result<Response<ProxyBody>, Infallible> {
    if let Err(refusal) = edge::admit(&mut req) {
        shared.refusals.count(refusal);
        return Ok(local(refusal.status(), refusal.message().into()));
    }
    // Before `choose`: a policy may read it like any other header.
    let request_id = shared.request_ids.assign(req.headers_mut());
    let upgrade = upgrade::requested(&req);
    // Taken before the request moves on: the client's side of a tunnel, if it becomes one.
    let client_upgrade = upgrade.is_some().then(|| hyper::upgrade::on(&mut req));
    let choice = shared.router.choose(
        &View {
            req: &req,
            client: peer.client,
        },
        shared.now_ns(),
    );
    let backend = choice.backend;
    let Some(up) = shared.upstreams.get(backend) else {
        // The router only answers indexes of the backend list the upstreams were built from.
        // Observed and logged all the same: every choice is.
        Completion::new(shared.clone(), choice, request_id).finish(Outcome::Broken);
        return Ok(local(
            StatusCode::INTERNAL_SERVER_ERROR,
            "no such backend\n".into(),
        ));
    };
    // Origin-form towards the backend, whatever form the client used (most already do).
    if req.uri().scheme().is_some() || req.uri().authority().is_some() {
        let path = req
            .uri()
            .path_and_query()
            .map(|p| p.as_str())
            .unwrap_or("/");
        if let Ok(uri) = Uri::builder().path_and_query(path).build() {
            *req.uri_mut() = uri;
        }
    }
    headers::to_upstream(req.headers_mut(), &peer.client_ip, &up.authority);
    if peer.secure {
        headers::forwarded_https(req.headers_mut());
    }
    if let Some(upgrade) = upgrade {
        upgrade::keep(req.headers_mut(), upgrade);
    }

    // No `.await` since `choose`: the choice reaches its completion, which observes and
    // logs the request however it ends (dropped unfinished: aborted).
    let mut completion = Completion::new(shared.clone(), choice, request_id);
    let resp = match shared.upstreams.send(backend, req.map(Upload::new)).await {
        Ok((resp, lease)) => {
            completion.status = resp.status().as_u16();
            completion.reused = lease.reused();
            completion.lease = Some(lease);
            resp
        }
        Err(e) => return Ok(failed(&shared, completion, e)),
    };
    if resp.status() == StatusCode::SWITCHING_PROTOCOLS {
        return Ok(match client_upgrade {
            Some(client) => switch(&peer, resp, client, completion),
            // hyper refuses a 101 to a request that asked for no upgrade; never relayed.
            None => failed(
                &shared,
                completion,
                UpstreamError::Broken("101 to a request that asked for no upgrade".into()),
            ),
        });
    }
    Ok(relay(&shared, resp, completion))
}

/// The backend's response, on its way to the client.
fn relay(
    shared: &ProxyState,
    mut resp: Response<switchyard_upstream::Body>,
    mut completion: Completion,
) -> Response<ProxyBody> {
    completion.collect_headers(resp.headers());
    headers::to_client(resp.headers_mut());
    let (parts, inner) = resp.into_parts();
    let body = if http_body::Body::is_end_stream(&inner) {
        // Nothing will poll an empty body; the exchange is complete now.
        completion.finish(Outcome::Response);
        ProxyBody::local(String::new())
    } else {
        ProxyBody::relay(inner, completion, shared.upstreams.body_timeout())
    };
    Response::from_parts(parts, body)
}

/// The backend switched protocols: the 101 goes to the client, and the tunnel is left for
/// the connection's task to run once hyper has sent it.
fn switch(
    peer: &Peer,
    mut resp: Response<switchyard_upstream::Body>,
    client: hyper::upgrade::OnUpgrade,
    completion: Completion,
) -> Response<ProxyBody> {
    let backend = hyper::upgrade::on(&mut resp);
    let protocol = resp.headers().get(http::header::UPGRADE).cloned();
    headers::to_client(resp.headers_mut());
    if let Some(protocol) = protocol {
        upgrade::keep(resp.headers_mut(), protocol);
    }
    peer.tunnel
        .put(tunnel::run(client, backend, peer.tunnel_idle, completion));
    let (parts, _) = resp.into_parts();
    Response::from_parts(parts, ProxyBody::local(String::new()))
}

/// No response from the backend: ours instead, and the outcome that says why.
fn failed(
    shared: &ProxyState,
    mut completion: Completion,
    e: UpstreamError,
) -> Response<ProxyBody> {
    let (status, outcome) = match &e {
        UpstreamError::Connect(_) => (StatusCode::BAD_GATEWAY, Outcome::ConnectError),
        UpstreamError::Timeout(_) => (StatusCode::GATEWAY_TIMEOUT, Outcome::Timeout),
        UpstreamError::Broken(_) => (StatusCode::BAD_GATEWAY, Outcome::Broken),
        // The client's fault: the backend is not blamed (the policy sees an abort).
        UpstreamError::UploadStalled(_) => (StatusCode::REQUEST_TIMEOUT, Outcome::Aborted),
    };
    completion.status = status.as_u16();
    let backend = completion.backend;
    completion.finish(outcome);
    let id = shared
        .router
        .backends()
        .get(backend)
        .map(|b| format!("{} ({})", b.id, b.url))
        .unwrap_or_default();
    local(status, format!("backend {id}: {e}\n"))
}

fn local(status: StatusCode, text: String) -> Response<ProxyBody> {
    let mut resp = Response::new(ProxyBody::local(text));
    *resp.status_mut() = status;
    resp
}
