//! What an operator types, parsed one way everywhere: the proxy's flags, `simulate`,
//! `analyze`, scenario files and the admin API all share these, so a spelling accepted in
//! one place is accepted in every other, and a mistake exits with the same code.
//!
//! - [`UsageError`]: the operator's mistake, shown in one line with the fix; `main` exits 2.
//! - [`duration`]: one duration grammar (humantime's, with a unit always required).
//! - [`key_value`]: `KEY=VALUE` settings such as `--policy-arg alpha=0.3`.
pub mod duration;

use std::error::Error as StdError;

/// Bad input: a flag, a file or a value the operator must fix. The message names the thing
/// and the fix; the binary prints it on one line and exits with code 2.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct UsageError {
    message: String,
    #[source]
    source: Option<Box<dyn StdError + Send + Sync>>,
}

impl UsageError {
    /// A usage error with its message (which must already name the thing and the fix).
    pub fn new(message: impl Into<String>) -> UsageError {
        UsageError {
            message: message.into(),
            source: None,
        }
    }

    /// A usage error caused by `source`: the message is shown, the source is kept for
    /// callers that branch on it.
    pub fn with_source(
        message: impl Into<String>,
        source: impl StdError + Send + Sync + 'static,
    ) -> UsageError {
        UsageError {
            message: message.into(),
            source: Some(Box::new(source)),
        }
    }

    /// Whether `error` or anything in its chain of sources is a usage error.
    pub fn is_in(error: &(dyn StdError + 'static)) -> bool {
        let mut cur = Some(error);
        while let Some(e) = cur {
            if e.is::<UsageError>() {
                return true;
            }
            cur = e.source();
        }
        false
    }
}

/// Parses `KEY=VALUE` (e.g. `alpha=0.3`). The key is trimmed and must not be empty; the
/// value is trimmed too (a setting's value never starts or ends with a space on purpose,
/// and `--policy-arg "alpha = 0.3"` means what it looks like).
pub fn key_value(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_string(), v.trim().to_string())),
        _ => Err(format!("`{text}` is not KEY=VALUE: write e.g. alpha=0.3")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn key_values_parse_and_trim() {
        assert_eq!(key_value("alpha=0.3"), Ok(("alpha".into(), "0.3".into())));
        assert_eq!(key_value(" a = b=c "), Ok(("a".into(), "b=c".into())));
        assert_eq!(key_value("empty="), Ok(("empty".into(), String::new())));
        for bad in ["", "x", "=1", " =1"] {
            assert!(key_value(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn usage_errors_are_found_in_a_chain() {
        #[derive(Debug, thiserror::Error)]
        #[error("outer")]
        struct Outer(#[source] UsageError);
        let e = Outer(UsageError::new("pass --x"));
        assert!(UsageError::is_in(&e));
        let io = std::io::Error::other("disk");
        assert!(!UsageError::is_in(&io));
        let wrapped = UsageError::with_source("cannot read f: pass another --log", io);
        assert_eq!(wrapped.to_string(), "cannot read f: pass another --log");
        assert!(wrapped.source().is_some());
    }

    proptest! {
        #[test]
        fn any_key_without_equals_round_trips(k in "[a-z][a-z0-9-]{0,12}", v in "[ -~]{0,20}") {
            let (key, value) = key_value(&format!("{k}={v}")).unwrap();
            prop_assert_eq!(key, k);
            prop_assert_eq!(value, v.trim());
        }
    }
}
