//! `switchyard matrix`: every policy in a folder on every scenario in another, one table.
//!
//! The research question a policy library has to answer is "which algorithm for which
//! situation"; answering it one `simulate` at a time invites cherry-picking. The matrix
//! runs them all with the same load and seed, so its markdown is deterministic (the same
//! inputs give the same bytes) and can live in the README. Wall-clock times go to stderr.
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use switchyard_input::UsageError;
use switchyard_report::{escape_cell, percentile, RunStats};
use switchyard_runtime::PolicyRuntime;

use super::{format_duration, parse_duration, simulate, Scenario, SimOptions, SimResult};

/// The error rate above which a row cannot be marked best.
const MAX_BEST_ERRORS: f64 = 0.01;

/// Backends whose shares a row lists by name; a fleet shows its busiest and idlest instead.
const NAMED_SHARES: usize = 5;

#[derive(Debug, Clone, clap::Args)]
pub struct MatrixArgs {
    /// Every `*.wasm` directly in this folder is a policy of the matrix.
    #[arg(long, value_name = "DIR", default_value = "policies")]
    pub policies: PathBuf,
    /// Every `*.toml` directly in this folder is a scenario of the matrix.
    #[arg(long, value_name = "DIR", default_value = "scenarios")]
    pub scenarios: PathBuf,
    /// Concurrent closed-loop client connections in each run.
    #[arg(long, value_name = "N", default_value_t = 100)]
    pub connections: usize,
    /// Virtual time of each run.
    #[arg(long, value_name = "DURATION", default_value = "60s", value_parser = parse_duration)]
    pub duration: Duration,
    /// Requests sent before this are left out of every row.
    #[arg(long, value_name = "DURATION", default_value = "5s", value_parser = parse_duration)]
    pub warmup: Duration,
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub seed: u64,
    /// Also write the table as MATRIX.md and its chart as matrix.svg and matrix.png here.
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
}

/// One policy on one scenario.
#[derive(Debug, Clone)]
pub struct Cell {
    pub scenario: String,
    /// The policy file's stem, e.g. "peak-ewma".
    pub policy: String,
    pub stats: RunStats,
    pub p999_ms: f64,
    pub faults: u64,
    pub wall: Duration,
}

/// The folder's files with `ext`, sorted by name so the table's order is stable.
fn files(dir: &Path, ext: &str, flag: &str) -> anyhow::Result<Vec<PathBuf>> {
    let read = std::fs::read_dir(dir).map_err(|e| {
        UsageError::with_source(
            format!(
                "{flag} {}: cannot read the folder: pass a folder of .{ext} files",
                dir.display()
            ),
            e,
        )
    })?;
    let mut out: Vec<PathBuf> = read
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == ext) && p.is_file())
        .collect();
    out.sort();
    if out.is_empty() {
        return Err(UsageError::new(format!(
            "{flag} {}: no .{ext} files in it: pass a folder that has some",
            dir.display()
        ))
        .into());
    }
    Ok(out)
}

fn stem(p: &Path) -> String {
    p.file_stem()
        .map_or_else(String::new, |s| s.to_string_lossy().into_owned())
}

/// Runs every policy on every scenario. Scenarios are all checked before the first run,
/// so a typo in the last file does not cost the whole matrix.
pub fn run_matrix(args: &MatrixArgs) -> anyhow::Result<Vec<Cell>> {
    let scenarios: Vec<Scenario> = files(&args.scenarios, "toml", "--scenarios")?
        .iter()
        .map(|p| Scenario::load(p))
        .collect::<Result<_, _>>()?;
    let runtime = PolicyRuntime::new()?;
    let mut policies = Vec::new();
    for path in files(&args.policies, "wasm", "--policies")? {
        let component = runtime
            .load(&path)
            .map_err(|e| UsageError::with_source("--policies", e))?;
        policies.push((stem(&path), component));
    }
    let opts = SimOptions {
        connections: args.connections,
        duration: args.duration,
        seed: args.seed,
        warmup: args.warmup,
        ..SimOptions::default()
    };
    let mut cells = Vec::new();
    for scenario in &scenarios {
        for (name, component) in &policies {
            let r = simulate(component.clone(), scenario, &opts)?;
            cells.push(cell(&scenario.name, name, &r));
        }
    }
    Ok(cells)
}

fn cell(scenario: &str, policy: &str, r: &SimResult) -> Cell {
    let mut latencies: Vec<f64> = r.measured().map(super::result::latency_ms).collect();
    latencies.sort_by(f64::total_cmp);
    Cell {
        scenario: scenario.to_string(),
        policy: policy.to_string(),
        stats: r.stats.clone(),
        p999_ms: percentile(&latencies, 99.9),
        faults: r.faults,
        wall: r.wall,
    }
}

/// The markdown: what was run, then one table per scenario (its policies as rows).
pub fn render_markdown(args: &MatrixArgs, cells: &[Cell]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "Every policy in `{}` on every scenario in `{}`: {} closed-loop connections, {} of \
         virtual time each, the first {} left out, seed {}. Latencies in ms, failed requests \
         included; `best` marks the lowest mean and the lowest p99 of each scenario among \
         the policies that failed at most 1 % of their requests.\n",
        args.policies.display(),
        args.scenarios.display(),
        args.connections,
        format_duration(args.duration),
        format_duration(args.warmup),
        args.seed
    );
    let mut scenarios: Vec<&str> = Vec::new();
    for c in cells {
        if !scenarios.contains(&c.scenario.as_str()) {
            scenarios.push(&c.scenario);
        }
    }
    for s in scenarios {
        let rows: Vec<&Cell> = cells.iter().filter(|c| c.scenario == s).collect();
        let _ = writeln!(out, "### {s}\n\n{}", table(&rows));
    }
    out
}

fn table(rows: &[&Cell]) -> String {
    let mut out = String::from(
        "| policy | req/s | mean | p50 | p95 | p99 | p99.9 | errors | faults | shares |\n\
         |---|---:|---:|---:|---:|---:|---:|---:|---:|---|\n",
    );
    // A policy that fails requests fast has fast "latencies": only rows within
    // `MAX_BEST_ERRORS` compete for the mark.
    let best = |f: fn(&RunStats) -> f64| {
        rows.iter()
            .filter(|c| c.stats.error_rate <= MAX_BEST_ERRORS)
            .map(|c| f(&c.stats))
            .min_by(f64::total_cmp)
            .unwrap_or(f64::NAN)
    };
    let (best_mean, best_p99) = (best(|s| s.mean_ms), best(|s| s.p99_ms));
    let mark = |v: f64, b: f64| if v == b { " best" } else { "" };
    for c in rows {
        let s = &c.stats;
        let _ = writeln!(
            out,
            "| {} | {:.1} | {:.2}{} | {:.2} | {:.2} | {:.2}{} | {:.2} | {} | {} | {} |",
            escape_cell(&c.policy),
            s.req_per_s,
            s.mean_ms,
            mark(s.mean_ms, best_mean),
            s.p50_ms,
            s.p95_ms,
            s.p99_ms,
            mark(s.p99_ms, best_p99),
            c.p999_ms,
            s.errors,
            c.faults,
            shares(s)
        );
    }
    out
}

/// `A 13.0, B 86.0, C 1.0` for a few backends; for a fleet, the spread instead.
fn shares(s: &RunStats) -> String {
    if s.backends.len() <= NAMED_SHARES {
        let parts: Vec<String> = s
            .backends
            .iter()
            .map(|b| format!("{} {:.1}", escape_cell(&b.backend), b.share * 100.0))
            .collect();
        return parts.join(", ");
    }
    let (lo, hi) = s
        .backends
        .iter()
        .fold((f64::INFINITY, 0.0f64), |(lo, hi), b| {
            (lo.min(b.share), hi.max(b.share))
        });
    format!(
        "{} backends, {:.2} to {:.2} each",
        s.backends.len(),
        lo * 100.0,
        hi * 100.0
    )
}
