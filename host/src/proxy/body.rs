//! The response body relayed to the client, and the bookkeeping that must happen exactly
//! once per request however it ends.
//!
//! Latency is measured as in the study: from sending the upstream request to having the
//! whole response. So the request is only complete when the body's last frame has passed
//! through; that is when the policy observes it, the event is logged and a persistent
//! connection goes back to the pool. If the client disconnects first, `Drop` still logs
//! the request and the policy observes it (as aborted): rows logged always equal requests
//! proxied, and every `choose` is matched by exactly one observation (contract 0.2).
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use http_body_util::Full;
use switchyard_runtime::{Choice, FaultKind, Observation, Outcome, Ticket};
use tokio::time::Sleep;

use super::ProxyState;
use crate::telemetry::RequestEvent;
use switchyard_upstream::{Body as UpstreamBody, BoxError, Lease};

/// Everything needed to finish one request's bookkeeping.
pub struct Completion {
    pub shared: Arc<ProxyState>,
    pub backend: usize,
    pub routing_mode: Arc<str>,
    pub fault: Option<FaultKind>,
    pub sent: Instant,
    pub status: u16,
    pub lease: Option<Lease>,
    pub reused: bool,
    /// Response headers the policy asked for; `None`: copy nothing.
    pub wanted: Option<Arc<[String]>>,
    /// The wanted headers the response had, for the observation.
    pub headers: Vec<(String, String)>,
    /// Handed back to the router exactly once, in `finish`; `None` after that.
    ticket: Option<Ticket>,
    pub request_id: http::HeaderValue,
}

impl Completion {
    pub fn new(shared: Arc<ProxyState>, choice: Choice, request_id: http::HeaderValue) -> Self {
        Completion {
            shared,
            backend: choice.backend,
            routing_mode: choice.routing_mode,
            fault: choice.fault,
            sent: Instant::now(),
            status: 0,
            lease: None,
            reused: false,
            wanted: choice.response_headers,
            headers: Vec::new(),
            ticket: Some(choice.ticket),
            request_id,
        }
    }

    /// Copies the response headers the policy asked for (only when it asked).
    pub fn collect_headers(&mut self, headers: &http::HeaderMap) {
        if let Some(wanted) = &self.wanted {
            self.headers = super::headers::wanted(wanted, headers);
        }
    }

    /// Records the request's end, once: the policy observes it, the event is logged.
    pub fn finish(&mut self, outcome: Outcome) {
        let Some(ticket) = self.ticket.take() else {
            return;
        };
        let now = Instant::now();
        let latency_ns = now.duration_since(self.sent).as_nanos() as u64;
        self.shared.router.observe(
            ticket,
            Observation {
                // The same clock reading as the latency: one read per request, not two.
                now_ns: now.duration_since(self.shared.epoch).as_nanos() as u64,
                latency_ns,
                // Only a response has a status; 502/504 are ours, not the backend's, and an
                // abort's status (if any) was never relayed in full.
                status: if outcome == Outcome::Response {
                    self.status
                } else {
                    0
                },
                outcome,
                headers: std::mem::take(&mut self.headers),
            },
        );
        if outcome == Outcome::Response {
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
            routing_mode: self.routing_mode.clone(),
            fault: self.fault,
            reused: self.reused,
            // Dropped unfinished while the listener cuts what outlived the shutdown grace:
            // not the client's doing, and logged as such.
            cut: outcome == Outcome::Aborted && self.shared.connections.cutting(),
            request_id: self.request_id.clone(),
        });
    }
}

impl Drop for Completion {
    fn drop(&mut self) {
        self.finish(Outcome::Aborted);
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
    stall: StallTimer,
}

/// How long a backend may pause mid-body (`--body-timeout`). Armed only while the backend
/// keeps us waiting, so bodies that arrive whole (most) never touch the timer.
pub(crate) struct StallTimer {
    /// Longest pause allowed between two frames from the backend.
    idle: Duration,
    sleep: Option<Pin<Box<Sleep>>>,
}

impl StallTimer {
    pub(crate) fn new(idle: Duration) -> Self {
        StallTimer { idle, sleep: None }
    }

    /// The backend has nothing for us yet: whether it has now kept us waiting for `idle`
    /// since the last progress. When not, `cx` is woken when it would have.
    pub(crate) fn stalled(&mut self, cx: &mut Context<'_>) -> bool {
        let idle = self.idle;
        let sleep = self
            .sleep
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(idle)));
        sleep.as_mut().poll(cx).is_ready()
    }

    /// Progress: the next wait gets a fresh allowance.
    pub(crate) fn progress(&mut self) {
        if let Some(sleep) = &mut self.sleep {
            sleep
                .as_mut()
                .reset(tokio::time::Instant::now() + self.idle);
        }
    }
}

impl ProxyBody {
    pub fn local(text: String) -> Self {
        ProxyBody::Local(Full::new(Bytes::from(text)))
    }

    pub fn relay(inner: UpstreamBody, completion: Completion, idle: Duration) -> Self {
        ProxyBody::Relay(Box::new(Relay {
            inner,
            completion,
            stall: StallTimer::new(idle),
        }))
    }
}

impl Relay {
    fn poll_frame(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        let completion = &mut self.completion;
        match &polled {
            Poll::Ready(None) => completion.finish(Outcome::Response),
            // Trailers are the last frame, whatever the body says of its end.
            Poll::Ready(Some(Ok(frame))) if frame.is_trailers() || self.inner.is_end_stream() => {
                completion.finish(Outcome::Response)
            }
            Poll::Ready(Some(Err(_))) => completion.finish(Outcome::Broken),
            Poll::Ready(Some(Ok(_))) => {}
            Poll::Pending => {
                if self.stall.stalled(cx) {
                    completion.finish(Outcome::Timeout);
                    return Poll::Ready(Some(Err(format!(
                        "the backend sent nothing for {:?} in the middle of the body",
                        self.stall.idle
                    )
                    .into())));
                }
                return Poll::Pending;
            }
        }
        self.stall.progress();
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

#[cfg(test)]
mod tests {
    use std::future::poll_fn;
    use std::task::Poll;
    use std::time::Duration;

    use super::StallTimer;

    async fn stalled(t: &mut StallTimer) -> bool {
        poll_fn(|cx| Poll::Ready(t.stalled(cx))).await
    }

    /// The stall limit counts from the last progress, to the millisecond, in paused time.
    #[tokio::test(start_paused = true)]
    async fn the_stall_timer_fires_at_the_limit_after_the_last_progress() {
        let limit = Duration::from_secs(60);
        let mut t = StallTimer::new(limit);
        assert!(!stalled(&mut t).await, "armed, not fired");
        tokio::time::advance(limit - Duration::from_millis(1)).await;
        assert!(!stalled(&mut t).await);
        // A frame arrives: a fresh allowance from now.
        t.progress();
        tokio::time::advance(limit - Duration::from_millis(1)).await;
        assert!(!stalled(&mut t).await);
        tokio::time::advance(Duration::from_millis(1)).await;
        assert!(stalled(&mut t).await, "fires exactly at the limit");
    }

    /// Bodies that never wait never arm the timer.
    #[tokio::test(start_paused = true)]
    async fn progress_without_a_wait_arms_nothing() {
        let mut t = StallTimer::new(Duration::from_millis(5));
        t.progress();
        tokio::time::advance(Duration::from_secs(1)).await;
        assert!(t.sleep.is_none());
        assert!(
            !stalled(&mut t).await,
            "the first wait starts a fresh allowance"
        );
    }
}
