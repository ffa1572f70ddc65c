//! `switchyard matrix`: every policy on every scenario, deterministic for a seed.
use std::path::PathBuf;
use std::time::Duration;

use switchyard_sim::matrix::{render_markdown, run_matrix, MatrixArgs};

use crate::simulate::root;

fn folder(name: &str, files: &[(&str, PathBuf)]) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("switchyard-matrix-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    for (to, from) in files {
        std::fs::copy(from, dir.join(to)).unwrap();
    }
    dir
}

fn args(policies: PathBuf, scenarios: PathBuf) -> MatrixArgs {
    MatrixArgs {
        policies,
        scenarios,
        connections: 50,
        duration: Duration::from_secs(10),
        warmup: Duration::from_secs(1),
        seed: 1,
        out: None,
    }
}

#[test]
fn the_matrix_runs_every_policy_on_every_scenario_and_repeats_exactly() {
    let r = root();
    let policies = folder(
        "p",
        &[
            ("rr.wasm", r.join("policies/rr.wasm")),
            ("slo.wasm", r.join("policies/slo.wasm")),
        ],
    );
    let scenarios = folder(
        "s",
        &[
            ("study.toml", r.join("scenarios/study.toml")),
            ("degrade.toml", r.join("scenarios/degrade.toml")),
            ("notes.txt", r.join("scenarios/README.md")),
        ],
    );
    let a = args(policies.clone(), scenarios.clone());
    let cells = run_matrix(&a).unwrap();
    assert_eq!(
        cells.len(),
        4,
        "2 policies x 2 scenarios; other files ignored"
    );
    let md = render_markdown(&a, &cells);
    assert!(
        md.contains("### degrade") && md.contains("### study"),
        "{md}"
    );
    assert!(md.contains("| slo | ") && md.contains("| rr | "), "{md}");
    // On the study slo has the lowest mean: its row carries the mark.
    let slo_study = md
        .split("### study")
        .nth(1)
        .and_then(|t| t.lines().find(|l| l.starts_with("| slo |")));
    assert!(slo_study.is_some_and(|l| l.contains(" best")), "{md}");
    assert_eq!(
        md,
        render_markdown(&a, &run_matrix(&a).unwrap()),
        "same inputs, same bytes"
    );
    let _ = std::fs::remove_dir_all(&policies);
    let _ = std::fs::remove_dir_all(&scenarios);
}

#[test]
fn a_folder_without_policies_is_named_with_the_fix() {
    let empty = folder("empty", &[]);
    let e = run_matrix(&args(empty.clone(), root().join("scenarios"))).unwrap_err();
    let text = format!("{e:#}");
    assert!(
        text.contains("--policies") && text.contains("no .wasm files"),
        "{text}"
    );
    assert!(e.chain().any(|c| c.is::<switchyard_input::UsageError>()));
    let _ = std::fs::remove_dir_all(&empty);
}
