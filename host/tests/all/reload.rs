//! Hot swaps under load, and hostile policies that must not take traffic down.
use crate::common;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use switchyard::app::Running;

/// A folder holding the watched policy file.
fn policy_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("switchyard-reload-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Replaces `target` with `source`'s bytes, alternating how, as editors and tools do.
fn replace(target: &Path, source: &str, by_rename: bool) {
    if by_rename {
        let tmp = target.with_extension("tmp");
        std::fs::copy(source, &tmp).unwrap();
        std::fs::rename(&tmp, target).unwrap();
    } else {
        std::fs::copy(source, target).unwrap();
    }
}

async fn wait_for_policy(p: &Running, name: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while &*p.shared.router.status().name != name {
        assert!(
            Instant::now() < deadline,
            "swap to {name} not seen within 10 s"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Clients that keep sending until told to stop; they count every non-200.
struct Load {
    stop: Arc<AtomicBool>,
    ok: Arc<AtomicU64>,
    failed: Arc<AtomicU64>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Load {
    fn start(addr: std::net::SocketAddr, clients: usize) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let ok = Arc::new(AtomicU64::new(0));
        let failed = Arc::new(AtomicU64::new(0));
        let tasks = (0..clients)
            .map(|_| {
                let (stop, ok, failed) = (stop.clone(), ok.clone(), failed.clone());
                tokio::spawn(async move {
                    let mut client = Client::connect(addr).await;
                    // Bounded: at most 200k requests per client, and stops when told.
                    for _ in 0..200_000 {
                        if stop.load(Ordering::Relaxed) {
                            break;
                        }
                        match client.get("/").await.0 {
                            200 => ok.fetch_add(1, Ordering::Relaxed),
                            _ => failed.fetch_add(1, Ordering::Relaxed),
                        };
                    }
                })
            })
            .collect();
        Load {
            stop,
            ok,
            failed,
            tasks,
        }
    }

    async fn served_since(&self, before: u64, at_least: u64) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.ok.load(Ordering::Relaxed) < before + at_least {
            assert!(Instant::now() < deadline, "load stalled");
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }

    async fn finish(self) -> (u64, u64) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.tasks {
            t.await.unwrap();
        }
        (
            self.ok.load(Ordering::Relaxed),
            self.failed.load(Ordering::Relaxed),
        )
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_swaps_under_load_fail_no_request() {
    let a = backend("A", &[0.0]).await;
    let b = backend("B", &[0.5]).await;
    let c = backend("C", &[1.0]).await;
    let dir = policy_dir("cycle");
    let watched = dir.join("policy.wasm");
    std::fs::copy(policy("rr.wasm"), &watched).unwrap();
    let csv = temp_csv("swaps");
    let mut args = vec![
        "--policy".to_string(),
        watched.display().to_string(),
        "--log".into(),
        csv.display().to_string(),
    ];
    args.extend(backend_args(&[&a, &b, &c]));
    let p = proxy(&args.iter().map(String::as_str).collect::<Vec<_>>()).await;
    let load = Load::start(p.addr, 4);
    load.served_since(0, 50).await;

    let cycle = [
        ("ewma.wasm", "adaptive_ewma"),
        ("sma.wasm", "adaptive_sma"),
        ("rr.wasm", "round-robin"),
    ];
    let mut expected = vec!["round-robin"];
    for i in 0..21 {
        let (file, name) = cycle[i % 3];
        replace(&watched, &policy(file), i % 2 == 1);
        wait_for_policy(&p, name).await;
        load.served_since(load.ok.load(Ordering::Relaxed), 30).await;
        expected.push(name);
    }
    let (ok, failed) = load.finish().await;
    let counters = p.shared.router.counters();
    let swaps = counters.swaps.load(Ordering::Relaxed);
    p.shutdown().await.unwrap();
    assert_eq!(failed, 0, "{ok} requests succeeded, {failed} failed");
    assert_eq!(swaps, 21);

    // Every swap shows in the log: the expected sequence of routing modes appears in
    // order (rows are written as requests complete, so neighbours may interleave).
    let (_, rows) = read_csv(&csv);
    assert_eq!(rows.len() as u64, ok);
    let mut next = 0;
    for r in &rows {
        if next < expected.len() && r[4] == expected[next] {
            next += 1;
        }
    }
    assert_eq!(
        next,
        expected.len(),
        "routing_mode sequence misses swap {next}: {expected:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_policy_files_leave_the_running_policy_in_place() {
    let a = backend("A", &[0.0]).await;
    let b = backend("B", &[0.0]).await;
    let dir = policy_dir("hostile");
    let watched = dir.join("policy.wasm");
    std::fs::copy(policy("ewma.wasm"), &watched).unwrap();
    let mut args = vec![
        "--no-log".to_string(),
        "--policy".into(),
        watched.display().to_string(),
    ];
    args.extend(backend_args(&[&a, &b]));
    let p = proxy(&args.iter().map(String::as_str).collect::<Vec<_>>()).await;
    let load = Load::start(p.addr, 3);
    load.served_since(0, 50).await;

    let rr = std::fs::read(policy("rr.wasm")).unwrap();
    let random: Vec<u8> = (0..4096u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    let bytes_cases: Vec<(&str, Vec<u8>)> = vec![
        ("empty file", Vec::new()),
        ("truncated component", rr[..rr.len() / 3].to_vec()),
        ("random bytes", random),
        ("core wasm module", vec![0, b'a', b's', b'm', 1, 0, 0, 0]),
    ];
    let fixtures = [
        "other-world",
        "trap-init",
        "loop-forever",
        "grow-memory",
        "open-file",
        "made-up-import",
        "wrong-choose",
    ];
    let mut cases: Vec<(String, Vec<u8>)> = bytes_cases
        .into_iter()
        .map(|(n, b)| (n.to_string(), b))
        .collect();
    for f in fixtures {
        cases.push((
            f.to_string(),
            std::fs::read(policy(&format!("fixtures/wasm/{f}.wasm"))).unwrap(),
        ));
    }

    let counters = p.shared.router.counters();
    for (i, (name, bytes)) in cases.iter().enumerate() {
        let failed_before = counters.failed_swaps.load(Ordering::Relaxed);
        std::fs::write(&watched, bytes).unwrap();
        // The failure is counted once retries (for half-written files) are exhausted.
        let deadline = Instant::now() + Duration::from_secs(10);
        while counters.failed_swaps.load(Ordering::Relaxed) == failed_before {
            assert!(
                Instant::now() < deadline,
                "{name}: no failed reload counted"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        load.served_since(load.ok.load(Ordering::Relaxed), 30).await;
        let status = p.shared.router.status();
        assert_eq!(
            &*status.name, "adaptive_ewma",
            "{name}: the previous policy keeps routing"
        );
        assert!(status.live && !status.disabled, "{name}");
        assert_eq!(
            counters.swaps.load(Ordering::Relaxed),
            0,
            "{name} ({i}) must not swap in"
        );
    }
    let (ok, failed) = load.finish().await;
    let faults: u64 = counters
        .faults
        .iter()
        .map(|f| f.load(Ordering::Relaxed))
        .sum();
    p.shutdown().await.unwrap();
    assert_eq!(failed, 0, "{ok} requests succeeded, {failed} failed");
    assert_eq!(
        faults, 0,
        "hostile files are refused before they take traffic"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn warm_started_ewma_avoids_the_slow_backend_from_its_first_request() {
    for (replay, expect_probe_of_c) in [("4096", false), ("0", true)] {
        let a = backend("A", &[1.0]).await;
        let b = backend("B", &[1.0]).await;
        let c = backend("C", &[40.0]).await;
        let dir = policy_dir(&format!("warm{replay}"));
        let watched = dir.join("policy.wasm");
        std::fs::copy(policy("rr.wasm"), &watched).unwrap();
        let mut args = vec![
            "--no-log".to_string(),
            "--replay".into(),
            replay.into(),
            "--policy".into(),
            watched.display().to_string(),
        ];
        args.extend(backend_args(&[&a, &b, &c]));
        let p = proxy(&args.iter().map(String::as_str).collect::<Vec<_>>()).await;
        let mut client = Client::connect(p.addr).await;
        for _ in 0..30 {
            assert_eq!(client.get("/").await.0, 200);
        }
        let c_before = c.requests();
        replace(&watched, &policy("ewma.wasm"), true);
        wait_for_policy(&p, "adaptive_ewma").await;
        for _ in 0..10 {
            assert_eq!(client.get("/").await.0, 200);
        }
        p.shutdown().await.unwrap();
        let c_after = c.requests() - c_before;
        if expect_probe_of_c {
            assert_eq!(c_after, 1, "a cold start probes C once");
        } else {
            assert_eq!(
                c_after, 0,
                "warm-started from 30 observations, ewma never tries C"
            );
        }
    }
}

/// SIGHUP reloads the policy file even when file watching is off.
#[cfg(unix)]
#[test]
fn sighup_reloads_the_policy() {
    use std::process::Command;

    let dir = policy_dir("sighup");
    let watched = dir.join("policy.wasm");
    std::fs::copy(policy("rr.wasm"), &watched).unwrap();
    let watched_arg = watched.display().to_string();
    let mut proxy = Binary::start(&["--policy", &watched_arg]);
    let pid = proxy.child.id().to_string();
    let rx = &proxy.lines;
    std::fs::copy(policy("ewma.wasm"), &watched).unwrap();
    // Watching is off: nothing happens until the signal.
    std::thread::sleep(Duration::from_millis(500));
    assert!(rx.try_iter().all(|l| !l.contains("policy swap")));
    let signal = |sig: &str| {
        assert!(Command::new("kill")
            .args([sig, &pid])
            .status()
            .unwrap()
            .success());
    };
    signal("-HUP");
    let deadline = Instant::now() + Duration::from_secs(10);
    let swapped = loop {
        match rx.recv_timeout(Duration::from_millis(100)) {
            Ok(line) if line.contains("policy swap: round-robin -> adaptive_ewma") => break true,
            _ if Instant::now() > deadline => break false,
            _ => {}
        }
    };
    signal("-TERM");
    let status = proxy.child.wait().unwrap();
    assert!(swapped, "no swap logged after SIGHUP");
    assert!(status.success(), "exits cleanly on SIGTERM: {status}");
}

/// A file beside the policy that is written all the time (the CSV log, as `just
/// swap-demo` lays it out) must not hold a swap back: only the policy file's own events
/// restart the debounce. Before, the quiet time never came while the neighbour was busy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_file_beside_the_policy_does_not_delay_the_swap() {
    let a = backend("A", &[0.0]).await;
    let dir = policy_dir("busy-neighbour");
    let watched = dir.join("policy.wasm");
    std::fs::copy(policy("rr.wasm"), &watched).unwrap();
    let mut args = vec![
        "--policy".to_string(),
        watched.display().to_string(),
        "--no-log".into(),
    ];
    args.extend(backend_args(&[&a]));
    let p = proxy(&args.iter().map(String::as_str).collect::<Vec<_>>()).await;
    // A neighbour written every 5 ms, ten times the debounce's rate.
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (stop, path) = (stop.clone(), dir.join("requests.csv"));
        std::thread::spawn(move || {
            use std::io::Write;
            let mut f = std::fs::File::create(path).unwrap();
            while !stop.load(Ordering::Relaxed) {
                let _ = writeln!(f, "row");
                let _ = f.flush();
                std::thread::sleep(Duration::from_millis(5));
            }
        })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    let changed = Instant::now();
    replace(&watched, &policy("ewma.wasm"), false);
    let deadline = changed + Duration::from_secs(3);
    while &*p.shared.router.status().name != "adaptive_ewma" && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let took = changed.elapsed();
    stop.store(true, Ordering::Relaxed);
    writer.join().unwrap();
    let name = p.shared.router.status().name.clone();
    p.shutdown().await.unwrap();
    assert_eq!(
        &*name, "adaptive_ewma",
        "no swap within {took:?} while a neighbour was busy"
    );
}
