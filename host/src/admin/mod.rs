//! The admin listener: the live dashboard, Prometheus `/metrics`, a JSON API, a Server-Sent
//! Events stream and the policy selector, on their own port (default 127.0.0.1:5002, the
//! study's dashboard port).
//!
//! It only reads what the proxy already keeps (router status and counters, upstream
//! connection counters, the telemetry thread's aggregates) and never touches the request
//! path: once a second a sampler task turns those into one update that every open page
//! receives, so the cost is the same at 5 req/s and at 20k req/s. The one write is a policy
//! switch, which goes through the reloader like a file change does.
//!
//! Without a token it listens on loopback only; with one, every request must carry it.
mod auth;
mod body;
mod metrics;
mod page;
mod state;
mod stream;
mod swap;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::reload::Reloader;
use bytes::Bytes;
use http::header::{self, HeaderName, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::watch;

use switchyard_input::UsageError;

use crate::proxy::ProxyState;
use crate::telemetry::Telemetry;

pub use auth::TOKEN_ENV;
use body::AdminBody;

/// The admin port when `--admin` is not given: the study's dashboard port.
pub const DEFAULT_ADDR: &str = "127.0.0.1:5002";

/// Where and how to serve, validated from the command line.
#[derive(Clone)]
pub struct AdminConfig {
    pub addr: SocketAddr,
    /// `--admin` was given: failing to bind it is then an error, not a warning.
    pub explicit: bool,
    pub token: Option<String>,
}

impl std::fmt::Debug for AdminConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The token stays out of logs and panic messages.
        f.debug_struct("AdminConfig")
            .field("addr", &self.addr)
            .field("explicit", &self.explicit)
            .field("token", &self.token.as_ref().map(|_| "<set>"))
            .finish()
    }
}

impl AdminConfig {
    /// `--admin` (else [`DEFAULT_ADDR`]) and `--admin-token`. Refuses a non-loopback
    /// address without a token: the API can switch the policy, so it must not be open to
    /// the network.
    pub fn new(addr: Option<SocketAddr>, token: Option<&str>) -> Result<AdminConfig, UsageError> {
        let token = auth::check_token(token)?;
        let (addr, explicit) = match addr {
            Some(a) => (a, true),
            None => (
                DEFAULT_ADDR.parse().map_err(|_| {
                    UsageError::new(format!("bad default admin address {DEFAULT_ADDR}"))
                })?,
                false,
            ),
        };
        auth::check_bind(addr, token.as_deref())?;
        Ok(AdminConfig {
            addr,
            explicit,
            token,
        })
    }
}

/// What the admin server reads and drives.
pub struct AdminContext {
    pub shared: Arc<ProxyState>,
    pub telemetry: Arc<Telemetry>,
    pub reloader: Reloader,
    /// The proxy's bound listen address, for `/api/state`.
    pub listen: SocketAddr,
    /// The folder of `--policy`: the selector offers its `*.wasm` files.
    pub policy_dir: PathBuf,
}

/// Everything a request handler needs.
struct Ctx {
    app: AdminContext,
    auth: auth::Auth,
    hub: stream::Hub,
    /// What `/metrics` encodes: collectors over the proxy's own counters.
    metrics: prometheus_client::registry::Registry,
    addr: SocketAddr,
    stop: watch::Receiver<bool>,
}

/// A running admin server; [`AdminHandle::shutdown`] stops it.
pub struct AdminHandle {
    addr: SocketAddr,
    stop: watch::Sender<bool>,
    server: tokio::task::JoinHandle<()>,
    sampler: tokio::task::JoinHandle<()>,
}

impl AdminHandle {
    /// The bound address (useful with port 0).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops accepting, ends event streams and waits for every task to end, so that no
    /// admin request reads the proxy's state while it shuts down.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        let _ = self.server.await;
        let _ = self.sampler.await;
    }
}

/// Binds the admin listener and starts serving on the current Tokio runtime. Returns
/// `None` when the default port is taken (another proxy runs): the proxy still starts and
/// a warning says how to get a dashboard. A taken `--admin` port is an error.
pub async fn start(cfg: AdminConfig, app: AdminContext) -> anyhow::Result<Option<AdminHandle>> {
    let listener = match TcpListener::bind(cfg.addr).await {
        Ok(l) => l,
        Err(e) if !cfg.explicit && e.kind() == std::io::ErrorKind::AddrInUse => {
            tracing::warn!(
                "admin port {} is in use: no dashboard for this proxy; pass --admin ADDR (or --no-admin)",
                cfg.addr
            );
            return Ok(None);
        }
        Err(e) => {
            return Err(UsageError::new(format!(
            "cannot listen for admin requests on {}: {e}; pass another --admin ADDR or --no-admin",
            cfg.addr
        ))
            .into())
        }
    };
    let addr = listener.local_addr()?;
    let (stop_tx, stop) = watch::channel(false);
    let hub = stream::Hub::new();
    let ctx = Arc::new(Ctx {
        metrics: metrics::registry(&app),
        app,
        auth: auth::Auth::new(cfg.token),
        hub,
        addr,
        stop: stop.clone(),
    });
    let sampler = tokio::spawn(stream::run_sampler(ctx.clone(), stop.clone()));
    let server = tokio::spawn(serve(listener, ctx, stop));
    Ok(Some(AdminHandle {
        addr,
        stop: stop_tx,
        server,
        sampler,
    }))
}

/// How long admin connections (an open dashboard's event stream, say) may take to finish
/// at shutdown before they are cut.
const ADMIN_GRACE: Duration = Duration::from_secs(1);

/// Accepts until stopped, then gives connections a moment to finish and cuts the rest:
/// whatever is left holds `ctx` (and so the telemetry).
async fn serve(listener: TcpListener, ctx: Arc<Ctx>, mut stop: watch::Receiver<bool>) {
    let mut builder = http1::Builder::new();
    builder.keep_alive(true);
    let connection = |stream, _peer, draining| {
        let ctx = ctx.clone();
        let service = service_fn(move |req| handle(ctx.clone(), req));
        let conn = builder.serve_connection(TokioIo::new(stream), service);
        switchyard_listener::until_drained(conn, draining)
    };
    switchyard_listener::serve(listener, connection, stopped(&mut stop), ADMIN_GRACE).await;
}

async fn handle(ctx: Arc<Ctx>, req: Request<Incoming>) -> Result<Response<AdminBody>, Infallible> {
    if let Some(refused) = ctx.auth.refusal(&req) {
        return Ok(refused);
    }
    let path = req.uri().path().to_string();
    let resp = match (req.method(), path.as_str()) {
        (&Method::GET | &Method::HEAD, "/" | "/index.html") => page::index(),
        (&Method::GET | &Method::HEAD, p) if p.starts_with("/assets/") => page::asset(p),
        (&Method::GET | &Method::HEAD, "/metrics") => metrics::response(&ctx, req.headers()),
        (&Method::GET | &Method::HEAD, "/api/state") => state::response(&ctx),
        (&Method::GET, "/api/stream") => stream::response(&ctx),
        (&Method::GET | &Method::HEAD, "/api/policies") => swap::list_response(&ctx),
        (&Method::POST, "/api/policy") => swap::switch_response(&ctx, req).await,
        (_, "/" | "/index.html" | "/metrics" | "/api/state" | "/api/stream" | "/api/policies") => {
            method_not_allowed("GET")
        }
        (_, "/api/policy") => method_not_allowed("POST"),
        _ => text(
            StatusCode::NOT_FOUND,
            "not found: the admin port serves the dashboard (/), /metrics and /api/*; \
             it does not proxy: send traffic to the proxy's --listen address\n",
        ),
    };
    Ok(resp)
}

/// Resolves once the admin server is told to stop. (The guard `wait_for` returns is not
/// `Send`; it is dropped here, inside, so spawned tasks can await this.)
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

fn method_not_allowed(allow: &'static str) -> Response<AdminBody> {
    with_headers(
        text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n"),
        &[(header::ALLOW, allow)],
    )
}

/// Headers every fixed response carries.
const COMMON_HEADERS: [(HeaderName, &str); 2] = [
    // Live data: never serve it from a cache.
    (header::CACHE_CONTROL, "no-store"),
    (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
];

/// `resp` with each (name, fixed value) set, replacing any value it had.
fn with_headers(
    mut resp: Response<AdminBody>,
    headers: &[(HeaderName, &'static str)],
) -> Response<AdminBody> {
    let h = resp.headers_mut();
    for (name, value) in headers {
        h.insert(name.clone(), HeaderValue::from_static(value));
    }
    resp
}

/// A response with a fixed body and content type.
fn respond(status: StatusCode, content_type: &'static str, body: Bytes) -> Response<AdminBody> {
    let mut resp = Response::new(AdminBody::full(body));
    *resp.status_mut() = status;
    let resp = with_headers(resp, &[(header::CONTENT_TYPE, content_type)]);
    with_headers(resp, &COMMON_HEADERS)
}

fn text(status: StatusCode, body: impl Into<Bytes>) -> Response<AdminBody> {
    respond(status, "text/plain; charset=utf-8", body.into())
}

fn json(status: StatusCode, value: &impl serde::Serialize) -> Response<AdminBody> {
    match serde_json::to_vec(value) {
        Ok(v) => respond(status, "application/json", v.into()),
        Err(e) => text(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("cannot encode JSON: {e}\n"),
        ),
    }
}

/// `{"error": message}` with `status`.
fn json_error(status: StatusCode, message: impl Into<String>) -> Response<AdminBody> {
    json(
        status,
        &serde_json::json!({ "ok": false, "error": message.into() }),
    )
}
