//! Starting and stopping the proxy: turns a validated [`ProxyConfig`] into running pieces
//! (policy, listener, telemetry, upstreams, reloader, admin server, console), serves until
//! told to stop, then drains requests in flight and flushes the log. Every check that needs
//! no I/O is [`crate::config`]'s; what fails here (a policy that does not load, a port that
//! is taken, a log that cannot be created) is still the operator's to fix, and says how.
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use switchyard_input::UsageError;
use switchyard_runtime::{LoadError, PolicyComponent, PolicyRuntime, Router};
use switchyard_upstream::Upstreams;

use crate::cli::ServeArgs;
use crate::config::{PolicySource, ProxyConfig};
use crate::console::{self, Banner};
use crate::proxy::{self, HttpProber, ProxyState};
use crate::reload::Reloader;
use crate::telemetry::{Telemetry, TelemetryConfig, Totals};

/// Whether [`start`] prints the banner and a summary line per second.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Console {
    /// The binary: banner, per-second lines.
    On,
    /// In-process tests and embedders: quiet.
    Off,
}

/// A proxy that is bound and ready, for `main` and for in-process tests.
pub struct Running {
    pub shared: Arc<ProxyState>,
    pub addr: std::net::SocketAddr,
    pub log: Option<PathBuf>,
    /// Swaps policies: on file changes (unless --no-watch), SIGHUP, or the admin API.
    pub reloader: Reloader,
    /// Where the admin listener (dashboard, /metrics, API) is bound; None when off.
    pub admin_addr: Option<std::net::SocketAddr>,
    admin: Option<crate::admin::AdminHandle>,
    telemetry: Arc<Telemetry>,
    stop: tokio::sync::watch::Sender<bool>,
    server: tokio::task::JoinHandle<switchyard_listener::Drained>,
    console: Option<tokio::task::JoinHandle<()>>,
}

impl Running {
    /// Stops accepting, lets requests in flight finish, flushes the log. Returns the totals.
    pub async fn shutdown(self) -> anyhow::Result<Totals> {
        Ok(self.stop().await?.0)
    }

    /// [`Running::shutdown`], also returning how many connections were cut because they
    /// outlived the grace period.
    pub async fn stop(self) -> anyhow::Result<(Totals, usize)> {
        // The admin server first: no dashboard request reads state that is winding down.
        if let Some(admin) = self.admin {
            admin.shutdown().await;
        }
        let _ = self.stop.send(true);
        // A server task that panicked cut everything it had: reported as one.
        let cut = self.server.await.map_or(1, |d| d.cut);
        if let Some(console) = self.console {
            console.abort();
        }
        Ok((self.telemetry.finish()?, cut))
    }
}

/// [`ProxyConfig::from_args`], then [`start`]: what `main` and the in-process tests do.
pub async fn start_with_args(args: &ServeArgs, console: Console) -> anyhow::Result<Running> {
    start(ProxyConfig::from_args(args, SystemTime::now())?, console).await
}

/// Loads the policy, binds the listener and starts serving on the current Tokio runtime.
pub async fn start(config: ProxyConfig, console: Console) -> anyhow::Result<Running> {
    // First: a certificate that does not load is the operator's to fix before anything runs.
    let tls = match &config.tls {
        Some(t) => Some(
            proxy::tls::Terminator::start(t)
                .map_err(|e| UsageError::with_source(e.to_string(), e))?,
        ),
        None => None,
    };
    let runtime = PolicyRuntime::new()?;
    let component = match &config.policy {
        PolicySource::File { path, .. } => Some(runtime.load(path).map_err(load_error)?),
        PolicySource::Builtin => None,
    };
    let router = router(&config, component.as_ref())?;
    let listener = switchyard_listener::bind(config.listen, "--listen")
        .map_err(|e| UsageError::with_source(e.to_string(), e))?;
    let addr = listener.local_addr()?;
    let backends = config.policy_backends();
    let telemetry = Arc::new(
        Telemetry::start(TelemetryConfig {
            csv: config.log.clone(),
            backends: backends.clone(),
            upstream: config.upstream.mode.as_str(),
            verbose: config.verbose,
            flush: config.log_flush,
        })
        .map_err(|e| UsageError::new(format!("{e:#}")))?,
    );
    let targets = config.backends.iter().map(|b| b.target.clone()).collect();
    let shared = Arc::new(ProxyState {
        router,
        upstreams: Upstreams::new(targets, config.upstream),
        events: telemetry.sink(),
        refusals: Default::default(),
        connections: Default::default(),
        request_ids: crate::proxy::request_id::RequestIds::new(),
        epoch: Instant::now(),
    });
    shared.router.set_prober(Arc::new(HttpProber::new(
        Arc::downgrade(&shared),
        config.probe_timeout,
        tokio::runtime::Handle::current(),
    )));
    if console == Console::On {
        print_banner(&config, &shared, addr, component.as_deref());
    }
    let reloader = start_reloader(&config, runtime, &shared)?;
    let admin = start_admin(&config, &shared, &telemetry, &reloader, addr).await?;
    let admin_addr = admin.as_ref().map(|a| a.addr());
    if let (Console::On, Some(a)) = (console, admin_addr) {
        crate::out::say!("  dashboard http://{a}/  (metrics /metrics, API /api/state)");
    }
    let (stop, mut stopped) = tokio::sync::watch::channel(false);
    let server = tokio::spawn(proxy::serve(
        listener,
        shared.clone(),
        async move {
            let _ = stopped.wait_for(|s| *s).await;
        },
        config.edge,
        tls,
    ));
    let console = (console == Console::On)
        .then(|| tokio::spawn(console::run(shared.clone(), telemetry.clone())));
    Ok(Running {
        shared,
        addr,
        log: config.log,
        reloader,
        admin_addr,
        admin,
        telemetry,
        stop,
        server,
        console,
    })
}

/// A policy file that does not load is the operator's to fix; a missing one most often
/// means this repository's policies were not built yet.
fn load_error(e: LoadError) -> UsageError {
    let message = match &e {
        LoadError::NotFound(_) => {
            format!("{e} (this repository's policies are built by `just build-policies`)")
        }
        _ => e.to_string(),
    };
    UsageError::with_source(message, e)
}

fn router(
    config: &ProxyConfig,
    component: Option<&Arc<PolicyComponent>>,
) -> Result<Router, UsageError> {
    let backends = config.policy_backends();
    match component {
        // The policy's clock starts at zero with the proxy (`ProxyState::epoch`).
        Some(c) => Router::new(
            c.clone(),
            backends,
            config.policy_args.clone(),
            config.router.clone(),
            0,
        )
        .map_err(|e| UsageError::new(e.to_string())),
        None => Ok(Router::builtin_round_robin(backends, config.router.clone())),
    }
}

fn print_banner(
    config: &ProxyConfig,
    shared: &ProxyState,
    addr: std::net::SocketAddr,
    component: Option<&PolicyComponent>,
) {
    let status = shared.router.status();
    let backends = config.policy_backends();
    console::print_banner(&Banner {
        listen: addr,
        policy_name: &status.name,
        policy_file: &status.file,
        compile: component.map(|c| c.compile_time()).unwrap_or_default(),
        backends: &backends,
        upstream: &format!(
            "{}, {}",
            config.upstream.mode.as_str(),
            config.upstream.protocol.as_str()
        ),
        timeout: config.upstream.timeout,
        log: config.log.as_deref(),
    });
    if let Some(t) = &config.tls {
        crate::out::say!(
            "  tls       {} certificate(s), first the default; HTTP/2 and HTTP/1.1 by ALPN; handshake timeout {:?}",
            t.pairs.len(),
            t.handshake_timeout
        );
    }
}

fn start_reloader(
    config: &ProxyConfig,
    runtime: Arc<PolicyRuntime>,
    shared: &Arc<ProxyState>,
) -> Result<Reloader, UsageError> {
    let watch = matches!(config.policy, PolicySource::File { watch: true, .. });
    let clock_shared = shared.clone();
    Reloader::start(
        runtime,
        shared.router.clone(),
        config.policy_file.clone(),
        Arc::new(move || clock_shared.now_ns()),
        watch,
    )
    .map_err(|e| {
        UsageError::new(format!(
            "cannot watch {}: {e:#}; pass --no-watch",
            config.policy_file.display()
        ))
    })
}

async fn start_admin(
    config: &ProxyConfig,
    shared: &Arc<ProxyState>,
    telemetry: &Arc<Telemetry>,
    reloader: &Reloader,
    listen: std::net::SocketAddr,
) -> anyhow::Result<Option<crate::admin::AdminHandle>> {
    let Some(cfg) = config.admin.clone() else {
        return Ok(None);
    };
    let ctx = crate::admin::AdminContext {
        shared: shared.clone(),
        telemetry: telemetry.clone(),
        reloader: reloader.clone(),
        listen,
        policy_dir: config
            .policy_file
            .parent()
            .map(PathBuf::from)
            .unwrap_or_default(),
    };
    crate::admin::start(cfg, ctx).await
}
