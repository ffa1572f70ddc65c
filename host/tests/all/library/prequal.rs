//! Simulator tests of policies/prequal.
use std::time::Duration;

use switchyard_sim::{simulate, SimOptions, SimResult};

use crate::simulate::{assert_nothing_lost, policy, run, run_with, scenario, share_of, window, S};

fn with_args(args: &[(&str, &str)]) -> SimOptions {
    SimOptions {
        duration: Duration::from_secs(30),
        policy_args: crate::simulate::policy_args(args),
        ..SimOptions::default()
    }
}

/// Backends with a score, i.e. that reported their load at least once.
fn reporting(r: &SimResult) -> Vec<usize> {
    let mut b: Vec<usize> = r
        .scores
        .iter()
        .flat_map(|s| s.values.iter().map(|v| v.0))
        .collect();
    b.dedup();
    b
}

#[test]
fn prequal_beats_rr_and_ewma_on_the_tail_when_the_fastest_backend_saturates() {
    let pq = run("prequal", "saturating");
    let (p, rr, ewma) = (
        &pq.stats,
        &run("rr", "saturating").stats,
        &run("ewma", "saturating").stats,
    );
    assert_eq!(pq.policy, "prequal");
    assert_eq!((pq.faults, pq.fallback_routed, p.errors), (0, 0, 0));
    // Prequal is for the tail. rr queues a third of the load on A (5 ms, 4 slots); ewma
    // herds onto one backend at a time (C here) and queues there. Prequal sends A work only
    // while A's reported latency (queueing included) beats B's and C's, so A's queue
    // stops growing where its latency meets theirs, and B and C run below capacity. (At 120 s, seed 1: p99 56 ms against rr's 86 and
    // ewma's 65; mean 28 ms against 44 and 41.)
    for (name, other) in [("rr", rr), ("ewma", ewma)] {
        assert!(
            p.p99_ms < 0.9 * other.p99_ms,
            "p99: prequal {} ms vs {name} {} ms",
            p.p99_ms,
            other.p99_ms
        );
        assert!(
            p.mean_ms < 0.75 * other.mean_ms,
            "mean: prequal {} ms vs {name} {} ms",
            p.mean_ms,
            other.mean_ms
        );
    }
    // The scores come from the piggybacked reports (the display twin sees observations,
    // not probe answers): every backend's.
    assert_eq!(reporting(&pq), [0, 1, 2], "{:?}", pq.scores);
    // A serves what it can (4 slots of 5 ms, about 765 req/s: a fifth), not a third.
    let a = p.share("A");
    assert!((0.05..0.3).contains(&a), "A {a}");
}

#[test]
fn prequal_probes_backends_that_piggyback_nothing() {
    // capacity.toml reports no load on responses: only probe answers tell prequal
    // anything. Without probes it can only route at random (a third each); with them it
    // sees B and C (4 slots) queue and sends most to A (16 slots).
    let probing = run_with("prequal", "capacity", &with_args(&[]));
    let blind = run_with(
        "prequal",
        "capacity",
        &with_args(&[("probes-per-query", "0")]),
    );
    assert_nothing_lost(&probing, 100, 30 * S);
    assert_eq!(
        reporting(&probing),
        [0, 1, 2],
        "every backend answered probes"
    );
    assert_eq!(
        reporting(&blind),
        Vec::<usize>::new(),
        "no probes, no reports"
    );
    let (steady, steady_blind) = (window(&probing, 5, 30), window(&blind, 5, 30));
    let a_blind = share_of(&steady_blind, 0);
    assert!((a_blind - 1.0 / 3.0).abs() < 0.02, "blind: A {a_blind}");
    let a = share_of(&steady, 0);
    assert!(a > 0.5, "probing: A {a}");
    assert!(
        probing.stats.mean_ms < 0.8 * blind.stats.mean_ms,
        "{} vs {} ms",
        probing.stats.mean_ms,
        blind.stats.mean_ms
    );
}

#[test]
fn prequal_is_deterministic_and_the_seed_matters() {
    let opts = |seed| SimOptions {
        seed,
        ..with_args(&[])
    };
    let one = run_with("prequal", "saturating", &opts(7));
    let two = run_with("prequal", "saturating", &opts(7));
    let other = run_with("prequal", "saturating", &opts(8));
    assert_eq!(
        (&one.requests, &one.scores),
        (&two.requests, &two.scores),
        "same seed, same run"
    );
    assert_ne!(one.requests, other.requests, "the seed changed nothing");
}

#[test]
fn prequal_rejects_bad_settings_naming_the_key() {
    let err = simulate(
        policy("prequal"),
        &scenario("saturating"),
        &with_args(&[("q-rif", "2")]),
    )
    .expect_err("q-rif=2 accepted");
    let msg = format!("{err:#}");
    assert!(msg.contains("q-rif=2 is invalid"), "{msg}");
}
