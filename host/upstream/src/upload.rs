//! The client's request body on its way to a backend, and the clock that tells whose turn
//! it is while it streams.
//!
//! The upstream timeout (`--timeout`) is the backend's allowance: to accept the connection
//! and to answer once it has the whole request. A client uploading slowly is not the
//! backend's fault, so the response clock starts only when the body has been read in full.
//! While the body streams two other limits apply, each to the side that holds things up:
//!
//! - the client: it may pause at most `upload_timeout` between two pieces of the body
//!   (`--upload-timeout`, nginx's `client_body_timeout`); past that the request ends with
//!   [`UpstreamError::UploadStalled`](crate::UpstreamError) (408, not a backend failure);
//! - the backend: if it stops reading the body (we are not even asking the client for
//!   more), it gets the ordinary `timeout` since the last piece moved.
//!
//! Bodiless requests (most) carry no clock at all: no allocation, no clock reads.
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body::{Body as HttpBody, Frame, SizeHint};
use hyper::body::Incoming;

/// A request body as sent upstream: the client's, watched by an [`UploadClock`] unless it
/// was empty from the start.
pub struct Upload {
    inner: Incoming,
    clock: Option<Arc<UploadClock>>,
}

impl Upload {
    pub fn new(inner: Incoming) -> Self {
        let clock = (!inner.is_end_stream()).then(|| Arc::new(UploadClock::new()));
        Upload { inner, clock }
    }

    pub(crate) fn clock(&self) -> Option<Arc<UploadClock>> {
        self.clock.clone()
    }
}

impl HttpBody for Upload {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        if let Some(clock) = &this.clock {
            match &polled {
                Poll::Pending => clock.waiting.store(true, Ordering::Relaxed),
                Poll::Ready(Some(Ok(_))) if !this.inner.is_end_stream() => clock.progress(),
                // The last frame, the end, or an error: the backend's turn now (an error
                // breaks the exchange, which ends it anyway).
                Poll::Ready(_) => clock.done(),
            }
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Where a streaming upload stands, written by the body, read by the exchange's timer.
#[derive(Debug)]
pub(crate) struct UploadClock {
    base: Instant,
    /// Nanoseconds after `base` of the last piece read from the client.
    last_ns: AtomicU64,
    /// Nanoseconds after `base` at which the body was complete; 0 while it is not.
    done_ns: AtomicU64,
    /// Whether the body is waiting on the client (it was asked for more and had none).
    waiting: AtomicBool,
}

/// Whose turn it is, and since when.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Turn {
    /// The body is complete: the backend has had it since then.
    Backend(Instant),
    /// We asked the client for more and it has sent nothing since then.
    Client(Instant),
    /// The body is not being read (not started yet, or the backend stopped reading):
    /// nothing has moved since then.
    Stalled(Instant),
}

impl UploadClock {
    fn new() -> Self {
        UploadClock {
            base: Instant::now(),
            last_ns: AtomicU64::new(0),
            done_ns: AtomicU64::new(0),
            waiting: AtomicBool::new(false),
        }
    }

    fn since_base(&self) -> u64 {
        // At least 1, so that `done_ns` 0 keeps meaning "not done".
        (self.base.elapsed().as_nanos() as u64).max(1)
    }

    fn progress(&self) {
        self.last_ns.store(self.since_base(), Ordering::Relaxed);
        self.waiting.store(false, Ordering::Relaxed);
    }

    fn done(&self) {
        let now = self.since_base();
        self.last_ns.store(now, Ordering::Relaxed);
        self.done_ns.store(now, Ordering::Relaxed);
    }

    pub(crate) fn turn(&self) -> Turn {
        let at = |ns: u64| self.base + Duration::from_nanos(ns);
        match self.done_ns.load(Ordering::Relaxed) {
            0 => {
                let last = at(self.last_ns.load(Ordering::Relaxed));
                if self.waiting.load(Ordering::Relaxed) {
                    Turn::Client(last)
                } else {
                    Turn::Stalled(last)
                }
            }
            done => Turn::Backend(at(done)),
        }
    }
}

/// What the exchange's timer decides when it wakes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Nothing is over its limit: wake again then.
    WakeAt(Instant),
    /// The backend took longer than `timeout` (to answer, or to read the body).
    BackendTimeout,
    /// The client paused longer than `upload_timeout`.
    ClientStalled,
}

/// The timer's rule, pure so that it is tested without sockets: see the module's comment.
pub(crate) fn verdict(
    turn: Turn,
    now: Instant,
    timeout: Duration,
    upload_timeout: Duration,
) -> Verdict {
    let (since, limit, over) = match turn {
        Turn::Backend(since) | Turn::Stalled(since) => (since, timeout, Verdict::BackendTimeout),
        Turn::Client(since) => (since, upload_timeout, Verdict::ClientStalled),
    };
    let deadline = since + limit;
    if now >= deadline {
        over
    } else {
        Verdict::WakeAt(deadline)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: Duration = Duration::from_secs(10);
    const U: Duration = Duration::from_secs(60);

    #[test]
    fn each_side_gets_its_own_limit_from_its_own_start() {
        let t0 = Instant::now();
        let s = Duration::from_secs;
        // A slow upload: the client is waited on, it has 60 s per pause, not 10.
        assert_eq!(
            verdict(Turn::Client(t0), t0 + s(30), T, U),
            Verdict::WakeAt(t0 + U)
        );
        assert_eq!(
            verdict(Turn::Client(t0), t0 + U, T, U),
            Verdict::ClientStalled
        );
        // The body is in: the backend's 10 s start then.
        assert_eq!(
            verdict(Turn::Backend(t0 + s(40)), t0 + s(45), T, U),
            Verdict::WakeAt(t0 + s(50))
        );
        assert_eq!(
            verdict(Turn::Backend(t0 + s(40)), t0 + s(50), T, U),
            Verdict::BackendTimeout
        );
        // The backend stopped reading: its limit, from the last piece that moved.
        assert_eq!(
            verdict(Turn::Stalled(t0 + s(5)), t0 + s(15), T, U),
            Verdict::BackendTimeout
        );
    }

    #[test]
    fn the_clock_follows_the_body() {
        let c = UploadClock::new();
        assert!(matches!(c.turn(), Turn::Stalled(_)), "not started yet");
        c.waiting.store(true, Ordering::Relaxed);
        assert!(matches!(c.turn(), Turn::Client(_)));
        c.progress();
        assert!(matches!(c.turn(), Turn::Stalled(_)), "a piece moved");
        c.done();
        assert!(matches!(c.turn(), Turn::Backend(_)));
    }
}
