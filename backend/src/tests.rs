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
