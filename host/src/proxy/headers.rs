//! Header rewriting for a reverse proxy (RFC 9110 §7.6.1): hop-by-hop headers stop here,
//! the client's address is appended to `X-Forwarded-For`.
//!
//! Trailers pass end to end: `Trailer` (which names the trailer fields) is not hop-by-hop
//! (RFC 9110 §6.6.2), and a client's `TE: trailers`, the one `TE` value that concerns the
//! backend too (it says the client will read trailers), is sent on as `TE: trailers`;
//! gRPC depends on both. hyper then writes a backend's trailers to a client that asked for
//! them, and drops them for one that did not, as RFC 9110 §6.5.1 allows.
use std::net::SocketAddr;

use http::header::{self, HeaderMap, HeaderName, HeaderValue};

static HOP_BY_HOP: [HeaderName; 7] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
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
    let trailers = wants_trailers(headers);
    strip_hop_by_hop(headers);
    if trailers {
        headers.insert(header::TE, HeaderValue::from_static("trailers"));
    }
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

/// Whether a `TE` line lists `trailers`.
fn wants_trailers(headers: &HeaderMap) -> bool {
    lists(headers, &header::TE, "trailers")
}

/// Whether any `name` line, a comma-separated list, holds `token` (case-insensitive).
pub(super) fn lists(headers: &HeaderMap, name: &HeaderName, token: &str) -> bool {
    headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|list| list.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case(token))
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
        h.insert(header::TRAILER, HeaderValue::from_static("x-sum"));
        strip_hop_by_hop(&mut h);
        assert_eq!(h.len(), 2);
        assert!(h.contains_key("x-kept"));
        assert!(h.contains_key(header::TRAILER), "Trailer is end-to-end");
    }

    #[test]
    fn te_is_reduced_to_trailers_when_the_client_reads_them() {
        let backend = HeaderValue::from_static("127.0.0.1:8081");
        let ip = client_ip("192.0.2.7:5555".parse().unwrap());
        let mut h = HeaderMap::new();
        h.append(header::TE, HeaderValue::from_static("gzip"));
        h.append(header::TE, HeaderValue::from_static("deflate, Trailers"));
        to_upstream(&mut h, &ip, &backend);
        assert_eq!(
            h.get_all(header::TE).iter().collect::<Vec<_>>(),
            ["trailers"]
        );
        let mut h = HeaderMap::new();
        h.insert(header::TE, HeaderValue::from_static("gzip"));
        to_upstream(&mut h, &ip, &backend);
        assert!(!h.contains_key(header::TE));
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
