//! TLS and HTTP/2 at the edge, and TLS to backends (issue 16): TLS 1.2 and 1.3 with ALPN
//! h2 and http/1.1 through the proxy to a real backend, certificates chosen by SNI and
//! reloaded under a kept-alive connection, h2c prior knowledge on the plain listener, the
//! handshake deadline, https backends verified against a CA file, and the flags' errors.
//!
//! Every certificate is generated here, at test time (rcgen); nothing is committed.
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Full};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::client::TlsStream;
use tokio_rustls::{TlsAcceptor, TlsConnector};

use crate::common::{policy, proxy, read_csv, temp_csv};

/// A certificate authority made for one test.
struct Ca {
    cert: rcgen::Certificate,
    key: KeyPair,
}

impl Ca {
    fn new(name: &str) -> Ca {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        let key = KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        Ca { cert, key }
    }

    /// A leaf for `names` (DNS names or IP addresses): (certificate PEM, key PEM, DER).
    fn leaf(&self, names: &[&str]) -> Leaf {
        let names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
        let params = CertificateParams::new(names).unwrap();
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.cert, &self.key).unwrap();
        Leaf {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            der: cert.der().clone(),
        }
    }

    fn roots(&self) -> RootCertStore {
        let mut roots = RootCertStore::empty();
        roots.add(self.cert.der().clone()).unwrap();
        roots
    }
}

struct Leaf {
    cert_pem: String,
    key_pem: String,
    der: CertificateDer<'static>,
}

fn dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("switchyard-tls-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Writes a leaf's files, each replaced at once (written aside, then renamed).
fn write_leaf(dir: &Path, stem: &str, leaf: &Leaf) -> (String, String) {
    let cert = dir.join(format!("{stem}.pem"));
    let key = dir.join(format!("{stem}.key"));
    replace(&key, leaf.key_pem.as_bytes());
    replace(&cert, leaf.cert_pem.as_bytes());
    (cert.display().to_string(), key.display().to_string())
}

fn replace(path: &Path, bytes: &[u8]) {
    let aside = path.with_extension("new");
    std::fs::write(&aside, bytes).unwrap();
    std::fs::rename(&aside, path).unwrap();
}

/// An HTTP/1.1 backend (over TLS with `tls`) answering with what it received: the
/// version, Host and X-Forwarded-Proto.
async fn echo_backend(tls: Option<&Leaf>) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let acceptor = tls.map(|leaf| {
        let key = PrivateKeyDer::from_pem_slice(leaf.key_pem.as_bytes()).unwrap();
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![leaf.der.clone()], key)
        .unwrap();
        TlsAcceptor::from(Arc::new(config))
    });
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let service = service_fn(|req: hyper::Request<hyper::body::Incoming>| async move {
                    let h = |n: &str| {
                        let all: Vec<&str> = req
                            .headers()
                            .get_all(n)
                            .iter()
                            .filter_map(|v| v.to_str().ok())
                            .collect();
                        if all.is_empty() {
                            "-".to_string()
                        } else {
                            all.join(" | ")
                        }
                    };
                    let head = format!(
                        "{:?} host={} proto={} te={} upgrade={} cookie={}",
                        req.version(),
                        h("host"),
                        h("x-forwarded-proto"),
                        h("te"),
                        h("upgrade"),
                        h("cookie"),
                    );
                    let len = req.into_body().collect().await.map(|b| b.to_bytes().len());
                    let text = format!("{head} body={}", len.unwrap_or(usize::MAX));
                    Ok::<_, std::convert::Infallible>(hyper::Response::new(Full::new(Bytes::from(
                        text,
                    ))))
                });
                let http = hyper::server::conn::http1::Builder::new();
                match acceptor {
                    None => {
                        let _ = http.serve_connection(TokioIo::new(tcp), service).await;
                    }
                    Some(a) => {
                        if let Ok(s) = a.accept(tcp).await {
                            let _ = http.serve_connection(TokioIo::new(s), service).await;
                        }
                    }
                }
            });
        }
    });
    addr
}

/// Accepts whatever certificate the server presents (signatures are still checked): for
/// seeing which certificate a name that matches none gets.
#[derive(Debug)]
struct AcceptAny(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for AcceptAny {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// How a test client connects.
struct Dial<'a> {
    roots: Option<&'a Ca>,
    version: &'static rustls::SupportedProtocolVersion,
    alpn: &'static [u8],
    sni: bool,
}

async fn dial(addr: SocketAddr, name: &str, d: Dial<'_>) -> TlsStream<TcpStream> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[d.version])
        .unwrap();
    let mut config = match d.roots {
        Some(ca) => builder
            .with_root_certificates(ca.roots())
            .with_no_client_auth(),
        None => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAny(provider)))
            .with_no_client_auth(),
    };
    config.alpn_protocols = vec![d.alpn.to_vec()];
    config.enable_sni = d.sni;
    let tcp = TcpStream::connect(addr).await.unwrap();
    TlsConnector::from(Arc::new(config))
        .connect(ServerName::try_from(name.to_string()).unwrap(), tcp)
        .await
        .expect("TLS handshake with the proxy")
}

fn presented(s: &TlsStream<TcpStream>) -> CertificateDer<'static> {
    s.get_ref().1.peer_certificates().unwrap()[0]
        .clone()
        .into_owned()
}

/// An HTTP/1.1 or HTTP/2 client on a connected stream.
enum Http {
    H1(hyper::client::conn::http1::SendRequest<Empty<Bytes>>),
    H2(hyper::client::conn::http2::SendRequest<Empty<Bytes>>),
}

impl Http {
    async fn on<T>(io: T, h2: bool) -> Http
    where
        T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let io = TokioIo::new(io);
        if h2 {
            let (s, c) = hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
                .await
                .unwrap();
            tokio::spawn(c);
            Http::H2(s)
        } else {
            let (s, c) = hyper::client::conn::http1::handshake(io).await.unwrap();
            tokio::spawn(c);
            Http::H1(s)
        }
    }

    /// GET `path` with `authority` as Host (HTTP/1.1) or `:authority` (HTTP/2).
    async fn get(&mut self, scheme: &str, authority: &str, path: &str) -> (u16, String) {
        let resp = match self {
            Http::H1(s) => {
                let req = hyper::Request::get(path)
                    .header("host", authority)
                    .body(Empty::new())
                    .unwrap();
                s.ready().await.unwrap();
                s.send_request(req).await.unwrap()
            }
            Http::H2(s) => {
                let req = hyper::Request::get(format!("{scheme}://{authority}{path}"))
                    .header("te", "trailers")
                    .body(Empty::new())
                    .unwrap();
                s.ready().await.unwrap();
                s.send_request(req).await.unwrap()
            }
        };
        let status = resp.status().as_u16();
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        (status, String::from_utf8_lossy(&body).into_owned())
    }
}

async fn tls_proxy(
    backend: SocketAddr,
    pairs: &[(String, String)],
    extra: &[&str],
) -> switchyard::app::Running {
    let rr = policy("rr.wasm");
    let url = format!("E=http://{backend}");
    let mut args: Vec<String> = vec!["--policy".into(), rr, "--backend".into(), url];
    for (cert, key) in pairs {
        args.extend([
            "--tls-cert".into(),
            cert.clone(),
            "--tls-key".into(),
            key.clone(),
        ]);
    }
    args.extend(extra.iter().map(|s| s.to_string()));
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    proxy(&refs).await
}

#[tokio::test]
async fn tls_12_and_13_with_alpn_h1_and_h2_reach_the_backend_as_http1() {
    let ca = Ca::new("edge ca");
    let d = dir("versions");
    let pair = write_leaf(&d, "a", &ca.leaf(&["a.test"]));
    let backend = echo_backend(None).await;
    let csv = temp_csv("tls-versions");
    let csv_arg = csv.display().to_string();
    let p = tls_proxy(backend, &[pair], &["--log", &csv_arg]).await;
    let versions = [
        (&rustls::version::TLS12, rustls::ProtocolVersion::TLSv1_2),
        (&rustls::version::TLS13, rustls::ProtocolVersion::TLSv1_3),
    ];
    for (version, expected) in versions {
        for alpn in [&b"h2"[..], &b"http/1.1"[..]] {
            let alpn: &'static [u8] = if alpn == b"h2" { b"h2" } else { b"http/1.1" };
            let s = dial(
                p.addr,
                "a.test",
                Dial {
                    roots: Some(&ca),
                    version,
                    alpn,
                    sni: true,
                },
            )
            .await;
            let conn = s.get_ref().1;
            assert_eq!(conn.protocol_version(), Some(expected));
            assert_eq!(conn.alpn_protocol(), Some(alpn));
            let mut http = Http::on(s, alpn == b"h2").await;
            // Twice on one connection: kept alive (HTTP/1.1) or a second stream (HTTP/2).
            for _ in 0..2 {
                let (status, body) = http.get("https", "a.test", "/x").await;
                assert_eq!(status, 200, "{body}");
                // The backend speaks HTTP/1.1 whatever the client spoke; Host comes from
                // Host or :authority; the HTTP/2 client's `te: trailers` goes on (the one
                // TE value meant for the backend too: it will read trailers).
                let te = if alpn == b"h2" { "trailers" } else { "-" };
                assert_eq!(
                    body,
                    format!("HTTP/1.1 host=a.test proto=https te={te} upgrade=- cookie=- body=0"),
                    "{expected:?} {alpn:?}"
                );
            }
        }
    }
    p.shutdown().await.unwrap();
    let (header, rows) = read_csv(&csv);
    let outcome = header.iter().position(|h| h == "outcome").unwrap();
    assert_eq!(rows.len(), 8, "every request logged once");
    assert!(rows.iter().all(|r| r[outcome] == "response"), "{rows:?}");
}

#[tokio::test]
async fn sni_chooses_the_certificate_and_the_first_is_the_default() {
    let ca = Ca::new("sni ca");
    let d = dir("sni");
    let (a, b) = (ca.leaf(&["a.test"]), ca.leaf(&["b.test", "*.b.test"]));
    let pairs = [write_leaf(&d, "a", &a), write_leaf(&d, "b", &b)];
    let p = tls_proxy(echo_backend(None).await, &pairs, &["--no-log"]).await;
    let v13 = &rustls::version::TLS13;
    let with = |roots, sni| Dial {
        roots,
        version: v13,
        alpn: b"http/1.1",
        sni,
    };
    let s = dial(p.addr, "b.test", with(Some(&ca), true)).await;
    assert_eq!(presented(&s), b.der, "b.test gets b's certificate");
    let s = dial(p.addr, "x.b.test", with(Some(&ca), true)).await;
    assert_eq!(presented(&s), b.der, "a wildcard SAN matches");
    let s = dial(p.addr, "a.test", with(Some(&ca), true)).await;
    assert_eq!(presented(&s), a.der);
    let s = dial(p.addr, "other.test", with(None, true)).await;
    assert_eq!(
        presented(&s),
        a.der,
        "a name no certificate has gets the first"
    );
    let s = dial(p.addr, "a.test", with(Some(&ca), false)).await;
    assert_eq!(presented(&s), a.der, "no SNI at all gets the first");
    let mut http = Http::on(s, false).await;
    assert_eq!(http.get("https", "a.test", "/").await.0, 200);
    p.shutdown().await.unwrap();
}

#[tokio::test]
async fn certificates_reload_on_change_without_dropping_open_connections() {
    let ca = Ca::new("reload ca");
    let d = dir("reload");
    let (old, new) = (ca.leaf(&["a.test"]), ca.leaf(&["a.test"]));
    let pair = write_leaf(&d, "a", &old);
    let p = tls_proxy(
        echo_backend(None).await,
        std::slice::from_ref(&pair),
        &["--no-log"],
    )
    .await;
    let v13 = &rustls::version::TLS13;
    let dial_a = || {
        dial(
            p.addr,
            "a.test",
            Dial {
                roots: Some(&ca),
                version: v13,
                alpn: b"http/1.1",
                sni: true,
            },
        )
    };
    let kept = dial_a().await;
    assert_eq!(presented(&kept), old.der);
    let mut kept = Http::on(kept, false).await;
    assert_eq!(kept.get("https", "a.test", "/").await.0, 200);

    write_leaf(&d, "a", &new);
    let started = Instant::now();
    loop {
        if presented(&dial_a().await) == new.der {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "not reloaded within 5 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (status, body) = kept.get("https", "a.test", "/after").await;
    assert_eq!(
        status, 200,
        "the connection opened before the reload still works: {body}"
    );

    // A bad file keeps the certificate in use (and is logged as a warning).
    replace(Path::new(&pair.0), b"not a certificate");
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(
        presented(&dial_a().await),
        new.der,
        "a bad file keeps the previous certificate"
    );
    assert_eq!(kept.get("https", "a.test", "/").await.0, 200);
    p.shutdown().await.unwrap();
}

#[tokio::test]
async fn h2c_prior_knowledge_on_the_plain_listener_is_forwarded_like_http1() {
    let rr = policy("rr.wasm");
    let url = format!("E=http://{}", echo_backend(None).await);
    let p = proxy(&["--policy", &rr, "--backend", &url, "--no-log"]).await;
    let mut h2 = Http::on(TcpStream::connect(p.addr).await.unwrap(), true).await;
    for _ in 0..2 {
        let (status, body) = h2.get("http", "a.test:81", "/").await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(
            body,
            "HTTP/1.1 host=a.test:81 proto=http te=trailers upgrade=- cookie=- body=0"
        );
    }
    // HTTP/1.1 on the same listener is unchanged.
    let mut h1 = Http::on(TcpStream::connect(p.addr).await.unwrap(), false).await;
    assert_eq!(
        h1.get("http", "b.test", "/").await.1,
        "HTTP/1.1 host=b.test proto=http te=- upgrade=- cookie=- body=0"
    );
    p.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_client_that_never_handshakes_is_closed_at_the_deadline() {
    let ca = Ca::new("deadline ca");
    let pair = write_leaf(&dir("deadline"), "a", &ca.leaf(&["a.test"]));
    let p = tls_proxy(
        echo_backend(None).await,
        &[pair],
        &["--no-log", "--tls-handshake-timeout", "800ms"],
    )
    .await;
    let mut silent = TcpStream::connect(p.addr).await.unwrap();
    let opened = Instant::now();
    let mut buf = [0u8; 16];
    // Just before the deadline: still open (nothing to read, no end of stream).
    let early = tokio::time::timeout(Duration::from_millis(600), silent.read(&mut buf)).await;
    assert!(early.is_err(), "closed before the deadline: {early:?}");
    // Just after it: closed.
    let late = tokio::time::timeout(Duration::from_millis(1200), silent.read(&mut buf)).await;
    let closed_at = opened.elapsed();
    assert!(
        matches!(late, Ok(Ok(0)) | Ok(Err(_))),
        "still open after the deadline: {late:?}"
    );
    assert!(closed_at >= Duration::from_millis(790), "{closed_at:?}");
    p.shutdown().await.unwrap();
}

#[tokio::test]
async fn https_backends_are_verified_against_the_ca_file() {
    let ca = Ca::new("backend ca");
    let other = Ca::new("someone else's ca");
    let d = dir("backend");
    let leaf = ca.leaf(&["127.0.0.1"]);
    let backend = echo_backend(Some(&leaf)).await;
    let ca_file = d.join("ca.pem");
    std::fs::write(&ca_file, ca.cert.pem()).unwrap();
    let other_file = d.join("other.pem");
    std::fs::write(&other_file, other.cert.pem()).unwrap();
    let rr = policy("rr.wasm");
    let url = format!("S=https://{backend}");
    for (roots, upstream) in [
        (&ca_file, "persistent"),
        (&ca_file, "non-persistent"),
        (&other_file, "persistent"),
    ] {
        let csv = temp_csv(&format!("tls-backend-{upstream}-{}", roots == &other_file));
        let (csv_arg, roots_arg) = (csv.display().to_string(), roots.display().to_string());
        let p = proxy(&[
            "--policy",
            &rr,
            "--backend",
            &url,
            "--backend-ca",
            &roots_arg,
            "--upstream",
            upstream,
            "--log",
            &csv_arg,
        ])
        .await;
        let mut c = Http::on(TcpStream::connect(p.addr).await.unwrap(), false).await;
        let (status, body) = c.get("http", "a.test", "/").await;
        p.shutdown().await.unwrap();
        let (header, rows) = read_csv(&csv);
        let outcome = header.iter().position(|h| h == "outcome").unwrap();
        if roots == &ca_file {
            assert_eq!(status, 200, "{upstream}: {body}");
            assert_eq!(
                body,
                "HTTP/1.1 host=a.test proto=http te=- upgrade=- cookie=- body=0"
            );
            assert_eq!(rows[0][outcome], "response");
        } else {
            assert_eq!(status, 502, "{body}");
            assert!(body.contains("TLS handshake failed"), "{body}");
            assert_eq!(rows[0][outcome], "connect_error", "{rows:?}");
        }
    }
}

fn run(args: &[&str]) -> (i32, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .args([
            "--no-admin",
            "--no-log",
            "--listen",
            "127.0.0.1:0",
            "--backend",
            "http://127.0.0.1:1",
        ])
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn tls_flag_errors_exit_2_naming_the_flag() {
    let ca = Ca::new("flags ca");
    let d = dir("flags");
    let (cert, key) = write_leaf(&d, "a", &ca.leaf(&["a.test"]));
    let (_, other_key) = write_leaf(&d, "b", &ca.leaf(&["b.test"]));
    let missing = d.join("missing.key").display().to_string();
    let rr = policy("rr.wasm");
    let cases: [(&[&str], &[&str]); 4] = [
        (&["--tls-cert", &cert], &["--tls-key", "--tls-cert"]),
        (
            &["--tls-cert", &cert, "--tls-key", &missing],
            &["--tls-key", &missing],
        ),
        (
            &["--tls-cert", &cert, "--tls-key", &other_key],
            &["does not match", &cert],
        ),
        (
            &["--tls-cert", &key, "--tls-key", &key],
            &["--tls-cert", "holds no PEM certificate"],
        ),
    ];
    for (args, mentions) in cases {
        let args = [&["--policy", rr.as_str()][..], args].concat();
        let (code, stderr) = run(&args);
        assert_eq!(code, 2, "{args:?}: {stderr}");
        let line = stderr
            .lines()
            .find(|l| l.starts_with("error"))
            .unwrap_or_default();
        for m in mentions {
            assert!(line.contains(m), "`{m}` missing from {line:?}");
        }
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
}

#[tokio::test]
async fn an_http2_upload_with_split_cookies_reaches_an_http1_backend_whole() {
    let ca = Ca::new("upload ca");
    let pair = write_leaf(&dir("upload"), "a", &ca.leaf(&["a.test"]));
    let p = tls_proxy(echo_backend(None).await, &[pair], &["--no-log"]).await;
    let v13 = &rustls::version::TLS13;
    let tls = dial(
        p.addr,
        "a.test",
        Dial {
            roots: Some(&ca),
            version: v13,
            alpn: b"h2",
            sni: true,
        },
    )
    .await;
    let (mut h2, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
            .await
            .unwrap();
    tokio::spawn(conn);
    let body = Bytes::from(vec![b'x'; 100_000]);
    let req = hyper::Request::post("https://a.test/upload")
        .header("cookie", "a=1")
        .header("cookie", "b=2")
        .body(Full::new(body))
        .unwrap();
    let resp = h2.send_request(req).await.unwrap();
    assert_eq!(resp.status(), 200);
    let text = resp.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(
        &text[..],
        b"HTTP/1.1 host=a.test proto=https te=- upgrade=- cookie=a=1; b=2 body=100000",
        "one Cookie line and the whole body, without a Content-Length from the client"
    );
    p.shutdown().await.unwrap();
}
