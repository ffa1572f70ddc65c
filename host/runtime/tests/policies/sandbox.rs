//! The sandbox's bounds, each against the `hostile` fixture set to misbehave at the bound
//! and just over it (`policies/fixtures/hostile` lists its settings): what a policy says
//! about itself, what it may make the host do per call and per second, and how far a slow
//! or faulty policy can reach into swaps, displays and rehearsals.
use std::net::SocketAddr;
use std::sync::atomic::Ordering;

use switchyard_runtime::{Limits, PolicyInstance, RequestView, Setup};

use super::*;

const HOSTILE: &str = "fixtures/wasm/hostile.wasm";

fn settings(args: &[&str]) -> Vec<(String, String)> {
    args.iter()
        .map(|a| {
            let (k, v) = a.split_once('=').expect("KEY=VALUE");
            (k.to_string(), v.to_string())
        })
        .collect()
}

fn hostile(rt: &PolicyRuntime, args: &[&str], opts: RouterOptions) -> Result<Router, LoadError> {
    Router::new(load(rt, HOSTILE), backends(3), settings(args), opts, 0)
}

/// This thread's CPU time.
fn cpu_now() -> Duration {
    let ts = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// The fixture's `spin` iterations per millisecond of CPU, measured here: the slowest of
/// five, since a busy sibling hyperthread slows a spin down (in CPU time too), so that
/// "3 ms" stays at most 3 ms when the machine is loaded.
fn spins_per_ms(rt: &PolicyRuntime) -> u64 {
    const N: u64 = 2_000_000;
    let limits = Limits {
        deadline: Duration::from_secs(2),
        cpu_budget: None,
        ..Limits::default()
    };
    let setup = Setup {
        backends: backends(3),
        config: settings(&[&format!("spin={N}")]),
        seed: 1,
    };
    let mut instance = PolicyInstance::new(&load(rt, HOSTILE), &setup, limits, 0).unwrap();
    let slowest = (0..5)
        .map(|_| {
            let before = cpu_now();
            instance.choose(&NoRequest, 0).expect("calibration call");
            cpu_now() - before
        })
        .max()
        .unwrap();
    (N as f64 / (slowest.as_secs_f64() * 1e3)) as u64
}

#[test]
fn policy_info_is_held_to_the_contracts_rules() {
    let rt = PolicyRuntime::new().unwrap();
    let broke = |args: &[&str], says: &str| match hostile(&rt, args, inline()) {
        Err(e @ LoadError::BrokeContract { .. }) => {
            let text = e.to_string();
            assert!(text.contains(says), "{args:?}: {text}");
            assert!(!text.contains('\n') && !text.contains('\u{1b}'), "{text:?}");
        }
        Err(e) => panic!("{args:?}: wrong error: {e}"),
        Ok(_) => panic!("{args:?} was accepted"),
    };
    broke(&["name=line\\nforged INFO"], "policy-info.name");
    broke(&["name==HYPERLINK(\"x\")"], "short identifier");
    broke(&["name=\\e[2J"], "short identifier");
    broke(&["name=host-round-robin"], "reserved");
    broke(&["name=native-round-robin"], "reserved");
    broke(&["name-bytes=65"], "1 to 64 bytes");
    broke(&["label=a\\rb"], "policy-info.score-label");
    broke(
        &["headers=33"],
        "names 33 headers; the contract allows at most 32",
    );
    broke(&["header-name=x y"], "HTTP token");
    broke(&["header-name=:bogus"], "HTTP token");
    broke(&["response-headers=33"], "policy-info.response-headers");
    broke(&["probe-path=probe"], "must start with /");
    broke(&["probe-path=/a b"], "must start with /");
    // At the bounds: accepted.
    for args in [
        &["name-bytes=64"][..],
        &["headers=32"],
        &["headers=31", "header-name=:client"],
        &["response-headers=32"],
        &["probe-path=/probe?x=1"],
    ] {
        assert!(hostile(&rt, args, inline()).is_ok(), "{args:?}");
    }
}

#[test]
fn a_write_over_check_writes_permit_is_a_limit_fault_and_output_is_capped() {
    let rt = PolicyRuntime::new().unwrap();
    // A deadline of 1 s: filling 24 MiB inside the policy may take longer than 5 ms on a
    // loaded machine, and this test is about the write, not the deadline.
    let opts = || RouterOptions {
        limits: Limits {
            deadline: Duration::from_secs(1),
            ..Limits::default()
        },
        ..inline()
    };
    let first_fault = |args: &[&str]| {
        hostile(&rt, args, opts())
            .unwrap()
            .choose(&NoRequest, 1)
            .fault
    };
    // One raw write of 24 MiB: refused, not copied into the log.
    assert_eq!(
        first_fault(&["stderr-bytes=25165824"]),
        Some(FaultKind::Limit)
    );
    assert_eq!(first_fault(&["stderr-bytes=4097"]), Some(FaultKind::Limit));
    assert_eq!(first_fault(&["stderr-bytes=4096"]), None);
    // std writes what check-write permits, in as many writes as it takes; what is over
    // the per-call cap is dropped without a fault.
    assert_eq!(first_fault(&["stderr-std-bytes=65536"]), None);
    assert_eq!(first_fault(&["stderr-text=\\e[2Jcleared\\rforged"]), None);
}

#[test]
fn random_bytes_per_call_are_capped() {
    let rt = PolicyRuntime::new().unwrap();
    let r = hostile(&rt, &["random-bytes=4096"], inline()).unwrap();
    assert_eq!(r.choose(&NoRequest, 1).fault, None);
    let r = hostile(&rt, &["random-bytes=4194304"], inline()).unwrap();
    assert_eq!(r.choose(&NoRequest, 1).fault, Some(FaultKind::Limit));
    assert_eq!(r.counters().fault_count(FaultKind::Limit), 1);
}

/// The deadline is the policy's CPU time, within one 1 ms tick: a call that used less
/// than 4 ms of a 5 ms deadline never faults, one spinning for four times the deadline
/// always does. (Before, a 2.5 ms call was cut about half the time.) Each call's CPU
/// time is measured here, since the same spin costs up to 40 % more when the other core
/// is busy.
#[test]
fn the_deadline_means_what_its_flag_says() {
    let rt = PolicyRuntime::new().unwrap();
    let per_ms = spins_per_ms(&rt);
    let limits = Limits {
        cpu_budget: None,
        ..Limits::default()
    };
    assert_eq!(limits.deadline, Duration::from_millis(5));
    let instance = |tenths_ms: u64| {
        let setup = Setup {
            backends: backends(3),
            config: settings(&[&format!("spin={}", tenths_ms * per_ms / 10)]),
            seed: 1,
        };
        PolicyInstance::new(&load(&rt, HOSTILE), &setup, limits, 0).unwrap()
    };
    let mut under = instance(25);
    let mut clearly_under = 0;
    for call in 0..20 {
        let before = cpu_now();
        let result = under.choose(&NoRequest, call);
        let used = cpu_now() - before;
        if used < Duration::from_millis(4) {
            clearly_under += 1;
            assert!(result.is_ok(), "call {call} faulted after {used:?} of CPU");
        } else if result.is_err() {
            under = instance(25);
        }
    }
    assert!(
        clearly_under >= 10,
        "only {clearly_under} calls stayed under 4 ms"
    );
    for call in 0..5 {
        let mut over = instance(400);
        let before = cpu_now();
        let result = over.choose(&NoRequest, call);
        let used = cpu_now() - before;
        let fault = result.expect_err(&format!("{used:?} of CPU, {per_ms} spins/ms"));
        assert_eq!(fault.kind, FaultKind::Deadline, "{}", fault.detail);
        // Well before the 40 ms spin ends; the slack is the ticker's own lateness.
        assert!(
            used < Duration::from_millis(15),
            "interrupted after {used:?}"
        );
        assert!(
            fault.detail.contains("--policy-deadline"),
            "{}",
            fault.detail
        );
    }
}

/// A policy that stays well under its per-call deadline (50 ms here, so that no stall of
/// this machine can turn a call into a deadline fault) but spends 3 ms a call is faulted
/// when a second's calls reach the 100 ms budget, and disabled after five such faults.
#[test]
fn a_policy_over_its_cpu_budget_is_faulted_then_disabled() {
    let rt = PolicyRuntime::new().unwrap();
    let spin = format!("spin={}", 3 * spins_per_ms(&rt));
    let opts = RouterOptions {
        limits: Limits {
            deadline: Duration::from_millis(50),
            ..Limits::default()
        },
        ..inline()
    };
    assert_eq!(opts.limits.cpu_budget, Some(Duration::from_millis(100)));
    let r = hostile(&rt, &[&spin], opts).unwrap();
    let mut faults = Vec::new();
    for t in 0..2000 {
        if let Some(kind) = r.choose(&NoRequest, t).fault {
            faults.push(kind);
        }
        if r.status().disabled {
            break;
        }
    }
    assert!(r.status().disabled, "not disabled; faults: {faults:?}");
    assert_eq!(faults, [FaultKind::Budget; 5]);
}

#[test]
fn scores_faults_never_touch_the_routing_instance() {
    let rt = PolicyRuntime::new().unwrap();
    let r = hostile(&rt, &["scores-trap=1"], inline()).unwrap();
    assert_eq!(&*r.choose(&NoRequest, 1).routing_mode, "hostile");
    assert!(r.scores(2).is_none());
    assert!(
        r.scores(3).is_none(),
        "no second twin for the same generation"
    );
    let c = r.counters();
    assert_eq!(c.display_faults.load(Ordering::Relaxed), 1);
    let faults: u64 = FaultKind::ALL.iter().map(|&k| c.fault_count(k)).sum();
    assert_eq!(faults, 0, "a display fault is not a routing fault");
    assert!(r.status().live && !r.status().disabled);
    let choice = r.choose(&NoRequest, 4);
    assert_eq!((&*choice.routing_mode, choice.fault), ("hostile", None));
    assert_eq!(c.fallback_routed.load(Ordering::Relaxed), 0);

    // Sixteen entries per backend is the cap.
    let r = hostile(&rt, &["scores=48"], inline()).unwrap();
    assert_eq!(r.scores(1).map(|s| s.values.len()), Some(48));
    let r = hostile(&rt, &["scores=49"], inline()).unwrap();
    assert!(r.scores(1).is_none());
    assert_eq!(r.counters().display_faults.load(Ordering::Relaxed), 1);
    assert!(r.status().live);
}

/// A swap to a policy whose `observe` takes 1 ms replays what fits in the 250 ms replay
/// budget, not the whole ring (a second here, 4 s with the default ring), for the
/// rehearsal and the warm start alike; the switch itself calls no policy under the lock.
#[test]
fn a_slow_observe_cannot_stall_a_swap() {
    let rt = PolicyRuntime::new().unwrap();
    let slow = format!("observe-spin={}", spins_per_ms(&rt));
    let opts = RouterOptions {
        replay: 1000,
        limits: Limits {
            deadline: Duration::from_millis(50),
            cpu_budget: None,
            ..Limits::default()
        },
        ..inline()
    };
    assert_eq!(opts.replay_budget, Duration::from_millis(250));
    let r = hostile(&rt, &[&slow], opts).unwrap();
    for t in 0..1000 {
        let c = r.choose(&NoRequest, t);
        r.observe(c.ticket, obs(t, 5));
    }
    let report = r.swap(load(&rt, HOSTILE), 2_000_000_000).expect("swap");
    assert!(report.replay_cut, "{report:?}");
    assert!(
        report.replayed < 500,
        "replayed {} of 1000",
        report.replayed
    );
    assert_eq!(r.counters().replays_cut.load(Ordering::Relaxed), 1);
}

/// The rehearsal is made of recent real requests and observations: a policy that
/// behaves only when it sees no client address (as the old made-up rehearsal request
/// had none) is refused at the swap instead of taking live traffic.
#[test]
fn rehearsals_look_like_live_traffic() {
    struct FromClient;
    impl RequestView for FromClient {
        fn method(&self) -> &str {
            "GET"
        }
        fn path_and_query(&self) -> &str {
            "/cart"
        }
        fn authority(&self) -> &str {
            "shop.example"
        }
        fn client(&self) -> Option<SocketAddr> {
            Some(SocketAddr::from(([192, 0, 2, 7], 40_000)))
        }
        fn header(&self, _name: &str) -> Option<&str> {
            None
        }
    }
    let rt = PolicyRuntime::new().unwrap();
    // Live, it traps on every request (and the breaker soon disables it); a new build of
    // it must not pass its rehearsal.
    let r = hostile(&rt, &["trap-on-client=1"], inline()).unwrap();
    for t in 0..200 {
        let c = r.choose(&FromClient, t * 1_000_000);
        r.observe(c.ticket, obs(t + 12, 12));
    }
    match r.swap(load(&rt, HOSTILE), 300_000_000) {
        Err(LoadError::Faulted { stage, reason, .. }) => {
            assert_eq!(stage, "rehearsal", "{reason}");
        }
        other => panic!("the swap was not refused in rehearsal: {other:?}"),
    }
}

#[test]
fn unknown_imports_and_wrong_signatures_are_named() {
    let rt = PolicyRuntime::new().unwrap();
    let e = rt
        .load(&wasm("fixtures/wasm/made-up-import.wasm"))
        .err()
        .expect("refused");
    let text = e.to_string();
    assert!(matches!(e, LoadError::UnknownImport { .. }), "{text}");
    assert!(
        text.contains("acme:widgets/gadget@1.0.0") && text.contains("neither WASI"),
        "{text}"
    );
    let component = load(&rt, "fixtures/wasm/wrong-choose.wasm");
    let e = Router::new(component, backends(3), Vec::new(), inline(), 0)
        .err()
        .expect("refused");
    let text = e.to_string();
    assert!(matches!(e, LoadError::WrongWorld { .. }), "{text}");
    assert!(text.contains("`choose`"), "{text}");
}

/// Mainstream toolchains (componentize-py, componentize-js) emit components that import
/// WASI the sandbox denies, sockets and HTTP, without the policy ever using it. Such a
/// component loads, routes and prints; only a call into a denied interface faults, and
/// the fault names the interface.
#[test]
fn denied_wasi_imports_load_and_fault_only_when_called() {
    let rt = PolicyRuntime::new().unwrap();
    let component = rt
        .load(&wasm("fixtures/wasm/denied.wasm"))
        .unwrap_or_else(|e| panic!("refused at load: {e}"));
    let instance = |call: &str| {
        let setup = Setup {
            backends: backends(3),
            config: settings(&[call]),
            seed: 1,
        };
        PolicyInstance::new(&component, &setup, Limits::default(), 0).expect("configures")
    };
    let mut quiet = instance("call=none");
    let picks: Vec<usize> = (0..6)
        .map(|t| quiet.choose(&NoRequest, t).expect("routes"))
        .collect();
    assert_eq!(picks, [0, 1, 2, 0, 1, 2]);
    for (call, interface) in [
        ("call=sockets", "wasi:sockets/instance-network"),
        ("call=http", "wasi:http/types"),
    ] {
        let fault = instance(call)
            .choose(&NoRequest, 1)
            .expect_err("a call into a denied interface faults");
        assert_eq!(fault.kind, FaultKind::Trap, "{call}: {}", fault.detail);
        assert!(
            fault.detail.contains(interface) && fault.detail.contains("denies"),
            "{call}: {}",
            fault.detail
        );
    }
}
