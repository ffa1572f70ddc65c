//! The contract's rules for what a policy says about itself in `policy-info`, checked
//! once, at `configure`, so that nothing a policy names can grow without bound or carry
//! text the host would have to escape everywhere it shows it.
//!
//! A name is a short identifier (the CSV, `/metrics` labels, the dashboard, `analyze`'s
//! markdown and the justfile's awk all print it raw), and the host's own routing modes
//! are reserved, so that a policy cannot pass itself off as the host's fallback. Header
//! names are HTTP tokens; their number is capped because the host copies each one into
//! every call.
use crate::router::{BUILTIN_NAME, FALLBACK_NAME};

use super::PolicyInfo;

/// Longest policy name, in bytes.
pub const MAX_NAME: usize = 64;
/// Longest score label, in bytes.
pub const MAX_LABEL: usize = 32;
/// Most request headers (pseudo-headers included) a policy may read, and most response
/// headers it may ask for.
pub const MAX_HEADERS: usize = 32;
/// Longest header name, in bytes.
pub const MAX_HEADER_NAME: usize = 64;
/// Longest probe path, in bytes.
pub const MAX_PROBE_PATH: usize = 256;

/// The pseudo-headers a 0.2 policy may read.
const PSEUDO: [&str; 4] = [":method", ":path", ":authority", ":client"];

/// Checks `info` against the rules; the error names the field, the rule and the value
/// (escaped and cut short).
pub(super) fn check(info: &PolicyInfo) -> Result<(), String> {
    identifier("name", &info.name, MAX_NAME, false)?;
    if info.name.starts_with("host-") || info.name.starts_with("native-") {
        return Err(format!(
            "policy-info.name {:?} is reserved: names starting host- or native- are the host's own routing modes ({FALLBACK_NAME}, {BUILTIN_NAME})",
            &*info.name
        ));
    }
    identifier("score-label", &info.score_label, MAX_LABEL, true)?;
    header_names("headers", &info.headers, true)?;
    let response: &[String] = info.response_headers.as_deref().unwrap_or(&[]);
    header_names("response-headers", response, false)?;
    if let Some(path) = &info.probe_path {
        let visible = path.bytes().all(|b| (0x21..=0x7e).contains(&b));
        if !path.starts_with('/') || !visible || path.len() > MAX_PROBE_PATH {
            return Err(format!(
                "policy-info.probe-path {} must start with / and be at most {MAX_PROBE_PATH} bytes of visible ASCII (no spaces or control characters)",
                shown(path)
            ));
        }
    }
    Ok(())
}

/// A letter, then letters, digits, `.`, `_` or `-`; at most `max` bytes (empty only where
/// allowed).
fn identifier(field: &str, value: &str, max: usize, may_be_empty: bool) -> Result<(), String> {
    if value.is_empty() && may_be_empty {
        return Ok(());
    }
    let mut chars = value.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_alphabetic());
    let rest_ok = chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if first_ok && rest_ok && value.len() <= max {
        return Ok(());
    }
    Err(format!(
        "policy-info.{field} {} is not a short identifier: it must be 1 to {max} bytes, a letter and then letters, digits, '.', '_' or '-'",
        shown(value)
    ))
}

/// At most `MAX_HEADERS` distinct names, each an HTTP token of at most `MAX_HEADER_NAME`
/// bytes (names arrive lower-cased), or one of `PSEUDO` where allowed.
fn header_names(field: &str, names: &[String], pseudo: bool) -> Result<(), String> {
    if names.len() > MAX_HEADERS {
        return Err(format!(
            "policy-info.{field} names {} headers; the contract allows at most {MAX_HEADERS}",
            names.len()
        ));
    }
    for (i, name) in names.iter().enumerate() {
        let token = !name.is_empty()
            && name.len() <= MAX_HEADER_NAME
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
        let known_pseudo = pseudo && PSEUDO.contains(&name.as_str());
        if !token && !known_pseudo {
            let allowed = if pseudo {
                format!(" or one of {}", PSEUDO.join(" "))
            } else {
                String::new()
            };
            return Err(format!(
                "policy-info.{field} has {}: a header name must be an HTTP token of at most {MAX_HEADER_NAME} bytes{allowed}",
                shown(name)
            ));
        }
        if names[..i].contains(name) {
            return Err(format!("policy-info.{field} names {} twice", shown(name)));
        }
    }
    Ok(())
}

/// `value` quoted and escaped, at most 40 characters of it.
fn shown(value: &str) -> String {
    let cut: String = value.chars().take(40).collect();
    let more = if cut.len() < value.len() {
        format!("... ({} bytes)", value.len())
    } else {
        String::new()
    };
    format!("{cut:?}{more}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(v: &str) -> Result<(), String> {
        identifier("name", v, MAX_NAME, false)
    }

    #[test]
    fn names_are_short_identifiers() {
        for ok in [
            "rr",
            "peak-ewma",
            "adaptive_ewma",
            "v1.2",
            &"x".repeat(MAX_NAME),
        ] {
            assert!(id(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "1st",
            "-x",
            "=HYPERLINK(\"http://a\")",
            "a b",
            "a|b",
            "line\nforged",
            "caf\u{e9}",
            &"x".repeat(MAX_NAME + 1),
        ] {
            let e = id(bad).unwrap_err();
            assert!(
                e.contains("policy-info.name") && e.contains("short identifier"),
                "{e}"
            );
        }
        assert!(identifier("score-label", "", MAX_LABEL, true).is_ok());
    }

    #[test]
    fn shown_values_are_escaped_and_cut() {
        let e = id(&format!("a\n{}", "y".repeat(5000))).unwrap_err();
        assert!(
            e.contains("\\n") && e.contains("(5002 bytes)") && e.len() < 300,
            "{e}"
        );
    }

    #[test]
    fn header_names_are_tokens_within_the_count() {
        let names = |n: usize| (0..n).map(|i| format!("x-h{i}")).collect::<Vec<_>>();
        assert!(header_names("headers", &names(MAX_HEADERS), true).is_ok());
        let e = header_names("headers", &names(MAX_HEADERS + 1), true).unwrap_err();
        assert!(e.contains("33 headers") && e.contains("at most 32"), "{e}");
        assert!(header_names("headers", &[":client".into(), "x-user".into()], true).is_ok());
        assert!(header_names("response-headers", &[":client".into()], false).is_err());
        assert!(header_names("headers", &[":bogus".into()], true).is_err());
        assert!(header_names("headers", &["a b".into()], true).is_err());
        assert!(header_names("headers", &["x".repeat(MAX_HEADER_NAME + 1)], true).is_err());
        assert!(header_names("headers", &["a".into(), "a".into()], true).is_err());
    }
}
