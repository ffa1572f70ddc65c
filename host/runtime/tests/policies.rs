//! The runtime against the real policy components built from `policies/` (run
//! `just build-policies build-fixtures` first; `just test` does).
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use switchyard_runtime::{
    Backend, FaultKind, LoadError, NoRequest, Observation, Outcome, PolicyComponent, PolicyRuntime,
    Rebuild, Router, RouterOptions, FALLBACK_NAME,
};

#[path = "policies/sandbox.rs"]
mod sandbox;

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

fn obs(now_ms: u64, latency_ms: u64) -> Observation {
    Observation::new(
        now_ms * 1_000_000,
        latency_ms * 1_000_000,
        200,
        Outcome::Response,
    )
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
    let probes: Vec<_> = (0..3).map(|t| r.choose(&NoRequest, t)).collect();
    assert_eq!(
        probes.iter().map(|c| c.backend).collect::<Vec<_>>(),
        [0, 1, 2]
    );
    for (c, latency) in probes.into_iter().zip([400, 200, 250]) {
        r.observe(c.ticket, obs(10, latency));
    }
    let fastest = r.choose(&NoRequest, 20);
    assert_eq!(fastest.backend, 1);
    let scores = r.scores(20).unwrap();
    assert_eq!(scores.label, "ewma");
    assert_eq!(scores.values, vec![(0, 400.0), (1, 200.0), (2, 250.0)]);
    // alpha 0.2: 0.2 * 1000 + 0.8 * 200 = 360 for a failure penalised at 1000 ms.
    r.observe(
        fastest.ticket,
        Observation {
            outcome: Outcome::ConnectError,
            status: 0,
            ..obs(30, 0)
        },
    );
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
        r.observe(c.ticket, obs(t, latency));
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

// === contract 0.2, and 0.1 components beside it ===

/// The 0.1 builds of rr and ewma (frozen fixtures) route exactly as the 0.2 ones on the
/// same inputs, and a 0.1 policy is not told of aborts, as its contract says.
#[test]
fn v01_components_load_and_behave_as_before() {
    let rt = PolicyRuntime::new().unwrap();
    assert_eq!(load(&rt, "fixtures/wasm/ewma-v01.wasm").contract(), "0.1.0");
    assert_eq!(load(&rt, "ewma.wasm").contract(), "0.2.0");
    for (old, new) in [
        ("fixtures/wasm/rr-v01.wasm", "rr.wasm"),
        ("fixtures/wasm/ewma-v01.wasm", "ewma.wasm"),
    ] {
        let (a, b) = (router(&rt, old, inline()), router(&rt, new, inline()));
        for t in 0..60 {
            let (ca, cb) = (a.choose(&NoRequest, t), b.choose(&NoRequest, t));
            assert_eq!(ca.backend, cb.backend, "{old} and {new} at request {t}");
            let latency = [30, 10, 20][ca.backend] + t % 7;
            a.observe(ca.ticket, obs(t, latency));
            b.observe(cb.ticket, obs(t, latency));
        }
        assert_eq!(
            a.scores(60).unwrap().values,
            b.scores(60).unwrap().values,
            "{new}"
        );
    }
    // An abort slower than the score: ewma 0.2 learns from it, the 0.1 build never hears.
    let (a, b) = (
        router(&rt, "fixtures/wasm/ewma-v01.wasm", inline()),
        router(&rt, "ewma.wasm", inline()),
    );
    for r in [&a, &b] {
        for t in 0..3 {
            let c = r.choose(&NoRequest, t);
            r.observe(c.ticket, obs(t, 10));
        }
        let c = r.choose(&NoRequest, 5);
        let aborted = Observation::new(6_000_000, 500_000_000, 0, Outcome::Aborted);
        r.observe(c.ticket, aborted);
    }
    assert_eq!(
        a.scores(7).unwrap().values,
        vec![(0, 10.0), (1, 10.0), (2, 10.0)]
    );
    let raised = b.scores(7).unwrap().values;
    assert!(raised.iter().any(|&(_, v)| v > 10.0), "{raised:?}");
}

#[test]
fn hot_swap_works_between_01_and_02_in_both_directions() {
    let rt = PolicyRuntime::new().unwrap();
    let r = router(&rt, "fixtures/wasm/rr-v01.wasm", inline());
    let mut t = 0;
    let traffic = |r: &Router, t: &mut u64| {
        for _ in 0..12 {
            *t += 1;
            let c = r.choose(&NoRequest, *t);
            r.observe(c.ticket, obs(*t, [40, 5, 20][c.backend]));
        }
    };
    traffic(&r, &mut t);
    for (file, name) in [
        ("ewma.wasm", "adaptive_ewma"),
        ("fixtures/wasm/ewma-v01.wasm", "adaptive_ewma"),
        ("rr.wasm", "round-robin"),
        ("fixtures/wasm/rr-v01.wasm", "round-robin"),
    ] {
        let report = r
            .swap(load(&rt, file), t)
            .unwrap_or_else(|e| panic!("{file}: {e}"));
        assert_eq!(&*report.to, name);
        assert!(report.replayed >= 12, "{file}: warm-started from the ring");
        traffic(&r, &mut t);
        assert!(r.status().live, "{file}");
    }
    assert_eq!(r.counters().fault_count(FaultKind::Trap), 0);
    // Warm from the first swap on: ewma went straight to the fastest backend.
    assert_eq!(
        r.counters()
            .swaps
            .load(std::sync::atomic::Ordering::Relaxed),
        4
    );
}

/// The `ledger` fixture's five scores per backend: own in flight, observations with the
/// header, probe answers with it, observations of host-routed requests, observations of
/// requests another instance chose.
fn ledger(r: &Router, now_ns: u64) -> Vec<[f64; 5]> {
    let v: Vec<f64> = r
        .live_scores(now_ns)
        .unwrap()
        .values
        .iter()
        .map(|s| s.1)
        .collect();
    v.chunks(5)
        .map(|c| [c[0], c[1], c[2], c[3], c[4]])
        .collect()
}

/// After a fault the host routes the request itself and a rebuilt instance takes over:
/// the requests the faulted instance chose arrive as `other-instance`, the host's as
/// `host`, and the new instance's own count stays exact. (Under 0.1 they were all just
/// observations, and a policy counting in flight only survived by saturating.)
#[test]
fn after_a_fault_the_rebuilt_instance_is_told_who_chose_what() {
    let rt = PolicyRuntime::new().unwrap();
    let r = Router::new(
        load(&rt, "fixtures/wasm/ledger.wasm"),
        backends(3),
        vec![("trap-at".into(), "5".into())],
        inline(),
        0,
    )
    .unwrap();
    let chosen: Vec<_> = (0..4).map(|t| r.choose(&NoRequest, t)).collect();
    let by_host = r.choose(&NoRequest, 4);
    assert_eq!(
        (&*by_host.routing_mode, by_host.fault),
        (FALLBACK_NAME, Some(FaultKind::Trap))
    );
    assert!(r.status().live, "rebuilt inline");
    let host_backend = by_host.backend;
    r.observe(by_host.ticket, obs(5, 1));
    for c in chosen {
        r.observe(c.ticket, obs(5, 1));
    }
    let books = ledger(&r, 6);
    assert!(
        books.iter().all(|b| b[0] == 0.0),
        "own in flight: {books:?}"
    );
    assert_eq!(books.iter().map(|b| b[3]).sum::<f64>(), 1.0);
    assert_eq!(
        books[host_backend][3], 1.0,
        "the host-routed one, on its backend"
    );
    assert_eq!(
        books.iter().map(|b| b[4]).collect::<Vec<_>>(),
        [2.0, 1.0, 1.0]
    );
    assert!((0..3).all(|i| r.in_flight(i) == 0));
}

/// Every `choose` is matched by exactly one observation, and the observation says who
/// chose: across a swap, the requests the old instance routed arrive as `other-instance`,
/// so the new instance's own count neither goes negative nor inherits the old split.
#[test]
fn every_choose_is_observed_once_with_its_origin_across_a_swap() {
    let rt = PolicyRuntime::new().unwrap();
    let r = router(&rt, "fixtures/wasm/ledger.wasm", inline());
    let before: Vec<_> = (0..10).map(|t| r.choose(&NoRequest, t)).collect();
    assert_eq!(
        (0..3).map(|i| r.in_flight(i)).collect::<Vec<_>>(),
        [4, 3, 3]
    );
    assert_eq!(
        ledger(&r, 10).iter().map(|l| l[0]).collect::<Vec<_>>(),
        [4.0, 3.0, 3.0]
    );
    r.swap(load(&rt, "fixtures/wasm/ledger.wasm"), 20).unwrap();
    let after: Vec<_> = (0..5).map(|t| r.choose(&NoRequest, 30 + t)).collect();
    for c in before {
        r.observe(c.ticket, obs(40, 1));
    }
    assert_eq!(
        ledger(&r, 41).iter().map(|l| l[0]).collect::<Vec<_>>(),
        [2.0, 2.0, 1.0],
        "only its own five requests are in flight for the new instance"
    );
    assert_eq!(
        (0..3).map(|i| r.in_flight(i)).collect::<Vec<_>>(),
        [2, 2, 1]
    );
    for c in after {
        r.observe(c.ticket, obs(50, 1));
    }
    assert!(ledger(&r, 51).iter().all(|l| l[0] == 0.0));
    assert!((0..3).all(|i| r.in_flight(i) == 0));
}

/// peak-ewma reads the host's count: its cost is latency x (in flight + 1), and with two
/// backends every pair it draws is both, so with equal latencies the one holding fewer
/// requests always wins. Were the count not read, ties would go to a random one of the
/// pair, and forty held requests would split like coin flips.
#[test]
fn peak_ewma_routes_on_the_hosts_in_flight_count() {
    let rt = PolicyRuntime::new().unwrap();
    let r = Router::new(
        load(&rt, "peak-ewma.wasm"),
        backends(2),
        vec![],
        inline(),
        0,
    )
    .unwrap();
    let held: Vec<_> = (0..40).map(|_| r.choose(&NoRequest, 0)).collect();
    let (a, b) = (r.in_flight(0), r.in_flight(1));
    assert_eq!(a + b, 40);
    assert!(a.abs_diff(b) <= 1, "held {a} and {b}");
    for c in held {
        r.observe(c.ticket, obs(2, 1));
    }
    assert_eq!((r.in_flight(0), r.in_flight(1)), (0, 0));
}

/// Collects probes for the test to answer.
#[derive(Default)]
struct Probes(std::sync::Mutex<Vec<switchyard_runtime::Probe>>);

impl switchyard_runtime::Prober for Probes {
    fn send(&self, probe: switchyard_runtime::Probe) {
        self.0.lock().unwrap().push(probe);
    }
}

impl Probes {
    fn take(&self) -> Vec<switchyard_runtime::Probe> {
        std::mem::take(&mut self.0.lock().unwrap())
    }
}

/// Probes go out only within the host's bounds (one unanswered per backend, one per
/// interval), carry the policy's path, and their answers, like response headers, reach
/// the policy with exactly the headers it asked for.
#[test]
fn probes_are_gated_answered_and_headers_reach_the_policy() {
    const MS: u64 = 1_000_000;
    let rt = PolicyRuntime::new().unwrap();
    let r = router(&rt, "fixtures/wasm/ledger.wasm", inline());
    let prober = Arc::new(Probes::default());
    let c = r.choose(&NoRequest, 0);
    assert_eq!(
        r.counters()
            .probes_sent
            .load(std::sync::atomic::Ordering::Relaxed),
        0,
        "no prober yet"
    );
    r.observe(c.ticket, obs(0, 1));
    r.set_prober(prober.clone());
    let c = r.choose(&NoRequest, 20 * MS);
    let sent = prober.take();
    assert_eq!(
        sent.iter().map(|p| p.backend).collect::<Vec<_>>(),
        [0, 1, 2]
    );
    assert!(sent
        .iter()
        .all(|p| &*p.path == "/probe" && p.asked_ns == 20 * MS));
    let wanted = sent[0].headers.clone().expect("the policy named a header");
    assert_eq!(&wanted[..], ["x-prequal-rif".to_string()]);
    // Unanswered: nothing more goes, however often the policy asks.
    let c2 = r.choose(&NoRequest, 40 * MS);
    assert!(prober.take().is_empty());
    let mut sent = sent.into_iter();
    let first = sent.next().unwrap();
    first.answer(switchyard_runtime::ProbeResult {
        now_ns: 41 * MS,
        latency_ns: MS,
        status: 200,
        outcome: Outcome::Response,
        headers: vec![("x-prequal-rif".into(), "3".into())],
    });
    drop(sent); // Given up unanswered: the gate opens all the same.
                // 25 ms after the last probe: past the 10 ms interval, all three may go again.
    r.observe(c.ticket, obs(45, 1));
    let mut with_header = Observation::new(45 * MS, MS, 200, Outcome::Response);
    with_header.headers = vec![("x-prequal-rif".into(), "1".into())];
    r.observe(c2.ticket, with_header);
    assert_eq!(prober.take().len(), 0, "observe did not ask");
    let c3 = r.choose(&NoRequest, 45 * MS);
    assert_eq!(prober.take().len(), 3);
    r.observe(c3.ticket, obs(46, 1));
    let books = ledger(&r, 50 * MS);
    assert_eq!(
        books.iter().map(|l| l[2]).collect::<Vec<_>>(),
        [1.0, 0.0, 0.0],
        "one probe answered"
    );
    assert_eq!(
        books.iter().map(|l| l[1]).sum::<f64>(),
        1.0,
        "one observation had the header"
    );
    assert_eq!(
        r.counters()
            .probes_answered
            .load(std::sync::atomic::Ordering::Relaxed),
        1
    );
}
