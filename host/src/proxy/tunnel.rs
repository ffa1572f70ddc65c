//! The bytes of an upgraded connection, both ways, until one side closes or the tunnel has
//! been idle for `--tunnel-idle-timeout` (default 1 h, as HAProxy's `timeout tunnel` is
//! usually set; nginx's 60 s `proxy_read_timeout` is the classic cause of WebSockets
//! dropped for being quiet).
//!
//! The tunnel runs in its client connection's task (see `proxy::serve`), so it counts
//! against `--max-connections` like the connection it came from, and at shutdown it gets
//! the same grace and is cut, and logged as `cut`, like any request still in flight.
//!
//! Written on `tokio::io::copy_bidirectional`, with the idle rule added: each side's
//! reads stamp the time of the last byte moved, and a timer checks that stamp instead of
//! being reset per read.
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use switchyard_runtime::Outcome;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
// tokio's clock, not std's: the same one the idle timer sleeps on (and pauses in tests).
use tokio::time::Instant;

use super::body::Completion;

/// The tunnel a connection's one upgraded request left behind, to run once hyper is done
/// with the connection (cheap to clone: one per connection, shared with its requests).
#[derive(Clone, Default)]
pub(super) struct Slot(Arc<Mutex<Option<Tunnel>>>);

pub(super) type Tunnel = Pin<Box<dyn Future<Output = ()> + Send>>;

impl Slot {
    pub(super) fn put(&self, tunnel: Tunnel) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = Some(tunnel);
    }

    pub(super) fn take(&self) -> Option<Tunnel> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).take()
    }
}

/// Joins the two upgraded connections and finishes `completion` when the tunnel closes:
/// outcome `response` for a close by either side or by the idle rule, `broken` when the
/// backend's side never came through, `aborted` when the client's did not or a side failed.
pub(super) fn run(
    client: OnUpgrade,
    backend: OnUpgrade,
    idle: Duration,
    mut completion: Completion,
) -> Tunnel {
    Box::pin(async move {
        let backend = match backend.await {
            Ok(b) => b,
            Err(_) => return completion.finish(Outcome::Broken),
        };
        let client = match client.await {
            Ok(c) => c,
            Err(_) => return completion.finish(Outcome::Aborted),
        };
        let outcome = relay(TokioIo::new(client), TokioIo::new(backend), idle).await;
        completion.finish(outcome);
    })
}

async fn relay<A, B>(a: A, b: B, idle: Duration) -> Outcome
where
    A: AsyncRead + AsyncWrite + Unpin,
    B: AsyncRead + AsyncWrite + Unpin,
{
    let start = Instant::now();
    let last = Arc::new(AtomicU64::new(0));
    let mut a = Stamped::new(a, start, last.clone());
    let mut b = Stamped::new(b, start, last.clone());
    let copy = tokio::io::copy_bidirectional(&mut a, &mut b);
    let mut copy = std::pin::pin!(copy);
    loop {
        let quiet_since = start + Duration::from_nanos(last.load(Ordering::Relaxed));
        let deadline = quiet_since + idle;
        tokio::select! {
            done = copy.as_mut() => {
                return if done.is_ok() { Outcome::Response } else { Outcome::Aborted };
            }
            () = tokio::time::sleep_until(deadline) => {
                let moved = start + Duration::from_nanos(last.load(Ordering::Relaxed));
                if moved + idle <= Instant::now() {
                    tracing::debug!("tunnel idle for {idle:?}: closed (--tunnel-idle-timeout)");
                    return Outcome::Response;
                }
            }
        }
    }
}

/// A stream whose reads stamp, in nanoseconds since `start`, when bytes last moved.
struct Stamped<T> {
    inner: T,
    start: Instant,
    last: Arc<AtomicU64>,
}

impl<T> Stamped<T> {
    fn new(inner: T, start: Instant, last: Arc<AtomicU64>) -> Self {
        Stamped { inner, start, last }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Stamped<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            let now = this.start.elapsed().as_nanos() as u64;
            this.last.store(now, Ordering::Relaxed);
        }
        polled
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Stamped<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// Bytes pass both ways; the tunnel closes after `idle` without traffic, in paused time,
    /// and not before: traffic at 0.9 × idle starts the allowance again.
    #[tokio::test(start_paused = true)]
    async fn bytes_pass_and_the_idle_rule_closes_a_quiet_tunnel() {
        let (mut client, proxy_a) = tokio::io::duplex(64);
        let (proxy_b, mut backend) = tokio::io::duplex(64);
        let idle = Duration::from_secs(10);
        let t0 = tokio::time::Instant::now();
        let tunnel = tokio::spawn(relay(proxy_a, proxy_b, idle));
        client.write_all(b"ping").await.unwrap();
        let mut buf = [0u8; 4];
        backend.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"ping");
        tokio::time::sleep(Duration::from_secs(9)).await;
        backend.write_all(b"pong").await.unwrap();
        client.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"pong");
        assert_eq!(tunnel.await.unwrap(), Outcome::Response);
        assert_eq!(
            t0.elapsed(),
            Duration::from_secs(19),
            "idle counted from the last byte"
        );
    }
}
