//! Who may use the admin port. The API can switch the routing policy, so:
//! - without a token it binds loopback only, and only answers requests whose Host is a
//!   loopback name (so a web page on another site cannot reach it by DNS rebinding);
//! - with a token, every request must carry it, as `Authorization: Bearer TOKEN` (curl,
//!   Prometheus) or `?token=TOKEN` (the browser: EventSource cannot set headers).
use std::net::{IpAddr, SocketAddr};

use http::{header, Request, Response, StatusCode};
use subtle::ConstantTimeEq;

use super::body::AdminBody;
use switchyard_input::UsageError;

/// The environment variable read when `--admin-token` is not given (clap reads it:
/// `crate::cli::ServeArgs::admin_token`).
pub const TOKEN_ENV: &str = "SWITCHYARD_ADMIN_TOKEN";

/// `--admin-token` (or the environment variable); an empty token is a mistake, not "none".
pub(super) fn check_token(token: Option<&str>) -> Result<Option<String>, UsageError> {
    match token {
        None => Ok(None),
        Some(t) if t.trim().is_empty() => Err(UsageError::new(format!(
            "the admin token is empty: pass --admin-token TOKEN (or set {TOKEN_ENV}) with a non-empty value"
        ))),
        Some(t) if t.chars().any(|c| c.is_control() || c == ' ') => Err(UsageError::new(
            "the admin token must not contain spaces or control characters",
        )),
        Some(t) => Ok(Some(t.to_string())),
    }
}

/// Refuses to expose the admin API beyond this machine without a token.
pub(super) fn check_bind(addr: SocketAddr, token: Option<&str>) -> Result<(), UsageError> {
    if token.is_none() && !addr.ip().is_loopback() {
        return Err(UsageError::new(format!(
            "--admin {addr} is reachable from other machines: set a token with --admin-token TOKEN \
             (or {TOKEN_ENV}), or listen on loopback, e.g. --admin 127.0.0.1:5002"
        )));
    }
    Ok(())
}

pub(super) struct Auth {
    token: Option<String>,
}

impl Auth {
    pub(super) fn new(token: Option<String>) -> Self {
        Auth { token }
    }

    /// The refusal to send back, if `req` may not use the admin port.
    pub(super) fn refusal<B>(&self, req: &Request<B>) -> Option<Response<AdminBody>> {
        match &self.token {
            Some(token) => {
                let bearer = req
                    .headers()
                    .get(header::AUTHORIZATION)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.strip_prefix("Bearer "))
                    .map(|v| v.trim().to_string());
                let query = req.uri().query().and_then(|q| query_param(q, "token"));
                let ok = [bearer, query]
                    .iter()
                    .flatten()
                    .any(|given| same(given.as_bytes(), token.as_bytes()));
                if ok {
                    None
                } else {
                    let resp = super::text(
                        StatusCode::UNAUTHORIZED,
                        "admin token required: send `Authorization: Bearer TOKEN`, or open the \
                         dashboard as /?token=TOKEN\n",
                    );
                    Some(super::with_headers(
                        resp,
                        &[(
                            header::WWW_AUTHENTICATE,
                            "Bearer realm=\"switchyard-admin\"",
                        )],
                    ))
                }
            }
            None => {
                let host = req
                    .headers()
                    .get(header::HOST)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("");
                if host.is_empty() || host_is_loopback(host) {
                    None
                } else {
                    Some(super::text(
                        StatusCode::FORBIDDEN,
                        "the admin port answers only requests for a loopback host \
                         (127.0.0.1, localhost) unless --admin-token is set\n",
                    ))
                }
            }
        }
    }
}

/// Compares without an early exit at the first differing byte (`subtle` keeps the
/// optimiser from adding one); only the length can show through the timing.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.ct_eq(b).into()
}

/// `localhost`, `127.x.y.z`, `[::1]`, with or without a port.
fn host_is_loopback(host: &str) -> bool {
    let name = if let Some(rest) = host.strip_prefix('[') {
        rest.split(']').next().unwrap_or("")
    } else {
        host.rsplit_once(':').map_or(host, |(h, _)| h)
    };
    name.eq_ignore_ascii_case("localhost")
        || name.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// The percent-decoded value of `name` in a query string (`+` is a space, as browsers
/// encode forms and `URLSearchParams`); the first one if it is given twice.
fn query_param(query: &str, name: &str) -> Option<String> {
    form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(uri: &str, auth: Option<&str>, host: &str) -> Request<()> {
        let mut b = Request::builder().uri(uri).header("host", host);
        if let Some(a) = auth {
            b = b.header("authorization", a);
        }
        b.body(()).unwrap()
    }

    #[test]
    fn token_by_header_or_query() {
        let auth = Auth::new(Some("s3cret/+x".into()));
        let h = "127.0.0.1:5002";
        assert!(auth.refusal(&req("/", None, h)).is_some());
        assert!(auth.refusal(&req("/", Some("Bearer nope"), h)).is_some());
        assert!(auth
            .refusal(&req("/", Some("Bearer s3cret/+x"), h))
            .is_none());
        assert!(auth
            .refusal(&req("/?token=s3cret%2F%2Bx", None, h))
            .is_none());
        assert!(auth.refusal(&req("/?a=1&token=s3cret", None, h)).is_some());
        // With a token, any Host is fine (it may be behind a name).
        assert!(auth
            .refusal(&req("/", Some("Bearer s3cret/+x"), "dash.example"))
            .is_none());
    }

    #[test]
    fn query_values_are_form_decoded() {
        let q = "a=1&token=x%2By+z&token=second";
        assert_eq!(query_param(q, "token").as_deref(), Some("x+y z"));
        assert_eq!(query_param("token", "token").as_deref(), Some(""));
        assert_eq!(query_param("a=1", "token"), None);
        assert!(same(b"abc", b"abc"));
        assert!(!same(b"abc", b"abd"));
        assert!(!same(b"abc", b"abcd"));
    }

    #[test]
    fn without_token_only_loopback_hosts() {
        let auth = Auth::new(None);
        for ok in [
            "127.0.0.1:5002",
            "localhost:5002",
            "[::1]:5002",
            "LOCALHOST",
        ] {
            assert!(auth.refusal(&req("/", None, ok)).is_none(), "{ok}");
        }
        for bad in ["evil.example:5002", "10.0.0.1:5002", "[fe80::1]:80"] {
            assert!(auth.refusal(&req("/", None, bad)).is_some(), "{bad}");
        }
    }

    #[test]
    fn bind_and_token_rules() {
        assert!(check_bind("127.0.0.1:5002".parse().unwrap(), None).is_ok());
        assert!(check_bind("[::1]:5002".parse().unwrap(), None).is_ok());
        assert!(check_bind("0.0.0.0:5002".parse().unwrap(), None).is_err());
        assert!(check_bind("0.0.0.0:5002".parse().unwrap(), Some("t")).is_ok());
        assert!(check_token(Some("")).is_err());
        assert!(check_token(Some("a b")).is_err());
        assert_eq!(check_token(None).unwrap(), None);
        assert_eq!(check_token(Some("f")).unwrap().as_deref(), Some("f"));
    }
}
