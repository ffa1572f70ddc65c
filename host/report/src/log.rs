//! The request log's format, in one place: the columns, one row, the writer, and what "the
//! request failed" means. The proxy's `--log`, the simulator's `--csv` and `switchyard
//! analyze` all go through here, so a log written by one is read by the other exactly, and
//! a live run and a simulated one count errors the same way.
//!
//! The study's five columns come first, in its order, so its analysis scripts read our
//! logs; then what the study could not record.
use std::fmt::Write as _;
use std::io;

use chrono::{DateTime, Utc};

/// Declares [`COLUMNS`] and [`HEADER`] from one list, so the two cannot drift apart.
macro_rules! columns {
    ($first:literal $(, $rest:literal)* $(,)?) => {
        /// The request log's columns, in order.
        pub const COLUMNS: &[&str] = &[$first $(, $rest)*];
        /// [`COLUMNS`] as the log's header line (without the line break).
        pub const HEADER: &str = concat!($first $(, ",", $rest)*);
    };
}

columns!(
    "timestamp",
    "backend_url",
    "latency_ms",
    "status_code",
    "routing_mode",
    "backend_id",
    "outcome",
    "upstream",
    "conn_reused",
    "fault",
    "request_id",
);

/// The study's five columns, the first five of [`COLUMNS`]: every log `analyze` reads must
/// have the first four (`routing_mode` may be missing).
pub const STUDY_COLUMNS: [&str; 5] = [COLUMNS[0], COLUMNS[1], COLUMNS[2], COLUMNS[3], COLUMNS[4]];

/// How timestamps are written: RFC 3339 in UTC with milliseconds, e.g.
/// `2026-11-26T18:05:22.059Z`.
pub const TIMESTAMP_FORMAT: &str = "%Y-%m-%dT%H:%M:%S%.3fZ";

/// One line of the request log.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Row<'a> {
    /// When the request finished (was logged).
    pub timestamp: DateTime<Utc>,
    pub backend_url: &'a str,
    /// Written with three decimals (whole microseconds).
    pub latency_ms: f64,
    /// The status sent to the client; 0 when none was sent.
    pub status_code: u16,
    /// Who routed the request: the policy's name, or the host's fallback.
    pub routing_mode: &'a str,
    pub backend_id: &'a str,
    /// `response`, `connect_error`, `timeout`, `broken` or `aborted` (see [`failed`]).
    pub outcome: &'a str,
    /// How the proxy talked to the backend (`persistent`, `h2c`, ..; `simulated`).
    pub upstream: &'a str,
    pub conn_reused: bool,
    /// The policy fault that made the host route this request, if any.
    pub fault: Option<&'a str>,
    /// The client's `x-request-id` or the one the proxy gave the request (and sent to the
    /// backend); the simulator numbers its requests.
    pub request_id: &'a str,
}

/// Writes the header, then one [`Row`] per call, quoting fields only where CSV needs it.
pub struct LogWriter<W: io::Write> {
    out: csv::Writer<W>,
    /// Reused from row to row, so that writing a row allocates nothing.
    timestamp: String,
    latency: String,
    status: String,
}

impl<W: io::Write> LogWriter<W> {
    /// Starts a log on `out` by writing the header line.
    pub fn new(out: W) -> csv::Result<LogWriter<W>> {
        let mut out = csv::Writer::from_writer(out);
        out.write_record(COLUMNS)?;
        Ok(LogWriter {
            out,
            timestamp: String::with_capacity(24),
            latency: String::with_capacity(16),
            status: String::with_capacity(3),
        })
    }

    pub fn write(&mut self, row: &Row<'_>) -> csv::Result<()> {
        // Writing to a String cannot fail.
        self.timestamp.clear();
        let _ = write!(self.timestamp, "{}", row.timestamp.format(TIMESTAMP_FORMAT));
        self.latency.clear();
        let _ = write!(self.latency, "{:.3}", row.latency_ms);
        self.status.clear();
        let _ = write!(self.status, "{}", row.status_code);
        self.out.write_record([
            self.timestamp.as_str(),
            row.backend_url,
            self.latency.as_str(),
            self.status.as_str(),
            row.routing_mode,
            row.backend_id,
            row.outcome,
            row.upstream,
            if row.conn_reused { "true" } else { "false" },
            row.fault.unwrap_or(""),
            row.request_id,
        ])
    }

    /// The output the rows go to (after [`LogWriter::flush`], everything written is there).
    pub fn get_ref(&self) -> &W {
        self.out.get_ref()
    }

    /// Writes out everything buffered so far (also done, errors ignored, on drop).
    pub fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

/// Whether a request failed: a 5xx, or no complete response because of the backend.
///
/// With an `outcome` (the proxy's and the simulator's logs, and the live counters), "no
/// complete response because of the backend" is a refused connection, a timeout, or a
/// connection that broke before the response was whole (`connect_error`, `timeout`,
/// `broken`), or a response the proxy cut at shutdown (`cut`). A client hanging up (`aborted`) is neither the backend's failure nor the
/// proxy's, whatever its status.
///
/// Without one (`None`: the study's five-column logs, or a [`crate::Record`]), this is the
/// study's definition, "a 5xx, or no response at all", with status 0 standing for no
/// response. The two agree except where the outcome knows more: a `broken` exchange after
/// a 200 head is a failure the status cannot show, and an `aborted` one is not a failure
/// though it has no status.
pub fn failed(status: u16, outcome: Option<&str>) -> bool {
    match outcome {
        Some(o) => status >= 500 || matches!(o, "connect_error" | "timeout" | "broken" | "cut"),
        None => status == 0 || status >= 500,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row<'a>(fault: Option<&'a str>, routing_mode: &'a str) -> Row<'a> {
        Row {
            timestamp: DateTime::from_timestamp_millis(1_764_180_322_059).unwrap_or_default(),
            backend_url: "http://127.0.0.1:8081",
            latency_ms: 12.3456,
            status_code: 200,
            routing_mode,
            backend_id: "A",
            outcome: "response",
            upstream: "persistent",
            conn_reused: true,
            fault,
            request_id: "0000000000000abc0000000000000001",
        }
    }

    #[test]
    fn header_and_rows_have_the_log_layout() {
        assert_eq!(HEADER, COLUMNS.join(","));
        assert_eq!(
            STUDY_COLUMNS.join(","),
            "timestamp,backend_url,latency_ms,status_code,routing_mode"
        );
        let mut w = LogWriter::new(Vec::new()).unwrap();
        w.write(&row(None, "round-robin")).unwrap();
        w.write(&row(Some("trap"), "a,\"b\"")).unwrap();
        let bytes = w.out.into_inner().unwrap();
        assert_eq!(
            String::from_utf8(bytes).unwrap(),
            format!(
                "{HEADER}\n\
                 2025-11-26T18:05:22.059Z,http://127.0.0.1:8081,12.346,200,round-robin,A,response,persistent,true,,0000000000000abc0000000000000001\n\
                 2025-11-26T18:05:22.059Z,http://127.0.0.1:8081,12.346,200,\"a,\"\"b\"\"\",A,response,persistent,true,trap,0000000000000abc0000000000000001\n"
            )
        );
    }

    #[test]
    fn failures() {
        assert!(!failed(0, Some("aborted")));
        assert!(failed(200, Some("broken")));
        assert!(failed(502, Some("connect_error")));
        assert!(failed(503, Some("response")));
        assert!(!failed(404, Some("response")));
        assert!(failed(0, None));
        assert!(failed(500, None));
        assert!(!failed(404, None));
    }
}
