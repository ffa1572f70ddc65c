//! Durations in `simulate`'s flags and scenario files: the project's one grammar
//! ([`switchyard_input::duration`]), bounded to a day of virtual time.
use std::time::Duration;

/// Longest accepted duration: a day of virtual time is already far past any useful run,
/// and the bound keeps nanosecond arithmetic far from `u64` overflow.
pub const MAX: Duration = Duration::from_secs(86_400);

/// A duration with a unit (`120s`, `2m`, `500ms`, `0.1ms`), at most [`MAX`].
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    switchyard_input::duration::parse_at_most(text, MAX)
}

pub use switchyard_input::duration::format as format_duration;

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
