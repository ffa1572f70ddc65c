//! Request ids: one per proxied request, in the log's `request_id` column and sent to the
//! backend as `x-request-id`, so a row can be matched with the backend's own logs.
//!
//! A client's `x-request-id` is kept when it is a sensible id (1 to [`MAX_LEN`] visible
//! ASCII characters), as Envoy and nginx setups do: a caller that already traces its
//! requests keeps its ids end to end. Otherwise the proxy makes one: 32 hex digits, a
//! random 64-bit prefix drawn at start-up followed by a 64-bit counter. Unique within a
//! run by the counter and across runs by the prefix, and cheaper than a random UUID per
//! request (one atomic add; no random numbers on the request path).
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};

use http::header::{HeaderMap, HeaderName, HeaderValue};

pub static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The longest client id kept; longer ones are replaced (they would bloat every log row).
pub const MAX_LEN: usize = 128;

/// Hands out request ids.
#[derive(Debug)]
pub struct RequestIds {
    prefix: u64,
    next: AtomicU64,
}

impl Default for RequestIds {
    fn default() -> Self {
        RequestIds::new()
    }
}

impl RequestIds {
    /// A new run's ids, with a prefix drawn from the clock and the process (the std
    /// hasher's per-process random keys).
    pub fn new() -> Self {
        use std::hash::{BuildHasher, Hasher};
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u128(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or_default(),
        );
        h.write_u32(std::process::id());
        RequestIds::with_prefix(h.finish())
    }

    pub fn with_prefix(prefix: u64) -> Self {
        RequestIds {
            prefix,
            next: AtomicU64::new(0),
        }
    }

    /// The request's id: the client's, if it sent a sensible one, else a new one, which is
    /// then set on the request for the backend.
    pub fn assign(&self, headers: &mut HeaderMap) -> HeaderValue {
        if let Some(id) = headers.get(&X_REQUEST_ID).filter(|v| acceptable(v)) {
            return id.clone();
        }
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let mut text = String::with_capacity(32);
        // Writing to a String cannot fail.
        let _ = write!(text, "{:016x}{n:016x}", self.prefix);
        // Hex digits are always a valid header value; the String's buffer becomes the
        // value's without a copy.
        let id = HeaderValue::from_maybe_shared(bytes::Bytes::from(text))
            .unwrap_or_else(|_| HeaderValue::from_static("-"));
        headers.insert(X_REQUEST_ID.clone(), id.clone());
        id
    }
}

fn acceptable(v: &HeaderValue) -> bool {
    let b = v.as_bytes();
    !b.is_empty() && b.len() <= MAX_LEN && b.iter().all(|c| (0x21..0x7f).contains(c))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_made_when_missing_and_kept_when_sensible() {
        let ids = RequestIds::with_prefix(0xabc);
        let mut h = HeaderMap::new();
        assert_eq!(ids.assign(&mut h), "0000000000000abc0000000000000000");
        assert_eq!(h[&X_REQUEST_ID], "0000000000000abc0000000000000000");
        let mut h = HeaderMap::new();
        assert_eq!(ids.assign(&mut h), "0000000000000abc0000000000000001");

        let mut h = HeaderMap::new();
        h.insert(&X_REQUEST_ID, HeaderValue::from_static("trace-42"));
        assert_eq!(ids.assign(&mut h), "trace-42");
        assert_eq!(h.get_all(&X_REQUEST_ID).iter().count(), 1);
    }

    #[test]
    fn ids_that_are_empty_too_long_or_not_visible_ascii_are_replaced() {
        let ids = RequestIds::with_prefix(1);
        let at_limit = "x".repeat(MAX_LEN);
        let over = "x".repeat(MAX_LEN + 1);
        for (sent, kept) in [
            (at_limit.as_str(), true),
            (over.as_str(), false),
            ("", false),
            ("a b", false),
        ] {
            let mut h = HeaderMap::new();
            h.insert(&X_REQUEST_ID, HeaderValue::from_str(sent).unwrap());
            let id = ids.assign(&mut h);
            assert_eq!(id == sent, kept, "{sent:?}");
            assert_eq!(h[&X_REQUEST_ID], id);
        }
    }
}
