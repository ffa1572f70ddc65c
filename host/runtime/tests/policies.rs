//! The runtime against the real policy components built from `policies/` (run
//! `just build-policies build-fixtures` first; `just test` does).
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use switchyard_runtime::{
    Backend, FaultKind, LoadError, NoRequest, Observation, Outcome, PolicyComponent, PolicyRuntime,
    Rebuild, Router, RouterOptions, FALLBACK_NAME,
};

fn wasm(rel: &str) -> PathBuf {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../policies")
        .join(rel);
    assert!(
        p.exists(),
        "{} is missing: run `just build-policies build-fixtures`",
        p.display()
    );
    p
}

fn backends(n: usize) -> Vec<Backend> {
    (0..n)
        .map(|i| Backend {
            id: ((b'A' + i as u8) as char).to_string(),
            url: format!("http://127.0.0.1:{}", 8081 + i),
            weight: None,
        })
        .collect()
}

fn load(rt: &PolicyRuntime, rel: &str) -> Arc<PolicyComponent> {
    rt.load(&wasm(rel))
        .unwrap_or_else(|e| panic!("loading {rel}: {e}"))
}

fn router(rt: &PolicyRuntime, rel: &str, opts: RouterOptions) -> Router {
    Router::new(load(rt, rel), backends(3), Vec::new(), opts, 0).expect("router")
}

fn inline() -> RouterOptions {
    RouterOptions {
        rebuild: Rebuild::Inline,
        ..RouterOptions::default()
    }
}

fn obs(backend: usize, now_ms: u64, latency_ms: u64) -> Observation {
    Observation {
        backend,
        now_ns: now_ms * 1_000_000,
        latency_ns: latency_ms * 1_000_000,
        status: 200,
        outcome: Outcome::Response,
    }
}

#[test]
fn rr_cycles_through_backends() {
    let rt = PolicyRuntime::new().unwrap();
    let r = router(&rt, "rr.wasm", inline());
    let picks: Vec<usize> = (0..6).map(|t| r.choose(&NoRequest, t).backend).collect();
    assert_eq!(picks, [0, 1, 2, 0, 1, 2]);
    assert_eq!(&*r.choose(&NoRequest, 7).routing_mode, "round-robin");
}

#[test]
fn ewma_probes_then_prefers_the_fastest_and_reports_scores() {
    let rt = PolicyRuntime::new().unwrap();
    let r = router(&rt, "ewma.wasm", inline());
    // One probe each for the three unmeasured backends.
    let probes: Vec<usize> = (0..3).map(|t| r.choose(&NoRequest, t).backend).collect();
    assert_eq!(probes, [0, 1, 2]);
    r.observe(obs(0, 10, 400));
    r.observe(obs(1, 10, 200));
    r.observe(obs(2, 10, 250));
    assert_eq!(r.choose(&NoRequest, 20).backend, 1);
    let scores = r.scores(20).unwrap();
    assert_eq!(scores.label, "ewma");
    assert_eq!(scores.values, vec![(0, 400.0), (1, 200.0), (2, 250.0)]);
    // alpha 0.2: 0.2 * 1000 + 0.8 * 200 = 360 for a failure penalised at 1000 ms.
    r.observe(Observation {
        outcome: Outcome::ConnectError,
        status: 0,
        ..obs(1, 30, 0)
    });
    let b = r.scores(30).unwrap().values[1].1;
    assert!((b - 360.0).abs() < 1e-9, "{b}");
    assert_eq!(r.choose(&NoRequest, 40).backend, 2);
}

#[test]
fn policy_arguments_reach_the_policy_and_bad_ones_are_rejected() {
    let rt = PolicyRuntime::new().unwrap();
    let bad = Router::new(
        load(&rt, "ewma.wasm"),
        backends(3),
        vec![("alpha".into(), "7".into())],
        inline(),
        0,
    );
    match bad {
        Err(LoadError::Rejected { message, .. }) => {
            assert!(message.contains("alpha=7"), "{message}")
        }
        other => panic!("expected a rejection, got {:?}", other.err()),
    }
    let typo = Router::new(
        load(&rt, "sma.wasm"),
        backends(3),
        vec![("windw".into(), "5".into())],
        inline(),
        0,
    );
    assert!(matches!(typo, Err(LoadError::Rejected { .. })));
}

#[test]
fn trapping_choose_falls_back_and_the_instance_is_replaced() {
    let rt = PolicyRuntime::new().unwrap();
    let r = router(&rt, "fixtures/wasm/trap-choose.wasm", inline());
    let mut fallbacks = 0;
    for t in 0..10 {
        let c = r.choose(&NoRequest, t * 1_000_000_000);
        assert!(c.backend < 3);
        if c.fault.is_some() {
            assert_eq!(&*c.routing_mode, FALLBACK_NAME);
            assert_eq!(c.fault, Some(FaultKind::Trap));
            fallbacks += 1;
        }
    }
    // The fixture traps on its fifth call; each replacement starts counting afresh.
    assert_eq!(fallbacks, 2);
    assert_eq!(r.counters().fault_count(FaultKind::Trap), 2);
    assert_eq!(
        r.counters()
            .rebuilds
            .load(std::sync::atomic::Ordering::Relaxed),
        2
    );
    assert!(r.status().live && !r.status().disabled);
}

#[test]
fn bad_index_is_a_fault_not_a_crash() {
    let rt = PolicyRuntime::new().unwrap();
    let r = router(&rt, "fixtures/wasm/bad-index.wasm", inline());
    let faults: Vec<_> = (0..5).map(|t| r.choose(&NoRequest, t).fault).collect();
    assert_eq!(faults[4], Some(FaultKind::BadIndex));
    assert!(faults[..4].iter().all(Option::is_none));
}

#[test]
fn endless_loop_hits_the_deadline_and_repeated_faults_trip_the_breaker() {
    let rt = PolicyRuntime::new().unwrap();
    let opts = RouterOptions {
        limits: switchyard_runtime::Limits {
            deadline: Duration::from_millis(5),
            ..Default::default()
        },
        ..inline()
    };
    let r = router(&rt, "fixtures/wasm/loop-forever.wasm", opts);
    for t in 0..5 {
        let c = r.choose(&NoRequest, t);
        assert_eq!(c.fault, Some(FaultKind::Deadline));
    }
    assert!(r.status().disabled);
    // Disabled: the host routes without calling the policy at all.
    let c = r.choose(&NoRequest, 6);
    assert_eq!((c.fault, &*c.routing_mode), (None, FALLBACK_NAME));
}

#[test]
fn memory_growth_hits_the_cap() {
    let rt = PolicyRuntime::new().unwrap();
    let r = router(&rt, "fixtures/wasm/grow-memory.wasm", inline());
    let faults: Vec<_> = (0..12)
        .filter_map(|t| r.choose(&NoRequest, t).fault)
        .collect();
    assert_eq!(faults.first(), Some(&FaultKind::Memory), "{faults:?}");
}

#[test]
fn loading_rejects_what_is_not_a_policy() {
    let rt = PolicyRuntime::new().unwrap();
    let p = PathBuf::from("x.wasm");
    let rr = std::fs::read(wasm("rr.wasm")).unwrap();
    let core = [0, b'a', b's', b'm', 1, 0, 0, 0];
    type Expect = fn(&LoadError) -> bool;
    let cases: Vec<(&[u8], Expect)> = vec![
        (b"", |e| matches!(e, LoadError::Empty(_))),
        (b"hello world, not wasm", |e| {
            matches!(e, LoadError::NotWasm(_))
        }),
        (&core, |e| matches!(e, LoadError::CoreModule(_))),
        (&rr[..rr.len() / 2], |e| {
            matches!(e, LoadError::Invalid { .. })
        }),
    ];
    for (bytes, expected) in cases {
        let err = rt.load_bytes(&p, bytes).err().expect("must fail");
        assert!(expected(&err), "{err}");
        assert!(err.to_string().contains("x.wasm"), "{err}");
    }
    let missing = rt.load(&PathBuf::from("nope/missing.wasm")).err().unwrap();
    assert!(matches!(missing, LoadError::NotFound(_)));
    let other = rt
        .load(&wasm("fixtures/wasm/other-world.wasm"))
        .err()
        .unwrap();
    assert!(matches!(other, LoadError::WrongWorld { .. }), "{other}");
}

#[test]
fn sandbox_denies_files_and_init_traps_are_load_errors() {
    let rt = PolicyRuntime::new().unwrap();
    let open = Router::new(
        load(&rt, "fixtures/wasm/open-file.wasm"),
        backends(3),
        vec![],
        inline(),
        0,
    );
    match open {
        Err(LoadError::Rejected { message, .. }) => {
            assert!(message.contains("could not open"), "{message}")
        }
        Err(other) => panic!("expected the policy to reject its setup, got: {other}"),
        Ok(r) => panic!("the sandbox let a policy open a file: {}", r.status().name),
    }
    let init = Router::new(
        load(&rt, "fixtures/wasm/trap-init.wasm"),
        backends(3),
        vec![],
        inline(),
        0,
    );
    assert!(matches!(
        init,
        Err(LoadError::Faulted {
            stage: "configure",
            ..
        })
    ));
}

#[test]
fn swap_warm_starts_the_new_policy_from_recent_observations() {
    let rt = PolicyRuntime::new().unwrap();
    let r = router(&rt, "rr.wasm", inline());
    for t in 0..30 {
        let c = r.choose(&NoRequest, t);
        let latency = [10, 200, 250][c.backend];
        r.observe(obs(c.backend, t, latency));
    }
    let report = r.swap(load(&rt, "ewma.wasm"), 100).unwrap();
    assert_eq!(
        (&*report.from, &*report.to),
        ("round-robin", "adaptive_ewma")
    );
    assert_eq!(report.replayed, 30);
    // Warm: no probing, straight to the fastest backend.
    assert_eq!(r.choose(&NoRequest, 101).backend, 0);
    // A failed swap leaves the running policy alone.
    assert!(r
        .swap(load(&rt, "fixtures/wasm/trap-init.wasm"), 102)
        .is_err());
    assert_eq!(&*r.status().name, "adaptive_ewma");
    assert_eq!(
        r.counters()
            .failed_swaps
            .load(std::sync::atomic::Ordering::Relaxed),
        1
    );
}
