//! The simulated requests as a proxy CSV log, so `switchyard analyze` and the dashboard read a
//! simulation exactly as they read a live run.
use std::io::{self, Write};

use super::engine::{latency_ms, SimResult};

/// The proxy log's columns: the study's five, then the proxy's extras.
pub const CSV_HEADER: &str = "timestamp,backend_url,latency_ms,status_code,routing_mode,backend_id,outcome,upstream,conn_reused,fault";

const MS_PER_DAY: u64 = 86_400_000;
/// 2000-01-01 in days since 1970-01-01.
const BASE_DAYS: u64 = 10_957;

impl SimResult {
    /// Writes the measured requests (after the warm-up) in completion order, timestamps in
    /// virtual time from 2000-01-01T00:00:00.000Z, so equal runs give equal bytes and no one
    /// mistakes a simulated log for a live one.
    pub fn write_csv(&self, out: &mut dyn Write) -> io::Result<()> {
        let mut out = io::BufWriter::new(out);
        writeln!(out, "{CSV_HEADER}")?;
        for r in self.measured() {
            let backend = self.backends.get(r.backend as usize);
            writeln!(
                out,
                "{},{},{:.3},{},{},{},{},simulated,true,{}",
                timestamp(r.done_ns / 1_000_000),
                field(backend.map_or("", |b| &b.url)),
                latency_ms(r),
                r.status,
                field(self.mode(r)),
                field(backend.map_or("", |b| &b.id)),
                r.outcome.as_str(),
                r.fault.map_or("", |k| k.as_str()),
            )?;
        }
        out.flush()
    }
}

/// `ms` after 2000-01-01T00:00:00.000Z as RFC 3339 with milliseconds, computed by hand:
/// the wall clock must play no part in a simulation's output.
pub fn timestamp(ms: u64) -> String {
    let (days, rem) = (ms / MS_PER_DAY, ms % MS_PER_DAY);
    let (y, m, d) = civil_from_days(BASE_DAYS + days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3_600_000,
        rem / 60_000 % 60,
        rem / 1000 % 60,
        rem % 1000
    )
}

/// Year, month, day of a day count since 1970-01-01 (Howard Hinnant's `civil_from_days`,
/// restricted to dates after 1970 so that everything stays unsigned).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + u64::from(m <= 2);
    (y, m, d)
}

/// Quotes a value that would break the row. Ids and URLs are validated to need none; a
/// policy's name is whatever the policy says.
fn field(text: &str) -> std::borrow::Cow<'_, str> {
    if text.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", text.replace('"', "\"\"")).into()
    } else {
        text.into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn awkward_fields_are_quoted() {
        assert_eq!(field("round-robin"), "round-robin");
        assert_eq!(field("a,\"b\""), "\"a,\"\"b\"\"\"");
    }
}
