//! The request log as a record to rely on (issue 16): every row carries the request id the
//! backend was sent, and `--log-flush` bounds what a crash of the proxy loses.
use std::time::Duration;

use bytes::Bytes;

use crate::common::{self, policy, proxy, Binary, Client};
use crate::edge::raw_backend;

const OK: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";

fn request_id_in(head: &str) -> Option<String> {
    head.lines()
        .find_map(|l| l.strip_prefix("x-request-id: "))
        .map(String::from)
}

/// The backend gets an `x-request-id` with every request: the client's when it sent one,
/// else one the proxy made (32 hex digits, different each time); the log's `request_id`
/// column holds the very same ids, row for row.
#[tokio::test]
async fn request_ids_reach_the_backend_and_the_log() {
    let b = raw_backend(OK).await;
    let log = common::temp_csv("request-ids");
    let url = format!("X=http://{}", b.addr);
    let rr = policy("rr.wasm");
    let p = proxy(&[
        "--policy",
        &rr,
        "--backend",
        &url,
        "--log",
        log.to_str().unwrap(),
    ])
    .await;
    let mut c = Client::connect(p.addr).await;
    assert_eq!(c.get("/").await.0, 200);
    assert_eq!(c.get("/").await.0, 200);
    let sent = [("x-request-id", "client-7")];
    let (status, _) = c.request_with("GET", "/", &sent, Bytes::new()).await;
    assert_eq!(status, 200);
    drop(c);
    p.stop().await.unwrap();

    let seen: Vec<String> = b
        .heads
        .lock()
        .unwrap()
        .iter()
        .map(|h| request_id_in(h).expect("x-request-id sent"))
        .collect();
    assert_eq!(seen.len(), 3);
    for id in &seen[..2] {
        assert!(
            id.len() == 32 && id.bytes().all(|c| c.is_ascii_hexdigit()),
            "{id}"
        );
    }
    assert_ne!(seen[0], seen[1]);
    assert_eq!(seen[2], "client-7");

    let (header, rows) = common::read_csv(&log);
    let col = header.iter().position(|h| h == "request_id").unwrap();
    assert_eq!(col, header.len() - 1, "the newest column comes last");
    let logged: Vec<&str> = rows.iter().map(|r| r[col].as_str()).collect();
    assert_eq!(logged, seen.iter().map(String::as_str).collect::<Vec<_>>());
}

/// `kill -9` right after the last answer: with `--log-flush batch` (and `fsync`) the log
/// already holds a row for every request answered 100 ms before, where the default
/// (`second`) may still hold up to a second of them in the process.
#[test]
fn with_batch_flushing_a_kill_9_loses_no_answered_request() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let b = rt.block_on(raw_backend(OK));
    for mode in ["batch", "fsync"] {
        let log = common::temp_csv(&format!("kill-9-{mode}"));
        let url = format!("X=http://{}", b.addr);
        let rr = policy("rr.wasm");
        let mut proxy = Binary::start_logging(&[
            "--policy",
            &rr,
            "--backend",
            &url,
            "--log-flush",
            mode,
            "--log",
            log.to_str().unwrap(),
        ]);
        let addr = proxy.addr();
        rt.block_on(async {
            let mut c = Client::connect(addr).await;
            for _ in 0..50 {
                assert_eq!(c.get("/").await.0, 200);
            }
        });
        // Five recorder batches after the last answer.
        std::thread::sleep(Duration::from_millis(100));
        proxy.child.kill().unwrap(); // SIGKILL: no drain, no flush at exit
        proxy.child.wait().unwrap();
        let (_, rows) = common::read_csv(&log);
        assert_eq!(rows.len(), 50, "--log-flush {mode}");
    }
}
