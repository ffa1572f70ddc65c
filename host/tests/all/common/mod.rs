//! Shared by the end-to-end tests: real backends on ephemeral ports, the real proxy
//! in-process (so tests can read its counters), and a small keep-alive HTTP client.

mod binary;

pub(crate) use binary::Binary;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::task::{Context, Poll};

use backend::{BackendConfig, RunningBackend};
use bytes::Bytes;
use clap::Parser;
use http_body::{Body, Frame};
use http_body_util::BodyExt;
use hyper::client::conn::http1::SendRequest;
use hyper::Request;
use hyper_util::rt::TokioIo;
use switchyard::app::Running;
use switchyard::cli::Cli;

pub(crate) fn policy(name: &str) -> String {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../policies")
        .join(name);
    assert!(
        p.exists(),
        "{} is missing: run `just build-policies build-fixtures` (or `just test`)",
        p.display()
    );
    p.display().to_string()
}

pub(crate) async fn backend(id: &str, latencies_ms: &[f64]) -> RunningBackend {
    backend::spawn(
        BackendConfig::with_latencies(id, latencies_ms),
        "127.0.0.1:0".parse().unwrap(),
    )
    .await
    .expect("spawn backend")
}

/// A port with nothing listening: a dead backend.
pub(crate) fn dead_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

pub(crate) fn temp_csv(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("switchyard-tests-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(format!("{name}.csv"))
}

/// Starts the proxy in-process with `args` (plus an ephemeral listen port).
pub(crate) async fn proxy(args: &[&str]) -> Running {
    let mut argv = vec!["switchyard", "--listen", "127.0.0.1:0", "--seed", "7"];
    // Tests never take the default admin port; those that test it pass --admin.
    if !args.contains(&"--admin") {
        argv.push("--no-admin");
    }
    argv.extend_from_slice(args);
    let cli = Cli::try_parse_from(argv).expect("valid test arguments");
    switchyard::app::start_with_args(&cli.serve, switchyard::app::Console::Off)
        .await
        .expect("proxy starts")
}

/// Upstream connections opened and reused so far, over all backends.
pub(crate) fn upstream_conns(p: &Running) -> (u64, u64) {
    p.shared.upstreams.conn_totals()
}

pub(crate) fn backend_args(backends: &[&RunningBackend]) -> Vec<String> {
    backends
        .iter()
        .flat_map(|b| ["--backend".to_string(), format!("{}={}", b.id(), b.url())])
        .collect()
}

/// One keep-alive client connection.
pub(crate) struct Client {
    sender: SendRequest<ChannelBody>,
}

impl Client {
    pub(crate) async fn connect(addr: SocketAddr) -> Client {
        let stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .expect("handshake");
        tokio::spawn(conn);
        Client { sender }
    }

    pub(crate) async fn request(&mut self, method: &str, path: &str, body: Bytes) -> (u16, Bytes) {
        self.request_with(method, path, &[], body).await
    }

    pub(crate) async fn request_with(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Bytes,
    ) -> (u16, Bytes) {
        let (tx, rx) = tokio::sync::mpsc::channel(1);
        let len = body.len();
        if !body.is_empty() {
            tx.send(body).await.unwrap();
        }
        drop(tx);
        let mut req = Request::builder()
            .method(method)
            .uri(path)
            .header("host", "switchyard.test")
            .header("content-length", len);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let req = req.body(ChannelBody(rx)).unwrap();
        self.sender.ready().await.expect("connection ready");
        let resp = self.sender.send_request(req).await.expect("response");
        let status = resp.status().as_u16();
        let body = resp.into_body().collect().await.expect("body").to_bytes();
        (status, body)
    }

    pub(crate) async fn get(&mut self, path: &str) -> (u16, Bytes) {
        self.request("GET", path, Bytes::new()).await
    }

    /// Sends a request whose body is fed from the returned sender, for streaming tests.
    pub(crate) async fn streaming(
        &mut self,
        path: &str,
    ) -> (
        tokio::sync::mpsc::Sender<Bytes>,
        impl std::future::Future<Output = hyper::Result<hyper::Response<hyper::body::Incoming>>>,
    ) {
        let (tx, rx) = tokio::sync::mpsc::channel(1);
        let req = Request::builder()
            .method("POST")
            .uri(path)
            .header("host", "switchyard.test")
            .body(ChannelBody(rx))
            .unwrap();
        self.sender.ready().await.expect("connection ready");
        (tx, self.sender.send_request(req))
    }
}

/// A request body fed through a channel.
pub(crate) struct ChannelBody(pub tokio::sync::mpsc::Receiver<Bytes>);

impl Body for ChannelBody {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        self.0.poll_recv(cx).map(|b| b.map(|b| Ok(Frame::data(b))))
    }
}

/// Reads a CSV log into (header, rows).
pub(crate) fn read_csv(path: &std::path::Path) -> (Vec<String>, Vec<Vec<String>>) {
    let mut r = csv::Reader::from_path(path).expect("log exists");
    let header = r.headers().unwrap().iter().map(String::from).collect();
    let rows = r
        .records()
        .map(|rec| rec.unwrap().iter().map(String::from).collect())
        .collect();
    (header, rows)
}
