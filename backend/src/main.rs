//! `backend`: run one study backend, all three, or a custom latency cycle.

use std::io::Write;
use std::process::ExitCode;

use backend::{parse_latencies, BackendConfig, STUDY_IDS};
use clap::Parser;
use tokio::net::TcpListener;
use tokio::sync::watch;

/// Simulated backend with the load-balancing study's fixed latency cycles.
#[derive(Parser, Debug)]
#[command(name = "backend", version)]
struct Cli {
    /// Backend id: A, B or C selects a study profile; any name with --latencies
    /// [env: SERVER_ID] [default: A, or X with --latencies]
    #[arg(long, conflicts_with = "all")]
    id: Option<String>,

    /// Port to listen on; 0 picks a free one
    /// [env: PORT] [default: 8081 for A, 8082 for B, 8083 for C, else 8081]
    #[arg(long, conflicts_with = "all")]
    port: Option<u16>,

    /// Serve A, B and C on --base-port and the two ports after it
    #[arg(long)]
    all: bool,

    /// First port for --all (0 gives each backend a free port)
    #[arg(long, default_value_t = 8081, requires = "all")]
    base_port: u16,

    /// Address to bind
    #[arg(long, default_value = "127.0.0.1")]
    host: String,

    /// Custom latency cycle in ms, e.g. 10,15,0.5; overrides the profile
    #[arg(long, value_name = "MS,...", allow_hyphen_values = true)]
    latencies: Option<String>,

    /// Fraction of profile requests answered with HTTP 500
    #[arg(
        long,
        default_value_t = 0.0,
        value_name = "FRACTION",
        allow_negative_numbers = true
    )]
    error_rate: f64,

    /// Seed for the failure decisions
    #[arg(long, default_value_t = 1)]
    seed: u64,

    /// Most profile requests in service at once; the rest queue. Also the denominator of the
    /// reported application_utilization (--report-load, /probe), which is left out when unlimited
    /// [default: unlimited]
    #[arg(long, value_name = "N")]
    capacity: Option<usize>,

    /// Add load headers to every profile response: endpoint-load-metrics: TEXT
    /// application_utilization:U,rps_fractional:R,named_metrics.rif:N (ORCA; U = in service /
    /// --capacity, omitted without --capacity; R = completions in the last second; N = requests in
    /// flight), x-prequal-rif: N and x-prequal-latency-us (median of the last 16). GET /probe
    /// answers with them with or without this flag
    #[arg(long)]
    report_load: bool,

    /// HTTP/2 streams one connection may carry at once [default: 200]
    #[arg(long, value_name = "N")]
    h2_max_streams: Option<u32>,

    /// Tokio worker threads; 1 runs everything on the main thread
    #[arg(long, default_value_t = 2, value_name = "N")]
    threads: usize,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(msg) => {
            eprintln!("error: {msg}");
            ExitCode::from(2)
        }
    }
}

fn run(cli: Cli) -> Result<(), String> {
    let plan = plan(&cli)?;
    if cli.threads == 0 {
        return Err("--threads 0 cannot run anything; pass --threads 1 or more".into());
    }
    let runtime = if cli.threads == 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(cli.threads)
            .enable_all()
            .build()
    }
    .map_err(|e| format!("cannot start the tokio runtime: {e}; try fewer --threads"))?;
    runtime.block_on(serve_all(&cli.host, plan))
}

/// Resolves flags and the study's env vars into (config, port) pairs, all
/// validated before anything binds.
fn plan(cli: &Cli) -> Result<Vec<(BackendConfig, u16)>, String> {
    let custom = cli
        .latencies
        .as_deref()
        .map(parse_latencies)
        .transpose()
        .map_err(|e| e.to_string())?;
    let configure = |id: &str| -> Result<BackendConfig, String> {
        let base = match &custom {
            Some(cycle) => BackendConfig::with_latencies(id, cycle),
            None => BackendConfig::study(id).ok_or_else(|| {
                format!(
                    "unknown backend id {id:?}; use one of {} or pass --latencies to define a custom cycle",
                    STUDY_IDS.join(", ")
                )
            })?,
        };
        let mut cfg = base.error_rate(cli.error_rate).seed(cli.seed);
        cfg.capacity = cli.capacity;
        cfg.h2_max_streams = cli.h2_max_streams;
        cfg.report_load = cli.report_load;
        cfg.validate().map_err(|e| e.to_string())?;
        Ok(cfg)
    };

    if cli.all {
        if cli.base_port > u16::MAX - 2 {
            return Err(format!(
                "--base-port {} leaves no room for three backends; use {} or lower",
                cli.base_port,
                u16::MAX - 2
            ));
        }
        return STUDY_IDS
            .iter()
            .zip(0u16..)
            .map(|(id, i)| {
                let port = if cli.base_port == 0 {
                    0
                } else {
                    cli.base_port + i
                };
                Ok((configure(id)?, port))
            })
            .collect();
    }

    // SERVER_ID and PORT are read here rather than by clap's `env`: clap would count them as
    // given and refuse them beside --all, and a shell often exports PORT for other reasons.
    let id = cli
        .id
        .clone()
        .or_else(|| std::env::var("SERVER_ID").ok())
        .unwrap_or_else(|| if custom.is_some() { "X" } else { "A" }.to_string());
    let cfg = configure(&id)?;
    let port = match (cli.port, std::env::var("PORT").ok()) {
        (Some(port), _) => port,
        (None, Some(env)) => env.trim().parse().map_err(|_| {
            format!("PORT={env:?} is not a port number; set PORT to 0-65535 or pass --port")
        })?,
        (None, None) => match cfg.id.as_str() {
            "B" if custom.is_none() => 8082,
            "C" if custom.is_none() => 8083,
            _ => 8081,
        },
    };
    Ok(vec![(cfg, port)])
}

async fn serve_all(host: &str, plan: Vec<(BackendConfig, u16)>) -> Result<(), String> {
    let stopped = stop_signal();
    let mut bound = Vec::with_capacity(plan.len());
    for (cfg, port) in plan {
        let listener = TcpListener::bind((host, port))
            .await
            .map_err(|e| bind_error(host, port, &e))?;
        let addr = listener.local_addr().map_err(|e| e.to_string())?;
        let _ = writeln!(std::io::stdout(), "{}", startup_line(&cfg, addr));
        bound.push((listener, cfg));
    }

    let (stop_tx, stop_rx) = watch::channel(());
    let mut servers = tokio::task::JoinSet::new();
    for (listener, cfg) in bound {
        let mut stop = stop_rx.clone();
        servers.spawn(backend::serve(listener, cfg, async move {
            let _ = stop.changed().await;
        }));
    }
    stopped.await;
    drop(stop_tx);
    while let Some(done) = servers.join_next().await {
        match done {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(e.to_string()),
            Err(e) => return Err(format!("server task failed: {e}")),
        }
    }
    Ok(())
}

fn bind_error(host: &str, port: u16, e: &std::io::Error) -> String {
    let fix = match e.kind() {
        std::io::ErrorKind::AddrInUse => {
            "the port is in use; stop the other process or choose another --port (--base-port with --all)"
        }
        std::io::ErrorKind::AddrNotAvailable => {
            "that address is not on this machine; pass --host 127.0.0.1 or 0.0.0.0"
        }
        std::io::ErrorKind::PermissionDenied => "ports below 1024 need privileges; use a higher --port",
        _ => "check --host and --port",
    };
    format!("cannot listen on {host}:{port}: {e}; {fix}")
}

fn startup_line(cfg: &BackendConfig, addr: std::net::SocketAddr) -> String {
    let cycle: Vec<String> = cfg.latencies_ms.iter().map(|ms| format!("{ms}")).collect();
    let mut line = format!(
        "backend {} listening on http://{addr} (cycle: {} ms",
        cfg.id,
        cycle.join(",")
    );
    if cfg.error_rate > 0.0 {
        line += &format!(", error rate {}, seed {}", cfg.error_rate, cfg.seed);
    }
    if let Some(n) = cfg.capacity {
        line += &format!(", capacity {n}");
    }
    if cfg.report_load {
        line += ", load reports";
    }
    line + ")"
}

/// Resolves on Ctrl+C or SIGTERM (what `docker stop` and process supervisors
/// send). Handlers are registered before this returns, so calling it before
/// the startup line closes the window in which a signal would kill the
/// process uncleanly.
fn stop_signal() -> impl std::future::Future<Output = ()> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let term = signal(SignalKind::terminate());
        let int = signal(SignalKind::interrupt());
        async move {
            match (term, int) {
                (Ok(mut term), Ok(mut int)) => {
                    tokio::select! {
                        _ = term.recv() => {}
                        _ = int.recv() => {}
                    }
                }
                _ => {
                    let _ = tokio::signal::ctrl_c().await;
                }
            }
        }
    }
    #[cfg(not(unix))]
    async {
        let _ = tokio::signal::ctrl_c().await;
    }
}
