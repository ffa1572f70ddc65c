//! The response body relayed to the client, and the bookkeeping that must happen exactly
//! once per request however it ends.
//!
//! Latency is measured as in the study: from sending the upstream request to having the
//! whole response. So the request is only complete when the body's last frame has passed
//! through; that is when the policy observes it, the event is logged and a persistent
//! connection goes back to the pool. If the client disconnects first, `Drop` still logs
//! the request (as aborted), so rows logged always equal requests proxied.
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use http_body_util::Full;
use switchyard_runtime::{FaultKind, Observation, Outcome};
use tokio::time::Sleep;

use super::Shared;
use crate::telemetry::{EventOutcome, RequestEvent};
use switchyard_upstream::{Body as UpstreamBody, BoxError, Lease};

/// Everything needed to finish one request's bookkeeping.
pub struct Completion {
    pub shared: Arc<Shared>,
    pub backend: usize,
    pub routed_by: Arc<str>,
    pub fault: Option<FaultKind>,
    pub sent: Instant,
    pub status: u16,
    pub lease: Option<Lease>,
    pub reused: bool,
    done: bool,
}

impl Completion {
    pub fn new(
        shared: Arc<Shared>,
        backend: usize,
        routed_by: Arc<str>,
        fault: Option<FaultKind>,
    ) -> Self {
        Completion {
            shared,
            backend,
            routed_by,
            fault,
            sent: Instant::now(),
            status: 0,
            lease: None,
            reused: false,
            done: false,
        }
    }

    /// Records the request's end. `observe`: what the policy should learn, if anything
    /// (a client that hangs up says nothing about the backend).
    pub fn finish(&mut self, outcome: EventOutcome, observe: Option<Outcome>) {
        if std::mem::replace(&mut self.done, true) {
            return;
        }
        let now = Instant::now();
        let latency_ns = now.duration_since(self.sent).as_nanos() as u64;
        if let Some(outcome) = observe {
            self.shared.router.observe(Observation {
                backend: self.backend,
                // The same clock reading as the latency: one read per request, not two.
                now_ns: now.duration_since(self.shared.epoch).as_nanos() as u64,
                latency_ns,
                // Only a response has a status; 502/504 are ours, not the backend's.
                status: if outcome == Outcome::Response {
                    self.status
                } else {
                    0
                },
                outcome,
            });
        }
        if outcome == EventOutcome::Response {
            if let Some(lease) = self.lease.take() {
                lease.release();
            }
        }
        self.shared.events.send(RequestEvent {
            at: SystemTime::now(),
            backend: self.backend,
            latency_ns,
            status: self.status,
            outcome,
            routed_by: self.routed_by.clone(),
            fault: self.fault,
            reused: self.reused,
        });
    }
}

impl Drop for Completion {
    fn drop(&mut self) {
        self.finish(EventOutcome::Aborted, None);
    }
}

/// The body sent to clients: a relayed backend body, or a short message of our own.
pub enum ProxyBody {
    Relay(Box<Relay>),
    Local(Full<Bytes>),
}

/// A backend's body on its way to the client.
pub struct Relay {
    inner: UpstreamBody,
    completion: Completion,
    /// Longest pause allowed between two frames from the backend.
    idle: Duration,
    /// Armed only while the backend keeps us waiting, so bodies that arrive whole (most)
    /// never touch the timer.
    stall: Option<Pin<Box<Sleep>>>,
}

impl ProxyBody {
    pub fn local(text: String) -> Self {
        ProxyBody::Local(Full::new(Bytes::from(text)))
    }

    pub fn relay(inner: UpstreamBody, completion: Completion, idle: Duration) -> Self {
        ProxyBody::Relay(Box::new(Relay {
            inner,
            completion,
            idle,
            stall: None,
        }))
    }
}

impl Relay {
    fn poll_frame(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        let completion = &mut self.completion;
        match &polled {
            Poll::Ready(None) => completion.finish(EventOutcome::Response, Some(Outcome::Response)),
            Poll::Ready(Some(Ok(_))) if self.inner.is_end_stream() => {
                completion.finish(EventOutcome::Response, Some(Outcome::Response))
            }
            Poll::Ready(Some(Err(_))) => {
                completion.finish(EventOutcome::Broken, Some(Outcome::Broken))
            }
            Poll::Ready(Some(Ok(_))) => {}
            Poll::Pending => {
                let deadline = tokio::time::Instant::now() + self.idle;
                let stall = match &mut self.stall {
                    Some(sleep) => sleep,
                    None => self
                        .stall
                        .insert(Box::pin(tokio::time::sleep_until(deadline))),
                };
                if stall.as_mut().poll(cx).is_ready() {
                    completion.finish(EventOutcome::Timeout, Some(Outcome::Timeout));
                    return Poll::Ready(Some(Err(format!(
                        "the backend sent nothing for {:?} in the middle of the body",
                        self.idle
                    )
                    .into())));
                }
                return Poll::Pending;
            }
        }
        // Progress: the next wait gets a fresh allowance.
        if let Some(sleep) = &mut self.stall {
            sleep
                .as_mut()
                .reset(tokio::time::Instant::now() + self.idle);
        }
        polled
    }
}

impl Body for ProxyBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match self.get_mut() {
            ProxyBody::Local(full) => Pin::new(full)
                .poll_frame(cx)
                .map_err(|never| match never {}),
            ProxyBody::Relay(relay) => relay.poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            ProxyBody::Local(full) => full.is_end_stream(),
            ProxyBody::Relay(relay) => relay.inner.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            ProxyBody::Local(full) => full.size_hint(),
            ProxyBody::Relay(relay) => relay.inner.size_hint(),
        }
    }
}
