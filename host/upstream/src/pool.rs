//! The keep-alive pool: idle connections per backend, most recently used first (warm
//! sockets, and surplus connections age out at the bottom when the backend closes them).
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use hyper::client::conn::http1::SendRequest;
use hyper::{Request, Response};

use super::Upload;
use super::{connect, Body, Lease, Upstream, UpstreamError};

/// Idle connections beyond this are closed rather than kept.
const MAX_IDLE: usize = 1024;

#[derive(Default)]
pub(super) struct Idle(Mutex<Vec<SendRequest<Upload>>>);

impl Idle {
    fn pop(&self) -> Option<SendRequest<Upload>> {
        // Poisoning needs a panic while holding this lock, and nothing in here panics.
        let mut idle = self.0.lock().unwrap_or_else(|e| e.into_inner());
        while let Some(sender) = idle.pop() {
            if !sender.is_closed() {
                return Some(sender);
            }
        }
        None
    }

    pub(super) fn push(&self, sender: SendRequest<Upload>) {
        let mut idle = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if idle.len() < MAX_IDLE {
            idle.push(sender);
        }
    }
}

/// Sends over an idle connection if there is one, else over a new one.
///
/// A pooled connection can be closed by the backend just as we pick it; hyper then hands
/// the request back unsent (`try_send_request`), and it is retried once on a fresh
/// connection, so that race never fails a request.
pub(super) async fn send(
    up: &Arc<Upstream>,
    req: Request<Upload>,
) -> Result<(Response<Body>, Lease), UpstreamError> {
    let mut req = req;
    // Whatever the client spoke (HTTP/2 included), the backend is spoken to in HTTP/1.1.
    *req.version_mut() = http::Version::HTTP_11;
    while let Some(mut sender) = up.idle.pop() {
        if sender.ready().await.is_err() {
            continue;
        }
        match sender.try_send_request(req).await {
            Ok(resp) => {
                up.stats.reused.fetch_add(1, Ordering::Relaxed);
                return Ok((
                    resp.map(Body::Http1),
                    Lease::pooled(sender, up.clone(), true),
                ));
            }
            Err(mut e) => match e.take_message() {
                Some(unsent) => req = unsent,
                None => return Err(e.into_error().into()),
            },
        }
    }
    let mut sender = connect(up).await?;
    let resp = sender.send_request(req).await?;
    Ok((
        resp.map(Body::Http1),
        Lease::pooled(sender, up.clone(), false),
    ))
}
