//! What must pass through the proxy untouched though it is not a plain request and
//! response (issue 16): trailers for clients that ask for them, and upgraded connections
//! (WebSocket and any other `Upgrade`) tunnelled end to end.
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use switchyard::app::Running;
use tokio_tungstenite::tungstenite::Message;

use crate::common::{self, policy, proxy};
use crate::edge::{exchange, raw_backend, status_of, via};

const CHUNKED_WITH_TRAILER: &[u8] = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: x-checksum\r\n\r\n5\r\nhello\r\n0\r\nx-checksum: abc123\r\n\r\n";

/// A client that sends `TE: trailers` gets the backend's trailers (and the backend is told
/// the client reads them); one that does not gets the body without them. Both are logged
/// as complete responses.
#[tokio::test]
async fn trailers_reach_a_client_that_asked_for_them() {
    let b = raw_backend(CHUNKED_WITH_TRAILER).await;
    let p = via(&b, &[]).await;
    let asked = exchange(
        p.addr,
        b"GET / HTTP/1.1\r\nHost: a.test\r\nTE: trailers\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(status_of(&asked), "200", "{asked}");
    let lower = asked.to_ascii_lowercase();
    assert!(lower.contains("trailer: x-checksum"), "{asked}");
    assert!(
        lower.ends_with("5\r\nhello\r\n0\r\nx-checksum: abc123\r\n\r\n"),
        "{asked:?}"
    );
    let plain = exchange(
        p.addr,
        b"GET / HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(plain.ends_with("5\r\nhello\r\n0\r\n\r\n"), "{plain:?}");
    let heads: Vec<String> = b.heads.lock().unwrap().clone();
    assert!(
        heads[0]
            .to_ascii_lowercase()
            .contains("\r\nte: trailers\r\n"),
        "{}",
        heads[0]
    );
    assert!(
        !heads[1].to_ascii_lowercase().contains("\r\nte:"),
        "{}",
        heads[1]
    );
    let totals = p.shutdown().await.unwrap();
    assert_eq!((totals.requests, totals.errors), (2, 0));
}

/// A WebSocket echo server: every message comes back.
async fn ws_echo() -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let Ok(mut ws) = tokio_tungstenite::accept_async(s).await else {
                    return;
                };
                while let Some(Ok(msg)) = ws.next().await {
                    if (msg.is_text() || msg.is_binary()) && ws.send(msg).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    addr
}

type Ws = tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>;

async fn ws_connect(proxy: std::net::SocketAddr) -> Ws {
    let tcp = tokio::net::TcpStream::connect(proxy).await.unwrap();
    let (ws, resp) = tokio_tungstenite::client_async("ws://switchyard.test/chat", tcp)
        .await
        .expect("the upgrade goes through the proxy");
    assert_eq!(resp.status(), 101);
    ws
}

async fn ws_proxy(backend: std::net::SocketAddr, log: &std::path::Path, extra: &[&str]) -> Running {
    let url = format!("W=http://{backend}");
    let rr = policy("rr.wasm");
    let mut args = vec![
        "--policy",
        &rr,
        "--backend",
        &url,
        "--log",
        log.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    proxy(&args).await
}

/// One row of the log, by column name.
fn logged(log: &std::path::Path) -> Vec<std::collections::HashMap<String, String>> {
    let (header, rows) = common::read_csv(log);
    rows.into_iter()
        .map(|r| header.iter().cloned().zip(r).collect())
        .collect()
}

/// A real WebSocket client and server talk through the proxy; the whole session is one
/// request, held in flight while open and logged when it closes, with status 101 and the
/// session's duration as its latency.
#[tokio::test]
async fn a_websocket_session_is_tunnelled_and_logged_as_one_request() {
    let backend = ws_echo().await;
    let log = common::temp_csv("websocket");
    let p = ws_proxy(backend, &log, &[]).await;
    let mut ws = ws_connect(p.addr).await;
    for text in ["one", "two", "three"] {
        ws.send(Message::text(text)).await.unwrap();
        let echo = ws.next().await.unwrap().unwrap();
        assert_eq!(echo.to_text().unwrap(), text);
    }
    assert_eq!(
        p.shared.router.in_flight(0),
        1,
        "open: one request in flight"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    ws.close(None).await.unwrap();
    while ws.next().await.is_some() {}
    drop(ws); // the client's side of the TCP connection closes too
    let (totals, cut) = p.stop().await.unwrap();
    assert_eq!((totals.requests, totals.errors, cut), (1, 0, 0));
    let rows = logged(&log);
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0]["status_code"], "101");
    assert_eq!(rows[0]["outcome"], "response");
    let ms: f64 = rows[0]["latency_ms"].parse().unwrap();
    assert!(
        ms >= 300.0,
        "the session's duration, not the handshake's: {ms}"
    );
}

/// A backend that does not switch answers as for any request, and the client's
/// connection stays HTTP/1.1.
#[tokio::test]
async fn a_backend_that_declines_the_upgrade_answers_as_usual() {
    let b = raw_backend(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok").await;
    let p = via(&b, &[]).await;
    let resp = exchange(
        p.addr,
        b"GET / HTTP/1.1\r\nHost: a.test\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\nGET / HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(resp.matches("HTTP/1.1 200 OK").count(), 2, "{resp}");
    let head = b.heads.lock().unwrap()[0].to_ascii_lowercase();
    assert!(head.contains("\r\nupgrade: websocket\r\n"), "{head}");
    assert!(head.contains("\r\nconnection: upgrade\r\n"), "{head}");
    p.shutdown().await.unwrap();
}

/// A tunnel that carries nothing for `--tunnel-idle-timeout` is closed, and logged.
#[tokio::test]
async fn a_quiet_tunnel_is_closed_after_the_idle_timeout() {
    let backend = ws_echo().await;
    let log = common::temp_csv("websocket-idle");
    let p = ws_proxy(backend, &log, &["--tunnel-idle-timeout", "300ms"]).await;
    let mut ws = ws_connect(p.addr).await;
    let start = std::time::Instant::now();
    let end = tokio::time::timeout(Duration::from_secs(5), async {
        while let Some(Ok(_)) = ws.next().await {}
    })
    .await;
    assert!(end.is_ok(), "the quiet tunnel was not closed");
    let waited = start.elapsed();
    assert!(waited >= Duration::from_millis(300), "{waited:?}");
    let (totals, _) = p.stop().await.unwrap();
    assert_eq!(totals.requests, 1);
    assert_eq!(logged(&log)[0]["status_code"], "101");
}

/// At shutdown a tunnel gets the grace like any request in flight, then is cut: counted
/// in the cut connections and logged with outcome `cut`.
#[tokio::test]
async fn a_tunnel_open_at_shutdown_is_cut_after_the_grace_and_logged() {
    let backend = ws_echo().await;
    let log = common::temp_csv("websocket-cut");
    let p = ws_proxy(backend, &log, &["--grace", "200ms"]).await;
    let _ws = ws_connect(p.addr).await;
    let (_, cut) = p.stop().await.unwrap();
    assert_eq!(cut, 1);
    let rows = logged(&log);
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0]["outcome"], "cut");
}
