//! Command-line interface: the flags and subcommands, and the parsing of the values they
//! take. Every error names the flag, the bad value and what to write instead. Turning the
//! flags into a configuration is [`crate::config`]'s job; nothing here starts anything.
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::builder::{PossibleValuesParser, TypedValueParser as _};
use clap::{Args, Parser, Subcommand};
use switchyard_input::duration;
use switchyard_upstream::{Mode, Protocol};

use crate::telemetry::LogFlush;

#[derive(Debug, Parser)]
#[command(
    name = "switchyard",
    version,
    about = "Reverse-proxy load balancer whose routing policies are WebAssembly components",
    args_conflicts_with_subcommands = true
)]
pub struct Cli {
    /// A subcommand; without one, the proxy runs.
    #[command(subcommand)]
    pub command: Option<Command>,
    /// The proxy's flags.
    #[command(flatten)]
    pub serve: ServeArgs,
}

/// The subcommands besides the proxy itself (each can be left out of a lean build).
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a policy in a deterministic discrete-event simulation (virtual time).
    #[cfg(feature = "sim")]
    Simulate(switchyard_sim::SimulateArgs),
    /// Every policy in a folder on every scenario in another, in the simulator: one
    /// markdown table per scenario (and, with --out, MATRIX.md and a chart).
    #[cfg(feature = "sim")]
    Matrix(switchyard_sim::matrix::MatrixArgs),
    /// Analyze request logs (a `just bench` folder, or CSV files): the study's tables,
    /// charts and REPORT.md.
    #[cfg(feature = "analyze")]
    Analyze(switchyard_analyze::AnalyzeArgs),
}

/// Proxy flags (the default command).
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to accept client connections on.
    #[arg(long, default_value = "127.0.0.1:9090", value_name = "ADDR")]
    pub listen: SocketAddr,

    /// A backend, as [ID=]http[s]://HOST:PORT[,weight=N]; repeat for each. Default: the
    /// study's A=http://127.0.0.1:8081, B=…:8082, C=…:8083. https:// backends are verified
    /// against the system's roots or --backend-ca, with HOST as the name.
    #[arg(long = "backend", value_name = "URL", value_parser = parse_backend)]
    pub backends: Vec<BackendArg>,

    /// The routing policy: a wasm component implementing wit/policy.wit.
    #[arg(long, default_value = "policies/ewma.wasm", value_name = "FILE")]
    pub policy: PathBuf,

    /// A policy setting, e.g. alpha=0.3; repeatable.
    #[arg(long = "policy-arg", value_name = "K=V", value_parser = switchyard_input::key_value)]
    pub policy_args: Vec<(String, String)>,

    /// Reuse upstream connections (persistent) or open one per request (non-persistent).
    #[arg(long, default_value = "persistent", value_name = "MODE",
          value_parser = PossibleValuesParser::new(Mode::ALL.map(Mode::as_str)).try_map(|s| s.parse::<Mode>()))]
    pub upstream: Mode,

    /// Protocol towards the backends: http1, or h2c (HTTP/2 with prior knowledge, every
    /// request a stream on a few shared connections; needs backends that speak h2c and
    /// --upstream persistent).
    #[arg(long, default_value = "http1", value_name = "PROTOCOL",
          value_parser = PossibleValuesParser::new(Protocol::ALL.map(Protocol::as_str)).try_map(|s| s.parse::<Protocol>()))]
    pub upstream_protocol: Protocol,

    /// h2c: PING each upstream connection this often, and drop one whose PING goes
    /// unanswered for as long (a backend host gone without closing TCP); 0s turns it off.
    #[arg(long, default_value = "10s", value_parser = duration::parse, value_name = "DURATION")]
    pub h2_keepalive: Duration,

    /// Do not reload the policy when its file changes (SIGHUP still reloads it).
    #[arg(long)]
    pub no_watch: bool,

    /// Route with the host's native round-robin and no wasm policy at all: the baseline
    /// that shows what the policy call costs (benchmarks). --policy is then ignored.
    #[arg(long)]
    pub builtin_rr: bool,

    /// CSV request log. Default: logs/<policy>_<upstream>_<UTC time>.csv
    #[arg(long, value_name = "FILE", conflicts_with = "no_log")]
    pub log: Option<PathBuf>,

    /// Do not write a request log.
    #[arg(long)]
    pub no_log: bool,

    /// When log rows reach the file, which bounds what a crash of the proxy loses:
    /// second (about once a second), batch (every batch the recorder drains, ~20 ms), or
    /// fsync (batch, then synced to disk: survives a power cut too).
    #[arg(long, default_value = "second", value_name = "WHEN",
          value_parser = PossibleValuesParser::new(LogFlush::ALL.map(LogFlush::as_str)).try_map(|s| s.parse::<LogFlush>()))]
    pub log_flush: LogFlush,

    /// Upstream timeout: to connect, and to send the response head once the whole request
    /// body has been read from the client (e.g. 10s, 500ms). A slow upload does not count.
    #[arg(long, default_value = "10s", value_parser = duration::parse, value_name = "DURATION")]
    pub timeout: Duration,

    /// Longest pause between two pieces of a client's request body (nginx's
    /// client_body_timeout); a client that stalls longer gets 408.
    #[arg(long, default_value = "60s", value_parser = duration::parse, value_name = "DURATION")]
    pub upload_timeout: Duration,

    /// How long requests in flight may take to finish at shutdown before they are cut
    /// (default: --timeout plus 1s).
    #[arg(long, value_parser = duration::parse, value_name = "DURATION")]
    pub grace: Option<Duration>,

    /// From when a client connection is ready for a request (accepted, or its previous
    /// response sent) to the last byte of the request's head; also the keep-alive idle
    /// limit. A client that takes longer is disconnected.
    #[arg(long, default_value = "30s", value_parser = duration::parse, value_name = "DURATION")]
    pub header_timeout: Duration,

    /// Request line plus headers, in bytes (1024..=262144); a larger head gets 431.
    #[arg(long, default_value_t = 65536, value_name = "BYTES")]
    pub max_header_bytes: usize,

    /// Header lines per request (1..=10000); more get 431.
    #[arg(long, default_value_t = 100, value_name = "N")]
    pub max_headers: usize,

    /// Client connections open at once; at the cap the proxy stops accepting until one
    /// closes (new ones wait in the kernel's backlog).
    #[arg(long, default_value_t = 10_000, value_name = "N")]
    pub max_connections: usize,

    /// How long an upgraded connection (WebSocket and the like) may carry no byte either
    /// way before the proxy closes it.
    #[arg(long, default_value = "1h", value_parser = duration::parse, value_name = "DURATION")]
    pub tunnel_idle_timeout: Duration,

    /// Longest pause between two pieces of a response body; a backend that stalls longer
    /// has its response cut off (logged and observed as a timeout).
    #[arg(long, default_value = "60s", value_parser = duration::parse, value_name = "DURATION")]
    pub body_timeout: Duration,

    /// One console line per request.
    #[arg(short, long)]
    pub verbose: bool,

    /// Worker threads (default: one per core).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub threads: Option<u16>,

    /// Seed for the policy's random source (default: from the clock).
    #[arg(long, value_name = "N")]
    pub seed: Option<u64>,

    /// Recent observations replayed into a new or replacement policy instance (0: cold start).
    #[arg(long, default_value_t = 4096, value_name = "N")]
    pub replay: usize,

    /// Shortest time between two probes of one backend that a policy asks for
    /// (`host.probe`, contract 0.2); with at most one probe in flight per backend, this
    /// caps what a policy can make the proxy send (100 per second per backend by default).
    #[arg(long, default_value = "10ms", value_parser = duration::parse, value_name = "DURATION")]
    pub probe_interval: Duration,

    /// Longest a probe may take, connect to last byte; a probe that takes longer is
    /// answered to the policy as a timeout.
    #[arg(long, default_value = "100ms", value_parser = duration::parse, value_name = "DURATION")]
    pub probe_timeout: Duration,

    /// CPU deadline for one policy call, host work on its behalf included (checked every
    /// millisecond: a call runs at most 1 ms past it).
    #[arg(long, default_value = "5ms", value_parser = duration::parse, value_name = "DURATION")]
    pub policy_deadline: Duration,

    /// CPU time the policy's calls may take per second and per worker thread (--threads;
    /// at most 500ms in all, since calls share one lock), host work included; over it, the call faults (and the breaker disables a policy
    /// that keeps going over). The default, a tenth of each thread, keeps the proxy above
    /// 0.8x of rr.wasm's throughput whatever the policy does; the shipped policies use
    /// about half of it at full load (peak-ewma, about 1 us a call).
    #[arg(long, default_value = "100ms", value_parser = duration::parse, value_name = "DURATION")]
    pub policy_cpu_budget: Duration,

    /// Bytes of stdout/stderr one policy call may write; the rest is dropped and counted.
    #[arg(long, default_value_t = 4096, value_name = "BYTES")]
    pub policy_log_bytes_per_call: usize,

    /// Bytes of stdout/stderr a policy may write per second; the rest is dropped and counted.
    #[arg(long, default_value_t = 65536, value_name = "BYTES")]
    pub policy_log_bytes_per_sec: usize,

    /// Bytes one wasi:random call may return; asking for more is a fault.
    #[arg(long, default_value_t = 4096, value_name = "BYTES")]
    pub policy_random_bytes: usize,

    /// Wall time a warm start (swap, rebuild, rehearsal) may spend replaying recent
    /// observations into a new instance; the rest of the ring is skipped.
    #[arg(long, default_value = "250ms", value_parser = duration::parse, value_name = "DURATION")]
    pub replay_budget: Duration,

    /// Wall time one display call (console, dashboard, /api/state) may spend bringing the
    /// policy's display twin up to date; the rest is skipped.
    #[arg(long, default_value = "20ms", value_parser = duration::parse, value_name = "DURATION")]
    pub display_budget: Duration,

    /// Memory cap for a policy instance, in MiB.
    #[arg(long, default_value_t = 32, value_name = "MIB", value_parser = clap::value_parser!(u32).range(1..=4096))]
    pub policy_memory_mib: u32,

    /// Admin listener: dashboard, /metrics, JSON API, policy switch. Default 127.0.0.1:5002
    /// (if that port is taken, the proxy runs without it and says so). A non-loopback
    /// address needs --admin-token.
    #[arg(long, value_name = "ADDR", conflicts_with = "no_admin")]
    pub admin: Option<SocketAddr>,

    /// Do not start the admin listener.
    #[arg(long)]
    pub no_admin: bool,

    /// Require this token on every admin request (Authorization: Bearer TOKEN, or
    /// ?token=TOKEN in the browser).
    #[arg(
        long,
        value_name = "TOKEN",
        env = "SWITCHYARD_ADMIN_TOKEN",
        hide_env_values = true
    )]
    pub admin_token: Option<String>,

    /// TLS on the listener and towards https:// backends.
    #[command(flatten)]
    pub tls: crate::tls_args::TlsArgs,
}

/// A `--backend` value, as written: resolving the host is [`crate::config`]'s job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackendArg {
    /// `ID=`, when given.
    pub id: Option<String>,
    /// `http://host:port` or `https://host:port`, normalised (no trailing slash).
    pub url: String,
    /// `host:port` as written, for the Host header and for resolving.
    pub authority: String,
    /// `,weight=N`, when given.
    pub weight: Option<u32>,
}

impl BackendArg {
    /// The study's three backends, the default when no `--backend` is given.
    pub fn study() -> Vec<BackendArg> {
        [
            "A=http://127.0.0.1:8081",
            "B=http://127.0.0.1:8082",
            "C=http://127.0.0.1:8083",
        ]
        .into_iter()
        .filter_map(|s| parse_backend(s).ok())
        .collect()
    }
}

const BACKEND_HELP: &str =
    "expected [ID=]http[s]://HOST:PORT[,weight=N], e.g. A=http://127.0.0.1:8081";

/// Parses `[ID=]http[s]://HOST:PORT[,weight=N]`; the URL is checked by `http::Uri` (scheme,
/// authority with a port, no path, no user info; IPv6 in brackets).
pub fn parse_backend(s: &str) -> Result<BackendArg, String> {
    let (main, weight) = match s.split_once(",weight=") {
        Some((m, w)) => {
            let w: u32 =
                w.parse().ok().filter(|&w| w > 0).ok_or_else(|| {
                    format!("invalid weight `{w}` in `{s}`: use a whole number >= 1")
                })?;
            (m, Some(w))
        }
        None => (s, None),
    };
    let (id, url) = match main.split_once('=') {
        Some((id, url)) if !id.contains(':') && !id.contains('/') => {
            if id.is_empty() {
                return Err(format!("empty backend id in `{s}`: {BACKEND_HELP}"));
            }
            (Some(id.to_string()), url)
        }
        _ => (None, main),
    };
    let uri: http::Uri = url
        .parse()
        .map_err(|_| format!("`{s}` is not an http URL: {BACKEND_HELP}"))?;
    let scheme = match uri.scheme_str() {
        Some(scheme @ ("http" | "https")) => scheme,
        _ => return Err(format!("`{s}` is not an http URL: {BACKEND_HELP}")),
    };
    let no_path = uri.path_and_query().is_none_or(|p| p.as_str() == "/");
    let authority = uri
        .authority()
        .filter(|a| no_path && !a.as_str().contains('@') && !a.host().is_empty())
        .filter(|a| a.port_u16().is_some_and(|p| p > 0))
        .ok_or_else(|| format!("`{s}` must be http://HOST:PORT with no path: {BACKEND_HELP}"))?;
    Ok(BackendArg {
        id,
        url: format!("{scheme}://{authority}"),
        authority: authority.to_string(),
        weight,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backends_parse_with_ids_and_weights() {
        let b = parse_backend("A=http://127.0.0.1:8081,weight=3").unwrap();
        assert_eq!(
            (b.id.as_deref(), b.url.as_str(), b.weight),
            (Some("A"), "http://127.0.0.1:8081", Some(3))
        );
        let b = parse_backend("http://localhost:8082/").unwrap();
        assert_eq!((b.id, b.authority.as_str()), (None, "localhost:8082"));
        let b = parse_backend("S=https://example.org:8443").unwrap();
        assert_eq!(b.url, "https://example.org:8443");
        for bad in [
            "127.0.0.1:8081",
            "http://127.0.0.1",
            "http://127.0.0.1:99999",
            "ftp://x:1",
            "https://x",
            "http://x:1/path",
            "A=http://x:1,weight=0",
        ] {
            assert!(parse_backend(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn ipv6_backends_parse() {
        let b = parse_backend("V6=http://[::1]:8081").unwrap();
        assert_eq!(
            (b.url.as_str(), b.authority.as_str()),
            ("http://[::1]:8081", "[::1]:8081")
        );
        assert!(parse_backend("http://user@x:1").is_err());
        assert!(parse_backend("http://x:1?q").is_err());
    }

    #[test]
    fn durations_take_the_one_grammar() {
        let cli = |v: &str| Cli::try_parse_from(["switchyard", "--timeout", v]);
        assert_eq!(
            cli("1.5s").unwrap().serve.timeout,
            Duration::from_millis(1500)
        );
        assert_eq!(cli("2m").unwrap().serve.timeout, Duration::from_secs(120));
        // A unit is required, as in `simulate`: `10` could mean 10 ms or 10 s.
        let err = cli("10").unwrap_err().to_string();
        assert!(err.contains("write e.g. 10s"), "{err}");
        assert!(cli("ten").is_err());
    }

    #[test]
    fn upstream_modes_parse_by_name() {
        let cli = |v: &[&str]| Cli::try_parse_from([&["switchyard"], v].concat());
        let a = cli(&["--upstream", "non-persistent", "--upstream-protocol", "h2c"]).unwrap();
        assert_eq!(
            (a.serve.upstream, a.serve.upstream_protocol),
            (Mode::NonPersistent, Protocol::H2c)
        );
        let err = cli(&["--upstream", "sometimes"]).unwrap_err().to_string();
        assert!(
            err.contains("persistent") && err.contains("non-persistent"),
            "{err}"
        );
    }
}
