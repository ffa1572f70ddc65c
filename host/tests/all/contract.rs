//! Contract 0.2 over real sockets: response headers a policy asks for, and probes the
//! proxy sends for it, against `backend --report-load`.
use std::sync::atomic::Ordering;
use std::time::Duration;

use backend::BackendConfig;

use crate::common::{backend_args, policy, proxy, Client};

/// The `ledger` fixture names `x-prequal-rif` and the probe path `/probe`, and probes every
/// backend on every request: the proxy copies the header into observations from the
/// backend that reports load (only), sends probes within its bounds, and every probe
/// answer carries the header (backends answer `/probe` whether or not they report).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn response_headers_and_probes_reach_the_policy_over_real_sockets() {
    let reporting = backend::spawn(
        BackendConfig::with_latencies("A", &[1.0]).report_load(true),
        "127.0.0.1:0".parse().unwrap(),
    )
    .await
    .unwrap();
    let quiet = crate::common::backend("B", &[1.0]).await;
    let mut args = vec![
        "--no-log".to_string(),
        "--policy".into(),
        policy("fixtures/wasm/ledger.wasm"),
        "--probe-interval".into(),
        "20ms".into(),
    ];
    args.extend(backend_args(&[&reporting, &quiet]));
    let p = proxy(&args.iter().map(String::as_str).collect::<Vec<_>>()).await;
    let mut client = Client::connect(p.addr).await;
    for _ in 0..40 {
        assert_eq!(client.get("/").await.0, 200);
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // Let the last probes come back.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let router = &p.shared.router;
    let books: Vec<f64> = router
        .live_scores(0)
        .unwrap()
        .values
        .iter()
        .map(|s| s.1)
        .collect();
    let sent = router.counters().probes_sent.load(Ordering::Relaxed);
    let answered = router.counters().probes_answered.load(Ordering::Relaxed);
    p.shutdown().await.unwrap();
    // The ledger's five books per backend: see policies/fixtures/ledger.
    assert_eq!([books[0], books[5]], [0.0, 0.0], "nothing left in flight");
    assert_eq!(
        [books[1], books[6]],
        [20.0, 0.0],
        "the header came from A's 20 responses only"
    );
    for (i, n) in [books[2], books[7]].into_iter().enumerate() {
        // ~200 ms of requests + 200 ms: at most one probe per 20 ms per backend.
        assert!(
            (2.0..=25.0).contains(&n),
            "backend {i}: {n} probes answered with the header"
        );
    }
    assert_eq!(sent, answered, "every probe sent was answered");
    assert!(sent <= 2 * 25, "{sent} probes in all");
}
