//! Which part of the request is the hashing key (setting `key`), and reading it from the
//! headers the host passes.
//!
//! - `header:<name>` (default `header:x-user-id`): that request header's value;
//! - `cookie:<name>`: that cookie, parsed from the `cookie` header(s);
//! - `client-ip`: the client's address without its port (`:client`);
//! - `path`: the path and query (`:path`).
//!
//! A request without its header or cookie (or with an empty one) falls back to the client
//! IP, so anonymous clients still stick to a backend; for that the policy asks for
//! `:client` as well. A request with neither hashes the empty string (one fixed slot).
//! `path` asks for `:path` alone: every request has one.

/// Where the key comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    Header(String),
    Cookie(String),
    ClientIp,
    Path,
}

pub const DEFAULT: &str = "header:x-user-id";

impl Source {
    /// Parses the `key` setting; the message names the setting and what is accepted.
    pub fn parse(spec: &str) -> Result<Source, String> {
        let bad = |why: &str| {
            format!(
                "key={spec} is invalid: {why}; use header:<name>, cookie:<name>, client-ip or path"
            )
        };
        let spec_t = spec.trim();
        if spec_t == "client-ip" {
            return Ok(Source::ClientIp);
        }
        if spec_t == "path" {
            return Ok(Source::Path);
        }
        let Some((kind, name)) = spec_t.split_once(':') else {
            return Err(bad("unknown key"));
        };
        let name = name.trim();
        match kind.trim() {
            "header" => {
                let name = name.to_ascii_lowercase();
                if !is_token(&name) || name.len() > 64 {
                    return Err(bad("a header name is an HTTP token of 1 to 64 bytes"));
                }
                Ok(Source::Header(name))
            }
            "cookie" => {
                if !is_token(name) || name.len() > 256 {
                    return Err(bad("a cookie name is a token of 1 to 256 bytes"));
                }
                Ok(Source::Cookie(name.to_string()))
            }
            _ => Err(bad("unknown key")),
        }
    }

    /// The names for `policy-info.headers`: exactly what `extract` reads.
    pub fn headers(&self) -> Vec<String> {
        match self {
            Source::Header(name) => vec![name.clone(), ":client".into()],
            Source::Cookie(_) => vec!["cookie".into(), ":client".into()],
            Source::ClientIp => vec![":client".into()],
            Source::Path => vec![":path".into()],
        }
    }

    /// The key of a request with these headers (as the host passes them); `""` when the
    /// request has neither the key nor a client address.
    pub fn extract<'a>(&self, headers: &'a [(String, String)]) -> &'a str {
        let value = |name: &str| {
            headers
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.as_str())
        };
        let own = match self {
            Source::Header(name) => value(name).map(str::trim),
            Source::Cookie(name) => headers
                .iter()
                .filter(|(k, _)| k == "cookie")
                .find_map(|(_, v)| cookie(v, name)),
            Source::ClientIp => None,
            Source::Path => return value(":path").unwrap_or(""),
        };
        match own.filter(|v| !v.is_empty()) {
            Some(v) => v,
            None => value(":client").map_or("", client_ip),
        }
    }
}

/// The value of cookie `name` in a `cookie` header (`a=1; b="2"`), quotes removed.
pub fn cookie<'a>(header: &'a str, name: &str) -> Option<&'a str> {
    header.split(';').find_map(|pair| {
        let (k, v) = pair.split_once('=')?;
        if k.trim() != name {
            return None;
        }
        let v = v.trim();
        Some(
            v.strip_prefix('"')
                .and_then(|v| v.strip_suffix('"'))
                .unwrap_or(v),
        )
    })
}

/// The IP of an `ip:port` client address: `10.0.0.7:5123` -> `10.0.0.7`,
/// `[2001:db8::1]:443` -> `2001:db8::1`; an address without a port is returned whole.
pub fn client_ip(addr: &str) -> &str {
    if let Some(rest) = addr.strip_prefix('[') {
        return rest.split_once(']').map_or(rest, |(ip, _)| ip);
    }
    match addr.split_once(':') {
        // Exactly one colon: IPv4 (or a name) with a port.
        Some((ip, port)) if !port.contains(':') => ip,
        // No colon, or a bare IPv6 address.
        _ => addr,
    }
}

fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(p: &[(&str, &str)]) -> Vec<(String, String)> {
        common::pairs(p)
    }

    #[test]
    fn settings_parse() {
        assert_eq!(
            Source::parse(DEFAULT),
            Ok(Source::Header("x-user-id".into()))
        );
        assert_eq!(
            Source::parse("header:X-Tenant"),
            Ok(Source::Header("x-tenant".into()))
        );
        assert_eq!(
            Source::parse("cookie:session"),
            Ok(Source::Cookie("session".into()))
        );
        assert_eq!(Source::parse("client-ip"), Ok(Source::ClientIp));
        assert_eq!(Source::parse("path"), Ok(Source::Path));
        for bad in [
            "",
            "header:",
            "header:a b",
            "header::path",
            "ip",
            "cookie:a;b",
            "query:x",
        ] {
            let e = Source::parse(bad).unwrap_err();
            assert!(e.starts_with(&format!("key={bad} is invalid")), "{e}");
        }
    }

    #[test]
    fn headers_asked_for_are_exactly_those_read() {
        assert_eq!(
            Source::parse(DEFAULT).unwrap().headers(),
            ["x-user-id", ":client"]
        );
        assert_eq!(
            Source::parse("cookie:sid").unwrap().headers(),
            ["cookie", ":client"]
        );
        assert_eq!(Source::ClientIp.headers(), [":client"]);
        assert_eq!(Source::Path.headers(), [":path"]);
    }

    #[test]
    fn header_key_with_client_ip_fallback() {
        let s = Source::parse(DEFAULT).unwrap();
        let req = h(&[("x-user-id", "u42"), (":client", "10.0.0.7:5123")]);
        assert_eq!(s.extract(&req), "u42");
        assert_eq!(s.extract(&h(&[(":client", "10.0.0.7:5123")])), "10.0.0.7");
        assert_eq!(
            s.extract(&h(&[("x-user-id", " "), (":client", "10.0.0.7:1")])),
            "10.0.0.7"
        );
        assert_eq!(s.extract(&[]), "");
    }

    #[test]
    fn cookie_key() {
        let s = Source::parse("cookie:sid").unwrap();
        let req = h(&[
            ("cookie", "a=1; sid=\"abc\"; b=2"),
            (":client", "1.2.3.4:5"),
        ]);
        assert_eq!(s.extract(&req), "abc");
        let split = h(&[
            ("cookie", "a=1"),
            ("cookie", "sid=xyz"),
            (":client", "1.2.3.4:5"),
        ]);
        assert_eq!(s.extract(&split), "xyz");
        assert_eq!(
            s.extract(&h(&[("cookie", "sidx=1"), (":client", "1.2.3.4:5")])),
            "1.2.3.4"
        );
        assert_eq!(cookie("sid=; x=1", "sid"), Some(""));
        assert_eq!(cookie("garbage", "sid"), None);
    }

    #[test]
    fn client_ip_and_path_keys() {
        let req = h(&[(":path", "/users/7?x=1"), (":client", "[2001:db8::1]:443")]);
        assert_eq!(Source::ClientIp.extract(&req), "2001:db8::1");
        assert_eq!(Source::Path.extract(&req), "/users/7?x=1");
        assert_eq!(client_ip("10.1.2.3:80"), "10.1.2.3");
        assert_eq!(client_ip("10.1.2.3"), "10.1.2.3");
        assert_eq!(client_ip("::1"), "::1");
        assert_eq!(client_ip("[::1"), "::1");
        assert_eq!(Source::Path.extract(&[]), "");
    }
}
