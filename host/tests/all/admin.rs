//! The admin listener: Prometheus metrics that agree with the CSV log, the token, the
//! loopback rule, that the admin port never proxies, and the dashboard in a real headless
//! Chromium (Debian's `chromium`, driven by host/tests/browser/dashboard.mjs).
use crate::common;

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use backend::{BackendConfig, RunningBackend};
use bytes::Bytes;
use common::*;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper_util::rt::TokioIo;
use switchyard::app::Running;

/// One admin request on a fresh connection: (status, content type, body).
async fn admin(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, String, String) {
    let stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .expect("handshake");
    tokio::spawn(conn);
    let mut req = Request::builder().method(method).uri(path);
    if !headers.iter().any(|(k, _)| *k == "host") {
        req = req.header("host", addr.to_string());
    }
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let req = req
        .body(Full::new(Bytes::from(body.to_string())))
        .expect("request");
    let resp = sender.send_request(req).await.expect("response");
    let status = resp.status().as_u16();
    let ctype = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let body = resp.into_body().collect().await.expect("body").to_bytes();
    (status, ctype, String::from_utf8_lossy(&body).into_owned())
}

pub(crate) async fn get(addr: SocketAddr, path: &str) -> (u16, String, String) {
    admin(addr, "GET", path, &[], "").await
}

fn admin_addr(p: &Running) -> SocketAddr {
    p.admin_addr.expect("the admin listener is bound")
}

async fn backend_with(cfg: BackendConfig) -> RunningBackend {
    backend::spawn(cfg, "127.0.0.1:0".parse().unwrap())
        .await
        .expect("spawn backend")
}

async fn start(extra: &[&str], backends: &[&RunningBackend]) -> Running {
    let mut args: Vec<String> = vec!["--admin".into(), "127.0.0.1:0".into()];
    args.extend(extra.iter().map(|s| s.to_string()));
    args.extend(backend_args(backends));
    proxy(&args.iter().map(String::as_str).collect::<Vec<_>>()).await
}

/// One sample of the exposition: name, labels, value.
#[derive(Debug, Clone)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

fn valid_name(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

/// A strict reader of the Prometheus text format (0.0.4): every line is a `# HELP`, a
/// `# TYPE` (before its samples), or `name{label="value",...} value`.
fn parse_prometheus(text: &str) -> Vec<Sample> {
    let mut types: HashMap<String, String> = HashMap::new();
    let mut samples = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let at = format!("line {}: {line:?}", n + 1);
        if line.is_empty() {
            continue;
        }
        if let Some(rest) = line.strip_prefix("# ") {
            let mut parts = rest.splitn(3, ' ');
            let kind = parts.next().unwrap_or("");
            let name = parts.next().unwrap_or("");
            assert!(valid_name(name), "{at}: bad metric name");
            match kind {
                "HELP" => assert!(parts.next().is_some_and(|h| !h.is_empty()), "{at}"),
                "TYPE" => {
                    let t = parts.next().unwrap_or("");
                    assert!(
                        ["counter", "gauge", "histogram", "summary", "untyped"].contains(&t),
                        "{at}: bad type"
                    );
                    assert!(
                        types.insert(name.to_string(), t.to_string()).is_none(),
                        "{at}: TYPE given twice"
                    );
                }
                _ => panic!("{at}: unknown comment"),
            }
            continue;
        }
        assert!(!line.starts_with('#'), "{at}");
        let (series, value) = line.rsplit_once(' ').expect("name and value");
        let value: f64 = match value {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            v => v
                .parse()
                .unwrap_or_else(|_| panic!("{at}: value is not a float")),
        };
        let (name, labels) = match series.split_once('{') {
            Some((name, rest)) => {
                let body = rest.strip_suffix('}').expect("labels end with }");
                (name, parse_labels(body, &at))
            }
            None => (series, BTreeMap::new()),
        };
        assert!(valid_name(name), "{at}: bad metric name");
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| name.strip_suffix(s).filter(|f| types.contains_key(*f)))
            .unwrap_or(name);
        assert!(types.contains_key(family), "{at}: sample before its TYPE");
        samples.push(Sample {
            name: name.to_string(),
            labels,
            value,
        });
    }
    samples
}

fn parse_labels(body: &str, at: &str) -> BTreeMap<String, String> {
    let mut labels = BTreeMap::new();
    let mut rest = body;
    while !rest.is_empty() {
        let (name, after) = rest.split_once("=\"").expect("label=\"value\"");
        assert!(
            valid_name(name) && !name.contains(':'),
            "{at}: bad label name"
        );
        let mut value = String::new();
        let mut chars = after.char_indices();
        let end = loop {
            match chars.next() {
                Some((_, '\\')) => match chars.next() {
                    Some((_, 'n')) => value.push('\n'),
                    Some((_, c)) => value.push(c),
                    None => panic!("{at}: dangling escape"),
                },
                Some((i, '"')) => break i,
                Some((_, c)) => value.push(c),
                None => panic!("{at}: unterminated label value"),
            }
        };
        labels.insert(name.to_string(), value);
        rest = &after[end + 1..];
        rest = rest.strip_prefix(',').unwrap_or(rest);
    }
    labels
}

fn value(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> f64 {
    samples
        .iter()
        .find(|s| {
            s.name == name
                && s.labels.len() == labels.len()
                && labels
                    .iter()
                    .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
        })
        .unwrap_or_else(|| panic!("no sample {name}{labels:?}"))
        .value
}

fn sum(samples: &[Sample], name: &str) -> f64 {
    samples
        .iter()
        .filter(|s| s.name == name)
        .map(|s| s.value)
        .sum()
}

/// Keep-alive clients sending `GET /` until told to stop, at most `per_client` each,
/// optionally paced to `rate` requests per second per client.
struct Load {
    stop: Arc<AtomicBool>,
    done: Arc<AtomicU64>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Load {
    fn start(addr: SocketAddr, clients: usize, per_client: u64, rate: Option<f64>) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let done = Arc::new(AtomicU64::new(0));
        let tasks = (0..clients)
            .map(|_| {
                let (stop, done) = (stop.clone(), done.clone());
                tokio::spawn(async move {
                    let mut client = Client::connect(addr).await;
                    let mut tick = rate.map(|r| {
                        let mut t = tokio::time::interval(Duration::from_secs_f64(1.0 / r));
                        t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                        t
                    });
                    for _ in 0..per_client {
                        if stop.load(Ordering::Relaxed) {
                            break;
                        }
                        if let Some(t) = tick.as_mut() {
                            t.tick().await;
                        }
                        client.get("/").await;
                        done.fetch_add(1, Ordering::Relaxed);
                    }
                })
            })
            .collect();
        Load { stop, done, tasks }
    }

    /// Stops the clients (after their current request) and returns the requests completed.
    async fn finish(self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        self.wait().await
    }

    /// Waits for every client to send its share.
    async fn wait(self) -> u64 {
        for t in self.tasks {
            t.await.unwrap();
        }
        self.done.load(Ordering::Relaxed)
    }
}

/// Polls /metrics until telemetry has recorded `requests` requests.
async fn metrics_after(addr: SocketAddr, requests: u64) -> (String, Vec<Sample>) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (status, ctype, text) = get(addr, "/metrics").await;
        assert_eq!(status, 200, "{text}");
        assert!(ctype.starts_with("text/plain; version=0.0.4"), "{ctype}");
        let samples = parse_prometheus(&text);
        let seen = sum(&samples, "switchyard_requests_total");
        if seen as u64 == requests {
            return (text, samples);
        }
        assert!(
            Instant::now() < deadline,
            "metrics count {seen} requests, clients completed {requests}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_parse_and_agree_with_the_csv_log() {
    let a = backend_with(BackendConfig::with_latencies("A", &[0.2, 1.0])).await;
    let b = backend_with(BackendConfig::with_latencies("B", &[3.0]).error_rate(0.2)).await;
    let c = backend_with(BackendConfig::with_latencies("C", &[0.5])).await;
    let csv = temp_csv("admin-metrics");
    let csv_arg = csv.display().to_string();
    let rr = policy("rr.wasm");
    let p = start(
        &["--policy", &rr, "--no-watch", "--log", &csv_arg],
        &[&a, &b, &c],
    )
    .await;
    let addr = admin_addr(&p);

    // Bounded: 4 clients x 150 requests.
    let load = Load::start(p.addr, 4, 150, None);
    let done = load.wait().await;
    assert_eq!(done, 600);
    let (text, samples) = metrics_after(addr, done).await;
    p.shutdown().await.unwrap();

    let (header, rows) = read_csv(&csv);
    let col = |name: &str| header.iter().position(|h| h == name).unwrap();
    let (id, status, outcome, reused) = (
        col("backend_id"),
        col("status_code"),
        col("outcome"),
        col("conn_reused"),
    );
    assert_eq!(rows.len() as u64, done);
    for backend in ["A", "B", "C"] {
        let mine: Vec<_> = rows.iter().filter(|r| r[id] == backend).collect();
        let errors = mine
            .iter()
            .filter(|r| r[status].parse::<u16>().unwrap() >= 500 || r[outcome] != "response")
            .count();
        let reused_rows = mine.iter().filter(|r| r[reused] == "true").count();
        let l = [("backend", backend)];
        let m = |name: &str| value(&samples, name, &l) as usize;
        assert_eq!(m("switchyard_requests_total"), mine.len(), "{backend}");
        assert_eq!(
            m("switchyard_request_errors_total"),
            errors,
            "{backend}\n{text}"
        );
        assert_eq!(m("switchyard_request_duration_seconds_count"), mine.len());
        assert_eq!(
            m("switchyard_upstream_connections_reused_total"),
            reused_rows,
            "{backend}"
        );
        assert_eq!(
            m("switchyard_upstream_connections_opened_total"),
            mine.len() - reused_rows,
            "{backend}: every request not on a reused connection opened one"
        );
        // Buckets are cumulative and end with +Inf == count.
        let mut buckets: Vec<(f64, f64)> = samples
            .iter()
            .filter(|s| {
                s.name == "switchyard_request_duration_seconds_bucket"
                    && s.labels.get("backend").map(String::as_str) == Some(backend)
            })
            .map(|s| {
                let le = &s.labels["le"];
                let le = if le == "+Inf" {
                    f64::INFINITY
                } else {
                    le.parse().unwrap()
                };
                (le, s.value)
            })
            .collect();
        assert!(buckets.len() >= 10);
        assert!(buckets
            .windows(2)
            .all(|w| w[0].0 < w[1].0 && w[0].1 <= w[1].1));
        let last = buckets.pop().unwrap();
        assert_eq!((last.0, last.1 as usize), (f64::INFINITY, mine.len()));
        let sum_s = value(&samples, "switchyard_request_duration_seconds_sum", &l);
        let csv_sum: f64 = mine
            .iter()
            .map(|r| r[col("latency_ms")].parse::<f64>().unwrap() / 1e3)
            .sum();
        assert!(
            (sum_s - csv_sum).abs() < 0.01 * csv_sum.max(0.01),
            "{backend}: latency sum {sum_s} s vs CSV {csv_sum} s"
        );
    }
    // B fails a fifth of its requests: the errors are really counted.
    assert!(
        value(
            &samples,
            "switchyard_request_errors_total",
            &[("backend", "B")]
        ) > 0.0
    );
    assert_eq!(
        sum(&samples, "switchyard_policy_calls_total") as u64,
        2 * done,
        "one choose and one observe per request"
    );
    assert_eq!(
        value(
            &samples,
            "switchyard_policy_call_duration_seconds_count",
            &[]
        ) as u64,
        2 * done.div_ceil(switchyard_runtime::TIMING_SAMPLE),
        "one choose and one observe in every TIMING_SAMPLE are timed"
    );
    assert!(value(&samples, "switchyard_policy_call_duration_seconds_sum", &[]) > 0.0);
    for kind in ["trap", "deadline", "memory", "bad_index"] {
        assert_eq!(
            value(
                &samples,
                "switchyard_policy_faults_total",
                &[("kind", kind)]
            ),
            0.0
        );
    }
    assert_eq!(value(&samples, "switchyard_policy_swaps_total", &[]), 0.0);
    assert_eq!(
        value(&samples, "switchyard_policy_failed_swaps_total", &[]),
        0.0
    );
    let info = samples
        .iter()
        .find(|s| s.name == "switchyard_policy_info")
        .unwrap();
    assert_eq!(info.labels["name"], "round-robin");
    assert!(info.labels["file"].ends_with("rr.wasm"));
    assert_eq!(info.value, 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn state_and_policy_switch_over_the_api() {
    let a = backend("A", &[0.2]).await;
    let b = backend("B", &[0.2]).await;
    let ewma = policy("ewma.wasm");
    let p = start(&["--policy", &ewma, "--no-watch", "--no-log"], &[&a, &b]).await;
    let addr = admin_addr(&p);
    let load = Load::start(p.addr, 2, 100, None);
    let done = load.wait().await;
    metrics_after(addr, done).await;

    let (status, ctype, body) = get(addr, "/api/state").await;
    assert_eq!(
        (status, ctype.as_str()),
        (200, "application/json"),
        "{body}"
    );
    let state: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(state["listen"], p.addr.to_string());
    assert_eq!(state["upstream"], "persistent");
    assert_eq!(state["policy"]["name"], "adaptive_ewma");
    assert_eq!(state["policy"]["routing_mode"], "adaptive_ewma");
    assert!(state["policy"]["file"]
        .as_str()
        .unwrap()
        .ends_with("ewma.wasm"));
    assert!(state["policy"]["loaded_at"].as_f64().unwrap() > 1.6e9);
    assert_eq!(state["policy"]["scores"]["label"], "ewma");
    assert_eq!(
        state["policy"]["scores"]["values"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    assert_eq!(state["totals"]["requests"], done);
    assert_eq!(state["backends"][0]["id"], "A");
    let per_backend: u64 = (0..2)
        .map(|i| state["backends"][i]["requests"].as_u64().unwrap())
        .sum();
    assert_eq!(per_backend, done);

    let (status, _, body) = get(addr, "/api/policies").await;
    assert_eq!(status, 200);
    let list: serde_json::Value = serde_json::from_str(&body).unwrap();
    let files: Vec<&str> = list["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f.as_str().unwrap())
        .collect();
    assert!(
        files.contains(&"rr.wasm") && files.contains(&"sma.wasm"),
        "{files:?}"
    );
    assert_eq!(list["current"], "ewma.wasm");

    let json = [("content-type", "application/json")];
    for (bad, code) in [
        (r#"{"file":"../policies/rr.wasm"}"#, 400),
        (r#"{"file":"/etc/passwd"}"#, 400),
        (r#"{"file":"missing.wasm"}"#, 400),
        (r#"{"file":"rr.wasm""#, 400),
    ] {
        let (status, _, body) = admin(addr, "POST", "/api/policy", &json, bad).await;
        assert_eq!(status, code, "{bad}: {body}");
        assert!(body.contains("\"ok\":false"), "{body}");
    }
    // Not JSON (what a cross-site form could send), or from another origin: refused.
    let (status, _, _) = admin(
        addr,
        "POST",
        "/api/policy",
        &[("content-type", "text/plain")],
        r#"{"file":"rr.wasm"}"#,
    )
    .await;
    assert_eq!(status, 403);
    let (status, _, _) = admin(
        addr,
        "POST",
        "/api/policy",
        &[
            ("content-type", "application/json"),
            ("origin", "http://evil.example"),
        ],
        r#"{"file":"rr.wasm"}"#,
    )
    .await;
    assert_eq!(status, 403);
    assert_eq!(&*p.shared.router.status().name, "adaptive_ewma");

    let (status, _, body) =
        admin(addr, "POST", "/api/policy", &json, r#"{"file":"rr.wasm"}"#).await;
    assert_eq!(status, 200, "{body}");
    let swapped: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        (swapped["from"].as_str(), swapped["to"].as_str()),
        (Some("adaptive_ewma"), Some("round-robin"))
    );
    assert_eq!(&*p.shared.router.status().name, "round-robin");
    let (_, _, body) = get(addr, "/api/state").await;
    let state: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(state["policy"]["routing_mode"], "round-robin");
    assert_eq!(state["counters"]["swaps"], 1);
    p.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_requests_need_the_token_when_one_is_set() {
    let a = backend("A", &[0.0]).await;
    let rr = policy("rr.wasm");
    let p = start(
        &[
            "--policy",
            &rr,
            "--no-watch",
            "--no-log",
            "--admin-token",
            "t0k3n-x",
        ],
        &[&a],
    )
    .await;
    let addr = admin_addr(&p);
    for path in [
        "/",
        "/metrics",
        "/api/state",
        "/api/stream",
        "/api/policies",
    ] {
        let (status, _, body) = get(addr, path).await;
        assert_eq!(status, 401, "{path} without a token: {body}");
        let (status, _, _) = admin(
            addr,
            "GET",
            path,
            &[("authorization", "Bearer wrong-token")],
            "",
        )
        .await;
        assert_eq!(status, 401, "{path} with a wrong token");
    }
    let (status, _, _) = admin(
        addr,
        "POST",
        "/api/policy",
        &[("content-type", "application/json")],
        r#"{"file":"ewma.wasm"}"#,
    )
    .await;
    assert_eq!(status, 401);
    assert_eq!(&*p.shared.router.status().name, "round-robin");

    let bearer = [("authorization", "Bearer t0k3n-x")];
    for path in ["/", "/metrics", "/api/state", "/api/policies"] {
        let (status, _, body) = admin(addr, "GET", path, &bearer, "").await;
        assert_eq!(status, 200, "{path} with the token: {body}");
    }
    let (status, ctype, body) = get(addr, "/?token=t0k3n-x").await;
    assert_eq!(status, 200);
    assert!(ctype.starts_with("text/html") && body.contains("Switchyard"));
    let (status, _, _) = get(addr, "/assets/app.js?token=t0k3n-x").await;
    assert_eq!(status, 200);
    // With a token the Host may be any name (behind a proxy or a DNS name).
    let (status, _, _) = admin(
        addr,
        "GET",
        "/api/state",
        &[
            ("authorization", "Bearer t0k3n-x"),
            ("host", "dash.example"),
        ],
        "",
    )
    .await;
    assert_eq!(status, 200);

    // The event stream: a snapshot first, with the same state as /api/state.
    let first = first_event(addr, "/api/stream?token=t0k3n-x").await;
    let update: serde_json::Value = serde_json::from_str(&first).unwrap();
    assert_eq!(update["kind"], "snapshot");
    assert_eq!(update["state"]["policy"]["name"], "round-robin");
    p.shutdown().await.unwrap();
}

/// The first `data:` payload of an event stream.
async fn first_event(addr: SocketAddr, path: &str) -> String {
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    let req = Request::builder()
        .uri(path)
        .header("host", addr.to_string())
        .body(Full::new(Bytes::new()))
        .unwrap();
    let resp = sender.send_request(req).await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    let mut body = resp.into_body();
    let mut seen = String::new();
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        let frame = tokio::time::timeout(Duration::from_secs(5), body.frame())
            .await
            .expect("an event within 5 s")
            .expect("stream open")
            .unwrap();
        if let Ok(data) = frame.into_data() {
            seen.push_str(&String::from_utf8_lossy(&data));
        }
        if let Some(start) = seen.find("data: ") {
            if let Some(len) = seen[start..].find("\n\n") {
                return seen[start + 6..start + len].to_string();
            }
        }
    }
    panic!("no event in 5 s: {seen:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_port_does_not_proxy() {
    let a = backend("A", &[0.0]).await;
    let b = backend("B", &[0.0]).await;
    let rr = policy("rr.wasm");
    let p = start(&["--policy", &rr, "--no-watch", "--no-log"], &[&a, &b]).await;
    let addr = admin_addr(&p);
    for (method, path) in [
        ("GET", "/some/path"),
        ("GET", "/api/nothing"),
        ("POST", "/upload"),
        ("GET", "/assets/../metrics"),
        ("GET", "/assets/nothing.js"),
    ] {
        let (status, _, body) = admin(addr, method, path, &[], "").await;
        assert_eq!(status, 404, "{method} {path}: {body}");
    }
    let (status, _, _) = admin(addr, "DELETE", "/api/state", &[], "").await;
    assert_eq!(status, 405);
    let (status, ctype, body) = get(addr, "/").await;
    assert_eq!(status, 200);
    assert!(ctype.starts_with("text/html"), "{ctype}");
    assert!(
        body.contains("uPlot.iife.min.js"),
        "the page loads the vendored chart library"
    );
    let (status, _, js) = get(addr, "/assets/uPlot.iife.min.js").await;
    assert_eq!(status, 200);
    assert!(js.contains("uPlot") && js.len() > 40_000);
    // Without a token, only loopback Host names are answered (no DNS rebinding).
    let (status, _, _) = admin(addr, "GET", "/api/state", &[("host", "evil.example")], "").await;
    assert_eq!(status, 403);
    assert_eq!(
        a.requests() + b.requests(),
        0,
        "nothing reached a backend through the admin port"
    );
    let (status, _, _) = get(addr, "/metrics").await;
    assert_eq!(status, 200);
    let text = get(addr, "/metrics").await.2;
    assert_eq!(
        sum(&parse_prometheus(&text), "switchyard_requests_total"),
        0.0
    );
    // The proxy port still proxies.
    let mut client = Client::connect(p.addr).await;
    assert_eq!(client.get("/x").await.0, 200);
    assert_eq!(a.requests() + b.requests(), 1);
    p.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_non_loopback_admin_address_needs_a_token() {
    // In-process: a BadInput before anything binds.
    let rr = policy("rr.wasm");
    let cli = <switchyard::cli::Cli as clap::Parser>::try_parse_from([
        "switchyard",
        "--listen",
        "127.0.0.1:0",
        "--no-log",
        "--policy",
        &rr,
        "--admin",
        "0.0.0.0:0",
    ])
    .unwrap();
    let err =
        match switchyard::app::start_with_args(&cli.serve, switchyard::app::Console::Off).await {
            Ok(_) => panic!("started with an open admin port and no token"),
            Err(e) => e,
        };
    assert!(err.downcast_ref::<switchyard_input::UsageError>().is_some());
    assert!(err.to_string().contains("--admin-token"), "{err}");

    // The binary: exit code 2 and the fix in one line.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .args(["--no-log", "--policy", &rr, "--admin", "0.0.0.0:5999"])
        .env_remove("SWITCHYARD_ADMIN_TOKEN")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("--admin-token"), "{stderr}");

    // With a token it is allowed (port 0: any free port on every interface).
    let cli = <switchyard::cli::Cli as clap::Parser>::try_parse_from([
        "switchyard",
        "--listen",
        "127.0.0.1:0",
        "--no-log",
        "--no-watch",
        "--policy",
        &rr,
        "--admin",
        "0.0.0.0:0",
        "--admin-token",
        "secret",
    ])
    .unwrap();
    let p = switchyard::app::start_with_args(&cli.serve, switchyard::app::Console::Off)
        .await
        .unwrap();
    assert!(p.admin_addr.is_some());
    p.shutdown().await.unwrap();
}

/// Where screenshots and other artefacts go (git-ignored: under target/).
fn output_dir() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/test-output/admin");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Node, Debian's Chromium and the script's npm packages, or a failure saying how to get
/// them: this test must not pass silently on a machine that cannot run it.
fn browser_tools() -> (PathBuf, PathBuf) {
    let browser_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/browser");
    let chromium = std::env::var_os("CHROMIUM")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/chromium"));
    let node_ok = std::process::Command::new("node")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        node_ok,
        "node is not installed: run `.ci/setup` (it installs Debian's nodejs and chromium)"
    );
    assert!(
        chromium.exists(),
        "{} is missing: run `.ci/setup` (it installs Debian's chromium)",
        chromium.display()
    );
    assert!(
        browser_dir.join("node_modules/playwright-core").exists(),
        "playwright-core is not installed: run `.ci/setup` (it runs `npm ci` in {})",
        browser_dir.display()
    );
    (browser_dir, chromium)
}

/// Runs the browser script with a deadline; returns (exit code, stdout, stderr).
fn run_browser(
    dir: &Path,
    chromium: &Path,
    url: &str,
    out: &Path,
    target: &str,
) -> (Option<i32>, String, String) {
    let mut child = std::process::Command::new("node")
        .arg(dir.join("dashboard.mjs"))
        .args([url, &out.display().to_string(), target])
        .env("CHROMIUM", chromium)
        .current_dir(dir)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start node");
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        if child.try_wait().expect("wait for node").is_some() {
            break;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let out = child.wait_with_output().expect("node output");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

// Needs node, chromium and playwright-core (`.ci/setup` installs them): opt-in for a bare
// `cargo test`, run by `just test` (`-- --ignored dashboard_`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs node and chromium: run by `just test`"]
async fn dashboard_in_headless_chromium_shows_load_and_a_swap() {
    let (browser_dir, chromium) = browser_tools();
    // One request at a time per backend: the one EWMA favours queues up and slows down,
    // so the policy moves on and every backend keeps getting traffic (as in the study).
    let a = backend_with(BackendConfig::with_latencies("A", &[1.0, 3.0]).capacity(1)).await;
    let b = backend_with(BackendConfig::with_latencies("B", &[2.0]).capacity(1)).await;
    let c = backend_with(BackendConfig::with_latencies("C", &[1.5, 2.5]).capacity(1)).await;
    let csv = temp_csv("admin-dashboard");
    let csv_arg = csv.display().to_string();
    let ewma = policy("ewma.wasm");
    let p = start(
        &["--policy", &ewma, "--no-watch", "--log", &csv_arg],
        &[&a, &b, &c],
    )
    .await;
    let addr = admin_addr(&p);
    // The study's load, about 500 req/s, bounded to 3 minutes.
    let load = Load::start(p.addr, 4, 125 * 180, Some(125.0));
    tokio::time::sleep(Duration::from_secs(3)).await;

    let out = output_dir();
    let url = format!("http://{addr}/");
    let (code, stdout, stderr) = tokio::task::spawn_blocking({
        let (dir, chromium, out) = (browser_dir.clone(), chromium.clone(), out.clone());
        move || run_browser(&dir, &chromium, &url, &out, "sma.wasm")
    })
    .await
    .unwrap();
    let done = load.finish().await;
    let metrics = metrics_after(addr, done).await.1;
    p.shutdown().await.unwrap();

    let last = stdout.lines().last().unwrap_or("");
    assert_eq!(
        code,
        Some(0),
        "browser check failed (screenshot: {}/dashboard.png)\nstdout: {stdout}\nstderr: {stderr}",
        out.display()
    );
    let report: serde_json::Value = serde_json::from_str(last).expect("JSON summary");
    assert_eq!(report["ok"], true);
    assert_eq!(report["before"], "adaptive_ewma");
    assert_eq!(report["after"], "adaptive_sma");
    assert!(out.join("dashboard.png").exists());
    for id in ["A", "B", "C"] {
        assert!(report["latencyPoints"][id].as_u64().unwrap() >= 3, "{id}");
    }
    assert_eq!(value(&metrics, "switchyard_policy_swaps_total", &[]), 1.0);

    // The swap made in the page shows in the log: routing_mode changes, once, for good.
    let (header, rows) = read_csv(&csv);
    let mode = header.iter().position(|h| h == "routing_mode").unwrap();
    assert_eq!(rows.len() as u64, done);
    let first_sma = rows
        .iter()
        .position(|r| r[mode] == "adaptive_sma")
        .expect("requests routed by the new policy");
    assert!(rows[..first_sma].iter().all(|r| r[mode] == "adaptive_ewma"));
    let tail = &rows[first_sma..];
    let stragglers = tail.iter().filter(|r| r[mode] != "adaptive_sma").count();
    // Requests chosen just before the swap may complete just after it.
    assert!(
        stragglers <= 8,
        "{stragglers} old-policy rows after the swap"
    );
    assert!(tail.len() > 100, "load kept flowing after the swap");
}
