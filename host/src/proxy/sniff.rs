//! Telling HTTP/2 with prior knowledge (h2c) from HTTP/1 on the plain listener, without a
//! syscall more than HTTP/1 alone costs.
//!
//! Why a read and not a peek: the first read of a connection is one the HTTP/1 parser would
//! make anyway, so reading it here and handing its bytes to the parser first costs nothing;
//! a `recv(MSG_PEEK)` before it was one more syscall per connection (about 10 % of the
//! proxy's work per connection with clients that send `Connection: close`, measured).
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// The HTTP/2 client preface (RFC 9113 §3.4).
const H2_PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// The first read's size: hyper's own initial read buffer, so a head that fits it is read
/// in one go, as before.
const FIRST_READ: usize = 8192;

/// A connection whose first bytes were read to sniff the protocol; they are read again
/// first.
pub(super) struct Sniffed {
    first: Vec<u8>,
    at: usize,
    tcp: TcpStream,
}

impl Sniffed {
    /// Reads until the bytes tell (any byte off the preface says HTTP/1; all 24 of it
    /// HTTP/2; end of stream is left to HTTP/1 to see). `true`: HTTP/2.
    pub(super) async fn read(mut tcp: TcpStream) -> io::Result<(Sniffed, bool)> {
        // Not zeroed: `read_buf` writes into the spare capacity.
        let mut first = Vec::with_capacity(FIRST_READ);
        let h2 = loop {
            let n = tcp.read_buf(&mut first).await?;
            let seen = first.len().min(H2_PREFACE.len());
            if n == 0 || first[..seen] != H2_PREFACE[..seen] {
                break false;
            }
            if seen == H2_PREFACE.len() {
                break true;
            }
        };
        Ok((Sniffed { first, at: 0, tcp }, h2))
    }
}

impl AsyncRead for Sniffed {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.at < this.first.len() {
            let n = (this.first.len() - this.at).min(buf.remaining());
            buf.put_slice(&this.first[this.at..this.at + n]);
            this.at += n;
            if this.at == this.first.len() {
                // Done with: give the memory back for the connection's lifetime.
                this.first = Vec::new();
                this.at = 0;
            }
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.tcp).poll_read(cx, buf)
    }
}

impl AsyncWrite for Sniffed {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().tcp).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().tcp).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.tcp.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().tcp).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().tcp).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::AsyncWriteExt;
    use tokio::net::TcpListener;

    use super::*;

    async fn sniff(sent: &[&[u8]]) -> (bool, Vec<u8>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut client = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (server, _) = listener.accept().await.unwrap();
        for part in sent {
            client.write_all(part).await.unwrap();
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        client.shutdown().await.unwrap();
        let (mut s, h2) = Sniffed::read(server).await.unwrap();
        let mut all = Vec::new();
        s.read_to_end(&mut all).await.unwrap();
        (h2, all)
    }

    #[tokio::test]
    async fn the_preface_says_http2_and_every_byte_is_read_again() {
        let (h2, all) = sniff(&[b"PRI * HTTP/2.0\r\n", b"\r\nSM\r\n\r\nrest"]).await;
        assert!(h2, "a preface split over two segments");
        assert_eq!(all, b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\nrest");
        let (h2, all) = sniff(&[b"P", b"OST / HTTP/1.1\r\n\r\n"]).await;
        assert!(!h2);
        assert_eq!(all, b"POST / HTTP/1.1\r\n\r\n");
        let (h2, all) = sniff(&[]).await;
        assert!(!h2, "end of stream is HTTP/1's to see");
        assert!(all.is_empty());
    }
}
