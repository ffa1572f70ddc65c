//! `switchyard matrix`: the simulator's policy matrix (`switchyard_sim::matrix`), printed
//! as markdown and, with `--out`, written as MATRIX.md with a chart. The chart is drawn
//! here because the simulator must not depend on the plotting crate (README, "Layout").
use std::path::Path;

use anyhow::Context as _;
use switchyard_sim::matrix::{render_markdown, run_matrix, Cell, MatrixArgs};

pub fn run(args: &MatrixArgs) -> anyhow::Result<()> {
    let cells = run_matrix(args)?;
    let md = render_markdown(args, &cells);
    print!("{md}");
    for c in &cells {
        eprintln!(
            "{:14} {:14} {:>8} requests in {:7.1} ms wall",
            c.scenario,
            c.policy,
            c.stats.requests,
            c.wall.as_secs_f64() * 1e3
        );
    }
    if let Some(dir) = &args.out {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("cannot create --out {}", dir.display()))?;
        let file = dir.join("MATRIX.md");
        let text = format!("# Policy matrix\n\n{md}\n![mean and p99 relative to the best policy of each scenario](matrix.svg)\n");
        std::fs::write(&file, text).with_context(|| format!("cannot write {}", file.display()))?;
        chart(&cells, dir)?;
        eprintln!("wrote {} and matrix.svg/png", file.display());
    }
    Ok(())
}

#[cfg(feature = "analyze")]
fn chart(cells: &[Cell], dir: &Path) -> anyhow::Result<()> {
    use switchyard_analyze::figures::{write_grouped, GroupedPanel};
    let mut scenarios: Vec<String> = Vec::new();
    let mut policies: Vec<String> = Vec::new();
    for c in cells {
        if !scenarios.contains(&c.scenario) {
            scenarios.push(c.scenario.clone());
        }
        if !policies.contains(&c.policy) {
            policies.push(c.policy.clone());
        }
    }
    // Scenarios differ a hundredfold in latency: each bar is relative to that scenario's
    // best policy (of those failing at most 1 %), so 1.00 is the best and 2.00 twice as
    // slow; a policy that fails fast can show below 1.
    let relative = |metric: fn(&Cell) -> f64| -> Vec<(String, Vec<Option<f64>>)> {
        policies
            .iter()
            .map(|p| {
                let values = scenarios
                    .iter()
                    .map(|s| {
                        let of = |c: &&Cell| &c.scenario == s;
                        // As the table's marks: rows failing over 1 % do not set the best.
                        let best = cells
                            .iter()
                            .filter(of)
                            .filter(|c| c.stats.error_rate <= 0.01)
                            .map(metric)
                            .fold(f64::INFINITY, f64::min);
                        let cell = cells.iter().filter(of).find(|c| &c.policy == p)?;
                        (best > 0.0).then(|| metric(cell) / best)
                    })
                    .collect();
                (p.clone(), values)
            })
            .collect()
    };
    let panel = |title: &str, metric: fn(&Cell) -> f64| GroupedPanel {
        title: title.into(),
        y_desc: "relative to the scenario's best".into(),
        groups: scenarios.clone(),
        series: relative(metric),
        decimals: 2,
    };
    write_grouped(
        &[
            panel("mean latency, relative to the best policy", |c| {
                c.stats.mean_ms
            }),
            panel("p99 latency, relative to the best policy", |c| {
                c.stats.p99_ms
            }),
        ],
        &dir.join("matrix"),
    )?;
    Ok(())
}

#[cfg(not(feature = "analyze"))]
fn chart(_cells: &[Cell], _dir: &Path) -> anyhow::Result<()> {
    eprintln!("no chart: this build has no `analyze` feature");
    Ok(())
}
