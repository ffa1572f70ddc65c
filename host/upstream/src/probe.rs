//! Probes: a GET to a backend off the request path, on a connection of its own, for the
//! load reports policies ask for (and, later, health checks).
//!
//! A connection of its own, not the pool's: a probe must not wait behind requests for a
//! pooled connection (it measures the backend, not our queue), and must not take one from
//! them. It is closed with a reset like non-persistent requests' (`oneshot`), and is not
//! counted in the backend's connection statistics, which describe the request traffic.
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::{HeaderValue, CONNECTION, HOST, USER_AGENT};
use http::{HeaderMap, Request};
use http_body_util::{BodyExt, Empty, Limited};
use tokio::net::TcpStream;

use super::oneshot::Abortive;
use super::{UpstreamError, Upstreams};

/// The most of a probe's body that is read (and thrown away); a longer one fails the probe.
pub const PROBE_BODY_LIMIT: usize = 64 << 10;

/// What a probe got back.
#[derive(Debug)]
pub struct ProbeResponse {
    pub status: u16,
    pub headers: HeaderMap,
    /// From connecting to having the whole (empty, usually) body.
    pub latency: Duration,
}

impl Upstreams {
    /// GETs `path` from backend `i`, all of it (connect, response, body) within `timeout`.
    pub async fn probe(
        &self,
        i: usize,
        path: &str,
        timeout: Duration,
    ) -> Result<ProbeResponse, UpstreamError> {
        let started = Instant::now();
        match tokio::time::timeout(timeout, self.probe_inner(i, path)).await {
            Ok(result) => result.map(|(status, headers)| ProbeResponse {
                status,
                headers,
                latency: started.elapsed(),
            }),
            Err(_) => Err(UpstreamError::Timeout(timeout)),
        }
    }

    async fn probe_inner(&self, i: usize, path: &str) -> Result<(u16, HeaderMap), UpstreamError> {
        let Some(up) = self.get(i) else {
            return Err(UpstreamError::Connect(std::io::Error::other(format!(
                "no backend {i}"
            ))));
        };
        let req = Request::get(path)
            .header(HOST, up.authority.clone())
            .header(USER_AGENT, HeaderValue::from_static("switchyard-probe"))
            .header(CONNECTION, HeaderValue::from_static("close"))
            .body(Empty::<Bytes>::new())
            .map_err(|e| UpstreamError::Broken(e.into()))?;
        let stream = TcpStream::connect(up.addr)
            .await
            .map_err(UpstreamError::Connect)?;
        let _ = stream.set_nodelay(true);
        let tcp = Abortive::new(stream);
        let resp = match &up.tls {
            None => get(tcp, req).await?,
            // Not counted as a failed connect: probes stay out of the connection statistics.
            Some(tls) => get(tls.connect(tcp).await.map_err(UpstreamError::Connect)?, req).await?,
        };
        let (parts, body) = resp.into_parts();
        Limited::new(body, PROBE_BODY_LIMIT)
            .collect()
            .await
            .map_err(UpstreamError::Broken)?;
        Ok((parts.status.as_u16(), parts.headers))
    }
}

/// One request on a connection of its own.
async fn get<T>(
    io: T,
    req: Request<Empty<Bytes>>,
) -> Result<hyper::Response<hyper::body::Incoming>, UpstreamError>
where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let io = hyper_util::rt::TokioIo::new(io);
    let (mut sender, conn) = hyper::client::conn::http1::handshake(io).await?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(sender.send_request(req).await?)
}
