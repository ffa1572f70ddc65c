//! The edge against slow, hostile and sloppy peers (issue 16's defects 1-7): upload speed
//! is not the backend's time, heads are bounded in time, size and count, connections are
//! capped, framing and hop-by-hop rules hold both ways, Host is checked, CONNECT is
//! refused, and a shutdown that cuts responses logs them and says so in its exit code.
//!
//! Raw sockets on both sides where the bytes matter: a hyper client or server would
//! normalise exactly what these tests look at.
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::common::{self, policy, proxy, Client};

/// A backend that records each request head it reads and answers every request on a
/// connection with `response`, byte for byte.
pub(crate) struct RawBackend {
    pub(crate) addr: SocketAddr,
    pub(crate) heads: Arc<Mutex<Vec<String>>>,
}

pub(crate) async fn raw_backend(response: &'static [u8]) -> RawBackend {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let heads = Arc::new(Mutex::new(Vec::new()));
    let seen = heads.clone();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let seen = seen.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                loop {
                    while let Some(end) = find(&buf, b"\r\n\r\n") {
                        let head: Vec<u8> = buf.drain(..end + 4).collect();
                        seen.lock()
                            .unwrap()
                            .push(String::from_utf8_lossy(&head).into_owned());
                        if s.write_all(response).await.is_err() {
                            return;
                        }
                    }
                    match s.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
            });
        }
    });
    RawBackend { addr, heads }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Writes `request` on a fresh connection and reads until the peer closes or 3 s pass.
pub(crate) async fn exchange(addr: SocketAddr, request: &[u8]) -> String {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(request).await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(3), s.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

pub(crate) fn status_of(response: &str) -> &str {
    response.split(' ').nth(1).unwrap_or("")
}

pub(crate) async fn via(b: &RawBackend, extra: &[&str]) -> switchyard::app::Running {
    let url = format!("X=http://{}", b.addr);
    let rr = policy("rr.wasm");
    let mut args = vec![
        "--policy",
        rr.as_str(),
        "--no-log",
        "--backend",
        url.as_str(),
    ];
    args.extend_from_slice(extra);
    proxy(&args).await
}

/// Defect 3: RFC 9112 §6.3: Transfer-Encoding wins over Content-Length, which must go.
#[tokio::test]
async fn a_response_with_both_lengths_is_framed_by_transfer_encoding() {
    let b = raw_backend(
        b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n14\r\n01234567890123456789\r\n0\r\n\r\n",
    )
    .await;
    let p = via(&b, &[]).await;
    let mut c = Client::connect(p.addr).await;
    for _ in 0..2 {
        let (status, body) = c.get("/").await;
        assert_eq!(status, 200);
        assert_eq!(&body[..], b"01234567890123456789", "the whole chunked body");
    }
    p.shutdown().await.unwrap();
}

/// Defect 4: a header nominated on any `Connection` line stops at the proxy, both ways.
#[tokio::test]
async fn every_connection_line_is_honoured_both_ways() {
    let b = raw_backend(
        b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nConnection: keep-alive\r\nConnection: x-internal\r\nx-internal: secret\r\nx-public: 1\r\n\r\nok\n",
    )
    .await;
    let p = via(&b, &[]).await;
    let resp = exchange(
        p.addr,
        b"GET / HTTP/1.1\r\nHost: a.test\r\nConnection: keep-alive\r\nConnection: x-hop, close\r\nx-hop: 1\r\nx-end: 1\r\n\r\n",
    )
    .await;
    assert_eq!(status_of(&resp), "200", "{resp}");
    let lower = resp.to_ascii_lowercase();
    assert!(lower.contains("x-public: 1"), "{resp}");
    assert!(
        !lower.contains("x-internal"),
        "backend-internal header leaked: {resp}"
    );
    let heads = b.heads.lock().unwrap().clone();
    assert_eq!(heads.len(), 1);
    let head = heads[0].to_ascii_lowercase();
    assert!(head.contains("x-end: 1"), "{head}");
    assert!(!head.contains("x-hop"), "hop header forwarded: {head}");
    p.shutdown().await.unwrap();
}

/// Defect 5: two Host lines and a missing Host are 400; an absolute-form target sets Host.
#[tokio::test]
async fn host_is_checked_and_taken_from_an_absolute_target() {
    let b = raw_backend(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nok\n").await;
    let p = via(&b, &[]).await;
    let two = exchange(
        p.addr,
        b"GET / HTTP/1.1\r\nHost: a.test\r\nHost: b.test\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(status_of(&two), "400", "{two}");
    let none = exchange(p.addr, b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n").await;
    assert_eq!(status_of(&none), "400", "{none}");
    let old = exchange(p.addr, b"GET / HTTP/1.0\r\n\r\n").await;
    assert_eq!(status_of(&old), "200", "HTTP/1.0 may omit Host: {old}");
    let absolute = exchange(
        p.addr,
        b"GET http://target.test:81/x HTTP/1.1\r\nHost: client.test\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(status_of(&absolute), "200", "{absolute}");
    let heads = b.heads.lock().unwrap().clone();
    assert_eq!(
        heads.len(),
        2,
        "only the valid requests reached the backend"
    );
    let last = heads[1].to_ascii_lowercase();
    assert!(last.starts_with("get /x http/1.1"), "{last}");
    assert!(last.contains("host: target.test:81"), "{last}");
    assert!(!last.contains("client.test"), "{last}");
    let refused: u64 = p.shared.refusals.snapshot().iter().map(|(_, n)| n).sum();
    assert_eq!(refused, 2);
    p.shutdown().await.unwrap();
}

/// Defect 6: CONNECT is not a reverse proxy's to serve, and never reaches a backend.
#[tokio::test]
async fn connect_is_refused_without_reaching_a_backend() {
    let b = raw_backend(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nok\n").await;
    let p = via(&b, &[]).await;
    let resp = exchange(
        p.addr,
        b"CONNECT example.org:443 HTTP/1.1\r\nHost: example.org:443\r\n\r\n",
    )
    .await;
    assert_eq!(status_of(&resp), "501", "{resp}");
    assert!(b.heads.lock().unwrap().is_empty());
    p.shutdown().await.unwrap();
}

/// A backend that reads the whole request body, then answers with its length.
async fn counting_backend() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((s, _)) = listener.accept().await {
            let service = service_fn(|req: hyper::Request<hyper::body::Incoming>| async move {
                let n = req.into_body().collect().await.map(|b| b.to_bytes().len());
                let text = match n {
                    Ok(n) => format!("{n}"),
                    Err(e) => format!("error {e}"),
                };
                Ok::<_, std::convert::Infallible>(hyper::Response::new(Full::new(Bytes::from(
                    text,
                ))))
            });
            tokio::spawn(http1::Builder::new().serve_connection(TokioIo::new(s), service));
        }
    });
    addr
}

/// Defect 1: an upload slower than --timeout succeeds: the backend's clock starts when it
/// has the whole body. A client that stops sending gets 408 after --upload-timeout.
#[tokio::test]
async fn a_slow_upload_is_not_a_backend_timeout() {
    let addr = counting_backend().await;
    let url = format!("X=http://{addr}");
    let rr = policy("rr.wasm");
    let log = common::temp_csv("slow-upload");
    let log_s = log.display().to_string();
    let p = proxy(&[
        "--policy",
        &rr,
        "--backend",
        &url,
        "--timeout",
        "300ms",
        "--upload-timeout",
        "700ms",
        "--log",
        &log_s,
    ])
    .await;
    // 8 pieces 100 ms apart: 800 ms of upload against a 300 ms backend timeout.
    let mut c = Client::connect(p.addr).await;
    let (tx, resp) = c.streaming("/upload").await;
    let feed = tokio::spawn(async move {
        for _ in 0..8 {
            tx.send(Bytes::from(vec![b'x'; 1000])).await.unwrap();
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    let resp = resp.await.unwrap();
    feed.await.unwrap();
    assert_eq!(resp.status(), 200);
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(&body[..], b"8000");

    // A client that sends half and then nothing: 408, not 504.
    let mut c = Client::connect(p.addr).await;
    let (tx, resp) = c.streaming("/upload").await;
    tx.send(Bytes::from_static(b"half")).await.unwrap();
    let started = Instant::now();
    let resp = tokio::time::timeout(Duration::from_secs(5), resp)
        .await
        .expect("answered")
        .unwrap();
    assert_eq!(resp.status(), 408);
    assert!(started.elapsed() >= Duration::from_millis(700));
    drop(tx);
    p.shutdown().await.unwrap();
    let (_, rows) = common::read_csv(&log);
    let outcomes: Vec<&str> = rows.iter().map(|r| r[6].as_str()).collect();
    assert_eq!(outcomes, ["response", "aborted"], "{rows:?}");
}

/// Defect 2: a head that never ends is cut at --header-timeout; a head over
/// --max-header-bytes gets 431; at --max-connections the listener stops accepting.
#[tokio::test]
async fn heads_and_connections_are_bounded() {
    let b = raw_backend(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nok\n").await;
    let p = via(
        &b,
        &[
            "--header-timeout",
            "500ms",
            "--max-header-bytes",
            "4096",
            "--max-connections",
            "2",
        ],
    )
    .await;
    // An unfinished head: closed (hyper may first answer 408), well before 3 s.
    let started = Instant::now();
    let slow = exchange(p.addr, b"GET / HTTP/1.1\r\nHost: a.test\r\nx-slow: 1\r\n").await;
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(500) && waited < Duration::from_millis(2500),
        "closed after {waited:?}: {slow}"
    );
    assert!(!slow.contains("200 OK"), "{slow}");

    // A head over the limit.
    let big = format!(
        "GET / HTTP/1.1\r\nHost: a.test\r\nx-big: {}\r\n\r\n",
        "y".repeat(5000)
    );
    let resp = exchange(p.addr, big.as_bytes()).await;
    assert_eq!(status_of(&resp), "431", "{resp}");

    // Two connections open: a third is not served until one of them closes.
    let first = TcpStream::connect(p.addr).await.unwrap();
    let _second = TcpStream::connect(p.addr).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut third = TcpStream::connect(p.addr).await.unwrap();
    third
        .write_all(b"GET / HTTP/1.1\r\nHost: a.test\r\n\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 64];
    let early = tokio::time::timeout(Duration::from_millis(300), third.read(&mut buf)).await;
    assert!(early.is_err(), "served beyond the cap");
    drop(first);
    let n = tokio::time::timeout(Duration::from_secs(3), third.read(&mut buf))
        .await
        .expect("served once a slot is free")
        .unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    assert!(p.shared.connections.at_cap() >= 1);
    p.shutdown().await.unwrap();
}

/// Defect 7: a response still streaming when the grace period ends is cut, logged with
/// outcome `cut`, and the exit code says the shutdown was not clean.
#[test]
fn a_shutdown_that_cuts_logs_the_cut_and_exits_non_zero() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    // A backend that sends its head and then a byte a second, for a minute.
    let addr = rt.block_on(async {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let mut buf = [0u8; 4096];
                    let _ = s.read(&mut buf).await;
                    let _ = s
                        .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 60\r\n\r\n")
                        .await;
                    for _ in 0..60 {
                        if s.write_all(b"x").await.is_err() {
                            return;
                        }
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                });
            }
        });
        addr
    });
    let log = common::temp_csv("cut-at-shutdown");
    let url = format!("X=http://{addr}");
    let rr = policy("rr.wasm");
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .args(["--listen", "127.0.0.1:0", "--no-admin", "--no-watch"])
        .args(["--policy", &rr, "--backend", &url, "--grace", "500ms"])
        .args(["--log", &log.display().to_string()])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut banner = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.stdout.take().unwrap()),
        &mut banner,
    )
    .unwrap();
    let proxy_addr: SocketAddr = banner
        .split("http://")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .unwrap()
        .parse()
        .unwrap();
    let client = rt.spawn(async move {
        let mut s = TcpStream::connect(proxy_addr).await.unwrap();
        s.write_all(b"GET / HTTP/1.1\r\nHost: a.test\r\n\r\n")
            .await
            .unwrap();
        let mut out = Vec::new();
        let _ = s.read_to_end(&mut out).await;
        out
    });
    std::thread::sleep(Duration::from_millis(1500));
    let pid = child.id().to_string();
    std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("cut"), "{stderr}");
    let got = rt.block_on(client).unwrap();
    assert!(got.len() < 60 + 40, "the response was cut");
    let (_, rows) = common::read_csv(&log);
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0][6], "cut", "{rows:?}");
}
