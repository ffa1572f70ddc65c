//! Durations as people type them ("120s", "2m", "500ms", "0.1ms"), for the command line
//! and scenario files alike, so both accept exactly the same spellings.
use std::time::Duration;

/// Longest accepted duration: a day of virtual time is already far past any useful run,
/// and the bound keeps nanosecond arithmetic far from `u64` overflow.
pub const MAX: Duration = Duration::from_secs(86_400);

/// Parses a number followed by a unit: `ns`, `us`, `ms`, `s`, `m` or `h` (e.g. `1.5s`).
/// A bare number is rejected rather than guessed: "100" could mean ms or s.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let split = t.find(|c: char| c.is_ascii_alphabetic()).unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let hint = || {
        format!("invalid duration {text:?}: expected a number and a unit (ns, us, ms, s, m, h), e.g. 120s, 2m, 500ms, 0.1ms")
    };
    let scale_ns = match unit.trim() {
        "ns" => 1.0,
        "us" | "µs" => 1e3,
        "ms" => 1e6,
        "s" => 1e9,
        "m" | "min" => 60e9,
        "h" => 3600e9,
        _ => return Err(hint()),
    };
    let value: f64 = number.trim().parse().map_err(|_| hint())?;
    if !value.is_finite() || value < 0.0 {
        return Err(hint());
    }
    let ns = (value * scale_ns).round();
    if ns > MAX.as_nanos() as f64 {
        return Err(format!(
            "duration {text:?} is too long: at most {} s",
            MAX.as_secs()
        ));
    }
    Ok(Duration::from_nanos(ns as u64))
}

/// An exact spelling of `d` that [`parse_duration`] reads back, in the largest of s, ms, us
/// and ns that keeps it whole (e.g. "120s", "100us", "0s"); used to echo the run's settings.
/// Seconds are the largest unit because that is how run lengths are usually given.
pub fn format_duration(d: Duration) -> String {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_common_spellings() {
        let ms = Duration::from_millis;
        assert_eq!(parse_duration("120s"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("500ms"), Ok(ms(500)));
        assert_eq!(parse_duration("0.1ms"), Ok(Duration::from_micros(100)));
        assert_eq!(parse_duration(" 1.5 s "), Ok(ms(1500)));
        assert_eq!(parse_duration("0s"), Ok(Duration::ZERO));
        for bad in [
            "", "10", "0", "s", "-1s", "1x", "nans", "infs", "2d", "100000h",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn formats_round_trip() {
        for text in ["120s", "2m", "500ms", "100us", "1h", "7ns", "1.5ms", "0ns"] {
            let d = parse_duration(text).unwrap();
            assert_eq!(parse_duration(&format_duration(d)), Ok(d), "{text}");
        }
        assert_eq!(format_duration(Duration::from_secs(120)), "120s");
        assert_eq!(format_duration(Duration::ZERO), "0s");
        assert_eq!(format_duration(Duration::from_micros(100)), "100us");
        assert_eq!(format_duration(Duration::from_micros(1500)), "1500us");
    }
}
