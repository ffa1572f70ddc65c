//! The deterministic simulator behind `switchyard simulate`.
//!
//! A policy idea can be judged in a fraction of a second instead of a two-minute live run
//! per configuration, without noise, and against situations that are hard to stage live
//! (a backend dying at exactly 30 s, fifty backends). The policy is the real compiled
//! component, driven through the proxy's own [`switchyard_runtime::Router`], so what is
//! measured here is what the proxy would run; only the network and the clock are virtual.
//!
//! - [`scenario`]: the TOML scenario files (`scenarios/*.toml`).
//! - [`model`]: a backend as `backend/` behaves: latency cycles or distributions, capacity
//!   with a FIFO queue, error rates, crashes and restarts at given times; [`load`]: the
//!   load it reports (`backend --report-load`); `probes`: the policy's probes as events.
//! - `engine`: the event loop (closed-loop clients like wrk); `result`: [`SimResult`] and
//!   its statistics; `queue`: the loop's
//!   [`EventQueue`], ordered by (virtual time, insertion sequence).
//! - [`matrix`]: every policy on every scenario, one markdown table (`switchyard matrix`).
//! - CSV output in the proxy's log format, and the report in the study's table format
//!   ([`switchyard_report`]).
mod csvlog;
pub mod duration;
mod engine;
pub mod load;
pub mod matrix;
pub mod model;
mod probes;
mod queue;
mod result;
pub mod scenario;

use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use switchyard_input::UsageError;
use switchyard_runtime::PolicyRuntime;

pub use csvlog::timestamp;
pub use duration::{format_duration, parse_duration};
pub use engine::{simulate, SimOptions, SimRecord, SimResult, MAX_CONNECTIONS};
pub use queue::EventQueue;
pub use scenario::Scenario;

use switchyard_report::{render_backends, render_shares, render_summary};

/// `switchyard simulate`: run a policy component against a scenario in virtual time.
#[derive(Debug, Clone, clap::Args)]
pub struct SimulateArgs {
    /// The policy component to simulate, e.g. policies/ewma.wasm.
    #[arg(long, value_name = "FILE")]
    pub policy: PathBuf,
    /// The backends and what happens to them, e.g. scenarios/study.toml.
    #[arg(long, value_name = "FILE")]
    pub scenario: PathBuf,
    /// Concurrent client connections; each sends its next request when the answer arrives.
    #[arg(long, value_name = "N", default_value_t = 100)]
    pub connections: usize,
    /// Virtual time during which clients send (requests in flight then still finish).
    #[arg(long, value_name = "DURATION", default_value = "120s", value_parser = parse_duration)]
    pub duration: Duration,
    /// Seeds the policy and the backends' random draws; same seed, same bytes out.
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub seed: u64,
    /// Proxy time added to every request before it reaches the backend, e.g. 0.1ms.
    #[arg(long, value_name = "DURATION", default_value = "0s", value_parser = parse_duration)]
    pub overhead: Duration,
    /// A policy setting, passed to its `configure` (repeatable), e.g. --policy-arg alpha=0.3.
    #[arg(long = "policy-arg", value_name = "KEY=VALUE", value_parser = parse_policy_arg)]
    pub policy_args: Vec<(String, String)>,
    /// Also write every measured request as a proxy CSV log (for analyze and the dashboard).
    #[arg(long, value_name = "FILE")]
    pub csv: Option<PathBuf>,
    /// Leave requests sent before this out of the statistics and the CSV.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub warmup: Option<Duration>,
}

impl SimulateArgs {
    pub fn options(&self) -> SimOptions {
        SimOptions {
            connections: self.connections,
            duration: self.duration,
            seed: self.seed,
            overhead: self.overhead,
            policy_args: self.policy_args.clone(),
            warmup: self.warmup.unwrap_or(Duration::ZERO),
        }
    }
}

/// Runs `switchyard simulate`: the report on stdout, the wall-clock figures on stderr
/// (they differ from run to run, and stdout must not). Bad input (a scenario file, a flag
/// value, the policy file) is a [`UsageError`] in the chain, so the binary exits with 2.
pub fn run(args: &SimulateArgs) -> anyhow::Result<()> {
    let (report, result) = run_to_string(args)?;
    print!("{report}");
    let n = result.requests.len();
    eprintln!(
        "simulated {n} requests in {:.3} s ({:.0}k req/s)",
        result.wall.as_secs_f64(),
        result.sim_rate() / 1000.0
    );
    Ok(())
}

/// Everything `run` does except printing: loads, simulates, writes the CSV if asked, and
/// returns the report text with the result.
pub fn run_to_string(args: &SimulateArgs) -> anyhow::Result<(String, SimResult)> {
    let scenario = Scenario::load(&args.scenario)?;
    let runtime = PolicyRuntime::new()?;
    // Every load error is about the file (missing, not a component, wrong world, ..), and
    // its message names the file and the fix.
    let policy = runtime
        .load(&args.policy)
        .map_err(|e| UsageError::with_source("--policy", e))?;
    let result = simulate(policy, &scenario, &args.options())?;
    if let Some(path) = &args.csv {
        let mut file = std::fs::File::create(path).map_err(|e| {
            UsageError::with_source(
                format!("cannot create {}: pass another --csv FILE", path.display()),
                e,
            )
        })?;
        result
            .write_csv(&mut file)
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok((render(args, &scenario, &result), result))
}

/// The report: what was run, the study's summary and shares tables, then per backend.
pub fn render(args: &SimulateArgs, scenario: &Scenario, result: &SimResult) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "# Simulation: {}\n", scenario.name);
    if !scenario.description.is_empty() {
        let _ = writeln!(out, "{}\n", scenario.description);
    }
    let _ = writeln!(
        out,
        "- scenario: {} ({} backends)",
        args.scenario.display(),
        scenario.backends.len()
    );
    let _ = writeln!(
        out,
        "- policy: {} ({})",
        args.policy.display(),
        result.label
    );
    let _ = writeln!(
        out,
        "- load: {} closed-loop connections for {} of virtual time, warm-up {}, proxy overhead {}, seed {}",
        args.connections,
        format_duration(args.duration),
        format_duration(args.warmup.unwrap_or_default()),
        format_duration(args.overhead),
        args.seed
    );
    let _ = writeln!(
        out,
        "- requests: {} measured of {} sent, last answer at {:.3} s virtual",
        result.stats.requests,
        result.requests.len(),
        result.end_ns as f64 / 1e9
    );
    let _ = writeln!(
        out,
        "\n## Summary\n\n{}",
        render_summary(std::slice::from_ref(&result.stats))
    );
    let _ = writeln!(
        out,
        "## Shares\n\n{}",
        render_shares(std::slice::from_ref(&result.stats))
    );
    let _ = writeln!(out, "## Backends\n\n{}", render_backends(&result.stats));
    if let Some(scores) = result.scores.as_ref().filter(|s| !s.label.is_empty()) {
        let values: Vec<String> = scores
            .values
            .iter()
            .map(|(i, v)| {
                let id = result.backends.get(*i).map_or("?", |b| b.id.as_str());
                format!("{id} {v:.2}")
            })
            .collect();
        let _ = writeln!(
            out,
            "Final scores ({}): {}",
            scores.label,
            values.join(", ")
        );
    }
    let modes: Vec<String> = result
        .stats
        .routing_modes
        .iter()
        .map(|m| format!("{} {}", m.mode, m.requests))
        .collect();
    let _ = writeln!(
        out,
        "Routing modes: {}; policy faults: {}, requests routed by the host's fallback: {}",
        modes.join(", "),
        result.faults,
        result.fallback_routed
    );
    out
}

fn parse_policy_arg(text: &str) -> Result<(String, String), String> {
    switchyard_input::key_value(text)
}
