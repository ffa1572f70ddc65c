//! Wiring for the proxy command: validates the inputs (every failure here is the
//! operator's to fix, so it carries the fix), builds the pieces, serves until Ctrl+C or
//! SIGTERM, then flushes the log.
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use switchyard_runtime::{Backend, Limits, PolicyRuntime, Reloader, Router, RouterOptions};

use crate::cli::{BackendSpec, ServeArgs};
use crate::proxy::{self, Shared};
use crate::telemetry::{Telemetry, TelemetryConfig};
use crate::upstream::{Mode, Options as UpstreamOptions, Protocol, Upstreams};

/// A start-up failure: bad input, reported in one line with exit code 2.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct BadInput(pub String);

/// A proxy that is bound and ready, for `main` and for in-process tests.
pub struct Running {
    pub shared: Arc<Shared>,
    pub addr: std::net::SocketAddr,
    pub log: Option<PathBuf>,
    /// Swaps policies: on file changes (unless --no-watch), SIGHUP, or the admin API.
    pub reloader: Reloader,
    /// Where the admin listener (dashboard, /metrics, API) is bound; None when off.
    pub admin_addr: Option<std::net::SocketAddr>,
    admin: Option<crate::admin::AdminHandle>,
    telemetry: Arc<Telemetry>,
    stop: tokio::sync::watch::Sender<bool>,
    server: tokio::task::JoinHandle<()>,
    console: Option<tokio::task::JoinHandle<()>>,
}

impl Running {
    /// Stops accepting, lets requests in flight finish, flushes the log. Returns the totals.
    pub async fn shutdown(self) -> anyhow::Result<crate::telemetry::Totals> {
        // First, so that it lets go of the telemetry before the log is flushed.
        if let Some(admin) = self.admin {
            admin.shutdown().await;
        }
        let _ = self.stop.send(true);
        let _ = self.server.await;
        if let Some(console) = self.console {
            console.abort();
        }
        self.telemetry.finish()
    }

    pub fn telemetry(&self) -> &Telemetry {
        &self.telemetry
    }
}

/// Validates `args`, loads the policy, binds the listener and starts serving on the
/// current Tokio runtime.
pub async fn start(args: &ServeArgs, console: bool) -> Result<Running, anyhow::Error> {
    let admin_config = crate::admin::AdminConfig::from_args(args)?;
    if args.upstream_protocol == Protocol::H2c && args.upstream == Mode::NonPersistent {
        return Err(BadInput(
            "--upstream-protocol h2c shares a few connections among all requests, so it cannot open one per request: use --upstream persistent with h2c, or http1 for non-persistent".into(),
        )
        .into());
    }
    let specs = if args.backends.is_empty() {
        BackendSpec::study()
    } else {
        args.backends.clone()
    };
    let mut backends = Vec::new();
    let mut addrs = Vec::new();
    for (i, spec) in specs.iter().enumerate() {
        let addr = spec.resolve().map_err(BadInput)?;
        let id = spec.id.clone().unwrap_or_else(|| default_id(i));
        if backends.iter().any(|b: &Backend| b.id == id) {
            return Err(BadInput(format!(
                "two backends are called `{id}`: give each --backend a distinct ID=, e.g. A=http://..."
            ))
            .into());
        }
        backends.push(Backend {
            id,
            url: spec.url.clone(),
            weight: spec.weight,
        });
        addrs.push((addr, spec.authority.clone()));
    }

    let runtime = PolicyRuntime::new()?;
    // The built-in round-robin is a benchmark baseline: no policy file is read.
    let component = if args.builtin_rr {
        None
    } else {
        Some(
            runtime
                .load(&args.policy)
                .map_err(|e| BadInput(e.to_string()))?,
        )
    };
    let seed = args.seed.unwrap_or_else(|| {
        SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1)
    });
    let options = RouterOptions {
        limits: Limits {
            deadline: args.policy_deadline,
            memory_bytes: (args.policy_memory_mib as usize) << 20,
        },
        replay: args.replay,
        seed,
        ..RouterOptions::default()
    };
    let epoch = Instant::now();
    let router = match &component {
        Some(component) => Router::new(
            component.clone(),
            backends.clone(),
            args.policy_args.clone(),
            options,
            0,
        )
        .map_err(|e| BadInput(e.to_string()))?,
        None => Router::builtin_round_robin(backends.clone(), options),
    };

    let listener = bind(args.listen)?;
    let addr = listener.local_addr()?;

    let log = if args.no_log {
        None
    } else {
        Some(args.log.clone().unwrap_or_else(|| default_log_path(args)))
    };
    let ids: Vec<(String, String)> = backends
        .iter()
        .map(|b| (b.id.clone(), b.url.clone()))
        .collect();
    let telemetry = Arc::new(
        Telemetry::start(TelemetryConfig {
            csv: log.clone(),
            backends: ids.clone(),
            upstream: args.upstream.as_str(),
            verbose: args.verbose,
        })
        .map_err(|e| BadInput(format!("{e:#}")))?,
    );
    let shared = Arc::new(Shared {
        router,
        upstreams: Upstreams::new(
            addrs,
            UpstreamOptions {
                mode: args.upstream,
                protocol: args.upstream_protocol,
                timeout: args.timeout,
                body_timeout: args.body_timeout,
                h2_keepalive: Some(args.h2_keepalive).filter(|d| !d.is_zero()),
                h2_connections: args
                    .threads
                    .map(usize::from)
                    .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get())),
            },
        ),
        events: telemetry.sink(),
        epoch,
    });
    if console {
        let status = shared.router.status();
        crate::console::print_banner(&crate::console::Banner {
            listen: addr,
            policy_name: &status.name,
            policy_file: &status.file,
            compile: component
                .as_ref()
                .map(|c| c.compile_time())
                .unwrap_or_default(),
            backends: &ids,
            upstream: &format!(
                "{}, {}",
                args.upstream.as_str(),
                args.upstream_protocol.as_str()
            ),
            timeout: args.timeout,
            log: log.as_deref(),
        });
    }
    let clock_shared = shared.clone();
    let reloader = Reloader::start(
        runtime,
        shared.router.clone(),
        args.policy.clone(),
        Arc::new(move || clock_shared.now_ns()),
        !args.no_watch && !args.builtin_rr,
    )
    .map_err(|e| {
        BadInput(format!(
            "cannot watch {}: {e:#}; pass --no-watch",
            args.policy.display()
        ))
    })?;
    let admin = match admin_config {
        Some(cfg) => {
            let ctx = crate::admin::AdminContext {
                shared: shared.clone(),
                telemetry: telemetry.clone(),
                reloader: reloader.clone(),
                listen: addr,
                policy_dir: args.policy.parent().map(PathBuf::from).unwrap_or_default(),
            };
            crate::admin::start(cfg, ctx).await?
        }
        None => None,
    };
    let admin_addr = admin.as_ref().map(|a| a.addr());
    if let (true, Some(a)) = (console, admin_addr) {
        crate::say!("  dashboard http://{a}/  (metrics /metrics, API /api/state)");
    }
    let (stop, mut stopped) = tokio::sync::watch::channel(false);
    let server = tokio::spawn(proxy::serve(
        listener,
        shared.clone(),
        async move {
            let _ = stopped.wait_for(|s| *s).await;
        },
        args.timeout + Duration::from_secs(1),
    ));
    let console =
        console.then(|| tokio::spawn(crate::console::run(shared.clone(), telemetry.clone())));
    Ok(Running {
        shared,
        addr,
        log,
        reloader,
        admin_addr,
        admin,
        telemetry,
        stop,
        server,
        console,
    })
}

fn default_id(i: usize) -> String {
    if i < 26 {
        ((b'A' + i as u8) as char).to_string()
    } else {
        format!("B{i}")
    }
}

fn default_log_path(args: &ServeArgs) -> PathBuf {
    let stem = args
        .policy
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "policy".into());
    let when = chrono::Utc::now().format("%Y%m%dT%H%M%SZ");
    PathBuf::from("logs").join(format!("{stem}_{}_{when}.csv", args.upstream.as_str()))
}

fn bind(addr: std::net::SocketAddr) -> Result<tokio::net::TcpListener, anyhow::Error> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()
    } else {
        tokio::net::TcpSocket::new_v6()
    }?;
    socket.set_reuseaddr(true)?;
    socket.bind(addr).map_err(|e| {
        BadInput(match e.kind() {
            std::io::ErrorKind::AddrInUse => format!(
                "cannot listen on {addr}: the port is in use; stop the other process or pass --listen ADDR"
            ),
            _ => format!("cannot listen on {addr}: {e}; pass another --listen ADDR"),
        })
    })?;
    Ok(socket.listen(4096)?)
}
