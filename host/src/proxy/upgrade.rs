//! Protocol upgrades (`Upgrade: websocket` and any other): the request is sent on with its
//! `Upgrade`, on a connection of its own (`switchyard_upstream`); a backend that answers
//! `101 Switching Protocols` gets the client's connection joined to its own, byte for byte,
//! until either side closes (`tunnel`). One upgrade is one request: chosen by the policy,
//! counted in flight for as long as the tunnel is open, observed and logged once when it
//! closes, with the tunnel's whole duration as its latency and 101 as its status.
//!
//! HTTP/1.1 only: an HTTP/1.0 request cannot upgrade (RFC 9110 §7.8), and HTTP/2 clients
//! would need extended CONNECT (RFC 8441), which is not offered.
use http::header::{self, HeaderMap, HeaderValue};
use http::{Request, Version};

/// The `Upgrade` a request asks for: it has an `Upgrade` header and lists `upgrade` in
/// `Connection` (RFC 9110 §7.8: one without the other is not a request to switch).
pub(super) fn requested<B>(req: &Request<B>) -> Option<HeaderValue> {
    if req.version() != Version::HTTP_11 {
        return None;
    }
    let upgrade = req.headers().get(header::UPGRADE)?;
    super::headers::lists(req.headers(), &header::CONNECTION, "upgrade").then(|| upgrade.clone())
}

/// Puts the upgrade back after the hop-by-hop headers were stripped: it is the one
/// hop-by-hop exchange a proxy must pass on for the tunnel to exist.
pub(super) fn keep(headers: &mut HeaderMap, upgrade: HeaderValue) {
    headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    headers.insert(header::UPGRADE, upgrade);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(version: Version, headers: &[(&str, &str)]) -> Request<()> {
        let mut b = Request::builder().version(version);
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        b.body(()).unwrap()
    }

    #[test]
    fn only_an_http11_request_with_both_headers_asks_to_upgrade() {
        let ws = [
            ("upgrade", "websocket"),
            ("connection", "keep-alive, Upgrade"),
        ];
        assert_eq!(requested(&req(Version::HTTP_11, &ws)).unwrap(), "websocket");
        assert!(requested(&req(Version::HTTP_10, &ws)).is_none());
        assert!(requested(&req(Version::HTTP_11, &ws[..1])).is_none());
        assert!(requested(&req(Version::HTTP_11, &[("connection", "upgrade")])).is_none());
        let split = [
            ("upgrade", "websocket"),
            ("connection", "keep-alive"),
            ("connection", "upgrade"),
        ];
        assert!(requested(&req(Version::HTTP_11, &split)).is_some());
    }
}
