//! Socket-level tests: each starts a backend on an ephemeral port.

use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Bytes;
use hyper::client::conn::http1::{handshake, SendRequest};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::*;

async fn start(cfg: BackendConfig) -> RunningBackend {
    spawn(cfg, "127.0.0.1:0".parse().unwrap()).await.unwrap()
}

/// One keep-alive client connection; the driver task ends with the connection.
async fn connect<B>(backend: &RunningBackend) -> SendRequest<B>
where
    B: hyper::body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let stream = TcpStream::connect(backend.addr).await.unwrap();
    let (sender, conn) = handshake(TokioIo::new(stream)).await.unwrap();
    tokio::spawn(conn);
    sender
}

fn get(path: &str) -> Request<Empty<Bytes>> {
    Request::get(path)
        .header("host", "test")
        .body(Empty::new())
        .unwrap()
}

async fn read(resp: Response<hyper::body::Incoming>) -> (StatusCode, hyper::HeaderMap, Bytes) {
    let (parts, body) = resp.into_parts();
    (
        parts.status,
        parts.headers,
        body.collect().await.unwrap().to_bytes(),
    )
}

#[tokio::test]
async fn profile_a_follows_the_study_cycle_on_one_connection() {
    let backend = start(BackendConfig::study("A").unwrap()).await;
    let mut client = connect(&backend).await;
    let mut seen = Vec::new();
    for _ in 0..10 {
        let (status, headers, body) = read(client.send_request(get("/")).await.unwrap()).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(headers["x-backend-id"], "A");
        let ms = headers["x-simulated-latency-ms"]
            .to_str()
            .unwrap()
            .to_string();
        assert_eq!(body, format!("Hello from A - simulated {ms}ms"));
        seen.push(ms);
    }
    assert_eq!(
        seen,
        ["10", "15", "20", "400", "400", "400", "10", "15", "20", "10"]
    );
    assert_eq!(backend.requests(), 10);
    assert_eq!(backend.connections(), 1);
}

#[tokio::test]
async fn latency_is_applied() {
    let backend = start(BackendConfig::with_latencies("X", &[60.0])).await;
    let mut client = connect(&backend).await;
    let started = Instant::now();
    let (status, headers, _) = read(client.send_request(get("/any")).await.unwrap()).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers["x-simulated-latency-ms"], "60");
    assert!(started.elapsed() >= Duration::from_millis(55));
}

#[tokio::test]
async fn each_new_connection_is_counted() {
    let backend = start(BackendConfig::with_latencies("X", &[0.0])).await;
    for _ in 0..3 {
        let mut client = connect(&backend).await;
        read(client.send_request(get("/")).await.unwrap()).await;
    }
    assert_eq!(backend.connections(), 3);
    assert_eq!(backend.requests(), 3);
}

#[tokio::test]
async fn echo_streams_a_mebibyte_back_unchanged() {
    let backend = start(BackendConfig::study("B").unwrap()).await;
    let payload: Bytes = (0..1024 * 1024u32)
        .map(|i| (i % 253) as u8)
        .collect::<Vec<_>>()
        .into();
    let mut client = connect(&backend).await;
    let req = Request::post("/echo")
        .header("host", "test")
        .header("content-type", "application/x-test")
        .body(Full::new(payload.clone()))
        .unwrap();
    let (status, headers, body) = read(client.send_request(req).await.unwrap()).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers["content-type"], "application/x-test");
    assert_eq!(headers["content-length"], "1048576");
    assert!(body == payload, "echoed body differs");
    assert_eq!(backend.requests(), 0, "echo must not advance the cycle");
}

#[tokio::test]
async fn echo_passes_chunked_bodies_through_as_chunked() {
    let backend = start(BackendConfig::with_latencies("X", &[0.0])).await;
    let mut stream = TcpStream::connect(backend.addr).await.unwrap();
    stream
        .write_all(b"PUT /echo HTTP/1.1\r\nhost: t\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n")
        .await
        .unwrap();
    let mut raw = String::new();
    stream.read_to_string(&mut raw).await.unwrap();
    let lower = raw.to_ascii_lowercase();
    assert!(lower.starts_with("http/1.1 200"), "{raw}");
    assert!(lower.contains("transfer-encoding: chunked"), "{raw}");
    let body = &raw[raw.find("\r\n\r\n").unwrap() + 4..];
    let text: String = body.split("\r\n").skip(1).step_by(2).collect();
    assert_eq!(text, "hello world");
}

#[tokio::test]
async fn bytes_route_sends_the_pattern_with_a_length() {
    let backend = start(BackendConfig::study("C").unwrap()).await;
    let mut client = connect(&backend).await;
    let n = 200_003u64;
    let (status, headers, body) = read(
        client
            .send_request(get(&format!("/bytes/{n}")))
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers["content-length"], n.to_string().as_str());
    assert_eq!(body.len() as u64, n);
    assert!(body
        .iter()
        .enumerate()
        .all(|(i, &b)| b == ((i as u64 * 31 + 7) % 251) as u8));

    let (_, headers, body) = read(client.send_request(get("/bytes/0")).await.unwrap()).await;
    assert_eq!(headers["content-length"], "0");
    assert!(body.is_empty());
    let (status, _, _) = read(client.send_request(get("/bytes/lots")).await.unwrap()).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _, body) = read(client.send_request(get("/health")).await.unwrap()).await;
    assert_eq!((status, body.as_ref()), (StatusCode::OK, &b"ok"[..]));
    assert_eq!(backend.requests(), 0);
}

#[tokio::test]
async fn profile_requests_with_bodies_keep_the_connection_usable() {
    let backend = start(BackendConfig::with_latencies("X", &[0.0])).await;
    let mut client = connect(&backend).await;
    for _ in 0..3 {
        let req = Request::post("/submit")
            .header("host", "test")
            .body(Full::new(Bytes::from(vec![b'x'; 100_000])))
            .unwrap();
        let (status, _, body) = read(client.send_request(req).await.unwrap()).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body, "Hello from X - simulated 0ms");
    }
    assert_eq!(backend.connections(), 1);
}

async fn failure_pattern(seed: u64) -> Vec<bool> {
    failures_at(seed, 0.2, 1000).await
}

/// Which of the first `n` requests to a fresh backend failed (500), one connection.
async fn failures_at(seed: u64, rate: f64, n: usize) -> Vec<bool> {
    let cfg = BackendConfig::with_latencies("E", &[0.0])
        .error_rate(rate)
        .seed(seed);
    let backend = start(cfg).await;
    let mut client = connect(&backend).await;
    let mut failed = Vec::with_capacity(n);
    for _ in 0..n {
        let (status, _, body) = read(client.send_request(get("/")).await.unwrap()).await;
        if status == StatusCode::INTERNAL_SERVER_ERROR {
            assert_eq!(body, "Simulated failure from E");
        }
        failed.push(status == StatusCode::INTERNAL_SERVER_ERROR);
    }
    failed
}

/// The simulator fails a backend's i-th request with `switchyard_rng::fails(seed, i, rate)`;
/// the real backend must fail exactly the same ones, or a simulated error rate would hit
/// other requests than a live run.
#[tokio::test]
async fn errors_are_exactly_the_shared_rng_decisions() {
    for (seed, rate) in [(1, 0.2), (7, 0.05), (42, 0.5), (u64::MAX, 0.9), (3, 1.0)] {
        let want: Vec<bool> = (0..300)
            .map(|i| switchyard_rng::fails(seed, i, rate))
            .collect();
        assert_eq!(
            failures_at(seed, rate, 300).await,
            want,
            "seed {seed} rate {rate}"
        );
    }
}

#[tokio::test]
async fn error_rate_is_reproducible_for_a_seed() {
    let first = failure_pattern(1).await;
    let count = first.iter().filter(|&&f| f).count();
    assert!((150..=250).contains(&count), "{count} failures at rate 0.2");
    assert_eq!(first, failure_pattern(1).await);
    assert_ne!(first, failure_pattern(2).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn capacity_queues_excess_requests() {
    let backend = start(BackendConfig::with_latencies("Q", &[50.0]).capacity(1)).await;
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..3 {
        let mut client = connect(&backend).await;
        tasks.push(tokio::spawn(async move {
            read(client.send_request(get("/")).await.unwrap()).await.0
        }));
    }
    for task in tasks {
        assert_eq!(task.await.unwrap(), StatusCode::OK);
    }
    assert!(
        started.elapsed() >= Duration::from_millis(140),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn stop_closes_the_listener_and_idle_connections() {
    let backend = start(BackendConfig::with_latencies("S", &[0.0])).await;
    let addr = backend.addr;
    let mut idle = TcpStream::connect(addr).await.unwrap();
    idle.write_all(b"GET / HTTP/1.1\r\nhost: t\r\n\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 512];
    assert!(idle.read(&mut buf).await.unwrap() > 0);
    backend.stop().await;
    assert_eq!(
        idle.read(&mut buf).await.unwrap_or(0),
        0,
        "idle connection left open"
    );
    assert!(TcpStream::connect(addr).await.is_err());
}

#[tokio::test]
async fn invalid_config_is_rejected_before_binding() {
    let cfg = BackendConfig::with_latencies("X", &[1.0]).error_rate(2.0);
    let err = spawn(cfg, "127.0.0.1:0".parse().unwrap())
        .await
        .err()
        .unwrap();
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput);
}

#[tokio::test]
async fn kill_drops_in_flight_requests() {
    let backend = start(BackendConfig::with_latencies("K", &[500.0])).await;
    let addr = backend.addr;
    let mut client = connect(&backend).await;
    let pending = tokio::spawn(async move { client.send_request(get("/")).await });
    while backend.requests() == 0 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    backend.kill().await;
    assert!(
        pending.await.unwrap().is_err(),
        "in-flight request should fail"
    );
    assert!(TcpStream::connect(addr).await.is_err());
}

// === load reporting ===

/// `endpoint-load-metrics` parsed the way Envoy does: `TEXT ` then comma-separated
/// `name:value` pairs; every name must be one the backend documents.
#[derive(Debug, Default)]
struct OrcaReport {
    utilization: Option<f64>,
    rps: f64,
    rif: u32,
}

fn orca(headers: &hyper::HeaderMap) -> OrcaReport {
    let raw = headers["endpoint-load-metrics"].to_str().unwrap();
    let pairs = raw.strip_prefix("TEXT ").expect(raw);
    let mut report = OrcaReport::default();
    let mut names = Vec::new();
    for pair in pairs.split(',') {
        let (name, value) = pair.split_once(':').expect(raw);
        match name {
            "application_utilization" => {
                assert_eq!(value.split_once('.').unwrap().1.len(), 3, "{raw}");
                report.utilization = Some(value.parse().unwrap());
            }
            "rps_fractional" => report.rps = value.parse().unwrap(),
            "named_metrics.rif" => report.rif = value.parse().unwrap(),
            _ => panic!("unexpected metric {name:?} in {raw}"),
        }
        names.push(name);
    }
    assert!(
        names.ends_with(&["rps_fractional", "named_metrics.rif"]),
        "{raw}"
    );
    let rif: u32 = headers["x-prequal-rif"].to_str().unwrap().parse().unwrap();
    assert_eq!(
        rif, report.rif,
        "x-prequal-rif and named_metrics.rif differ"
    );
    report
}

fn latency_us(headers: &hyper::HeaderMap) -> u64 {
    headers["x-prequal-latency-us"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap()
}

fn has_load_headers(headers: &hyper::HeaderMap) -> bool {
    [
        "endpoint-load-metrics",
        "x-prequal-rif",
        "x-prequal-latency-us",
    ]
    .iter()
    .any(|h| headers.contains_key(*h))
}

/// `GET /probe` on a fresh connection; returns its headers after checking it is an empty 200.
async fn probe(backend: &RunningBackend) -> hyper::HeaderMap {
    let mut client = connect(backend).await;
    let (status, headers, body) = read(client.send_request(get("/probe")).await.unwrap()).await;
    assert_eq!(status, StatusCode::OK);
    assert!(body.is_empty());
    headers
}

/// Probes until the backend reports `rif` requests in flight (the requests
/// spawned by the test have reached it), failing after two seconds.
async fn wait_for_rif(backend: &RunningBackend, rif: u32) -> hyper::HeaderMap {
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        let headers = probe(backend).await;
        if orca(&headers).rif == rif {
            return headers;
        }
        assert!(Instant::now() < deadline, "rif never reached {rif}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// `GET path` on a kept-alive connection. Waits until the connection is ready
/// again: on a multi-threaded runtime its driver may not have finished the
/// previous exchange when the test already holds that response.
async fn send(
    client: &mut SendRequest<Empty<Bytes>>,
    path: &str,
) -> (StatusCode, hyper::HeaderMap, Bytes) {
    client.ready().await.unwrap();
    read(client.send_request(get(path)).await.unwrap()).await
}

/// Sends `n` profile requests at once, each on its own connection.
async fn concurrent(
    backend: &RunningBackend,
    n: usize,
) -> Vec<tokio::task::JoinHandle<(StatusCode, hyper::HeaderMap, Bytes)>> {
    let mut tasks = Vec::new();
    for _ in 0..n {
        let mut client = connect(backend).await;
        tasks.push(tokio::spawn(async move {
            read(client.send_request(get("/")).await.unwrap()).await
        }));
    }
    tasks
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_requests_report_rif_utilization_and_rate() {
    let cfg = BackendConfig::with_latencies("L", &[300.0])
        .capacity(2)
        .report_load(true);
    let backend = start(cfg).await;
    let tasks = concurrent(&backend, 4).await;
    // Two in service, two queued at the gate.
    let during = orca(&wait_for_rif(&backend, 4).await);
    assert_eq!(during.utilization, Some(1.0));

    let mut reports = Vec::new();
    for task in tasks {
        let (status, headers, _) = task.await.unwrap();
        assert_eq!(status, StatusCode::OK);
        reports.push(orca(&headers));
    }
    // Each response reports the load it leaves: the first to finish still
    // sees the other three (one in service, two queued), the last sees none.
    let max_rif = reports.iter().map(|r| r.rif).max().unwrap();
    assert!((2..=3).contains(&max_rif), "{reports:?}");
    assert!(
        reports.iter().any(|r| r.utilization > Some(0.0)),
        "{reports:?}"
    );
    assert!(reports.iter().any(|r| r.rif == 0), "{reports:?}");
    // All four completed within the last second; each counts itself.
    let max_rps = reports.iter().map(|r| r.rps).fold(0.0, f64::max);
    assert!((3.5..=4.0).contains(&max_rps), "{reports:?}");
    assert!(reports.iter().all(|r| r.rps >= 1.0), "{reports:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn utilization_is_exactly_one_with_capacity_requests_in_service() {
    let cfg = BackendConfig::with_latencies("U", &[400.0])
        .capacity(2)
        .report_load(true);
    let backend = start(cfg).await;
    let idle = probe(&backend).await;
    assert_eq!(
        idle["endpoint-load-metrics"],
        "TEXT application_utilization:0.000,rps_fractional:0.000,named_metrics.rif:0"
    );
    let tasks = concurrent(&backend, 2).await;
    let full = wait_for_rif(&backend, 2).await;
    assert_eq!(
        full["endpoint-load-metrics"],
        "TEXT application_utilization:1.000,rps_fractional:0.000,named_metrics.rif:2"
    );
    // A third request queues: more in flight, but utilisation stays at 1.
    let queued = concurrent(&backend, 1).await;
    let over = orca(&wait_for_rif(&backend, 3).await);
    assert_eq!(over.utilization, Some(1.0));
    for task in tasks.into_iter().chain(queued) {
        assert_eq!(task.await.unwrap().0, StatusCode::OK);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probe_does_no_work() {
    // Every profile request fails and the only permit is taken: a probe that
    // did any work would fail, wait or shift the cycle.
    let cfg = BackendConfig::with_latencies("P", &[1.0, 2.0, 3.0, 500.0, 4.0])
        .error_rate(1.0)
        .capacity(1);
    let backend = start(cfg).await;
    let mut client = connect(&backend).await;
    let (status, headers, _) = send(&mut client, "/").await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(headers["x-simulated-latency-ms"], "1");
    for _ in 0..3 {
        let report = orca(&probe(&backend).await);
        assert_eq!(report.rif, 0, "probes must not count as in flight");
        assert_eq!(report.rps, 1.0, "probes must not count as completions");
    }
    let (_, headers, _) = send(&mut client, "/").await;
    assert_eq!(
        headers["x-simulated-latency-ms"], "2",
        "a probe advanced the cycle"
    );
    let (_, headers, _) = send(&mut client, "/").await;
    assert_eq!(headers["x-simulated-latency-ms"], "3");
    assert_eq!(backend.requests(), 3);

    // The 500 ms step holds the only permit; a probe neither queues behind it
    // nor counts itself beside it.
    let slow = concurrent(&backend, 1).await;
    wait_for_rif(&backend, 1).await;
    let started = Instant::now();
    let report = orca(&probe(&backend).await);
    assert!(
        started.elapsed() < Duration::from_millis(250),
        "probe queued"
    );
    assert_eq!((report.rif, report.utilization), (1, Some(1.0)));
    for task in slow {
        assert_eq!(task.await.unwrap().1["x-simulated-latency-ms"], "500");
    }
    let (_, headers, _) = send(&mut client, "/").await;
    assert_eq!(headers["x-simulated-latency-ms"], "4");
    assert_eq!(backend.requests(), 5);
}

#[tokio::test]
async fn load_headers_are_off_by_default_but_probe_always_reports() {
    let backend = start(BackendConfig::with_latencies("D", &[0.0])).await;
    let mut client = connect(&backend).await;
    let (status, headers, _) = read(client.send_request(get("/")).await.unwrap()).await;
    assert_eq!(status, StatusCode::OK);
    assert!(!has_load_headers(&headers), "{headers:?}");
    let probed = probe(&backend).await;
    let report = orca(&probed);
    assert_eq!(report.utilization, None, "no capacity, no utilisation");
    assert_eq!(
        probed["endpoint-load-metrics"],
        "TEXT rps_fractional:1.000,named_metrics.rif:0"
    );

    let on = start(BackendConfig::with_latencies("D", &[0.0]).report_load(true)).await;
    let mut client = connect(&on).await;
    let (_, headers, _) = read(client.send_request(get("/")).await.unwrap()).await;
    assert!(has_load_headers(&headers), "{headers:?}");
    // The other routes never carry them.
    let (_, headers, _) = read(client.send_request(get("/health")).await.unwrap()).await;
    assert!(!has_load_headers(&headers), "{headers:?}");
}

#[tokio::test]
async fn latency_median_follows_completed_requests() {
    let cfg = BackendConfig::with_latencies("M", &[80.0, 80.0, 300.0]).report_load(true);
    let backend = start(cfg).await;
    assert_eq!(latency_us(&probe(&backend).await), 0);
    let mut client = connect(&backend).await;
    let near_80ms = |us: u64| (80_000..150_000).contains(&us);
    // A response counts its own request among the completed ones.
    let (_, headers, _) = read(client.send_request(get("/")).await.unwrap()).await;
    assert!(near_80ms(latency_us(&headers)), "{headers:?}");
    for _ in 0..2 {
        read(client.send_request(get("/")).await.unwrap()).await;
    }
    // 80, 80 and 300 ms: the median ignores the outlier a mean would not.
    let us = latency_us(&probe(&backend).await);
    assert!(near_80ms(us), "{us}");
}
