//! Header rewriting for a reverse proxy (RFC 9110 §7.6.1): hop-by-hop headers stop here,
//! the client's address is appended to `X-Forwarded-For`.
use std::net::SocketAddr;

use http::header::{self, HeaderMap, HeaderName, HeaderValue};

static HOP_BY_HOP: [HeaderName; 8] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];

/// Removes hop-by-hop headers, including any the `Connection` header names.
pub(super) fn strip_hop_by_hop(headers: &mut HeaderMap) {
    // Most messages carry none: one pass over the few names present is cheaper than ten
    // hashed removals, and this runs twice per request.
    let any = headers
        .keys()
        .any(|k| HOP_BY_HOP.contains(k) || k.as_str() == "proxy-connection");
    if !any {
        return;
    }
    // Every `Connection` line counts (RFC 9110 §5.3: a list may be split over several
    // lines); the names are collected first because removing them changes the map.
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|list| list.split(','))
        .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
        .collect();
    for name in named {
        headers.remove(name);
    }
    for h in &HOP_BY_HOP {
        headers.remove(h);
    }
    headers.remove("proxy-connection");
}

/// Prepares a backend response's headers for the client. A response framed by
/// `Transfer-Encoding` has any `Content-Length` removed before the hop-by-hop headers go
/// (RFC 9112 §6.3: Transfer-Encoding wins, and a proxy must drop Content-Length): the body
/// the client gets is re-framed, and a stale length would cut it short or make the client
/// wait for bytes that never come.
pub(super) fn to_client(headers: &mut HeaderMap) {
    if headers.contains_key(header::TRANSFER_ENCODING) {
        headers.remove(header::CONTENT_LENGTH);
    }
    strip_hop_by_hop(headers);
}

static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");

/// Prepares a client request's headers for the backend.
///
/// `Host` is kept as the client sent it (as HAProxy and Envoy do), so virtual hosts on
/// the backend keep working; a request without one (HTTP/1.0) gets the backend's.
/// `client_ip` is formatted once per client connection, not per request.
pub(super) fn to_upstream(
    headers: &mut HeaderMap,
    client_ip: &HeaderValue,
    backend_authority: &HeaderValue,
) {
    strip_hop_by_hop(headers);
    let forwarded = match headers.get(&X_FORWARDED_FOR).and_then(|v| v.to_str().ok()) {
        Some(prior) => {
            let ip = client_ip.to_str().unwrap_or_default();
            HeaderValue::from_str(&format!("{prior}, {ip}")).ok()
        }
        None => Some(client_ip.clone()),
    };
    if let Some(v) = forwarded {
        headers.insert(X_FORWARDED_FOR.clone(), v);
    }
    headers.insert(X_FORWARDED_PROTO.clone(), HeaderValue::from_static("http"));
    if !headers.contains_key(header::HOST) {
        headers.insert(header::HOST, backend_authority.clone());
    }
}

/// The client came over TLS: `X-Forwarded-Proto: https` (after [`to_upstream`]).
pub(super) fn forwarded_https(headers: &mut HeaderMap) {
    headers.insert(X_FORWARDED_PROTO.clone(), HeaderValue::from_static("https"));
}

/// The client's IP as a header value, for `X-Forwarded-For`.
pub(super) fn client_ip(client: SocketAddr) -> HeaderValue {
    // An IP address's text form is always a valid header value.
    HeaderValue::from_str(&client.ip().to_string())
        .unwrap_or_else(|_| HeaderValue::from_static("unknown"))
}

/// The headers named in `names` (lower-case) that `headers` has, as text, for a policy
/// that asked for them (`policy-info.response-headers`). Values that are not visible
/// ASCII are left out rather than mangled. Repeated headers give their first value.
pub(super) fn wanted(names: &[String], headers: &HeaderMap) -> Vec<(String, String)> {
    names
        .iter()
        .filter_map(|name| {
            let value = headers.get(name.as_str())?.to_str().ok()?;
            Some((name.clone(), value.to_string()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strips_hop_by_hop_and_connection_listed_headers() {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONNECTION,
            HeaderValue::from_static("keep-alive, x-secret"),
        );
        h.insert("x-secret", HeaderValue::from_static("1"));
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        h.insert(
            header::TRANSFER_ENCODING,
            HeaderValue::from_static("chunked"),
        );
        h.insert("x-kept", HeaderValue::from_static("1"));
        strip_hop_by_hop(&mut h);
        assert_eq!(h.len(), 1);
        assert!(h.contains_key("x-kept"));
    }

    #[test]
    fn appends_forwarded_for_and_keeps_host() {
        let mut h = HeaderMap::new();
        h.insert(header::HOST, HeaderValue::from_static("example.org"));
        h.insert("x-forwarded-for", HeaderValue::from_static("10.0.0.1"));
        let backend = HeaderValue::from_static("127.0.0.1:8081");
        to_upstream(
            &mut h,
            &client_ip("192.0.2.7:5555".parse().unwrap()),
            &backend,
        );
        assert_eq!(h["x-forwarded-for"], "10.0.0.1, 192.0.2.7");
        assert_eq!(h["x-forwarded-proto"], "http");
        assert_eq!(h[header::HOST], "example.org");
        let mut bare = HeaderMap::new();
        to_upstream(
            &mut bare,
            &client_ip("192.0.2.7:5555".parse().unwrap()),
            &backend,
        );
        assert_eq!(bare[header::HOST], "127.0.0.1:8081");
    }
}
