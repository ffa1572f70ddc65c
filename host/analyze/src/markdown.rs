//! The analysis as markdown: the study's Tables 1-3 and the wrk cross-check (printed by
//! `analyze`), and REPORT.md, which adds our numbers beside the study's published ones,
//! the figures and per-run details. Fixed decimals, and nothing from the clock, so the same
//! logs always give the same bytes.
use std::fmt::Write as _;
use std::path::Path;

use switchyard_report::{escape_cell, render_backends, render_shares, render_summary, RunStats};

use super::config::{NON_PERSISTENT, PERSISTENT};
use super::figures::Written;
use super::load::LogFormat;
use super::{study, Run};

/// Tables 1 (persistent) and 2 (non-persistent) with p50/p99 added, a table per other
/// mode, Table 3 (shares), and the client-side cross-check.
pub fn tables(runs: &[Run]) -> String {
    let mut out = String::new();
    let mut modes: Vec<&str> = vec![PERSISTENT, NON_PERSISTENT];
    for r in runs {
        if !modes.contains(&r.config.mode.as_str()) {
            modes.push(&r.config.mode);
        }
    }
    for (i, mode) in modes.iter().enumerate() {
        let rows: Vec<RunStats> = runs
            .iter()
            .filter(|r| r.config.mode == *mode)
            .map(|r| RunStats {
                label: r.policy.clone(),
                ..r.stats.clone()
            })
            .collect();
        let heading = match i {
            0 | 1 => format!("Table {}: {mode} upstream connections", i + 1),
            _ => format!("Other runs: {mode}"),
        };
        let _ = writeln!(out, "## {heading}\n");
        if rows.is_empty() {
            let _ = writeln!(out, "(no {mode} runs)\n");
        } else {
            let _ = writeln!(out, "{}", render_summary(&rows));
        }
    }
    let all: Vec<RunStats> = runs.iter().map(|r| r.stats.clone()).collect();
    let _ = writeln!(
        out,
        "## Table 3: share of requests per backend\n\n{}",
        render_shares(&all)
    );
    let _ = writeln!(
        out,
        "## Cross-check: the proxy's log / wrk (client side)\n\n{}",
        cross_check(runs)
    );
    out
}

/// The proxy's figures beside wrk's for each run. wrk's latencies include the client's
/// hop to the proxy and its own scheduling, so they should be a little higher; a large gap
/// in req/s or requests means one of the two lost track.
pub fn cross_check(runs: &[Run]) -> String {
    let mut out = String::from(
        "| configuration | requests | req/s | mean ms | p50 ms | p99 ms | max ms | errors |\n\
         |---|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    for r in runs {
        let s = &r.stats;
        let w = r.wrk.as_ref();
        let pair = |ours: f64, theirs: Option<f64>, decimals: usize| {
            format!("{ours:.decimals$} / {}", opt(theirs, decimals))
        };
        let _ = writeln!(
            out,
            "| {} | {} / {} | {} | {} | {} | {} | {} | {} / {} |",
            escape_cell(&s.label),
            s.requests,
            w.and_then(|w| w.requests)
                .map_or("n/a".into(), |n| n.to_string()),
            pair(s.req_per_s, w.map(|w| w.req_per_s), 1),
            pair(s.mean_ms, w.and_then(|w| w.mean_ms), 2),
            pair(s.p50_ms, w.and_then(|w| w.p50_ms), 2),
            pair(s.p99_ms, w.and_then(|w| w.p99_ms), 2),
            pair(s.max_ms, w.and_then(|w| w.max_ms), 2),
            s.errors,
            w.map_or("n/a".into(), |w| w.errors().to_string()),
        );
    }
    out
}

/// REPORT.md for the runs, written into `out` with the figures in `charts`.
pub fn report(runs: &[Run], out: &Path, charts: &[Written]) -> String {
    let mut md = String::from("# Switchyard load-balancing study: report\n\n");
    let _ = writeln!(
        md,
        "Written by `switchyard analyze` from {} run(s); every figure below is computed from \
         the request logs, cross-checked with wrk's own summary where one was saved. {}\n",
        runs.len(),
        load_summary(runs)
    );
    md.push_str("## Our numbers beside the study's\n\n");
    md.push_str(
        "The study's figures are its Tables 1 to 3 and section 15 (`wrk -t4 -c100 -d120s`, \
         persistent and non-persistent); it published no p99, shown as n/a. Δ is our req/s \
         relative to the study's.\n\n",
    );
    for mode in [PERSISTENT, NON_PERSISTENT] {
        let _ = writeln!(
            md,
            "### {mode} upstream connections\n\n{}",
            beside(runs, mode)
        );
    }
    md.push_str("## Figures\n\n");
    for c in charts {
        let _ = writeln!(
            md,
            "![{}]({stem}.svg)\n\n[SVG]({stem}.svg) · [PNG]({stem}.png)\n",
            c.title,
            stem = c.stem
        );
    }
    md.push_str(&tables(runs));
    md.push_str("## Runs\n\n");
    for r in runs {
        md.push_str(&run_details(r, out));
    }
    md.push_str(METHOD);
    md
}

/// Ours beside the study's for one upstream mode; the study's policies we did not run are
/// listed too, so a missing configuration is visible.
fn beside(runs: &[Run], mode: &str) -> String {
    let mut out = String::from(
        "| policy | req/s | study | Δ | mean ms | study | p95 ms | study | p99 ms | study | shares A / B / C | study |\n\
         |---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    let these: Vec<&Run> = runs.iter().filter(|r| r.config.mode == mode).collect();
    for r in &these {
        let s = &r.stats;
        let p = study::published(mode, &r.config.policy);
        let delta = p.map_or("n/a".into(), |p| {
            format!("{:+.1}%", (s.req_per_s / p.req_per_s - 1.0) * 100.0)
        });
        let _ = writeln!(
            out,
            "| {} | {:.1} | {} | {delta} | {:.1} | {} | {:.0} | {} | {:.0} | n/a | {} | {} |",
            escape_cell(&r.policy),
            s.req_per_s,
            opt(p.map(|p| p.req_per_s), 1),
            s.mean_ms,
            opt(p.map(|p| p.mean_ms), 1),
            s.p95_ms,
            opt(p.map(|p| p.p95_ms), 0),
            s.p99_ms,
            our_shares(s),
            study_shares(p),
        );
    }
    {
        for p in study::table(mode) {
            if !these.iter().any(|r| r.config.policy == p.policy) {
                let _ = writeln!(
                    out,
                    "| {} | not run | {:.1} | n/a | not run | {:.1} | not run | {:.0} | not run | n/a | not run | {} |",
                    p.policy,
                    p.req_per_s,
                    p.mean_ms,
                    p.p95_ms,
                    study_shares(Some(p)),
                );
            }
        }
    }
    if these.is_empty() && study::table(mode).is_empty() {
        out.push_str("| (no runs) | | n/a | | | n/a | | n/a | | n/a | | n/a |\n");
    }
    out
}

/// The study's shares A / B / C, as published.
fn study_shares(p: Option<&study::Published>) -> String {
    p.and_then(|p| p.shares_pct)
        .map_or("n/a".into(), |[a, b, c]| {
            format!("{a:.2} / {b:.2} / {c:.2} %")
        })
}

/// `A 23.1 / B 75.4 / C 1.5 %` over the study's backends when the run has them, else all.
fn our_shares(s: &RunStats) -> String {
    let study_backends = study::BACKENDS.iter().all(|b| s.backend(b).is_some());
    let parts: Vec<String> = if study_backends {
        study::BACKENDS
            .iter()
            .map(|b| format!("{:.1}", s.share(b) * 100.0))
            .collect()
    } else {
        s.backends
            .iter()
            .map(|b| format!("{} {:.1}", b.backend, b.share * 100.0))
            .collect()
    };
    format!("{} %", parts.join(" / "))
}

/// The load wrk applied, one entry per threads x connections setting, with the range of
/// its measured durations (each run's is a little over the asked-for one).
fn load_summary(runs: &[Run]) -> String {
    let mut loads: Vec<(String, f64, f64)> = Vec::new();
    for w in runs.iter().filter_map(|r| r.wrk.as_ref()) {
        let load = format!(
            "`wrk -t{} -c{}`",
            w.threads.map_or("?".into(), |t| t.to_string()),
            w.connections.map_or("?".into(), |c| c.to_string()),
        );
        let d = w.duration_s.unwrap_or(f64::NAN);
        match loads.iter_mut().find(|(l, _, _)| *l == load) {
            Some((_, lo, hi)) => (*lo, *hi) = (lo.min(d), hi.max(d)),
            None => loads.push((load, d, d)),
        }
    }
    if loads.is_empty() {
        return "No wrk output was found beside the logs.".into();
    }
    let parts: Vec<String> = loads
        .iter()
        .map(|(load, lo, hi)| match (lo.is_finite(), lo == hi) {
            (false, _) => load.clone(),
            (true, true) => format!("{load} for {lo:.2} s"),
            (true, false) => format!("{load} for {lo:.2}-{hi:.2} s"),
        })
        .collect();
    format!("Load as wrk reported it: {}.", parts.join("; "))
}

fn run_details(r: &Run, out: &Path) -> String {
    let s = &r.stats;
    let mut md = format!("### {}\n\n", s.label);
    let rel = |p: &Path| p.strip_prefix(out).unwrap_or(p).display().to_string();
    let format = match r.format {
        LogFormat::Proxy => "proxy log",
        LogFormat::Study => "the study's five-column log",
    };
    let _ = writeln!(
        md,
        "- log: `{}` ({format}), first request logged {}",
        rel(&r.csv),
        r.first_timestamp
    );
    match (&r.wrk_path, &r.wrk, &r.wrk_problem) {
        (Some(p), Some(w), _) => {
            let _ = writeln!(
                md,
                "- wrk: `{}`: {} requests, {:.1} req/s, {} non-2xx/3xx, {} socket errors",
                rel(p),
                w.requests.map_or("?".into(), |n| n.to_string()),
                w.req_per_s,
                w.non_2xx,
                w.socket_errors
            );
        }
        (_, _, Some(problem)) => {
            let _ = writeln!(md, "- wrk: unusable ({problem})");
        }
        _ => md.push_str("- wrk: no output saved beside the log\n"),
    }
    let source = if r.wrk.as_ref().and_then(|w| w.duration_s).is_some() {
        "wrk's"
    } else {
        "first request start to last finish, from the log"
    };
    let modes: Vec<String> = s
        .routing_modes
        .iter()
        .map(|m| format!("{} {}", m.mode, m.requests))
        .collect();
    let _ = writeln!(
        md,
        "- {} requests in {:.2} s ({source}); {} errors ({:.2}%); {} more abandoned by the client, left out\n\
         - routed by: {}\n",
        s.requests,
        s.duration_s,
        s.errors,
        s.error_rate * 100.0,
        r.aborted,
        if modes.is_empty() { "n/a".into() } else { modes.join(", ") },
    );
    let _ = writeln!(md, "{}", render_backends(s));
    md
}

const METHOD: &str = "## How the numbers are computed\n\n\
- One run per request log. Requests: every completed request. Those whose client hung up \
(`outcome` = `aborted`: wrk leaves one per connection in flight when it stops) are counted \
apart and left out: they were never answered, and their latency is only the time until the \
hang-up. The request counts then match wrk's.\n\
- req/s: requests / duration; the duration is wrk's when its output was saved beside the log, \
else from the first request's start (timestamp - latency) to the last completion.\n\
- Latencies are the proxy's, from sending the upstream request to having the whole response, \
in ms; percentiles are exact nearest-rank over every request (always an observed value), so \
they can differ slightly from pandas' interpolated ones and from the dashboard's live figures \
(per second, or an HDR histogram since start). wrk's latencies include the client's side and \
come from its own histogram.\n\
- Errors: status >= 500 or an `outcome` of connect_error, timeout or broken; in the study's \
five-column logs, status >= 500 or no status.\n\
- Backends are known by `backend_id`; in the study's logs by URL (ports 8081, 8082, 8083 are \
A, B, C).\n";

fn opt(v: Option<f64>, decimals: usize) -> String {
    v.map_or("n/a".into(), |v| format!("{v:.decimals$}"))
}
