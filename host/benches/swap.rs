//! How long a hot swap takes, from the moment the policy file is rewritten to the first
//! request routed by the new policy, under load. Median of many swaps.
//!
//! Method: three in-process backends (1 ms), the proxy watching a policy file, 8 clients
//! sending continuously; the file is rewritten `SWAPS` times (default 30), alternating
//! ewma and sma, once a second. Afterwards each swap's delay is read from the CSV log: the
//! start (completion time minus latency) of the first request logged under the new
//! policy's name, minus the time of the write. CSV timestamps have millisecond precision.
//!
//! `cargo bench -p switchyard --bench swap` (after `just build-policies`).
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use clap::Parser;

fn main() {
    let swaps: usize = std::env::var("SWAPS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(30);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(run(swaps));
}

async fn run(swaps: usize) {
    let policies = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../policies");
    let dir = std::env::temp_dir().join(format!("switchyard-swap-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let watched = dir.join("policy.wasm");
    std::fs::copy(policies.join("rr.wasm"), &watched).expect("run `just build-policies` first");
    let csv = dir.join("requests.csv");

    let mut backends = Vec::new();
    for id in ["A", "B", "C"] {
        let b = backend::spawn(
            backend::BackendConfig::with_latencies(id, &[1.0]),
            "127.0.0.1:0".parse().expect("addr"),
        )
        .await
        .expect("backend");
        backends.push(b);
    }
    let mut argv: Vec<String> = [
        "switchyard",
        "--listen",
        "127.0.0.1:0",
        "--no-admin",
        "--policy",
        watched.to_str().expect("utf-8 path"),
        "--log",
        csv.to_str().expect("utf-8 path"),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    for b in &backends {
        argv.extend(["--backend".to_string(), format!("{}={}", b.id(), b.url())]);
    }
    let cli = switchyard::cli::Cli::try_parse_from(argv).expect("args");
    let proxy = switchyard::app::start_with_args(&cli.serve, switchyard::app::Console::Off)
        .await
        .expect("proxy");

    let stop = Arc::new(AtomicBool::new(false));
    let mut clients = Vec::new();
    for _ in 0..8 {
        let (addr, stop) = (proxy.addr, stop.clone());
        clients.push(tokio::spawn(async move {
            let stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
            let (mut sender, conn) =
                hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
                    .await
                    .expect("handshake");
            tokio::spawn(conn);
            while !stop.load(Ordering::Relaxed) {
                let req = hyper::Request::get("/")
                    .header("host", "bench")
                    .body(http_body_util::Empty::<bytes::Bytes>::new())
                    .expect("request");
                if sender.ready().await.is_err() {
                    break;
                }
                let Ok(resp) = sender.send_request(req).await else {
                    break;
                };
                let _ = http_body_util::BodyExt::collect(resp.into_body()).await;
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;

    let names = [("ewma.wasm", "adaptive_ewma"), ("sma.wasm", "adaptive_sma")];
    let mut writes = Vec::new();
    for i in 0..swaps {
        let (file, name) = names[i % 2];
        let bytes = std::fs::read(policies.join(file)).expect("policy");
        let at = SystemTime::now();
        std::fs::write(&watched, bytes).expect("write");
        writes.push((at, name));
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        let _ = c.await;
    }
    proxy.shutdown().await.expect("shutdown");

    // (start of request, routing_mode), in start order.
    let mut rows: Vec<(SystemTime, String)> = csv::Reader::from_path(&csv)
        .expect("log")
        .records()
        .filter_map(|r| r.ok())
        .filter_map(|r| {
            let done = chrono::DateTime::parse_from_rfc3339(&r[0]).ok()?;
            let latency = Duration::from_secs_f64(r[2].parse::<f64>().ok()? / 1e3);
            Some((SystemTime::from(done) - latency, r[4].to_string()))
        })
        .collect();
    rows.sort_by_key(|(t, _)| *t);
    let mut delays: Vec<f64> = writes
        .iter()
        .filter_map(|(at, name)| {
            rows.iter()
                .find(|(t, mode)| t >= at && mode == name)
                .and_then(|(t, _)| t.duration_since(*at).ok())
                .map(|d| d.as_secs_f64() * 1e3)
        })
        .collect();
    delays.sort_by(f64::total_cmp);
    let median = delays.get(delays.len() / 2).copied().unwrap_or(f64::NAN);
    println!(
        "hot swap, file rewritten -> first request routed by the new policy: median {median:.1} ms, \
         min {:.1} ms, max {:.1} ms over {} of {swaps} swaps (8 clients, 3 backends, debounce 50 ms)",
        delays.first().copied().unwrap_or(f64::NAN),
        delays.last().copied().unwrap_or(f64::NAN),
        delays.len()
    );
    let _ = std::fs::remove_dir_all(&dir);
}
