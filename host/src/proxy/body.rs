//! The response body relayed to the client, and the bookkeeping that must happen exactly
//! once per request however it ends.
//!
//! Latency is measured as in the study: from sending the upstream request to having the
//! whole response. So the request is only complete when the body's last frame has passed
//! through; that is when the policy observes it, the event is logged and a persistent
//! connection goes back to the pool. If the client disconnects first, `Drop` still logs
//! the request (as aborted), so rows logged always equal requests proxied.
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Instant, SystemTime};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use http_body_util::Full;
use switchyard_runtime::{FaultKind, Observation, Outcome};

use super::Shared;
use crate::telemetry::{EventOutcome, RequestEvent};
use crate::upstream::{Body as UpstreamBody, BoxError, Lease};

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
    Relay {
        inner: UpstreamBody,
        completion: Box<Completion>,
    },
    Local(Full<Bytes>),
}

impl ProxyBody {
    pub fn local(text: String) -> Self {
        ProxyBody::Local(Full::new(Bytes::from(text)))
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
            ProxyBody::Relay { inner, completion } => {
                let polled = Pin::new(&mut *inner).poll_frame(cx);
                match &polled {
                    Poll::Ready(None) => {
                        completion.finish(EventOutcome::Response, Some(Outcome::Response))
                    }
                    Poll::Ready(Some(Ok(_))) if inner.is_end_stream() => {
                        completion.finish(EventOutcome::Response, Some(Outcome::Response))
                    }
                    Poll::Ready(Some(Err(_))) => {
                        completion.finish(EventOutcome::Broken, Some(Outcome::Broken))
                    }
                    _ => {}
                }
                polled
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            ProxyBody::Local(full) => full.is_end_stream(),
            ProxyBody::Relay { inner, .. } => inner.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            ProxyBody::Local(full) => full.size_hint(),
            ProxyBody::Relay { inner, .. } => inner.size_hint(),
        }
    }
}
