//! What an exchange holds on to until its response body is complete.
use std::sync::Arc;

use hyper::client::conn::http1::SendRequest;

use super::Upload;
use super::Upstream;

/// A connection lent to one exchange. `release` once the response body is complete gives
/// a pooled HTTP/1 connection back to the pool; dropping it instead closes the connection
/// when hyper is done. h2c streams and one-shot connections hold nothing here (their
/// connection is shared, or closes by itself): only the reuse flag.
pub struct Lease {
    conn: Option<(SendRequest<Upload>, Arc<Upstream>)>,
    reused: bool,
}

impl Lease {
    /// A lease that holds no connection.
    pub(super) fn none(reused: bool) -> Self {
        Lease { conn: None, reused }
    }

    /// A pooled HTTP/1 connection, returned to `up`'s pool by [`Lease::release`].
    pub(super) fn pooled(sender: SendRequest<Upload>, up: Arc<Upstream>, reused: bool) -> Self {
        Lease {
            conn: Some((sender, up)),
            reused,
        }
    }

    /// Whether the exchange went over a connection that was already open.
    pub fn reused(&self) -> bool {
        self.reused
    }

    /// The response body was read in full: the connection may serve another request.
    pub fn release(mut self) {
        if let Some((sender, up)) = self.conn.take() {
            if !sender.is_closed() {
                up.idle.push(sender);
            }
        }
    }
}
