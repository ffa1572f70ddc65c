//! Clients that hang up: every request the policy chose is observed, so a policy's view of a
//! backend it was abandoned on comes back once the backend recovers.
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;

use crate::common::{policy, proxy, Client};

/// A backend whose latency the test switches: 300 ms while `slow`, else immediate. It
/// counts the requests it answered quickly.
struct Switchable {
    addr: SocketAddr,
    slow: Arc<AtomicBool>,
    fast_served: Arc<AtomicU64>,
}

async fn switchable(slow: bool) -> Switchable {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let slow = Arc::new(AtomicBool::new(slow));
    let fast_served = Arc::new(AtomicU64::new(0));
    let (s, f) = (slow.clone(), fast_served.clone());
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let (s, f) = (s.clone(), f.clone());
            let service = service_fn(move |_req| {
                let (s, f) = (s.clone(), f.clone());
                async move {
                    if s.load(Ordering::SeqCst) {
                        tokio::time::sleep(Duration::from_millis(300)).await;
                    } else {
                        f.fetch_add(1, Ordering::SeqCst);
                    }
                    Ok::<_, std::convert::Infallible>(hyper::Response::new(Full::new(
                        Bytes::from_static(b"ok\n"),
                    )))
                }
            });
            tokio::spawn(http1::Builder::new().serve_connection(TokioIo::new(stream), service));
        }
    });
    Switchable {
        addr,
        slow,
        fast_served,
    }
}

/// `clients` connections, each sending GETs back to back for `span`; a request still
/// unanswered after `give_up` is abandoned (the connection dropped), as a client with a
/// timeout does.
async fn load(addr: SocketAddr, clients: usize, span: Duration, give_up: Option<Duration>) {
    let tasks: Vec<_> = (0..clients)
        .map(|_| {
            tokio::spawn(async move {
                let end = Instant::now() + span;
                while Instant::now() < end {
                    let mut c = Client::connect(addr).await;
                    match give_up {
                        Some(t) => {
                            let _ = tokio::time::timeout(t, c.get("/")).await;
                        }
                        None => assert_eq!(c.get("/").await.0, 200),
                    }
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
}

/// The defect of contract 0.1: an abandoned request was logged but never observed, so
/// peak-ewma (which counted its own requests in flight) kept every one of them against the
/// slow backend forever, and barely chose it again after it recovered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_client_aborts_peak_ewma_sees_nothing_in_flight_and_uses_the_recovered_backend() {
    let a = switchable(false).await;
    let b = switchable(true).await;
    let args = [
        "--no-log",
        "--policy",
        &policy("peak-ewma.wasm"),
        // A short memory, so that the slow samples fade within the test.
        "--policy-arg",
        "decay-ms=300",
        "--backend",
        &format!("A=http://{}", a.addr),
        "--backend",
        &format!("B=http://{}", b.addr),
    ];
    let p = proxy(&args).await;
    // B is slow: clients give up on it after 50 ms.
    load(
        p.addr,
        6,
        Duration::from_millis(800),
        Some(Duration::from_millis(50)),
    )
    .await;
    b.slow.store(false, Ordering::SeqCst);
    // B's abandoned requests finish at the backend; the slow samples decay.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    for (i, id) in ["A", "B"].iter().enumerate() {
        assert_eq!(
            p.shared.router.in_flight(i),
            0,
            "backend {id}: nothing is in flight once every client has its answer or gave up"
        );
    }
    let before = (
        a.fast_served.load(Ordering::SeqCst),
        b.fast_served.load(Ordering::SeqCst),
    );
    load(p.addr, 4, Duration::from_millis(1500), None).await;
    let to_a = a.fast_served.load(Ordering::SeqCst) - before.0;
    let to_b = b.fast_served.load(Ordering::SeqCst) - before.1;
    p.shutdown().await.unwrap();
    let share_b = to_b as f64 / (to_a + to_b).max(1) as f64;
    assert!(
        share_b >= 0.2,
        "the recovered backend B is chosen again: A {to_a}, B {to_b} requests ({:.1} % to B)",
        100.0 * share_b
    );
}
