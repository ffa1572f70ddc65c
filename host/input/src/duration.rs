//! Durations as people type them (`10s`, `500ms`, `1.5s`, `2m`, `1h30m`, `250us`), one
//! grammar for every flag, scenario field and API value.
//!
//! Parsing is humantime's (exact decimal arithmetic, compound spellings), with one rule on
//! top: a unit is always required. A bare number is refused rather than guessed, since
//! `100` could mean milliseconds or seconds; `0` is no exception (write `0s`). Callers bound
//! the result with [`parse_at_most`] where a long duration would make no sense.
use std::time::Duration;

/// The units a duration may carry, for error messages.
pub const UNITS: &str = "ns, us, ms, s, m, h";

/// Parses a duration with a unit, e.g. `10s`, `500ms`, `1.5s`, `2m`, `1h30m`.
pub fn parse(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let hint = || {
        format!("invalid duration `{text}`: write a number and a unit ({UNITS}), e.g. 10s, 500ms, 1.5s or 2m")
    };
    if !t.chars().any(|c| c.is_alphabetic()) {
        return Err(
            if !t.is_empty() && t.chars().all(|c| c.is_ascii_digit() || c == '.') {
                format!("invalid duration `{text}`: a unit is required, write e.g. {t}s or {t}ms ({UNITS})")
            } else {
                hint()
            },
        );
    }
    // humantime wants the number and its unit together ("1.5s"); people also write "1.5 s".
    let joined = join_units(t);
    humantime::parse_duration(&joined).map_err(|_| hint())
}

/// [`parse`], refusing anything longer than `max`.
pub fn parse_at_most(text: &str, max: Duration) -> Result<Duration, String> {
    let d = parse(text)?;
    if d > max {
        return Err(format!("`{text}` is too long: at most {}", format(max)));
    }
    Ok(d)
}

/// An exact spelling of `d` that [`parse`] reads back, in the largest of s, ms, us and ns
/// that keeps it whole (e.g. "120s", "100us", "0s"); used to echo settings back.
/// Seconds are the largest unit because that is how run lengths are usually given.
pub fn format(d: Duration) -> String {
    let ns = d.as_nanos();
    if ns == 0 {
        return "0s".into();
    }
    for (unit, scale) in [("s", 1_000_000_000u128), ("ms", 1_000_000), ("us", 1_000)] {
        if ns >= scale && ns.is_multiple_of(scale) {
            return format!("{}{unit}", ns / scale);
        }
    }
    format!("{ns}ns")
}

/// Drops spaces between a number and the unit that follows it ("1.5 s" -> "1.5s"), keeping
/// the spaces that separate components ("1h 30m").
fn join_units(t: &str) -> String {
    let mut out = String::with_capacity(t.len());
    let mut chars = t.chars().peekable();
    while let Some(c) = chars.next() {
        if c == ' ' && out.ends_with(|p: char| p.is_ascii_digit() || p == '.') {
            while chars.peek() == Some(&' ') {
                chars.next();
            }
            if chars.peek().is_some_and(|n| n.is_alphabetic()) {
                continue;
            }
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_common_spellings() {
        let ms = Duration::from_millis;
        assert_eq!(parse("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse("120s"), Ok(Duration::from_secs(120)));
        assert_eq!(parse("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse("500ms"), Ok(ms(500)));
        assert_eq!(parse("0.1ms"), Ok(Duration::from_micros(100)));
        assert_eq!(parse("1.5s"), Ok(ms(1500)));
        assert_eq!(parse(" 1.5 s "), Ok(ms(1500)));
        assert_eq!(parse("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse("250us"), Ok(Duration::from_micros(250)));
        assert_eq!(parse("0s"), Ok(Duration::ZERO));
        for bad in [
            "",
            "10",
            "0",
            "s",
            "-1s",
            "1x",
            "nans",
            "infs",
            "ten",
            "5 parsecs",
        ] {
            assert!(parse(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn errors_name_the_fix() {
        assert_eq!(
            parse("10").unwrap_err(),
            "invalid duration `10`: a unit is required, write e.g. 10s or 10ms (ns, us, ms, s, m, h)"
        );
        assert!(parse("ten").unwrap_err().contains("e.g. 10s"));
        let day = Duration::from_secs(86_400);
        assert!(parse_at_most("2d", day).is_err());
        assert!(parse_at_most("100000h", day)
            .unwrap_err()
            .contains("at most 86400s"));
        assert_eq!(parse_at_most("24h", day), Ok(day));
    }

    #[test]
    fn formats_round_trip() {
        for text in ["120s", "2m", "500ms", "100us", "1h", "7ns", "1.5ms", "0ns"] {
            let d = parse(text).unwrap();
            assert_eq!(parse(&format(d)), Ok(d), "{text}");
        }
        assert_eq!(format(Duration::from_secs(120)), "120s");
        assert_eq!(format(Duration::ZERO), "0s");
        assert_eq!(format(Duration::from_micros(100)), "100us");
        assert_eq!(format(Duration::from_micros(1500)), "1500us");
    }

    proptest! {
        #[test]
        fn format_then_parse_is_identity(ns in 0u64..=86_400_000_000_000) {
            let d = Duration::from_nanos(ns);
            prop_assert_eq!(parse(&format(d)), Ok(d));
        }

        #[test]
        fn parse_never_panics(text in "\\PC{0,16}") {
            let _ = parse(&text);
        }
    }
}
