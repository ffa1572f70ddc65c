//! Reading a policy's `key=value` settings, with messages fit to show an operator.

/// Reads an `f64` config value, or `default` when the key is absent.
///
/// Errors name the key, the bad value and the accepted range, because the message is
/// shown to the operator as is.
pub fn config_f64(
    config: &[(String, String)],
    key: &str,
    default: f64,
    range: std::ops::RangeInclusive<f64>,
) -> Result<f64, String> {
    match lookup(config, key) {
        None => Ok(default),
        Some(raw) => match raw.trim().parse::<f64>() {
            Ok(v) if range.contains(&v) => Ok(v),
            _ => Err(format!(
                "{key}={raw} is invalid: expected a number from {} to {}",
                range.start(),
                range.end()
            )),
        },
    }
}

/// Reads a `usize` config value, or `default` when the key is absent.
pub fn config_usize(
    config: &[(String, String)],
    key: &str,
    default: usize,
    range: std::ops::RangeInclusive<usize>,
) -> Result<usize, String> {
    match lookup(config, key) {
        None => Ok(default),
        Some(raw) => match raw.trim().parse::<usize>() {
            Ok(v) if range.contains(&v) => Ok(v),
            _ => Err(format!(
                "{key}={raw} is invalid: expected a whole number from {} to {}",
                range.start(),
                range.end()
            )),
        },
    }
}

/// Rejects keys the policy does not know, so a typo (`aplha=0.3`) is not silently ignored.
pub fn reject_unknown(config: &[(String, String)], known: &[&str]) -> Result<(), String> {
    for (k, _) in config {
        if !known.contains(&k.as_str()) {
            return Err(format!(
                "unknown setting `{k}`: this policy accepts {}",
                if known.is_empty() {
                    "no settings".to_string()
                } else {
                    known.join(", ")
                }
            ));
        }
    }
    Ok(())
}

/// `(key, value)` pairs as `setup.config` and response headers carry them, from string
/// literals: for tests of settings and headers.
pub fn pairs(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn lookup<'a>(config: &'a [(String, String)], key: &str) -> Option<&'a str> {
    // Last one wins, like repeated command-line flags.
    config
        .iter()
        .rev()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(p: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs(p)
    }

    #[test]
    fn config_values_parse_and_validate() {
        let c = cfg(&[("alpha", "0.3"), ("window", "x")]);
        assert_eq!(config_f64(&c, "alpha", 0.2, 0.0..=1.0), Ok(0.3));
        assert_eq!(config_f64(&c, "beta", 0.2, 0.0..=1.0), Ok(0.2));
        assert!(config_usize(&c, "window", 3, 1..=1000)
            .unwrap_err()
            .contains("window=x"));
        assert!(reject_unknown(&c, &["alpha"])
            .unwrap_err()
            .contains("window"));
    }
}
