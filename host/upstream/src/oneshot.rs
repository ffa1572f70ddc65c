//! Non-persistent connections: one TCP connection per request, answered with a reset once
//! the backend has closed its side.
//!
//! Why: with `Connection: close` the backend closes first, right after its response, and
//! waits in FIN_WAIT2 for our FIN, after which its socket sits in TIME_WAIT for a minute
//! (at 12k requests/s, tens of thousands of sockets on the backend host). Answering its
//! FIN with RST (SO_LINGER 0) ends both sides at once: fewer segments, no TIME_WAIT, and
//! nothing lost, since the request was sent, the whole response read, and the backend
//! closed. A backend that has not closed yet gets an ordinary FIN.
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use http::header::{HeaderValue, CONNECTION};
use hyper::{Request, Response};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

use super::Upload;
use super::{handshake, open, secure, Body, Lease, Upstream, UpstreamError};

/// One exchange on a connection of its own, `Connection: close`.
pub(super) async fn send(
    up: &Upstream,
    mut req: Request<Upload>,
) -> Result<(Response<Body>, Lease), UpstreamError> {
    req.headers_mut()
        .insert(CONNECTION, HeaderValue::from_static("close"));
    // Whatever the client spoke (HTTP/2 included), the backend is spoken to in HTTP/1.1.
    *req.version_mut() = http::Version::HTTP_11;
    let tcp = Abortive::new(open(up).await?);
    let mut sender = match &up.tls {
        None => handshake(tcp).await?,
        Some(tls) => handshake(secure(up, tls, tcp).await?).await?,
    };
    let resp = sender.send_request(req).await?;
    // Dropping the sender lets the connection close once the body is read.
    Ok((resp.map(Body::Http1), Lease::none(false)))
}

/// A connection that answers the backend's close with a reset when it is shut down.
pub(crate) struct Abortive(TcpStream);

impl Abortive {
    pub(crate) fn new(stream: TcpStream) -> Self {
        Abortive(stream)
    }
}

impl AsyncRead for Abortive {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_read(cx, buf)
    }
}

impl AsyncWrite for Abortive {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().0).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().0).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.0.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_flush(cx)
    }

    /// If the backend has closed (a read sees end of stream), no FIN: the close on drop
    /// resets the connection. Otherwise an ordinary shutdown.
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let stream = &mut self.get_mut().0;
        let mut probe = [0u8; 1];
        if let Ok(0) = stream.try_read(&mut probe) {
            // Failing leaves the ordinary close, which is still correct.
            let _ = socket2::SockRef::from(&*stream).set_linger(Some(Duration::ZERO));
            return Poll::Ready(Ok(()));
        }
        Pin::new(stream).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    use super::*;

    async fn pair() -> (Abortive, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap());
        let (client, accepted) = tokio::join!(client, listener.accept());
        (Abortive::new(client.unwrap()), accepted.unwrap().0)
    }

    fn linger(a: &Abortive) -> Option<Duration> {
        socket2::SockRef::from(&a.0).linger().unwrap()
    }

    #[tokio::test]
    async fn resets_only_once_the_backend_has_closed() {
        // The backend answered and closed: our close becomes a reset.
        let (mut ours, mut backend) = pair().await;
        backend.write_all(b"response").await.unwrap();
        drop(backend);
        let mut got = [0u8; 8];
        ours.read_exact(&mut got).await.unwrap();
        // Until the FIN is here: end of stream makes the socket readable.
        ours.0.readable().await.unwrap();
        ours.shutdown().await.unwrap();
        assert_eq!(linger(&ours), Some(Duration::ZERO));

        // The backend is still open: an ordinary FIN, which it reads as end of stream.
        let (mut ours, mut backend) = pair().await;
        ours.shutdown().await.unwrap();
        assert_eq!(linger(&ours), None);
        let mut rest = Vec::new();
        assert_eq!(backend.read_to_end(&mut rest).await.unwrap(), 0);
    }
}
