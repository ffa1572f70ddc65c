//! Timestamps of request logs. The proxy writes `2026-11-26T18:05:22.059Z`; the study's
//! logs came from a script whose format we never saw, so everything a Python logger or
//! pandas plausibly wrote is accepted.
use chrono::{DateTime, NaiveDateTime};

/// Milliseconds since the Unix epoch (UTC) of `text`, or `None` when it is not one of:
/// - ISO 8601 / RFC 3339: `2026-11-26T18:05:22.059Z`, `2026-11-26T18:05:22+01:00`,
///   `2026-11-26T18:05:22` (no zone: taken as UTC), any number of fraction digits;
/// - the same with a space instead of `T` (`str(datetime)`: `2026-11-26 18:05:22.123456`);
/// - Unix time in seconds, e.g. `1795716322.059` (`time.time()`).
///
/// Only differences between timestamps of one log matter (the run's span), so a log
/// written in local time without a zone still gives the right durations.
pub fn parse_ms(text: &str) -> Option<f64> {
    let t = text.trim();
    if t.len() < 10 {
        return parse_unix(t);
    }
    // One layout for both separators: `T` and space are the only ones seen in the wild.
    // Byte 10 is then ASCII, so 10 and 11 are char boundaries and the slices cannot panic.
    let normal = match t.as_bytes().get(10) {
        Some(b'T' | b't' | b' ') => format!("{} {}", &t[..10], &t[11..]),
        _ => return parse_unix(t),
    };
    if let Some(naive) = normal
        .strip_suffix(['Z', 'z'])
        .or(Some(normal.as_str()))
        .and_then(|s| NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S%.f").ok())
    {
        return Some(naive.and_utc().timestamp_micros() as f64 / 1000.0);
    }
    ["%Y-%m-%d %H:%M:%S%.f%:z", "%Y-%m-%d %H:%M:%S%.f%z"]
        .iter()
        .find_map(|f| DateTime::parse_from_str(&normal, f).ok())
        .map(|dt| dt.timestamp_micros() as f64 / 1000.0)
}

/// Seconds since the epoch; a bare number below 1e8 (1973) is more likely a mistake (a
/// latency in the wrong column) than a timestamp.
fn parse_unix(t: &str) -> Option<f64> {
    t.parse::<f64>()
        .ok()
        .filter(|s| s.is_finite() && *s >= 1e8)
        .map(|s| s * 1000.0)
}

#[cfg(test)]
mod tests {
    use super::parse_ms;

    #[test]
    fn accepts_the_usual_layouts() {
        let base = parse_ms("2026-11-26T18:05:22.059Z").unwrap();
        assert_eq!(parse_ms("2026-11-26 18:05:22.059"), Some(base));
        assert_eq!(parse_ms("2026-11-26T18:05:22.059000"), Some(base));
        assert_eq!(parse_ms("2026-11-26T19:05:22.059+01:00"), Some(base));
        assert_eq!(parse_ms("2026-11-26T19:05:22.059+0100"), Some(base));
        assert_eq!(parse_ms("2026-11-26 18:05:22"), Some(base - 59.0));
        assert_eq!(parse_ms("2026-11-26T18:05:22Z"), Some(base - 59.0));
        assert_eq!(parse_ms(&format!("{:.3}", base / 1000.0)), Some(base));
        for bad in ["", "yesterday", "2026-11-26", "2026-13-01 00:00:00", "12.5"] {
            assert_eq!(parse_ms(bad), None, "{bad}");
        }
    }
}
