//! The simulated requests as a proxy CSV log, so `switchyard analyze` and the dashboard read a
//! simulation exactly as they read a live run: the same [`switchyard_report::log`] rows.
use std::io::{self, Write};

use chrono::{DateTime, Utc};
use switchyard_report::log::{LogWriter, Row, TIMESTAMP_FORMAT};

use super::result::{latency_ms, SimResult};

/// Virtual time 0: 2000-01-01T00:00:00.000Z, in milliseconds since the Unix epoch.
const BASE_MS: i64 = 946_684_800_000;

impl SimResult {
    /// Writes the measured requests (after the warm-up) in completion order, timestamps in
    /// virtual time from 2000-01-01T00:00:00.000Z, so equal runs give equal bytes and no one
    /// mistakes a simulated log for a live one.
    pub fn write_csv(&self, out: &mut dyn Write) -> io::Result<()> {
        // csv's writer buffers; no BufWriter needed.
        let mut log = LogWriter::new(out)?;
        let mut id = String::new();
        for (n, r) in self.measured().enumerate() {
            id.clear();
            // Writing to a String cannot fail.
            let _ = std::fmt::Write::write_fmt(&mut id, format_args!("sim-{n}"));
            let backend = self.backends.get(r.backend as usize);
            log.write(&Row {
                timestamp: instant(r.done_ns / 1_000_000)?,
                backend_url: backend.map_or("", |b| &b.url),
                latency_ms: latency_ms(r),
                status_code: r.status,
                routing_mode: self.mode(r),
                backend_id: backend.map_or("", |b| &b.id),
                outcome: r.outcome.as_str(),
                upstream: "simulated",
                conn_reused: true,
                fault: r.fault.map(|k| k.as_str()),
                request_id: &id,
            })?;
        }
        log.flush()
    }
}

/// `ms` of virtual time as an instant. Formatting a given instant reads no clock, so the
/// wall clock plays no part in a simulation's output.
fn instant(ms: u64) -> io::Result<DateTime<Utc>> {
    i64::try_from(ms)
        .ok()
        .and_then(|ms| ms.checked_add(BASE_MS))
        .and_then(DateTime::from_timestamp_millis)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "virtual time out of range"))
}

/// `ms` after 2000-01-01T00:00:00.000Z as the log writes it (RFC 3339 with milliseconds).
pub fn timestamp(ms: u64) -> String {
    instant(ms).map_or_else(
        |_| String::new(),
        |t| t.format(TIMESTAMP_FORMAT).to_string(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS_PER_DAY: u64 = 86_400_000;

    #[test]
    fn timestamps_from_the_fixed_base() {
        assert_eq!(timestamp(0), "2000-01-01T00:00:00.000Z");
        assert_eq!(timestamp(123), "2000-01-01T00:00:00.123Z");
        assert_eq!(timestamp(120_456), "2000-01-01T00:02:00.456Z");
        assert_eq!(
            timestamp(59 * MS_PER_DAY + 3_723_004),
            "2000-02-29T01:02:03.004Z"
        );
        assert_eq!(timestamp(366 * MS_PER_DAY), "2001-01-01T00:00:00.000Z");
    }
}
