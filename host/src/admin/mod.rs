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

use bytes::Bytes;
use http::{header, Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use hyper_util::server::graceful::GracefulShutdown;
use switchyard_runtime::Reloader;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::app::BadInput;
use crate::cli::ServeArgs;
use crate::proxy::Shared;
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
    /// Reads `--admin`, `--no-admin`, `--admin-token` and `$SWITCHYARD_ADMIN_TOKEN`. `None`
    /// with `--no-admin`. Refuses a non-loopback address without a token: the API can
    /// switch the policy, so it must not be open to the network.
    pub fn from_args(args: &ServeArgs) -> Result<Option<AdminConfig>, BadInput> {
        if args.no_admin {
            return Ok(None);
        }
        let token = auth::resolve_token(
            args.admin_token.as_deref(),
            std::env::var(TOKEN_ENV).ok().as_deref(),
        )?;
        let (addr, explicit) = match args.admin {
            Some(a) => (a, true),
            None => (
                DEFAULT_ADDR
                    .parse()
                    .map_err(|_| BadInput(format!("bad default admin address {DEFAULT_ADDR}")))?,
                false,
            ),
        };
        auth::check_bind(addr, token.as_deref())?;
        Ok(Some(AdminConfig {
            addr,
            explicit,
            token,
        }))
    }
}

/// What the admin server reads and drives.
pub struct AdminContext {
    pub shared: Arc<Shared>,
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

    /// Stops accepting, ends event streams and waits for every task to let go of the
    /// proxy's state (the caller then unwraps the telemetry `Arc` to flush the log).
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
            return Err(BadInput(format!(
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

/// Accepts until stopped, then gives connections a moment to finish and drops the rest.
async fn serve(listener: TcpListener, ctx: Arc<Ctx>, mut stop: watch::Receiver<bool>) {
    let graceful = GracefulShutdown::new();
    let mut conns = JoinSet::new();
    loop {
        let (stream, _) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!("admin accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = stopped(&mut stop) => break,
        };
        while conns.try_join_next().is_some() {}
        let ctx = ctx.clone();
        let service = service_fn(move |req| handle(ctx.clone(), req));
        let conn = http1::Builder::new()
            .keep_alive(true)
            .serve_connection(TokioIo::new(stream), service);
        let conn = graceful.watch(conn);
        conns.spawn(async move {
            let _ = conn.await;
        });
    }
    drop(listener);
    let _ = tokio::time::timeout(Duration::from_secs(1), graceful.shutdown()).await;
    // Whatever is left holds `ctx` (and so the telemetry): end it now.
    conns.shutdown().await;
}

async fn handle(ctx: Arc<Ctx>, req: Request<Incoming>) -> Result<Response<AdminBody>, Infallible> {
    if let Some(refused) = ctx.auth.refusal(&req) {
        return Ok(refused);
    }
    let path = req.uri().path().to_string();
    let resp = match (req.method(), path.as_str()) {
        (&Method::GET | &Method::HEAD, "/" | "/index.html") => page::index(),
        (&Method::GET | &Method::HEAD, p) if p.starts_with("/assets/") => page::asset(p),
        (&Method::GET | &Method::HEAD, "/metrics") => metrics::response(&ctx),
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
    let mut resp = text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n");
    resp.headers_mut()
        .insert(header::ALLOW, header::HeaderValue::from_static(allow));
    resp
}

/// A response with a fixed body and content type.
fn respond(status: StatusCode, content_type: &'static str, body: Bytes) -> Response<AdminBody> {
    let mut resp = Response::new(AdminBody::full(body));
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static(content_type),
    );
    // Live data: never serve it from a cache.
    h.insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static("no-store"),
    );
    h.insert(
        "x-content-type-options",
        header::HeaderValue::from_static("nosniff"),
    );
    resp
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
