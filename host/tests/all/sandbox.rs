//! The sandbox's bounds end to end: hostile policies in a running proxy under load fail no
//! request, a policy over a bound is faulted and then disabled, display calls never reach
//! routing, and what a policy prints reaches the log escaped.
use crate::common;

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use common::*;

fn hostile() -> String {
    policy("fixtures/wasm/hostile.wasm")
}

/// One 24 MiB write to stderr per request: before, it never faulted and took the proxy to
/// about a hundred requests a second. Now the write is refused (a `limit` fault; filling
/// the 24 MiB may already take the call past its deadline), the breaker disables the
/// policy, and every request is served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_huge_write_per_call_is_faulted_and_no_request_fails() {
    let a = backend("A", &[0.0]).await;
    let b = backend("B", &[0.0]).await;
    let mut args = vec![
        "--no-log".to_string(),
        "--policy".into(),
        hostile(),
        "--policy-arg".into(),
        "stderr-bytes=25165824".into(),
    ];
    args.extend(backend_args(&[&a, &b]));
    let p = proxy(&args.iter().map(String::as_str).collect::<Vec<_>>()).await;
    let mut client = Client::connect(p.addr).await;
    for i in 0..200 {
        assert_eq!(client.get("/").await.0, 200, "request {i}");
    }
    let router = &p.shared.router;
    let c = router.counters();
    let limit_faults = c.fault_count(switchyard_runtime::FaultKind::Limit);
    let faults: u64 = c.faults.iter().map(|f| f.load(Ordering::Relaxed)).sum();
    let disabled = router.status().disabled;
    p.shutdown().await.unwrap();
    assert!(disabled, "the breaker disables it");
    assert_eq!(faults, 5);
    assert!(
        limit_faults >= 1,
        "{faults} faults, {limit_faults} of them limit faults"
    );
}

/// `scores` traps, and the dashboard's sampler and `/api/state` keep asking: the routing
/// instance never notices (before, each display call faulted it and counted toward the
/// breaker, and the log blamed a request).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trapping_scores_never_reaches_routing() {
    let a = backend("A", &[0.0]).await;
    let b = backend("B", &[0.0]).await;
    let mut args = vec![
        "--no-log".to_string(),
        "--admin".into(),
        "127.0.0.1:0".into(),
        "--policy".into(),
        hostile(),
        "--policy-arg".into(),
        "scores-trap=1".into(),
    ];
    args.extend(backend_args(&[&a, &b]));
    let p = proxy(&args.iter().map(String::as_str).collect::<Vec<_>>()).await;
    let admin = p.admin_addr.expect("admin listener");
    let mut client = Client::connect(p.addr).await;
    for _ in 0..10 {
        assert_eq!(client.get("/").await.0, 200);
        assert_eq!(crate::admin::get(admin, "/api/state").await.0, 200);
    }
    let router = &p.shared.router;
    let c = router.counters();
    let faults: u64 = c.faults.iter().map(|f| f.load(Ordering::Relaxed)).sum();
    let (display, fallback) = (
        c.display_faults.load(Ordering::Relaxed),
        c.fallback_routed.load(Ordering::Relaxed),
    );
    let status = router.status();
    p.shutdown().await.unwrap();
    assert_eq!((faults, fallback), (0, 0), "routing untouched");
    assert_eq!(
        display, 1,
        "one display fault, then no twin for this generation"
    );
    assert!(status.live && !status.disabled);
}

/// What a policy prints reaches the log with control characters escaped: an escape
/// sequence cannot clear the operator's terminal nor a CR overwrite a line.
#[test]
fn policy_output_reaches_the_log_escaped() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let a = rt.block_on(backend("A", &[0.0]));
    let url = format!("A={}", a.url());
    let mut proxy = Binary::start(&[
        "--policy",
        &hostile(),
        "--policy-arg",
        "stderr-text=\\e[2Jcleared\\rforged",
        "--backend",
        &url,
    ]);
    let addr = proxy.addr();
    rt.block_on(async {
        let mut client = Client::connect(addr).await;
        assert_eq!(client.get("/").await.0, 200);
    });
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut printed = None;
    while printed.is_none() && Instant::now() < deadline {
        if let Ok(line) = proxy.lines.recv_timeout(Duration::from_millis(100)) {
            if line.contains("cleared") {
                printed = Some(line);
            }
        }
    }
    let _ = proxy.child.kill();
    let _ = proxy.child.wait();
    let line = printed.expect("the policy's line is logged");
    assert!(line.contains("\\u{1b}[2Jcleared\\u{d}forged"), "{line:?}");
    assert!(!line.contains('\u{1b}') && !line.contains('\r'), "{line:?}");
}
