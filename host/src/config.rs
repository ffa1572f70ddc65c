//! The proxy's configuration: [`ServeArgs`] checked and turned into a [`ProxyConfig`], with
//! every cross-flag rule in one place. Nothing here binds, loads or spawns, so every rule is
//! unit-tested without sockets or wasm; [`crate::app::start`] turns the result into a
//! running proxy. Every failure is a [`UsageError`] naming the flag and the fix.
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use crate::proxy::EdgeLimits;
use switchyard_input::{duration, UsageError};
use switchyard_runtime::{Backend, Limits, RouterOptions};
use switchyard_upstream::{Mode, Options as UpstreamOptions, Protocol, Target};

use crate::admin::AdminConfig;
use crate::cli::{BackendArg, ServeArgs};

/// One backend: who it is to the policy and the logs, and where it is on the network.
/// Its position in [`ProxyConfig::backends`] is its index everywhere (router, upstreams,
/// telemetry, dashboards): those lists are all built from this one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackendConfig {
    /// What the policy, the CSV log and the dashboards see.
    pub backend: Backend,
    /// Where to connect, and what to send as Host when the client sent none.
    pub target: Target,
}

/// Which policy routes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PolicySource {
    /// A wasm component, reloaded when the file changes (unless `watch` is off).
    File { path: PathBuf, watch: bool },
    /// The host's native round-robin (`--builtin-rr`): a benchmark baseline, no wasm.
    Builtin,
}

/// Everything the proxy needs to start, validated.
#[derive(Debug, Clone)]
pub struct ProxyConfig {
    pub listen: SocketAddr,
    pub backends: Vec<BackendConfig>,
    pub policy: PolicySource,
    /// The file `--policy` names, even with `--builtin-rr` (the admin selector lists its folder).
    pub policy_file: PathBuf,
    pub policy_args: Vec<(String, String)>,
    pub router: RouterOptions,
    pub upstream: UpstreamOptions,
    /// The CSV request log; `None` with `--no-log`.
    pub log: Option<PathBuf>,
    pub log_flush: crate::telemetry::LogFlush,
    /// One console line per request.
    pub verbose: bool,
    /// `None` with `--no-admin`.
    pub admin: Option<AdminConfig>,
    /// What clients may ask of the listener, the shutdown grace included.
    pub edge: EdgeLimits,
    /// `--probe-timeout`: how long one probe a policy asked for may take.
    pub probe_timeout: Duration,
    /// TLS on the listener (`--tls-cert`/`--tls-key`); `None`: plain HTTP and h2c.
    pub tls: Option<crate::proxy::tls::ListenerTls>,
}

impl ProxyConfig {
    /// Checks `args` and builds the configuration. `now` seeds the policy when `--seed` is
    /// not given and names the default log file; backend host names are resolved once, here.
    pub fn from_args(args: &ServeArgs, now: SystemTime) -> Result<ProxyConfig, UsageError> {
        if args.upstream_protocol == Protocol::H2c && args.upstream == Mode::NonPersistent {
            return Err(UsageError::new(
                "--upstream-protocol h2c shares a few connections among all requests, so it cannot open one per request: use --upstream persistent with h2c, or http1 for non-persistent",
            ));
        }
        check_probe_bounds(args)?;
        let edge = edge_limits(args)?;
        check_sandbox_bounds(args)?;
        let admin = if args.no_admin {
            None
        } else {
            Some(AdminConfig::new(args.admin, args.admin_token.as_deref())?)
        };
        let policy = if args.builtin_rr {
            PolicySource::Builtin
        } else {
            PolicySource::File {
                path: args.policy.clone(),
                watch: !args.no_watch,
            }
        };
        let log = (!args.no_log).then(|| {
            args.log
                .clone()
                .unwrap_or_else(|| default_log_path(args, now))
        });
        Ok(ProxyConfig {
            listen: args.listen,
            backends: backends(args)?,
            policy,
            policy_file: args.policy.clone(),
            policy_args: args.policy_args.clone(),
            router: router_options(args, now),
            upstream: upstream_options(args),
            log,
            log_flush: args.log_flush,
            verbose: args.verbose,
            admin,
            edge,
            probe_timeout: args.probe_timeout,
            tls: crate::tls_args::listener(&args.tls)?,
        })
    }

    /// The backends as the policy sees them, indexed like every other backend list.
    pub fn policy_backends(&self) -> Vec<Backend> {
        self.backends.iter().map(|b| b.backend.clone()).collect()
    }
}

/// `--backend` values (the study's A, B, C when none), with ids given or defaulted, checked
/// for duplicates, and resolved; https ones with their TLS settings.
fn backends(serve: &ServeArgs) -> Result<Vec<BackendConfig>, UsageError> {
    let study;
    let args = if serve.backends.is_empty() {
        study = BackendArg::study();
        &study
    } else {
        &serve.backends
    };
    let tls = crate::tls_args::backends(&serve.tls, args, serve.upstream_protocol)?;
    let mut out: Vec<BackendConfig> = Vec::with_capacity(args.len());
    for ((i, arg), tls) in args.iter().enumerate().zip(tls) {
        let id = arg.id.clone().unwrap_or_else(|| default_id(i));
        if out.iter().any(|b| b.backend.id == id) {
            return Err(UsageError::new(format!(
                "two backends are called `{id}`: give each --backend a distinct ID=, e.g. A=http://..."
            )));
        }
        out.push(BackendConfig {
            backend: Backend {
                id,
                url: arg.url.clone(),
                weight: arg.weight,
            },
            target: Target {
                addr: resolve(arg)?,
                authority: arg.authority.clone(),
                tls,
            },
        });
    }
    Ok(out)
}

/// Resolves the host name once, at start-up.
fn resolve(arg: &BackendArg) -> Result<SocketAddr, UsageError> {
    arg.authority
        .to_socket_addrs()
        .ok()
        .and_then(|mut addrs| addrs.next())
        .ok_or_else(|| {
            UsageError::new(format!(
                "cannot resolve backend {}: check the host name, or use an IP address",
                arg.url
            ))
        })
}

/// `A`, `B`, ... `Z`, then `B26`, `B27`, ...
fn default_id(i: usize) -> String {
    match u8::try_from(i) {
        Ok(n) if n < 26 => char::from(b'A' + n).to_string(),
        _ => format!("B{i}"),
    }
}

/// The client-side limits, checked: each must leave ordinary clients room.
fn edge_limits(args: &ServeArgs) -> Result<EdgeLimits, UsageError> {
    // Under hyper's read buffer (~400 KB), which would otherwise cut heads first.
    const HEADER_BYTES: std::ops::RangeInclusive<usize> = 1024..=262_144;
    if !HEADER_BYTES.contains(&args.max_header_bytes) {
        return Err(UsageError::new(format!(
            "--max-header-bytes {} is outside 1024..=262144: use e.g. 65536",
            args.max_header_bytes
        )));
    }
    if !(1..=10_000).contains(&args.max_headers) {
        return Err(UsageError::new(format!(
            "--max-headers {} is outside 1..=10000: use e.g. 100",
            args.max_headers
        )));
    }
    if args.max_connections == 0 {
        return Err(UsageError::new(
            "--max-connections 0 would accept nothing: use e.g. 10000",
        ));
    }
    if args.header_timeout.is_zero() {
        return Err(UsageError::new(
            "--header-timeout 0s would close every connection before its first request: use e.g. 30s",
        ));
    }
    if args.tunnel_idle_timeout.is_zero() {
        return Err(UsageError::new(
            "--tunnel-idle-timeout 0s would close every WebSocket at once: use e.g. 1h",
        ));
    }
    Ok(EdgeLimits {
        // By default long enough for a request that just got its response head to finish.
        grace: args.grace.unwrap_or(args.timeout + Duration::from_secs(1)),
        header_timeout: args.header_timeout,
        max_header_bytes: args.max_header_bytes,
        max_headers: args.max_headers,
        max_connections: args.max_connections,
        tunnel_idle_timeout: args.tunnel_idle_timeout,
    })
}

/// The probe flags' bounds: a policy's probes must stay rare and short, whatever it asks.
fn check_probe_bounds(args: &ServeArgs) -> Result<(), UsageError> {
    const MIN_INTERVAL: Duration = Duration::from_millis(1);
    const MAX_TIMEOUT: Duration = Duration::from_secs(60);
    if args.probe_interval < MIN_INTERVAL {
        return Err(UsageError::new(format!(
            "--probe-interval {} is below 1ms: it bounds how often a policy can make the proxy probe a backend; use e.g. 10ms",
            duration::format(args.probe_interval)
        )));
    }
    if args.probe_timeout.is_zero() || args.probe_timeout > MAX_TIMEOUT {
        return Err(UsageError::new(format!(
            "--probe-timeout {} is outside 1ns..=60s: use e.g. 100ms",
            duration::format(args.probe_timeout)
        )));
    }
    Ok(())
}

/// The sandbox flags' bounds: each must leave a policy room to work and the proxy room to
/// serve.
fn check_sandbox_bounds(args: &ServeArgs) -> Result<(), UsageError> {
    let ms = Duration::from_millis;
    let durations = [
        (
            "--policy-deadline",
            args.policy_deadline,
            ms(1),
            ms(1000),
            "5ms",
        ),
        (
            "--policy-cpu-budget",
            args.policy_cpu_budget,
            ms(1),
            ms(60_000),
            "100ms",
        ),
        (
            "--replay-budget",
            args.replay_budget,
            Duration::ZERO,
            ms(60_000),
            "250ms",
        ),
        (
            "--display-budget",
            args.display_budget,
            Duration::ZERO,
            ms(1000),
            "20ms",
        ),
    ];
    for (flag, value, min, max, example) in durations {
        if value < min || value > max {
            return Err(UsageError::new(format!(
                "{flag} {} is outside {}..={}: use e.g. {example}",
                duration::format(value),
                duration::format(min),
                duration::format(max)
            )));
        }
    }
    let sizes = [
        (
            "--policy-log-bytes-per-call",
            args.policy_log_bytes_per_call,
            4096,
        ),
        (
            "--policy-log-bytes-per-sec",
            args.policy_log_bytes_per_sec,
            65536,
        ),
        ("--policy-random-bytes", args.policy_random_bytes, 4096),
    ];
    for (flag, value, example) in sizes {
        if value > 16 << 20 {
            return Err(UsageError::new(format!(
                "{flag} {value} is over 16 MiB: it bounds host work a policy can cause per call or second; use e.g. {example}"
            )));
        }
    }
    Ok(())
}

fn router_options(args: &ServeArgs, now: SystemTime) -> RouterOptions {
    let seed = args.seed.unwrap_or_else(|| {
        now.duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1)
    });
    RouterOptions {
        limits: Limits {
            deadline: args.policy_deadline,
            memory_bytes: (args.policy_memory_mib as usize) << 20,
            cpu_budget: Some(cpu_budget(args)),
            log_bytes_per_call: args.policy_log_bytes_per_call,
            log_bytes_per_sec: args.policy_log_bytes_per_sec,
            random_bytes_per_call: args.policy_random_bytes,
        },
        replay: args.replay,
        replay_budget: args.replay_budget,
        display_budget: args.display_budget,
        seed,
        probe_interval: args.probe_interval,
        ..RouterOptions::default()
    }
}

fn upstream_options(args: &ServeArgs) -> UpstreamOptions {
    UpstreamOptions {
        mode: args.upstream,
        protocol: args.upstream_protocol,
        timeout: args.timeout,
        upload_timeout: args.upload_timeout,
        body_timeout: args.body_timeout,
        h2_keepalive: Some(args.h2_keepalive).filter(|d| !d.is_zero()),
        // One HTTP/2 connection per worker thread spreads the framing work.
        h2_connections: worker_threads(args),
    }
}

/// The policy's CPU budget per second: `--policy-cpu-budget` per worker thread, since
/// throughput, and so a healthy policy's CPU time per second, grows with the threads; at
/// most `MAX_CPU_BUDGET`, since every call runs under one lock and a policy holding it
/// most of each second stalls every worker, however many there are.
fn cpu_budget(args: &ServeArgs) -> Duration {
    const MAX_CPU_BUDGET: Duration = Duration::from_millis(500);
    let threads = u32::try_from(worker_threads(args)).unwrap_or(u32::MAX);
    args.policy_cpu_budget
        .saturating_mul(threads)
        .min(MAX_CPU_BUDGET.max(args.policy_cpu_budget))
}

/// The proxy's worker threads: `--threads`, or one per core.
fn worker_threads(args: &ServeArgs) -> usize {
    args.threads
        .map(usize::from)
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}

/// `logs/<policy>_<upstream>_<UTC time>.csv`
fn default_log_path(args: &ServeArgs, now: SystemTime) -> PathBuf {
    let stem = args
        .policy
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "policy".into());
    let when = chrono::DateTime::<chrono::Utc>::from(now).format("%Y%m%dT%H%M%SZ");
    PathBuf::from("logs").join(format!("{stem}_{}_{when}.csv", args.upstream.as_str()))
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::cli::Cli;

    const NOW: SystemTime = SystemTime::UNIX_EPOCH;

    fn config(argv: &[&str]) -> Result<ProxyConfig, UsageError> {
        let cli = Cli::try_parse_from([&["switchyard"], argv].concat()).expect("parses");
        ProxyConfig::from_args(&cli.serve, NOW)
    }

    #[test]
    fn defaults_are_the_study() {
        let c = config(&[]).unwrap();
        let ids: Vec<_> = c.backends.iter().map(|b| b.backend.id.as_str()).collect();
        assert_eq!(ids, ["A", "B", "C"]);
        assert_eq!(c.backends[2].target.addr, "127.0.0.1:8083".parse().unwrap());
        assert_eq!(c.backends[2].target.authority, "127.0.0.1:8083");
        assert_eq!(
            c.policy,
            PolicySource::File {
                path: "policies/ewma.wasm".into(),
                watch: true
            }
        );
        assert_eq!(
            c.log,
            Some(PathBuf::from("logs/ewma_persistent_19700101T000000Z.csv"))
        );
        assert_eq!(c.edge.grace, Duration::from_secs(11));
        assert_eq!(c.upstream.h2_keepalive, Some(Duration::from_secs(10)));
        assert_eq!(c.router.limits.memory_bytes, 32 << 20);
        assert!(c.admin.is_some());
    }

    #[test]
    fn backend_ids_default_in_order_and_must_differ() {
        let c = config(&[
            "--backend",
            "http://127.0.0.1:1",
            "--backend",
            "X=http://127.0.0.1:2,weight=3",
        ])
        .unwrap();
        let b: Vec<_> = c.policy_backends();
        assert_eq!(
            (b[0].id.as_str(), b[1].id.as_str(), b[1].weight),
            ("A", "X", Some(3))
        );
        let err = config(&[
            "--backend",
            "A=http://127.0.0.1:1",
            "--backend",
            "A=http://127.0.0.1:2",
        ])
        .unwrap_err()
        .to_string();
        assert!(err.contains("two backends are called `A`"), "{err}");
        assert_eq!(default_id(25), "Z");
        assert_eq!(default_id(26), "B26");
    }

    #[test]
    fn cross_flag_rules_name_the_fix() {
        let err =
            config(&["--upstream", "non-persistent", "--upstream-protocol", "h2c"]).unwrap_err();
        assert!(
            err.to_string()
                .contains("use --upstream persistent with h2c"),
            "{err}"
        );
        let err = config(&["--admin", "0.0.0.0:5002"]).unwrap_err();
        assert!(err.to_string().contains("--admin-token"), "{err}");
        assert!(config(&["--admin", "0.0.0.0:5002", "--admin-token", "t"]).is_ok());
        assert!(config(&["--no-admin"]).unwrap().admin.is_none());
    }

    #[test]
    fn switches_map_to_the_config() {
        let c = config(&[
            "--builtin-rr",
            "--no-log",
            "--h2-keepalive",
            "0s",
            "--seed",
            "9",
            "--threads",
            "3",
        ])
        .unwrap();
        assert_eq!(c.policy, PolicySource::Builtin);
        assert_eq!(c.log, None);
        assert_eq!(c.upstream.h2_keepalive, None);
        assert_eq!(c.upstream.h2_connections, 3);
        assert_eq!(c.router.seed, 9);
        let c = config(&["--no-watch", "--log", "x.csv"]).unwrap();
        assert!(matches!(c.policy, PolicySource::File { watch: false, .. }));
        assert_eq!(c.log, Some(PathBuf::from("x.csv")));
    }

    #[test]
    fn probe_bounds_are_checked_at_their_limits() {
        let c = config(&[]).unwrap();
        assert_eq!(c.router.probe_interval, Duration::from_millis(10));
        assert_eq!(c.probe_timeout, Duration::from_millis(100));
        let c = config(&["--probe-interval", "1ms", "--probe-timeout", "60s"]).unwrap();
        assert_eq!(c.router.probe_interval, Duration::from_millis(1));
        assert_eq!(c.probe_timeout, Duration::from_secs(60));
        let err = config(&["--probe-interval", "999us"]).unwrap_err();
        assert!(
            err.to_string()
                .contains("--probe-interval 999us is below 1ms"),
            "{err}"
        );
        for bad in ["0s", "60001ms"] {
            let err = config(&["--probe-timeout", bad]).unwrap_err();
            assert!(err.to_string().contains("--probe-timeout"), "{bad}: {err}");
        }
    }

    #[test]
    fn sandbox_bounds_have_defaults_and_are_checked_at_their_limits() {
        let c = config(&["--threads", "2"]).unwrap();
        let l = c.router.limits;
        assert_eq!(l.deadline, Duration::from_millis(5));
        // 100 ms per second per worker thread.
        assert_eq!(l.cpu_budget, Some(Duration::from_millis(200)));
        assert_eq!(
            (
                l.log_bytes_per_call,
                l.log_bytes_per_sec,
                l.random_bytes_per_call
            ),
            (4096, 65536, 4096)
        );
        assert_eq!(c.router.replay_budget, Duration::from_millis(250));
        assert_eq!(c.router.display_budget, Duration::from_millis(20));
        let ok = config(&[
            "--threads",
            "1",
            "--policy-deadline",
            "1s",
            "--policy-cpu-budget",
            "1ms",
            "--replay-budget",
            "0s",
            "--display-budget",
            "1s",
            "--policy-random-bytes",
            "16777216",
        ])
        .unwrap();
        assert_eq!(ok.router.limits.cpu_budget, Some(Duration::from_millis(1)));
        // Per thread, but at most 500 ms a second unless the flag itself asks for more.
        let many = config(&["--threads", "16"]).unwrap();
        assert_eq!(
            many.router.limits.cpu_budget,
            Some(Duration::from_millis(500))
        );
        let big = config(&["--threads", "4", "--policy-cpu-budget", "800ms"]).unwrap();
        assert_eq!(
            big.router.limits.cpu_budget,
            Some(Duration::from_millis(800))
        );
        for (flag, bad) in [
            ("--policy-deadline", "1001ms"),
            ("--policy-deadline", "999us"),
            ("--policy-cpu-budget", "0s"),
            ("--policy-cpu-budget", "61s"),
            ("--replay-budget", "61s"),
            ("--display-budget", "1001ms"),
            ("--policy-log-bytes-per-call", "16777217"),
            ("--policy-log-bytes-per-sec", "16777217"),
            ("--policy-random-bytes", "16777217"),
        ] {
            let err = config(&[flag, bad]).unwrap_err().to_string();
            assert!(
                err.starts_with(flag) && err.contains("use e.g."),
                "{flag} {bad}: {err}"
            );
        }
    }
}
