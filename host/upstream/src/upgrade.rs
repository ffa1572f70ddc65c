//! Requests that ask to switch protocols (`Upgrade`, e.g. WebSocket): each gets an HTTP/1.1
//! connection of its own with hyper's upgrades enabled, whatever `--upstream` and
//! `--upstream-protocol` say. A pooled connection cannot be handed over to a tunnel
//! without leaving the pool, and an h2c stream cannot carry an HTTP/1.1 upgrade (RFC 8441's
//! extended CONNECT is another protocol). After a `101 Switching Protocols` the response
//! holds hyper's upgrade handle (`hyper::upgrade::on`), which yields the connection once
//! the head has been read; any other answer is an ordinary response on a connection that
//! closes when it is done.
use hyper::{Request, Response};

use super::{open, secure, Body, Lease, Upload, Upstream, UpstreamError};

/// Whether `req` asks to switch protocols: it carries an `Upgrade` header (the proxy keeps
/// one only for requests that asked for an upgrade it tunnels).
pub(super) fn requested(req: &Request<Upload>) -> bool {
    req.headers().contains_key(http::header::UPGRADE)
}

/// One upgrade request on a fresh connection (TLS first for an https backend).
pub(super) async fn send(
    up: &Upstream,
    req: Request<Upload>,
) -> Result<(Response<Body>, Lease), UpstreamError> {
    let tcp = open(up).await?;
    match &up.tls {
        None => exchange(tcp, req).await,
        Some(tls) => exchange(secure(up, tls, tcp).await?, req).await,
    }
}

async fn exchange<T>(io: T, req: Request<Upload>) -> Result<(Response<Body>, Lease), UpstreamError>
where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let io = hyper_util::rt::TokioIo::new(io);
    let (mut sender, conn) = hyper::client::conn::http1::handshake(io).await?;
    tokio::spawn(async move {
        // Ends when the backend answers without switching, or hands the connection to the
        // upgrade; errors reach the request that saw them.
        let _ = conn.with_upgrades().await;
    });
    let resp = sender.send_request(req).await?;
    Ok((resp.map(Body::Http1), Lease::none(false)))
}
