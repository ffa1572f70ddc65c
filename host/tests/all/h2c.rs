//! End-to-end over h2c upstreams: real backends speaking HTTP/2, the real proxy, real
//! sockets. (Tests that run over both protocols live in proxy.rs.)
use crate::common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// The proxy with rr over h2c upstreams, one connection per backend and worker thread.
async fn h2c_proxy(
    threads: u16,
    backends: &[&backend::RunningBackend],
) -> switchyard::app::Running {
    let threads = threads.to_string();
    let targets: Vec<String> = backends
        .iter()
        .map(|b| format!("{}={}", b.id(), b.url()))
        .collect();
    h2c_proxy_with(&["--threads", &threads], &targets).await
}

/// The proxy with rr over h2c upstreams to `targets` (`ID=URL`), plus `extra` flags.
async fn h2c_proxy_with(extra: &[&str], targets: &[String]) -> switchyard::app::Running {
    let rr = policy("rr.wasm");
    let mut args = vec!["--no-log", "--upstream-protocol", "h2c", "--policy", &rr];
    args.extend_from_slice(extra);
    for t in targets {
        args.extend(["--backend", t.as_str()]);
    }
    proxy(&args).await
}

/// h2c: every request is a stream on the few connections the proxy keeps per backend
/// (one per worker thread), and the backend really speaks HTTP/2.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2c_multiplexes_every_request_over_a_few_connections() {
    let a = backend("A", &[0.0]).await;
    let b = backend("B", &[0.0]).await;
    let p = h2c_proxy(2, &[&a, &b]).await;
    let (clients, per_client) = (16, 25);
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let addr = p.addr;
        tasks.push(tokio::spawn(async move {
            let mut client = Client::connect(addr).await;
            for _ in 0..per_client {
                let (status, body) = client.get("/version").await;
                assert_eq!((status, body.as_ref()), (200, b"HTTP/2.0".as_ref()));
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let (opened, reused) = upstream_conns(&p);
    let accepted = a.connections() + b.connections();
    p.shutdown().await.unwrap();
    assert_eq!(opened, accepted, "host count agrees with the backends'");
    assert!(
        (2..=4).contains(&opened),
        "at most 2 connections per backend for {} requests: {opened}",
        clients * per_client
    );
    assert_eq!(reused, (clients * per_client) as u64 - opened);
}

/// A backend that restarts (graceful stop, then a new process on the same port) costs an
/// h2c upstream its connection, not a request: the next request reconnects.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2c_survives_a_backend_restart_without_failing_a_request() {
    let a = backend("A", &[0.0]).await;
    let addr = a.addr;
    let p = h2c_proxy(1, &[&a]).await;
    let mut client = Client::connect(p.addr).await;
    for _ in 0..20 {
        assert_eq!(client.get("/").await.0, 200);
    }
    a.stop().await;
    let again = backend::spawn(backend::BackendConfig::with_latencies("A", &[0.0]), addr)
        .await
        .expect("the port is free again");
    for i in 0..20 {
        let (status, body) = client.get("/").await;
        assert_eq!(status, 200, "request {i} after the restart: {body:?}");
    }
    let (opened, _) = upstream_conns(&p);
    p.shutdown().await.unwrap();
    assert_eq!(opened, 2, "one connection before the restart, one after");
    assert_eq!(again.requests(), 20);
}

/// A TCP forwarder whose existing connections can be frozen: bytes stop flowing both ways
/// but the sockets stay open, like a backend host that vanished without closing TCP.
/// Connections opened after a freeze flow normally.
struct Freezer {
    addr: std::net::SocketAddr,
    generation: Arc<AtomicU64>,
}

impl Freezer {
    async fn start(target: std::net::SocketAddr) -> Freezer {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let generation = Arc::new(AtomicU64::new(0));
        let gen = generation.clone();
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let server = TcpStream::connect(target).await.unwrap();
                let born = gen.load(Ordering::SeqCst);
                let (cr, cw) = client.into_split();
                let (sr, sw) = server.into_split();
                tokio::spawn(pump(cr, sw, gen.clone(), born));
                tokio::spawn(pump(sr, cw, gen.clone(), born));
            }
        });
        Freezer { addr, generation }
    }

    fn freeze(&self) {
        self.generation.fetch_add(1, Ordering::SeqCst);
    }
}

async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    generation: Arc<AtomicU64>,
    born: u64,
) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        if generation.load(Ordering::SeqCst) > born {
            // Frozen: swallow everything, answer nothing, keep both sockets open.
            let _hold = (from, to);
            std::future::pending::<()>().await;
            return;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

/// An h2c connection whose backend host goes silent (TCP stays open, nothing answers) is
/// found out by its unanswered PINGs and replaced; without them every request on it
/// would time out for as long as the kernel keeps the socket alive (minutes).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2c_drops_a_connection_whose_pings_go_unanswered() {
    let a = backend("A", &[0.0]).await;
    let freezer = Freezer::start(a.addr).await;
    let extra = [
        "--threads",
        "1",
        "--timeout",
        "1s",
        "--h2-keepalive",
        "300ms",
    ];
    let p = h2c_proxy_with(&extra, &[format!("A=http://{}", freezer.addr)]).await;
    let mut client = Client::connect(p.addr).await;
    for _ in 0..5 {
        assert_eq!(client.get("/").await.0, 200);
    }
    freezer.freeze();
    let mut failures = Vec::new();
    let recovered = tokio::time::timeout(Duration::from_secs(60), async {
        loop {
            let (status, _) = client.get("/").await;
            if status == 200 {
                break;
            }
            failures.push(status);
        }
    })
    .await;
    let (opened, _) = upstream_conns(&p);
    p.shutdown().await.unwrap();
    assert!(
        recovered.is_ok(),
        "still failing after 60 s: {} failures",
        failures.len()
    );
    assert!(
        failures.iter().all(|&s| s == 504 || s == 502),
        "{failures:?}"
    );
    assert_eq!(opened, 2, "the silent connection was replaced once");
}

/// A backend that only speaks HTTP/1.1 answers the HTTP/2 preface with a 400; the 502 the
/// client gets says what is wrong and what to change.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2c_to_an_http1_only_backend_says_what_to_change() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 1024];
                let _ = s.read(&mut buf).await;
                let _ = s
                    .write_all(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                    .await;
            });
        }
    });
    let p = h2c_proxy_with(&[], &[format!("A=http://{addr}")]).await;
    let (status, body) = Client::connect(p.addr).await.get("/").await;
    p.shutdown().await.unwrap();
    let text = String::from_utf8_lossy(&body);
    assert_eq!(status, 502, "{text}");
    assert!(text.contains("--upstream-protocol http1"), "{text}");
}

/// A backend that allows 4 streams per connection gets more connections when 16 requests
/// are in flight at once, instead of a hidden queue behind one connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2c_opens_more_connections_when_the_stream_limit_is_reached() {
    let slow = backend::BackendConfig::with_latencies("A", &[500.0]).h2_max_streams(4);
    let a = backend::spawn(slow, "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let p = h2c_proxy(1, &[&a]).await;
    // The first response carries the backend's limit.
    assert_eq!(Client::connect(p.addr).await.get("/").await.0, 200);
    let burst: Vec<_> = (0..16)
        .map(|_| {
            let addr = p.addr;
            tokio::spawn(async move { Client::connect(addr).await.get("/").await.0 })
        })
        .collect();
    for request in burst {
        assert_eq!(request.await.unwrap(), 200);
    }
    let (opened, _) = upstream_conns(&p);
    p.shutdown().await.unwrap();
    // 16 streams at 4 per connection: 4 connections when all overlap (a straggler that
    // starts after others finished may reuse a freed stream).
    assert!((3..=4).contains(&opened), "{opened} connections");
}
