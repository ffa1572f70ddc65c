//! Command-line interface: flags, and parsing of the values they take. Every error names
//! the flag, the bad value and what to write instead.
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::upstream::{Mode, Protocol};

#[derive(Debug, Parser)]
#[command(
    name = "switchyard",
    version,
    about = "Reverse-proxy load balancer whose routing policies are WebAssembly components",
    args_conflicts_with_subcommands = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub serve: ServeArgs,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a policy in a deterministic discrete-event simulation (virtual time).
    Simulate(crate::sim::SimulateArgs),
    /// Analyze request logs (a `just bench` folder, or CSV files): the study's tables,
    /// charts and REPORT.md.
    Analyze(crate::analyze::AnalyzeArgs),
}

/// Proxy flags (the default command).
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to accept client connections on.
    #[arg(long, default_value = "127.0.0.1:9090", value_name = "ADDR")]
    pub listen: SocketAddr,

    /// A backend, as [ID=]http://HOST:PORT[,weight=N]; repeat for each. Default: the
    /// study's A=http://127.0.0.1:8081, B=…:8082, C=…:8083.
    #[arg(long = "backend", value_name = "URL", value_parser = parse_backend)]
    pub backends: Vec<BackendSpec>,

    /// The routing policy: a wasm component implementing wit/policy.wit.
    #[arg(long, default_value = "policies/ewma.wasm", value_name = "FILE")]
    pub policy: PathBuf,

    /// A policy setting, e.g. alpha=0.3; repeatable.
    #[arg(long = "policy-arg", value_name = "K=V", value_parser = parse_key_value)]
    pub policy_args: Vec<(String, String)>,

    /// Reuse upstream connections (persistent) or open one per request (non-persistent).
    #[arg(long, value_enum, default_value = "persistent")]
    pub upstream: Mode,

    /// Protocol towards the backends: http1, or h2c (HTTP/2 with prior knowledge, every
    /// request a stream on a few shared connections; needs backends that speak h2c and
    /// --upstream persistent).
    #[arg(long, value_enum, default_value = "http1", value_name = "PROTOCOL")]
    pub upstream_protocol: Protocol,

    /// h2c: PING each upstream connection this often, and drop one whose PING goes
    /// unanswered for as long (a backend host gone without closing TCP); 0 turns it off.
    #[arg(long, default_value = "10s", value_parser = parse_duration, value_name = "DURATION")]
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

    /// Upstream timeout: connect plus response head (e.g. 10s, 500ms).
    #[arg(long, default_value = "10s", value_parser = parse_duration, value_name = "DURATION")]
    pub timeout: Duration,

    /// Longest pause between two pieces of a response body; a backend that stalls longer
    /// has its response cut off (logged and observed as a timeout).
    #[arg(long, default_value = "60s", value_parser = parse_duration, value_name = "DURATION")]
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

    /// CPU deadline for one policy call.
    #[arg(long, default_value = "5ms", value_parser = parse_duration, value_name = "DURATION")]
    pub policy_deadline: Duration,

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
    /// ?token=TOKEN in the browser). Default: $SWITCHYARD_ADMIN_TOKEN.
    #[arg(long, value_name = "TOKEN")]
    pub admin_token: Option<String>,
}

/// A `--backend` value.
#[derive(Debug, Clone)]
pub struct BackendSpec {
    pub id: Option<String>,
    pub url: String,
    /// `host:port` as written, for the Host header.
    pub authority: String,
    pub weight: Option<u32>,
}

impl BackendSpec {
    /// The study's three backends.
    pub fn study() -> Vec<BackendSpec> {
        [
            "A=http://127.0.0.1:8081",
            "B=http://127.0.0.1:8082",
            "C=http://127.0.0.1:8083",
        ]
        .into_iter()
        .filter_map(|s| parse_backend(s).ok())
        .collect()
    }

    /// Resolves the host name once, at start-up.
    pub fn resolve(&self) -> Result<SocketAddr, String> {
        self.authority
            .to_socket_addrs()
            .ok()
            .and_then(|mut addrs| addrs.next())
            .ok_or_else(|| {
                format!(
                    "cannot resolve backend {}: check the host name, or use an IP address",
                    self.url
                )
            })
    }
}

const BACKEND_HELP: &str =
    "expected [ID=]http://HOST:PORT[,weight=N], e.g. A=http://127.0.0.1:8081";

pub fn parse_backend(s: &str) -> Result<BackendSpec, String> {
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
    let Some(rest) = url.strip_prefix("http://") else {
        return Err(if url.starts_with("https://") {
            format!("`{s}`: https backends are not supported yet; use http://")
        } else {
            format!("`{s}` is not an http URL: {BACKEND_HELP}")
        });
    };
    let authority = rest.trim_end_matches('/');
    let port_ok = authority
        .rsplit_once(':')
        .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p > 0));
    if !port_ok || authority.contains('/') || authority.contains('@') {
        return Err(format!(
            "`{s}` must be http://HOST:PORT with no path: {BACKEND_HELP}"
        ));
    }
    Ok(BackendSpec {
        id,
        url: format!("http://{authority}"),
        authority: authority.to_string(),
        weight,
    })
}

pub fn parse_key_value(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_string(), v.trim().to_string())),
        _ => Err(format!("`{s}` is not KEY=VALUE, e.g. alpha=0.3")),
    }
}

/// Parses `10s`, `500ms`, `1.5s`, `2m`, `250us`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let value: f64 = num
        .parse()
        .map_err(|_| format!("`{s}` is not a duration: write e.g. 10s, 500ms or 2m"))?;
    let scale = match unit {
        "ns" => 1e-9,
        "us" | "µs" => 1e-6,
        "ms" => 1e-3,
        "s" | "" => 1.0,
        "m" | "min" => 60.0,
        "h" => 3600.0,
        _ => return Err(format!("`{s}`: unknown unit `{unit}`; use ms, s, m or h")),
    };
    let secs = value * scale;
    if !secs.is_finite() || secs > 1e9 {
        return Err(format!("`{s}` is out of range"));
    }
    Ok(Duration::from_secs_f64(secs))
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
        for bad in [
            "127.0.0.1:8081",
            "http://127.0.0.1",
            "http://127.0.0.1:99999",
            "https://x:1",
            "http://x:1/path",
            "A=http://x:1,weight=0",
        ] {
            assert!(parse_backend(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert!(parse_duration("ten").is_err());
        assert!(parse_duration("5 parsecs").is_err());
    }
}
