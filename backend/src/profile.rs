//! Backend configuration and its compiled, request-path form.
//!
//! Everything a profile response needs (bodies, header values, sleep
//! durations) is formatted once here, so the hot path only clones
//! reference-counted buffers and bumps an atomic counter.

use std::fmt;
use std::time::Duration;

use hyper::body::Bytes;
use hyper::header::{HeaderName, HeaderValue};
use switchyard_rng::FailureRate;

/// Ids that select the study's profiles.
pub const STUDY_IDS: [&str; 3] = ["A", "B", "C"];

/// Longest accepted step. Bounds `Duration::from_secs_f64`, which panics on
/// overflow, and catches seconds typed where milliseconds were meant.
pub const MAX_LATENCY_MS: f64 = 3_600_000.0;

/// How one simulated backend behaves.
#[derive(Debug, Clone, PartialEq)]
pub struct BackendConfig {
    /// Sent back in `x-backend-id` and in the body, so clients can tell
    /// which upstream answered.
    pub id: String,
    /// The latency cycle; the i-th profile request received gets
    /// `latencies_ms[i % len]`, regardless of arrival concurrency.
    pub latencies_ms: Vec<f64>,
    /// Fraction of profile requests answered with HTTP 500 (after their latency).
    pub error_rate: f64,
    /// Maximum profile requests in service at once; `None` is unlimited.
    pub capacity: Option<usize>,
    /// Seeds the failure decisions, so a run can be reproduced exactly.
    pub seed: u64,
    /// HTTP/2 streams one connection may carry at once (SETTINGS_MAX_CONCURRENT_STREAMS);
    /// `None` keeps hyper's default (200).
    pub h2_max_streams: Option<u32>,
    /// Whether profile responses carry the load headers (`endpoint-load-metrics`,
    /// `x-prequal-rif`, `x-prequal-latency-us`); `GET /probe` answers with them
    /// either way. Off by default, so study runs see the study's responses.
    pub report_load: bool,
}

impl BackendConfig {
    /// The study's profile for `id` (A, B or C, case-insensitive).
    pub fn study(id: &str) -> Option<Self> {
        let id = id.to_ascii_uppercase();
        let cycle: &[f64] = match id.as_str() {
            "A" => &[10.0, 15.0, 20.0, 400.0, 400.0, 400.0, 10.0, 15.0, 20.0],
            "B" => &[200.0; 9],
            "C" => &[250.0; 9],
            _ => return None,
        };
        Some(Self::with_latencies(&id, cycle))
    }

    /// A custom cycle under any id; no errors, no capacity limit, seed 1, no load headers.
    pub fn with_latencies(id: &str, ms: &[f64]) -> Self {
        Self {
            id: id.to_string(),
            latencies_ms: ms.to_vec(),
            error_rate: 0.0,
            capacity: None,
            seed: 1,
            h2_max_streams: None,
            report_load: false,
        }
    }

    pub fn report_load(mut self, on: bool) -> Self {
        self.report_load = on;
        self
    }

    pub fn h2_max_streams(mut self, max: u32) -> Self {
        self.h2_max_streams = Some(max);
        self
    }

    pub fn error_rate(mut self, rate: f64) -> Self {
        self.error_rate = rate;
        self
    }

    pub fn capacity(mut self, limit: usize) -> Self {
        self.capacity = Some(limit);
        self
    }

    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// Checked before binding so a bad setting never leaves a half-started server.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.id.is_empty() || HeaderValue::from_str(&self.id).is_err() {
            return Err(ConfigError(format!(
                "backend id {:?} cannot be sent in the x-backend-id header; use a non-empty printable ASCII name",
                self.id
            )));
        }
        if self.latencies_ms.is_empty() {
            return Err(ConfigError(
                "the latency cycle is empty; give at least one step, e.g. --latencies 10".into(),
            ));
        }
        if let Some(bad) = self.latencies_ms.iter().find(|ms| !valid_ms(**ms)) {
            return Err(ConfigError(format!(
                "latency {bad} ms is out of range; each step must be between 0 and {MAX_LATENCY_MS} ms"
            )));
        }
        if !(0.0..=1.0).contains(&self.error_rate) {
            return Err(ConfigError(format!(
                "error rate {} is outside 0..1; pass a fraction such as --error-rate 0.1",
                self.error_rate
            )));
        }
        if self.capacity == Some(0) {
            return Err(ConfigError(
                "capacity 0 would never serve a request; pass --capacity 1 or more, or omit it for unlimited".into(),
            ));
        }
        Ok(())
    }
}

/// A setting that cannot be served; the message names the fix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError(pub String);

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ConfigError {}

impl From<ConfigError> for std::io::Error {
    fn from(e: ConfigError) -> Self {
        std::io::Error::new(std::io::ErrorKind::InvalidInput, e)
    }
}

fn valid_ms(ms: f64) -> bool {
    (0.0..=MAX_LATENCY_MS).contains(&ms)
}

/// Parses `10,15,0.5` (spaces allowed) as a latency cycle in milliseconds.
pub fn parse_latencies(list: &str) -> Result<Vec<f64>, ConfigError> {
    let steps = list
        .split(',')
        .map(|raw| {
            let item = raw.trim();
            match item.parse::<f64>() {
                Ok(ms) if valid_ms(ms) => Ok(ms),
                _ => Err(ConfigError(format!(
                    "invalid latency list {list:?}: {item:?} is not a number of milliseconds between 0 and {MAX_LATENCY_MS}; pass e.g. --latencies 10,15,0.5"
                ))),
            }
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(steps)
}

/// Formats milliseconds without a trailing `.0`, so `10.0` reads as `10`.
pub(crate) fn format_ms(ms: f64) -> String {
    format!("{ms}")
}

/// One pre-formatted step of the cycle.
pub(crate) struct Step {
    pub delay: Option<Duration>,
    pub latency_header: HeaderValue,
    pub ok_body: Bytes,
}

/// The request-path form of a validated [`BackendConfig`].
pub(crate) struct Profile {
    pub id: HeaderValue,
    pub steps: Box<[Step]>,
    pub error_body: Bytes,
    pub seed: u64,
    /// Failure iff the top 53 bits of the draw fall below this; 2^53 means always.
    error_rate: FailureRate,
    pub id_header: HeaderName,
    pub latency_header: HeaderName,
}

impl Profile {
    pub(crate) fn compile(cfg: &BackendConfig) -> Result<Self, ConfigError> {
        cfg.validate()?;
        let id = HeaderValue::from_str(&cfg.id)
            .map_err(|_| ConfigError(format!("invalid backend id {:?}", cfg.id)))?;
        let steps = cfg
            .latencies_ms
            .iter()
            .map(|&ms| {
                let text = format_ms(ms);
                Step {
                    delay: (ms > 0.0).then(|| Duration::from_secs_f64(ms / 1000.0)),
                    latency_header: HeaderValue::from_str(&text)
                        .unwrap_or_else(|_| HeaderValue::from_static("0")),
                    ok_body: Bytes::from(format!("Hello from {} - simulated {text}ms", cfg.id)),
                }
            })
            .collect();
        Ok(Self {
            id,
            steps,
            error_body: Bytes::from(format!("Simulated failure from {}", cfg.id)),
            seed: cfg.seed,
            error_rate: FailureRate::new(cfg.error_rate),
            id_header: HeaderName::from_static("x-backend-id"),
            latency_header: HeaderName::from_static("x-simulated-latency-ms"),
        })
    }

    pub(crate) fn step(&self, index: u64) -> &Step {
        &self.steps[(index % self.steps.len() as u64) as usize]
    }

    pub(crate) fn fails(&self, index: u64) -> bool {
        // A pure function of the request index (switchyard-rng): failures land on the same
        // requests however concurrent requests interleave, exactly as in the simulator.
        self.error_rate.fails(self.seed, index)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn study_profiles_match_the_study() {
        let a = BackendConfig::study("A").unwrap();
        assert_eq!(
            a.latencies_ms,
            [10.0, 15.0, 20.0, 400.0, 400.0, 400.0, 10.0, 15.0, 20.0]
        );
        assert_eq!(BackendConfig::study("b").unwrap().latencies_ms, [200.0; 9]);
        assert_eq!(BackendConfig::study("C").unwrap().id, "C");
        assert!(BackendConfig::study("D").is_none());
    }

    #[test]
    fn latency_lists_parse_and_reject() {
        assert_eq!(parse_latencies("10, 15,0.5").unwrap(), [10.0, 15.0, 0.5]);
        assert_eq!(parse_latencies("0").unwrap(), [0.0]);
        for bad in ["", "10,,20", "x", "-1", "NaN", "inf", "1e9"] {
            assert!(parse_latencies(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn validation_names_the_problem() {
        let base = BackendConfig::with_latencies("X", &[1.0]);
        assert!(base.validate().is_ok());
        assert!(base.clone().error_rate(1.5).validate().is_err());
        assert!(base.clone().error_rate(f64::NAN).validate().is_err());
        assert!(base.clone().capacity(0).validate().is_err());
        assert!(BackendConfig::with_latencies("", &[1.0])
            .validate()
            .is_err());
        assert!(BackendConfig::with_latencies("a\nb", &[1.0])
            .validate()
            .is_err());
        assert!(BackendConfig::with_latencies("X", &[]).validate().is_err());
    }

    #[test]
    fn latencies_print_without_trailing_zero() {
        assert_eq!(format_ms(10.0), "10");
        assert_eq!(format_ms(0.5), "0.5");
    }

    #[test]
    fn failures_are_deterministic_and_near_the_rate() {
        let count = |seed| {
            let p = Profile::compile(
                &BackendConfig::with_latencies("X", &[0.0])
                    .error_rate(0.2)
                    .seed(seed),
            )
            .unwrap();
            (0..1000).filter(|&i| p.fails(i)).count()
        };
        assert_eq!(count(1), count(1));
        assert!((150..=250).contains(&count(1)), "{}", count(1));
        let all =
            Profile::compile(&BackendConfig::with_latencies("X", &[0.0]).error_rate(1.0)).unwrap();
        assert!((0..1000).all(|i| all.fails(i)));
        let none = Profile::compile(&BackendConfig::with_latencies("X", &[0.0])).unwrap();
        assert!(!(0..1000).any(|i| none.fails(i)));
    }

    /// Pins the backend's decision to `switchyard_rng::fails`, which the simulator uses.
    #[test]
    fn failures_are_the_shared_rng_decisions() {
        for (seed, rate) in [(0, 0.01), (1, 0.2), (9, 0.25), (1 << 40, 0.75), (5, 1.0)] {
            let p = Profile::compile(
                &BackendConfig::with_latencies("X", &[0.0])
                    .error_rate(rate)
                    .seed(seed),
            )
            .unwrap();
            for i in 0..2000 {
                assert_eq!(
                    p.fails(i),
                    switchyard_rng::fails(seed, i, rate),
                    "{seed} {rate} {i}"
                );
            }
        }
    }
}
