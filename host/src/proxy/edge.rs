//! What a request must be before it is routed: the checks RFC 9112 asks of a proxy that
//! hyper's parser does not make, and the requests a reverse proxy does not serve.
//!
//! A refused request is answered here, never reaches a policy or a backend, and is counted
//! by reason ([`Refusals`], `switchyard_refused_total` in `/metrics`).
use std::sync::atomic::{AtomicU64, Ordering};

use http::header::{self, HeaderValue};
use http::{Method, Request, StatusCode, Version};

/// Why a request was refused at the edge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// More than one `Host` line (RFC 9112 §3.2: 400).
    DuplicateHost,
    /// An HTTP/1.1 request without `Host` (RFC 9112 §3.2: 400).
    MissingHost,
    /// A `Host` that is not an authority (`host[:port]`).
    InvalidHost,
    /// CONNECT asks for a tunnel to an address of the client's choosing: a forward
    /// proxy's job, which a reverse proxy must not do (it would open the backends'
    /// network to any client).
    Connect,
}

impl Refusal {
    pub const ALL: [Refusal; 4] = [
        Refusal::DuplicateHost,
        Refusal::MissingHost,
        Refusal::InvalidHost,
        Refusal::Connect,
    ];

    /// The `reason` label in `/metrics`.
    pub fn as_str(self) -> &'static str {
        match self {
            Refusal::DuplicateHost => "duplicate_host",
            Refusal::MissingHost => "missing_host",
            Refusal::InvalidHost => "invalid_host",
            Refusal::Connect => "connect",
        }
    }

    pub fn status(self) -> StatusCode {
        match self {
            Refusal::Connect => StatusCode::NOT_IMPLEMENTED,
            _ => StatusCode::BAD_REQUEST,
        }
    }

    /// The body of the answer: what was wrong, for the client's developer.
    pub fn message(self) -> &'static str {
        match self {
            Refusal::DuplicateHost => "more than one Host header\n",
            Refusal::MissingHost => "an HTTP/1.1 request needs a Host header\n",
            Refusal::InvalidHost => "the Host header is not host[:port]\n",
            Refusal::Connect => "CONNECT is not supported: this is a reverse proxy\n",
        }
    }
}

/// Refused requests, by reason.
#[derive(Debug, Default)]
pub struct Refusals([AtomicU64; 4]);

impl Refusals {
    pub fn count(&self, r: Refusal) {
        self.0[r as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// Each reason with its count, in [`Refusal::ALL`]'s order.
    pub fn snapshot(&self) -> Vec<(Refusal, u64)> {
        Refusal::ALL
            .iter()
            .map(|&r| (r, self.0[r as usize].load(Ordering::Relaxed)))
            .collect()
    }
}

/// Checks `req` and settles its `Host`: an absolute-form target (or HTTP/2's `:authority`)
/// replaces whatever `Host` the client sent (RFC 9112 §3.2.2: a proxy must generate Host
/// from the target, not forward the received one). An HTTP/2 request's `cookie` fields
/// are joined into one, as HTTP/1.1 backends and policies (`cookie:NAME`) expect.
pub(super) fn admit<B>(req: &mut Request<B>) -> Result<(), Refusal> {
    if req.method() == Method::CONNECT {
        return Err(Refusal::Connect);
    }
    if req.version() == Version::HTTP_2 {
        join_cookies(req.headers_mut());
    }
    let mut hosts = req.headers().get_all(header::HOST).iter();
    let host = hosts.next();
    if hosts.next().is_some() {
        return Err(Refusal::DuplicateHost);
    }
    if let Some(authority) = req.uri().authority() {
        // An Authority's text is a valid header value (it was parsed from one, or from a
        // request line, and has no control characters).
        if let Ok(v) = HeaderValue::from_str(authority.as_str()) {
            req.headers_mut().insert(header::HOST, v);
        }
        return Ok(());
    }
    match host {
        None if req.version() == Version::HTTP_11 => Err(Refusal::MissingHost),
        None => Ok(()),
        Some(v) if valid_authority(v) => Ok(()),
        Some(_) => Err(Refusal::InvalidHost),
    }
}

/// HTTP/2 may split `cookie` over several fields (RFC 9113 §8.2.3), which must be joined
/// with "; " before the request goes on as HTTP/1.1 (RFC 6265 §5.4: one Cookie line).
fn join_cookies(headers: &mut http::HeaderMap) {
    let mut fields = headers.get_all(header::COOKIE).iter();
    if fields.next().is_none() || fields.next().is_none() {
        return;
    }
    let joined: Vec<&[u8]> = headers
        .get_all(header::COOKIE)
        .iter()
        .map(|v| v.as_bytes())
        .collect();
    // Joined valid values with "; " are a valid value.
    if let Ok(v) = HeaderValue::from_bytes(&joined.join(&b"; "[..])) {
        headers.insert(header::COOKIE, v);
    }
}

/// Whether a Host value is `host[:port]` (RFC 3986 §3.2 without userinfo): a reg-name or
/// IPv4 address, or an IPv6 literal in brackets, then optional digits after a colon.
/// Checked byte by byte on every request, so it allocates nothing (parsing an
/// `http::uri::Authority` would copy the value).
fn valid_authority(v: &HeaderValue) -> bool {
    let b = v.as_bytes();
    let (host, port) = match b.iter().rposition(|&c| c == b':') {
        // An IPv6 literal's colons are inside its brackets.
        Some(i) if !b[i..].contains(&b']') => (&b[..i], &b[i + 1..]),
        _ => (b, &b[..0]),
    };
    if host.is_empty() || !port.iter().all(u8::is_ascii_digit) {
        return false;
    }
    if let Some(inner) = host.strip_prefix(b"[").and_then(|h| h.strip_suffix(b"]")) {
        return !inner.is_empty()
            && inner
                .iter()
                .all(|c| c.is_ascii_hexdigit() || matches!(c, b':' | b'.'));
    }
    host.iter()
        .all(|&c| c.is_ascii_alphanumeric() || b"-._~%!$&'()*+,;=".contains(&c))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(lines: &[(&str, &str)], uri: &str, version: Version) -> Request<()> {
        let mut b = Request::builder().uri(uri).version(version);
        for (k, v) in lines {
            b = b.header(*k, *v);
        }
        b.body(()).unwrap()
    }

    #[test]
    fn host_rules_of_rfc_9112() {
        let mut two = req(&[("host", "a"), ("host", "b")], "/", Version::HTTP_11);
        assert_eq!(admit(&mut two), Err(Refusal::DuplicateHost));
        let mut same_twice = req(&[("host", "a"), ("host", "a")], "/", Version::HTTP_11);
        assert_eq!(admit(&mut same_twice), Err(Refusal::DuplicateHost));
        let mut none = req(&[], "/", Version::HTTP_11);
        assert_eq!(admit(&mut none), Err(Refusal::MissingHost));
        let mut old = req(&[], "/", Version::HTTP_10);
        assert_eq!(admit(&mut old), Ok(()), "HTTP/1.0 may omit Host");
        for bad in [
            "",
            "a b",
            "user@host",
            "a/b",
            ":80",
            "a:8o",
            "[]",
            "[::1",
            "[::g]",
            "a?b",
            "a#b",
        ] {
            let mut r = req(&[("host", bad)], "/", Version::HTTP_11);
            assert_eq!(admit(&mut r), Err(Refusal::InvalidHost), "{bad:?}");
        }
        for good in [
            "example.org:8080",
            "example.org",
            "10.0.0.1:80",
            "[::1]:9090",
            "[::1]",
            "a:",
        ] {
            let mut ok = req(&[("host", good)], "/", Version::HTTP_11);
            assert_eq!(admit(&mut ok), Ok(()), "{good:?}");
        }
    }

    #[test]
    fn an_absolute_target_sets_host() {
        let mut r = req(
            &[("host", "client.example")],
            "http://target.example:81/x",
            Version::HTTP_11,
        );
        assert_eq!(admit(&mut r), Ok(()));
        assert_eq!(r.headers()[header::HOST], "target.example:81");
    }

    #[test]
    fn http2_cookie_fields_are_joined() {
        let mut r = req(
            &[("cookie", "a=1"), ("cookie", "b=2")],
            "https://example.org/",
            Version::HTTP_2,
        );
        assert_eq!(admit(&mut r), Ok(()));
        let cookies: Vec<_> = r.headers().get_all(header::COOKIE).iter().collect();
        assert_eq!(cookies, ["a=1; b=2"]);
        assert_eq!(r.headers()[header::HOST], "example.org");
    }

    #[test]
    fn connect_is_refused() {
        let mut r = Request::builder()
            .method(Method::CONNECT)
            .uri("example.org:443")
            .header("host", "example.org:443")
            .body(())
            .unwrap();
        assert_eq!(admit(&mut r), Err(Refusal::Connect));
        assert_eq!(Refusal::Connect.status(), StatusCode::NOT_IMPLEMENTED);
    }
}
