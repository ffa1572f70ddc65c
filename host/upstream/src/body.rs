//! A backend's response body, whichever protocol carried it.
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::HeaderMap;
use http_body::{Frame, SizeHint};
use hyper::body::Incoming;

/// Errors from either protocol's body.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The response body as read from the backend.
pub enum Body {
    Http1(Incoming),
    H2(H2Body),
}

impl http_body::Body for Body {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match self.get_mut() {
            Body::Http1(inner) => Pin::new(inner).poll_frame(cx).map_err(Into::into),
            Body::H2(inner) => inner.poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Body::Http1(inner) => inner.is_end_stream(),
            Body::H2(inner) => inner.recv.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Body::Http1(inner) => inner.size_hint(),
            Body::H2(inner) => inner.size,
        }
    }
}

/// An HTTP/2 stream's data and trailers. Flow-control credit is handed back as each chunk
/// is passed on, so a slow client slows only its own stream, up to the stream window.
pub struct H2Body {
    recv: h2::RecvStream,
    data_done: bool,
    size: SizeHint,
    /// Holds the stream's place on its connection until the body is dropped.
    _claim: super::h2c::InFlight,
}

impl H2Body {
    pub(super) fn new(
        recv: h2::RecvStream,
        headers: &HeaderMap,
        claim: super::h2c::InFlight,
    ) -> Self {
        let mut size = SizeHint::new();
        if let Some(len) = headers
            .get(http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok())
        {
            size.set_exact(len);
        }
        H2Body {
            recv,
            data_done: false,
            size,
            _claim: claim,
        }
    }

    fn poll_frame(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        if !self.data_done {
            match self.recv.poll_data(cx) {
                Poll::Ready(Some(Ok(data))) => {
                    // Fails only once the stream is gone, and then the next poll says so.
                    let _ = self.recv.flow_control().release_capacity(data.len());
                    return Poll::Ready(Some(Ok(Frame::data(data))));
                }
                Poll::Ready(Some(Err(e))) => return Poll::Ready(Some(Err(e.into()))),
                Poll::Ready(None) => self.data_done = true,
                Poll::Pending => return Poll::Pending,
            }
        }
        match self.recv.poll_trailers(cx) {
            Poll::Ready(Ok(Some(trailers))) => Poll::Ready(Some(Ok(Frame::trailers(trailers)))),
            Poll::Ready(Ok(None)) => Poll::Ready(None),
            Poll::Ready(Err(e)) => Poll::Ready(Some(Err(e.into()))),
            Poll::Pending => Poll::Pending,
        }
    }
}
