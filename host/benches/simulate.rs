//! How fast the simulator runs: the study scenario, 100 connections, 120 s of virtual time
//! (about 60k requests), per policy. Prints wall time and simulated requests per second of
//! wall time; the best of a few runs, since the machine's noise only ever adds time.
//!
//! `cargo bench -p switchyard --bench simulate` (needs `just build-policies`).
use std::path::PathBuf;
use std::time::{Duration, Instant};

use switchyard_runtime::PolicyRuntime;
use switchyard_sim::{simulate, Scenario, SimOptions};

const RUNS: usize = 5;

fn main() -> anyhow::Result<()> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let runtime = PolicyRuntime::new()?;
    println!(
        "| scenario | policy | requests | best wall ms | total ms (incl. setup) | sim req/s |"
    );
    println!("|---|---|---:|---:|---:|---:|");
    for scenario_name in ["study", "capacity", "many"] {
        let scenario = Scenario::load(&root.join(format!("scenarios/{scenario_name}.toml")))?;
        for policy_name in ["rr", "sma", "ewma", "peak-ewma"] {
            let policy = runtime.load(&root.join(format!("policies/{policy_name}.wasm")))?;
            let mut best = Duration::MAX;
            let mut best_total = Duration::MAX;
            let mut requests = 0;
            for _ in 0..RUNS {
                let started = Instant::now();
                let result = simulate(policy.clone(), &scenario, &SimOptions::default())?;
                best_total = best_total.min(started.elapsed());
                best = best.min(result.wall);
                requests = result.requests.len();
            }
            println!(
                "| {scenario_name} | {policy_name} | {requests} | {:.1} | {:.1} | {:.0} |",
                best.as_secs_f64() * 1e3,
                best_total.as_secs_f64() * 1e3,
                requests as f64 / best.as_secs_f64()
            );
        }
    }
    Ok(())
}
