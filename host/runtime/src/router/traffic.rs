//! A sample of recent requests, so that a new policy is rehearsed on what live traffic
//! looks like (methods, paths, hosts, client addresses, headers, their timing) rather than
//! on a made-up request a policy could tell apart and behave for.
//!
//! One `choose` in `EVERY` is copied, under the routing lock it already holds: the copy
//! costs about a microsecond, a few tens of nanoseconds a request amortised.
use std::collections::VecDeque;
use std::net::SocketAddr;

use crate::types::RequestView;

/// One request in this many is kept.
const EVERY: u64 = 64;
/// Requests kept.
const KEEP: usize = 16;
/// Headers kept per request, and the longest value kept.
const HEADERS: usize = 32;
const VALUE_MAX: usize = 1024;

/// A copied request, readable as a [`RequestView`].
#[derive(Debug, Clone)]
pub(super) struct Recent {
    /// When it was routed, on the router's clock.
    pub(super) at_ns: u64,
    method: String,
    path: String,
    authority: String,
    client: Option<SocketAddr>,
    headers: Vec<(String, String)>,
}

impl RequestView for Recent {
    fn method(&self) -> &str {
        &self.method
    }
    fn path_and_query(&self) -> &str {
        &self.path
    }
    fn authority(&self) -> &str {
        &self.authority
    }
    fn client(&self) -> Option<SocketAddr> {
        self.client
    }
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
    fn for_each_header(&self, f: &mut dyn FnMut(&str, &str)) {
        self.headers.iter().for_each(|(n, v)| f(n, v));
    }
}

/// The last `KEEP` sampled requests, oldest first.
#[derive(Debug, Default)]
pub(super) struct Traffic {
    count: u64,
    kept: VecDeque<Recent>,
}

impl Traffic {
    /// Counts a routed request, and copies one in `EVERY`.
    #[inline]
    pub(super) fn saw(&mut self, req: &dyn RequestView, now_ns: u64) {
        self.count += 1;
        if self.count % EVERY == 1 {
            self.keep(req, now_ns);
        }
    }

    #[cold]
    fn keep(&mut self, req: &dyn RequestView, now_ns: u64) {
        let mut headers = Vec::new();
        req.for_each_header(&mut |name, value| {
            if headers.len() < HEADERS && value.len() <= VALUE_MAX {
                headers.push((name.to_string(), value.to_string()));
            }
        });
        if self.kept.len() >= KEEP {
            self.kept.pop_front();
        }
        self.kept.push_back(Recent {
            at_ns: now_ns,
            method: req.method().to_string(),
            path: req.path_and_query().to_string(),
            authority: req.authority().to_string(),
            client: req.client(),
            headers,
        });
    }

    /// The kept requests, oldest first.
    pub(super) fn recent(&self) -> Vec<Recent> {
        self.kept.iter().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::NoRequest;

    #[test]
    fn one_request_in_every_is_kept_up_to_keep() {
        let mut t = Traffic::default();
        for i in 0..(EVERY * (KEEP as u64 + 3)) {
            t.saw(&NoRequest, i);
        }
        let recent = t.recent();
        assert_eq!(recent.len(), KEEP);
        // The first request is sampled, then every EVERY-th; the oldest were pushed out.
        assert_eq!(recent[0].at_ns, 3 * EVERY);
        assert!(recent.windows(2).all(|w| w[1].at_ns - w[0].at_ns == EVERY));
        assert_eq!(recent[0].method(), "GET");
    }
}
