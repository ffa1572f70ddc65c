//! The operator's console: a start-up banner, then one summary line per second while
//! traffic flows, and totals at exit. Reads the router, upstreams and telemetry; changes
//! nothing.
use std::fmt::Write as _;
use std::sync::atomic::Ordering;
use std::time::Duration;

use switchyard_runtime::Backend;

use crate::out::say;
use crate::proxy::ProxyState;
use crate::telemetry::{Second, Telemetry, Totals};

pub struct Banner<'a> {
    pub listen: std::net::SocketAddr,
    pub policy_name: &'a str,
    pub policy_file: &'a std::path::Path,
    pub compile: Duration,
    pub backends: &'a [Backend],
    pub upstream: &'a str,
    pub timeout: Duration,
    pub log: Option<&'a std::path::Path>,
}

pub fn print_banner(b: &Banner<'_>) {
    say!(
        "switchyard {} listening on http://{}",
        env!("CARGO_PKG_VERSION"),
        b.listen
    );
    say!(
        "  policy    {} ({}, compiled in {} ms)",
        b.policy_name,
        b.policy_file.display(),
        b.compile.as_millis()
    );
    let list: Vec<String> = b
        .backends
        .iter()
        .map(|b| format!("{} {}", b.id, b.url))
        .collect();
    say!("  backends  {}", list.join(", "));
    say!("  upstream  {}, timeout {:?}", b.upstream, b.timeout);
    match b.log {
        Some(p) => say!("  log       {}", p.display()),
        None => say!("  log       off"),
    }
}

/// One line summarising the last second.
pub fn summary_line(shared: &ProxyState, w: &Second, elapsed: Duration) -> String {
    let ids = shared.backend_ids();
    let mut line = format!(
        "[{:>5.0}s] {:>6} req/s  mean {:>7.1} ms  p95 {:>7.1} ms",
        elapsed.as_secs_f64(),
        w.requests,
        w.mean_ms,
        w.p95_ms
    );
    if w.errors > 0 {
        let _ = write!(line, "  errors {}", w.errors);
    }
    if w.faults > 0 {
        let _ = write!(line, "  policy faults {}", w.faults);
    }
    line.push_str("  share");
    for (id, s) in ids.iter().zip(w.shares()) {
        let _ = write!(line, " {id}={:.0}%", s * 100.0);
    }
    line.push_str("  conns");
    for (id, up) in ids.iter().zip(shared.upstreams.iter()) {
        let _ = write!(line, " {id}={}", up.stats.opened.load(Ordering::Relaxed));
    }
    if let Some(scores) = shared.router.scores(shared.now_ns()) {
        if !scores.label.is_empty() {
            let _ = write!(line, "  {}:", scores.label);
            for (i, v) in scores.values {
                let _ = write!(line, " {}={v:.1}ms", ids.get(i).copied().unwrap_or("?"));
            }
        }
    }
    let status = shared.router.status();
    if status.disabled {
        let _ = write!(
            line,
            "  POLICY {} DISABLED (routing round-robin)",
            status.name
        );
    }
    line
}

/// Prints a summary line for every second that saw traffic, until the task is dropped.
pub async fn run(shared: std::sync::Arc<ProxyState>, telemetry: std::sync::Arc<Telemetry>) {
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut printed = crate::telemetry::unix_secs(std::time::SystemTime::now());
    loop {
        tick.tick().await;
        for w in telemetry.seconds_after(printed) {
            printed = w.unix;
            if w.requests > 0 {
                say!("{}", summary_line(&shared, &w, shared.epoch.elapsed()));
            }
        }
    }
}

/// Totals printed at exit.
pub fn print_totals(shared: &ProxyState, total: &Totals, logged: Option<&std::path::Path>) {
    let ids = shared.backend_ids();
    let mut line = format!(
        "total: {} requests, {} errors, mean {:.1} ms, p95 {:.1} ms",
        total.requests,
        total.errors,
        total.mean_ms(),
        total.quantile_ms(0.95)
    );
    line.push_str("; upstream connections opened");
    for (id, up) in ids.iter().zip(shared.upstreams.iter()) {
        let _ = write!(
            line,
            " {id}={} (reused {})",
            up.stats.opened.load(Ordering::Relaxed),
            up.stats.reused.load(Ordering::Relaxed)
        );
    }
    say!("{line}");
    let c = shared.router.counters();
    let faults: u64 = c.faults.iter().map(|f| f.load(Ordering::Relaxed)).sum();
    if faults > 0 || c.swaps.load(Ordering::Relaxed) > 0 {
        say!(
            "policy: {} faults, {} swaps, {} failed swaps",
            faults,
            c.swaps.load(Ordering::Relaxed),
            c.failed_swaps.load(Ordering::Relaxed)
        );
    }
    if let Some(p) = logged {
        say!("log: {} rows in {}", total.requests, p.display());
    }
}
