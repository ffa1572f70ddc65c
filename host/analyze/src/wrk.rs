//! wrk's console summary (`wrk --latency ...` output), the client's side of a run: it sees
//! the proxy's overhead and the loopback hops that the proxy's own log cannot, so its
//! figures beside the log's are a cross-check of both.
use std::path::Path;

/// What wrk printed. Fields wrk leaves out (no `--latency`, no errors) stay `None`/0.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct WrkSummary {
    pub threads: Option<u32>,
    pub connections: Option<u32>,
    /// `N requests in 30.03s`: completed requests and the measured duration.
    pub requests: Option<u64>,
    pub duration_s: Option<f64>,
    /// `Requests/sec:` (always present in a finished run; it is what identifies one).
    pub req_per_s: f64,
    /// The `Latency` row of `Thread Stats`: average, standard deviation, max.
    pub mean_ms: Option<f64>,
    pub stdev_ms: Option<f64>,
    pub max_ms: Option<f64>,
    /// The `Latency Distribution` block (`--latency`).
    pub p50_ms: Option<f64>,
    pub p75_ms: Option<f64>,
    pub p90_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    /// `Non-2xx or 3xx responses: N`.
    pub non_2xx: u64,
    /// `Socket errors: connect N, read N, write N, timeout N`, summed.
    pub socket_errors: u64,
}

impl WrkSummary {
    /// Failures as the client saw them: error statuses plus socket errors.
    pub fn errors(&self) -> u64 {
        self.non_2xx + self.socket_errors
    }
}

/// Reads and parses a wrk output file.
pub fn read(path: &Path) -> Result<WrkSummary, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("{}: cannot read: {e}", path.display()))?;
    parse(&text).map_err(|e| format!("{}: {e}", path.display()))
}

/// Parses wrk's summary. Fails only when there is no `Requests/sec:` line, i.e. wrk did
/// not finish (it could not connect, or was interrupted).
pub fn parse(text: &str) -> Result<WrkSummary, String> {
    let mut s = WrkSummary::default();
    let mut req_per_s = None;
    let mut in_distribution = false;
    for line in text.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["Requests/sec:", v, ..] => req_per_s = v.parse::<f64>().ok(),
            ["Latency", "Distribution", ..] => in_distribution = true,
            ["Latency", avg, stdev, max, ..] => {
                s.mean_ms = time_ms(avg);
                s.stdev_ms = time_ms(stdev);
                s.max_ms = time_ms(max);
            }
            [p, v] if in_distribution && p.ends_with('%') => {
                let v = time_ms(v);
                match *p {
                    "50%" => s.p50_ms = v,
                    "75%" => s.p75_ms = v,
                    "90%" => s.p90_ms = v,
                    "99%" => s.p99_ms = v,
                    _ => {}
                }
            }
            [t, "threads", "and", c, "connections", ..] => {
                s.threads = t.parse().ok();
                s.connections = c.parse().ok();
            }
            [n, "requests", "in", d, ..] => {
                s.requests = n.parse().ok();
                s.duration_s = time_ms(d.trim_end_matches(',')).map(|ms| ms / 1000.0);
            }
            ["Non-2xx", "or", "3xx", "responses:", n, ..] => s.non_2xx = n.parse().unwrap_or(0),
            ["Socket", "errors:", rest @ ..] => {
                // connect N, read N, write N, timeout N
                s.socket_errors = rest
                    .iter()
                    .filter_map(|w| w.trim_end_matches(',').parse::<u64>().ok())
                    .sum();
            }
            _ => {}
        }
        if in_distribution && !words.first().is_some_and(|w| w.ends_with('%')) {
            in_distribution = words.first() == Some(&"Latency");
        }
    }
    s.req_per_s = req_per_s
        .ok_or("no `Requests/sec:` line: wrk did not finish (could it connect to the proxy?)")?;
    Ok(s)
}

/// wrk's time with its unit (`us`, `ms`, `s`, `m`, `h`) in milliseconds.
pub fn time_ms(text: &str) -> Option<f64> {
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (num, unit) = text.split_at(split);
    let scale = match unit {
        "us" => 1e-3,
        "ms" => 1.0,
        "s" => 1e3,
        "m" => 60e3,
        "h" => 3600e3,
        _ => return None,
    };
    num.parse::<f64>()
        .ok()
        .filter(|v| v.is_finite())
        .map(|v| v * scale)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units() {
        assert_eq!(time_ms("198.43ms"), Some(198.43));
        assert_eq!(time_ms("750.00us"), Some(0.75));
        assert_eq!(time_ms("1.50s"), Some(1500.0));
        assert_eq!(time_ms("2.00m"), Some(120_000.0));
        assert_eq!(time_ms("-nanus"), None);
        assert_eq!(time_ms("12"), None);
    }

    #[test]
    fn unfinished_run_is_an_error() {
        assert!(parse("unable to connect to 127.0.0.1:9090 Connection refused\n").is_err());
    }
}
