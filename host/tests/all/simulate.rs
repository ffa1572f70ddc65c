//! Policy quality, deterministically: the real policy components (run `just build-policies`)
//! against the scenarios in `scenarios/`, through `switchyard::sim`. These replace
//! timing-sensitive live tests: virtual time makes every number below exact and repeatable.
//!
//! `cargo test --release -p switchyard --test all -- --ignored --nocapture matrix`
//! prints every policy on every scenario.
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use clap::Parser;
use switchyard_report::log::HEADER as CSV_HEADER;
use switchyard_report::{Record, RunStats};
use switchyard_runtime::{Outcome, PolicyComponent, PolicyRuntime};
use switchyard_sim::{
    run_to_string, simulate, Scenario, SimOptions, SimRecord, SimResult, SimulateArgs,
};

pub(crate) const S: u64 = 1_000_000_000;

/// `--policy-arg` pairs as `SimOptions::policy_args` takes them.
pub(crate) fn policy_args(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

pub(crate) fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

pub(crate) fn runtime() -> &'static PolicyRuntime {
    static RT: OnceLock<Arc<PolicyRuntime>> = OnceLock::new();
    RT.get_or_init(|| PolicyRuntime::new().expect("runtime"))
}

pub(crate) fn policy_path(name: &str) -> PathBuf {
    let p = root().join("policies").join(format!("{name}.wasm"));
    assert!(
        p.exists(),
        "{} is missing: run `just build-policies`",
        p.display()
    );
    p
}

pub(crate) fn policy(name: &str) -> Arc<PolicyComponent> {
    runtime()
        .load(&policy_path(name))
        .unwrap_or_else(|e| panic!("loading {name}: {e}"))
}

/// `SimulateArgs` as the `switchyard simulate` subcommand parses them.
#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    args: SimulateArgs,
}

fn try_cli<'a>(argv: impl IntoIterator<Item = &'a str>) -> Result<SimulateArgs, clap::Error> {
    Cli::try_parse_from(argv).map(|c| c.args)
}

fn cli<'a>(argv: impl IntoIterator<Item = &'a str>) -> SimulateArgs {
    try_cli(argv).unwrap_or_else(|e| panic!("{e}"))
}

pub(crate) fn scenario_path(name: &str) -> PathBuf {
    root().join("scenarios").join(format!("{name}.toml"))
}

pub(crate) fn scenario(name: &str) -> Scenario {
    Scenario::load(&scenario_path(name)).unwrap_or_else(|e| panic!("{e:#}"))
}

pub(crate) fn run_with(policy_name: &str, scenario_name: &str, opts: &SimOptions) -> SimResult {
    simulate(policy(policy_name), &scenario(scenario_name), opts)
        .unwrap_or_else(|e| panic!("{policy_name} on {scenario_name}: {e:#}"))
}

pub(crate) fn run(policy_name: &str, scenario_name: &str) -> SimResult {
    run_with(policy_name, scenario_name, &SimOptions::default())
}

/// Requests the proxy forwarded in [from_s, to_s) of virtual time.
pub(crate) fn window(r: &SimResult, from_s: u64, to_s: u64) -> Vec<SimRecord> {
    r.requests
        .iter()
        .filter(|x| (from_s * S..to_s * S).contains(&x.dispatched_ns))
        .copied()
        .collect()
}

pub(crate) fn count_to(requests: &[SimRecord], backend: u32) -> usize {
    requests.iter().filter(|x| x.backend == backend).count()
}

pub(crate) fn share_of(requests: &[SimRecord], backend: u32) -> f64 {
    count_to(requests, backend) as f64 / requests.len().max(1) as f64
}

/// No request lost: every connection's requests form an unbroken chain from t=0, each sent
/// the moment the previous answer arrived, the last one answered after the clients stopped.
pub(crate) fn assert_nothing_lost(r: &SimResult, connections: usize, duration_ns: u64) {
    let mut by_conn: BTreeMap<u32, Vec<&SimRecord>> = BTreeMap::new();
    for x in &r.requests {
        by_conn.entry(x.conn).or_default().push(x);
    }
    assert_eq!(by_conn.len(), connections);
    for (conn, reqs) in by_conn {
        assert_eq!(reqs[0].sent_ns, 0, "connection {conn}");
        for pair in reqs.windows(2) {
            assert_eq!(
                pair[1].sent_ns, pair[0].done_ns,
                "connection {conn} lost a request"
            );
        }
        let last = reqs[reqs.len() - 1];
        assert!(
            last.done_ns >= duration_ns,
            "connection {conn} stopped early"
        );
    }
}

#[test]
fn study_scenario_is_the_backends_study_profile() {
    let s = scenario("study");
    assert_eq!(s.backends.len(), 3);
    for b in &s.backends {
        let study = backend::BackendConfig::study(&b.id).expect("A, B or C");
        let ns: Vec<u64> = study
            .latencies_ms
            .iter()
            .map(|ms| (ms * 1e6) as u64)
            .collect();
        assert_eq!(
            b.initial.latency,
            switchyard_sim::scenario::Latency::Cycle(ns),
            "{}",
            b.id
        );
        assert!(b.changes.is_empty() && b.initial.capacity.is_none());
        assert_eq!(b.initial.error_rate, 0.0);
    }
}

#[test]
fn rr_on_the_study_splits_evenly_at_the_mean_of_the_cycles() {
    let r = run("rr", "study");
    let st = &r.stats;
    for id in ["A", "B", "C"] {
        assert!(
            (st.share(id) - 1.0 / 3.0).abs() < 0.005,
            "{id}: {}",
            st.share(id)
        );
    }
    // (143.33 + 200 + 250) / 3: each backend walks its cycle in order.
    let exact = ((10 + 15 + 20 + 400 * 3 + 10 + 15 + 20) as f64 / 9.0 + 200.0 + 250.0) / 3.0;
    assert!(
        (st.mean_ms - exact).abs() < 0.5,
        "{} vs {exact}",
        st.mean_ms
    );
    assert!(st.requests > 55_000, "{}", st.requests);
    assert_eq!(st.errors, 0);
    assert_eq!(st.p95_ms, 400.0);
    assert_eq!(&st.routing_modes[0].mode, "round-robin");
}

#[test]
fn sma_and_ewma_herd_onto_b_and_starve_c() {
    for p in ["sma", "ewma"] {
        let st = run(p, "study").stats;
        let (a, b, c) = (st.share("A"), st.share("B"), st.share("C"));
        assert!(b > a && a > c, "{p}: A {a} B {b} C {c}");
        assert!(b > 0.9, "{p}: B {b}");
        assert!(c < 0.05, "{p}: C {c}");
    }
}

#[test]
fn same_inputs_same_bytes_and_the_seed_matters() {
    let dir = std::env::temp_dir().join(format!("switchyard-sim-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let args = |seed: u64, csv: &str| {
        cli([
            "simulate",
            "--policy",
            policy_path("peak-ewma").to_str().unwrap(),
            "--scenario",
            scenario_path("degrade").to_str().unwrap(),
            "--duration",
            "60s",
            "--seed",
            &seed.to_string(),
            "--overhead",
            "0.1ms",
            "--csv",
            dir.join(csv).to_str().unwrap(),
        ])
    };
    let (one, _) = run_to_string(&args(7, "one.csv")).unwrap();
    let (two, _) = run_to_string(&args(7, "two.csv")).unwrap();
    let (other, _) = run_to_string(&args(8, "other.csv")).unwrap();
    let read = |f: &str| std::fs::read(dir.join(f)).unwrap();
    assert_eq!(one, two);
    assert!(read("one.csv") == read("two.csv"), "CSV bytes differ");
    assert_ne!(one, other, "the seed changed nothing");
    assert_ne!(read("one.csv"), read("other.csv"));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn csv_is_the_proxy_log_and_reads_back_to_the_same_statistics() {
    let opts = SimOptions {
        warmup: Duration::from_secs(10),
        duration: Duration::from_secs(60),
        ..SimOptions::default()
    };
    let r = run_with("ewma", "fail-recover", &opts);
    let mut bytes = Vec::new();
    r.write_csv(&mut bytes).unwrap();
    let text = String::from_utf8(bytes).unwrap();
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some(CSV_HEADER));
    let first = lines.next().unwrap();
    assert!(first.starts_with("2000-01-01T00:00:1"), "{first}");
    assert!(
        first.ends_with(",adaptive_ewma,") || first.contains(",simulated,true,"),
        "{first}"
    );

    let mut reader = csv::Reader::from_reader(text.as_bytes());
    let mut records = Vec::new();
    let mut outcomes = BTreeMap::new();
    for row in reader.records() {
        let row = row.unwrap();
        assert_eq!(row.len(), 11);
        assert_eq!(&row[1], format!("sim://{}", &row[5]));
        assert_eq!((&row[7], &row[8], &row[9]), ("simulated", "true", ""));
        assert!(row[10].starts_with("sim-"), "request ids: {}", &row[10]);
        *outcomes.entry(row[6].to_string()).or_insert(0) += 1;
        records.push(Record {
            t_ms: 0.0,
            backend: row[5].to_string(),
            latency_ms: row[2].parse().unwrap(),
            status: row[3].parse().unwrap(),
            routing_mode: row[4].to_string(),
        });
    }
    // The warm-up is left out of both, and `analyze` would compute the very same numbers.
    assert!(r.requests.len() > records.len());
    let ids: Vec<String> = r.backends.iter().map(|b| b.id.clone()).collect();
    let again = RunStats::compute(&r.label, &records, &ids, Some(50.0));
    assert_eq!(again, r.stats);
    // The crash at 30 s cut ewma's requests in flight on B.
    assert_eq!(outcomes.get("broken"), Some(&100), "{outcomes:?}");
}

#[test]
fn traffic_leaves_a_degraded_backend_within_a_few_hundred_requests() {
    const B: u32 = 1;
    // Before 40 s, B is the fastest: latency-chasing policies favour it.
    for p in ["sma", "ewma", "peak-ewma"] {
        let r = run(p, "degrade");
        assert!(
            share_of(&window(&r, 10, 40), B) > 0.3,
            "{p} did not favour B"
        );
        let right_after = count_to(&window(&r, 40, 45), B);
        let later = share_of(&window(&r, 45, 120), B);
        eprintln!(
            "degrade {p}: {right_after} requests to B in 40-45 s, then {:.2}%",
            later * 100.0
        );
        assert!(right_after <= 250, "{p}: {right_after}");
        assert!(later < 0.02, "{p}: {later}");
        assert_eq!(r.stats.errors, 0);
    }
    let rr = run("rr", "degrade");
    assert!((share_of(&window(&rr, 45, 120), B) - 1.0 / 3.0).abs() < 0.001);
    let ewma = run("ewma", "degrade");
    assert!(ewma.stats.p95_ms < rr.stats.p95_ms / 3.0);
}

#[test]
fn a_dead_backend_costs_only_the_requests_in_flight_and_none_is_lost() {
    const B: u32 = 1;
    for p in ["rr", "sma", "ewma", "peak-ewma"] {
        let r = run(p, "fail-recover");
        assert_nothing_lost(&r, 100, 120 * S);
        let dead = window(&r, 30, 60);
        // Cut at the crash: at most one per connection.
        let broken = r
            .requests
            .iter()
            .filter(|x| x.outcome == Outcome::Broken)
            .count();
        assert!(broken <= 100, "{p}: {broken}");
        assert!(r.requests.iter().all(|x| x.status == 200 || x.backend == B));
        match p {
            "rr" => assert!((share_of(&dead, B) - 1.0 / 3.0).abs() < 0.001),
            "sma" | "ewma" => {
                // B was the favourite when it died: everything in flight there was cut...
                assert_eq!(broken, 100, "{p}");
                // ...and nothing more was sent to it.
                assert_eq!(count_to(&dead, B), 0, "{p}");
                assert_eq!(r.stats.errors, 100, "{p}");
            }
            _ => {}
        }
    }
}

/// A dead backend fails in microseconds; without ejection its penalised cost times one
/// request in flight looked cheaper than a busy healthy backend and drew 67% of traffic.
#[test]
fn peak_ewma_avoids_a_dead_backend() {
    let r = run("peak-ewma", "fail-recover");
    let dead = window(&r, 30, 60);
    assert!(share_of(&dead, 1) < 0.05, "{}", share_of(&dead, 1));
}

/// Issue 16, defect 8: every request in flight on B when it crashed failed at once, and each
/// counted as one more failure in a row, so B was ejected for the 30 s cap (until it was
/// back up) instead of the 1 s that one failure earns. One crash is one failure event: B
/// is probed again about a second after it.
#[test]
fn peak_ewma_counts_a_crash_once() {
    let r = run("peak-ewma", "fail-recover");
    let crash = 30 * S;
    let probe = r
        .requests
        .iter()
        .filter(|x| x.backend == 1 && x.dispatched_ns >= crash)
        .map(|x| x.dispatched_ns)
        .min()
        .expect("B is tried again after its crash");
    let after_ms = (probe - crash) / 1_000_000;
    assert!(
        (1000..2000).contains(&after_ms),
        "B first retried {after_ms} ms after the crash"
    );
}

#[test]
fn peak_ewma_returns_to_a_recovered_backend() {
    let r = run("peak-ewma", "fail-recover");
    let share = share_of(&window(&r, 65, 120), 1);
    assert!(share > 0.2, "{share}");
}

#[test]
fn peak_ewma_beats_rr_when_capacity_differs() {
    let rr = run("rr", "capacity").stats;
    let pe = run("peak-ewma", "capacity").stats;
    eprintln!(
        "capacity: rr mean {:.2} p95 {:.2}, peak-ewma mean {:.2} p95 {:.2}",
        rr.mean_ms, rr.p95_ms, pe.mean_ms, pe.p95_ms
    );
    assert!(pe.mean_ms < 0.7 * rr.mean_ms);
    assert!(pe.p95_ms < 0.7 * rr.p95_ms);
    assert!(pe.req_per_s > 1.5 * rr.req_per_s);
    assert!(pe.share("A") > 0.5, "{}", pe.share("A"));
}

#[test]
fn fifty_backends() {
    let rr = run("rr", "many").stats;
    assert_eq!(rr.backends.len(), 50);
    for b in &rr.backends {
        assert!(
            (b.share - 0.02).abs() < 0.0002,
            "{}: {}",
            b.backend,
            b.share
        );
    }
    let slow = |st: &RunStats| {
        st.backends
            .iter()
            .filter(|b| b.backend.starts_with("slow"))
            .map(|b| b.share)
            .sum::<f64>()
    };
    assert!((slow(&rr) - 0.1).abs() < 0.001);
    for p in ["ewma", "peak-ewma"] {
        let st = run(p, "many").stats;
        eprintln!(
            "many {p}: slow share {:.3}%, mean {:.2}",
            slow(&st) * 100.0,
            st.mean_ms
        );
        assert!(slow(&st) < 0.03, "{p}: {}", slow(&st));
        assert!(st.mean_ms < rr.mean_ms, "{p}");
    }
}

#[test]
fn overhead_and_warmup() {
    let base = run("rr", "study").stats;
    let opts = SimOptions {
        overhead: Duration::from_millis(1),
        warmup: Duration::from_secs(20),
        ..SimOptions::default()
    };
    let r = run_with("rr", "study", &opts);
    // The client sees the proxy's overhead; the policy does not (it measures upstream).
    assert!(
        (r.stats.mean_ms - base.mean_ms - 1.0).abs() < 0.5,
        "{}",
        r.stats.mean_ms
    );
    assert!(r.measured().all(|x| x.sent_ns >= 20 * S));
    assert!(r
        .measured()
        .all(|x| x.dispatched_ns == x.sent_ns + 1_000_000));
    assert_eq!(r.stats.requests as usize, r.measured().count());
    assert!((r.stats.duration_s - 100.0).abs() < 1e-9);
}

#[test]
fn policy_args_reach_the_policy() {
    let opts = SimOptions {
        policy_args: vec![("alpha".into(), "0.9".into())],
        duration: Duration::from_secs(10),
        ..SimOptions::default()
    };
    let r = run_with("ewma", "study", &opts);
    assert_eq!(r.label, "adaptive_ewma (alpha=0.9)");
    let bad = SimOptions {
        policy_args: vec![("alpha".into(), "7".into())],
        ..SimOptions::default()
    };
    let e = simulate(policy("ewma"), &scenario("study"), &bad).unwrap_err();
    assert!(format!("{e:#}").contains("alpha=7"), "{e:#}");
}

#[test]
fn cli_arguments_parse() {
    let a = cli([
        "simulate",
        "--policy",
        "p.wasm",
        "--scenario",
        "s.toml",
        "--duration",
        "2m",
        "--policy-arg",
        "alpha=0.3",
        "--policy-arg",
        "failure-penalty-ms=500",
        "--warmup",
        "500ms",
    ]);
    assert_eq!(a.connections, 100);
    assert_eq!(a.seed, 1);
    assert_eq!(a.duration, Duration::from_secs(120));
    assert_eq!(a.overhead, Duration::ZERO);
    assert_eq!(a.warmup, Some(Duration::from_millis(500)));
    assert_eq!(
        a.policy_args,
        [
            ("alpha".into(), "0.3".into()),
            ("failure-penalty-ms".into(), "500".into())
        ]
    );
    assert!(try_cli([
        "simulate",
        "--policy",
        "p",
        "--scenario",
        "s",
        "--duration",
        "120"
    ])
    .is_err());
    assert!(try_cli([
        "simulate",
        "--policy",
        "p",
        "--scenario",
        "s",
        "--policy-arg",
        "x"
    ])
    .is_err());
}

#[test]
fn bad_scenario_files_are_named_with_the_field() {
    let dir = std::env::temp_dir().join(format!("switchyard-scen-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let write = |name: &str, text: &str| -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    };
    let check = |p: &Path, field: &str| {
        let e = format!("{:#}", Scenario::load(p).unwrap_err());
        assert!(e.contains(&p.display().to_string()), "{e}");
        assert!(e.contains(field), "{e}");
    };
    check(
        &write("typo.toml", "[[backend]]\nid = \"A\"\ncylce_ms = [1]\n"),
        "cylce_ms",
    );
    check(
        &write(
            "range.toml",
            "[[backend]]\nid = \"A\"\ncycle_ms = [1]\nerror_rate = 1.5\n",
        ),
        "backend[0] (id \"A\").error_rate",
    );
    check(
        &write(
            "when.toml",
            "[[backend]]\nid = \"A\"\ncycle_ms = [1]\n[[backend.change]]\nat = \"soon\"\nstate = \"down\"\n",
        ),
        "backend[0] (id \"A\").change[0].at",
    );
    check(&dir.join("missing.toml"), "cannot read scenario file");
    // Through the CLI path too.
    let args = cli([
        "simulate",
        "--policy",
        policy_path("rr").to_str().unwrap(),
        "--scenario",
        dir.join("typo.toml").to_str().unwrap(),
    ]);
    assert!(format!("{:#}", run_to_string(&args).unwrap_err()).contains("typo.toml"));
    let _ = std::fs::remove_dir_all(&dir);
}

/// `switchyard simulate` as the operator runs it: a missing or invalid policy and a broken
/// scenario are their input to fix, so the binary exits with 2 (as the proxy and `analyze`
/// do) and says, on one line, which file and what to do.
#[test]
fn bad_input_exits_2_with_one_line_naming_the_file_and_the_fix() {
    let dir = std::env::temp_dir().join(format!("switchyard-sim-exit-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let broken = dir.join("broken.toml");
    std::fs::write(&broken, "[[backend]]\nid = \"A\"\ncylce_ms = [1]\n").unwrap();
    let not_wasm = dir.join("notes.wasm");
    std::fs::write(&not_wasm, "not a component").unwrap();
    let study = scenario_path("study");
    let cases: [(PathBuf, &Path, &str, &str); 3] = [
        (
            dir.join("missing.wasm"),
            &study,
            "missing.wasm",
            "pass the path of a built .wasm component",
        ),
        (not_wasm.clone(), &study, "notes.wasm", "wasm32-wasip2"),
        (policy_path("rr"), &broken, "broken.toml", "expected one of"),
    ];
    for (policy, scenario, file, fix) in cases {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_switchyard"))
            .arg("simulate")
            .arg("--policy")
            .arg(&policy)
            .arg("--scenario")
            .arg(scenario)
            .args(["--duration", "1s"])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{file}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{file}: {stderr}");
        assert!(stderr.contains(file) && stderr.contains(fix), "{stderr}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
#[ignore = "prints every policy on every scenario"]
fn matrix() {
    for s in ["study", "degrade", "fail-recover", "capacity", "many"] {
        for p in ["rr", "sma", "ewma", "peak-ewma"] {
            let r = run(p, s);
            let st = &r.stats;
            let shares: Vec<String> = st
                .backends
                .iter()
                .take(3)
                .map(|b| format!("{} {:.2}%", b.backend, b.share * 100.0))
                .collect();
            eprintln!(
                "{s:12} {p:9} n={:6} rps={:7.1} mean={:7.2} p50={:7.2} p95={:7.2} p99={:7.2} err={:6} | {} | wall {:.0} ms",
                st.requests,
                st.req_per_s,
                st.mean_ms,
                st.p50_ms,
                st.p95_ms,
                st.p99_ms,
                st.errors,
                shares.join(", "),
                r.wall.as_secs_f64() * 1e3
            );
        }
    }
}

/// Clients that give up (`client_timeout`) are observed as aborts; peak-ewma, which reads
/// the host's in-flight count (contract 0.2), returns to the backend they abandoned once it
/// is fast again. (Under 0.1 each abort stayed in its own count for good.)
#[test]
fn aborted_requests_are_observed_and_peak_ewma_returns_to_the_abandoned_backend() {
    let scenario = Scenario::parse(
        r#"
        client_timeout = "50ms"
        [[backend]]
        id = "A"
        latency = { dist = "constant", ms = 2 }
        [[backend]]
        id = "B"
        latency = { dist = "constant", ms = 200 }
        [[backend.change]]
        at = "3s"
        latency = { dist = "constant", ms = 2 }
        "#,
        "abandoned.toml",
    )
    .unwrap();
    let opts = SimOptions {
        connections: 10,
        duration: Duration::from_secs(10),
        policy_args: vec![("decay-ms".into(), "300".into())],
        ..SimOptions::default()
    };
    let r = simulate(policy("peak-ewma"), &scenario, &opts).unwrap();
    assert_nothing_lost(&r, 10, 10 * S);
    let aborted: Vec<_> = r
        .requests
        .iter()
        .filter(|x| x.outcome == Outcome::Aborted)
        .collect();
    assert!(!aborted.is_empty(), "B's slow requests were abandoned");
    assert!(aborted
        .iter()
        .all(|x| x.backend == 1 && x.latency_ns() == 50_000_000 && x.status == 0));
    let late = window(&r, 6, 10);
    let share = share_of(&late, 1);
    assert!(
        share >= 0.3,
        "B recovered at 3 s: {:.1} % of the last 4 s",
        100.0 * share
    );
}

/// Load reports and probes, in virtual time: the `ledger` fixture asks for a response
/// header and probes every backend on every request; the host's gate lets one probe per
/// backend per 10 ms through, answered one `probe_rtt` later with the backend's load.
#[test]
fn load_reports_and_probes_reach_the_policy_within_the_hosts_bounds() {
    let scenario = Scenario::parse(
        r#"
        probe_rtt = "1ms"
        [[backend]]
        id = "A"
        latency = { dist = "constant", ms = 5 }
        capacity = 4
        report_load = true
        [[backend]]
        id = "B"
        latency = { dist = "constant", ms = 5 }
        "#,
        "reports.toml",
    )
    .unwrap();
    let opts = SimOptions {
        connections: 8,
        duration: Duration::from_secs(2),
        ..SimOptions::default()
    };
    let ledger = runtime()
        .load(&root().join("policies/fixtures/wasm/ledger.wasm"))
        .expect("run `just build-fixtures`");
    let r = simulate(ledger.clone(), &scenario, &opts).unwrap();
    let books: Vec<f64> = r
        .scores
        .as_ref()
        .unwrap()
        .values
        .iter()
        .map(|s| s.1)
        .collect();
    assert_eq!(books.len(), 10, "five books per backend: {:?}", r.scores);
    let (own, with_header, probes_ok) = (
        [books[0], books[5]],
        [books[1], books[6]],
        [books[2], books[7]],
    );
    assert_eq!(own, [0.0, 0.0], "every request it chose was observed once");
    let to_a = count_to(&r.requests, 0) as f64;
    assert_eq!(with_header, [to_a, 0.0], "only A reports load on responses");
    for (i, &n) in probes_ok.iter().enumerate() {
        // 2 s at one probe per 10 ms; every probe gets the headers, reporting or not.
        assert!(
            (150.0..=201.0).contains(&n),
            "backend {i}: {n} probes answered"
        );
    }
    let again = simulate(ledger, &scenario, &opts).unwrap();
    assert_eq!(
        (again.requests, again.scores),
        (r.requests, r.scores),
        "deterministic"
    );
}
