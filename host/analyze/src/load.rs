//! Reading request logs: the proxy's (and the simulator's) ten columns, or the study's
//! original five. Columns are found by name, as the study's pandas scripts did, so a log
//! with reordered or extra columns still reads. Every problem is reported as
//! `FILE:LINE: what is wrong` so it can be fixed without reading this code.
use std::collections::BTreeMap;
use std::fs::File;
use std::io::BufReader;
use std::path::{Path, PathBuf};

use switchyard_input::UsageError;
use switchyard_report::log::{self, STUDY_COLUMNS};
use switchyard_report::Record;

use super::timestamp;

/// Which kind of log a file is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// The proxy's or simulator's log: has `backend_id` and `outcome`.
    Proxy,
    /// The study's five columns only: backends are known by URL, errors by status alone.
    Study,
}

/// One log, ready for [`switchyard_report::RunStats::compute_with`].
#[derive(Debug, Clone)]
pub struct Log {
    pub path: PathBuf,
    pub format: LogFormat,
    /// `t_ms` counts from the first row's timestamp.
    pub records: Vec<Record>,
    /// Per record: whether it failed (see [`switchyard_report::log::failed`]; the study's
    /// definition when the log has no `outcome` column).
    pub failed: Vec<bool>,
    /// Requests whose client hung up first (`outcome` = `aborted`), left out of `records`:
    /// they were never completed, and their latency is only the time until the hang-up.
    /// wrk leaves one per connection in flight when it stops, so keeping them would make a
    /// short run's req/s a few percent higher than the client saw. Not errors either.
    pub aborted: u64,
    /// The `upstream` column's most frequent value (proxy logs only).
    pub upstream: Option<String>,
    /// The most frequent `routing_mode` (empty when the column is missing).
    pub routing_mode: String,
    /// The first row's timestamp as written, to say when the run happened.
    pub first_timestamp: String,
}

/// The short name the study used for a backend URL: ports 8081-8083 are A, B and C;
/// anything else is known by its `host:port`.
pub fn backend_label(url: &str) -> String {
    let authority = url
        .trim()
        .trim_start_matches("http://")
        .trim_start_matches("https://")
        .trim_end_matches('/');
    match authority.rsplit_once(':').map(|(_, port)| port) {
        Some("8081") => "A".into(),
        Some("8082") => "B".into(),
        Some("8083") => "C".into(),
        _ => authority.to_string(),
    }
}

/// Column positions, found by name in the header.
struct Columns {
    timestamp: usize,
    url: usize,
    latency: usize,
    status: usize,
    mode: Option<usize>,
    id: Option<usize>,
    outcome: Option<usize>,
    upstream: Option<usize>,
}

/// Reads one log. Errors are [`UsageError`] (exit code 2) naming the file and line.
pub fn read(path: &Path) -> Result<Log, UsageError> {
    let bad = |line: u64, msg: String| UsageError::new(format!("{}:{line}: {msg}", path.display()));
    let (mut reader, cols) = open(path)?;
    let format = if cols.id.is_some() && cols.outcome.is_some() {
        LogFormat::Proxy
    } else {
        LogFormat::Study
    };

    let mut records = Vec::new();
    let mut failed = Vec::new();
    let mut aborted = 0;
    let mut upstreams: BTreeMap<String, u64> = BTreeMap::new();
    let mut modes: BTreeMap<String, u64> = BTreeMap::new();
    let mut base: Option<(f64, String)> = None;
    let mut row = csv::StringRecord::new();
    loop {
        match reader.read_record(&mut row) {
            Ok(true) => {}
            Ok(false) => break,
            Err(e) => {
                let line = e.position().map_or(records.len() as u64 + 2, |p| p.line());
                return Err(bad(line, csv_error(&e)));
            }
        }
        let line = row
            .position()
            .map_or(records.len() as u64 + 2, |p| p.line());
        let r = parse_row(&cols, &row).map_err(|m| bad(line, m))?;
        if let Some(u) = r.upstream {
            *upstreams.entry(u.to_string()).or_default() += 1;
        }
        let (t0, _) = base.get_or_insert_with(|| (r.t_ms, r.timestamp.to_string()));
        if r.outcome == Some("aborted") {
            aborted += 1;
            continue;
        }
        *modes.entry(r.routing_mode.to_string()).or_default() += 1;
        failed.push(log::failed(r.status, r.outcome));
        records.push(Record {
            t_ms: r.t_ms - *t0,
            backend: r.backend,
            latency_ms: r.latency_ms,
            status: r.status,
            routing_mode: r.routing_mode.to_string(),
        });
    }
    let Some((_, first_timestamp)) = base else {
        return Err(bad(
            2,
            "no requests: the log has a header and no rows (did the run receive any traffic?)"
                .into(),
        ));
    };
    if records.is_empty() {
        return Err(UsageError::new(format!(
            "{}: no completed requests: the client hung up on all {aborted} of them",
            path.display()
        )));
    }
    Ok(Log {
        path: path.to_path_buf(),
        format,
        records,
        failed,
        aborted,
        upstream: most_frequent(upstreams),
        routing_mode: most_frequent(modes).unwrap_or_default(),
        first_timestamp,
    })
}

/// Opens the log and finds its columns in the header.
fn open(path: &Path) -> Result<(csv::Reader<BufReader<File>>, Columns), UsageError> {
    let bad = |msg: String| UsageError::new(format!("{}:1: {msg}", path.display()));
    let file = File::open(path)
        .map_err(|e| UsageError::new(format!("{}: cannot read the log: {e}", path.display())))?;
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .flexible(false)
        .from_reader(BufReader::new(file));
    let header = reader.headers().map_err(|e| bad(csv_error(&e)))?.clone();
    if header.iter().all(|h| h.trim().is_empty()) {
        return Err(bad(format!("empty file: expected a header line `{}` (the study's columns) then one line per request", STUDY_COLUMNS.join(","))));
    }
    let cols = columns(&header).map_err(bad)?;
    Ok((reader, cols))
}

/// One data line, checked: the fields as written, or what is wrong with them.
struct Row<'r> {
    timestamp: &'r str,
    /// `timestamp` in milliseconds since the Unix epoch.
    t_ms: f64,
    latency_ms: f64,
    status: u16,
    outcome: Option<&'r str>,
    backend: String,
    routing_mode: &'r str,
    upstream: Option<&'r str>,
}

fn parse_row<'r>(cols: &Columns, row: &'r csv::StringRecord) -> Result<Row<'r>, String> {
    let field = |i: usize| row.get(i).unwrap_or("").trim();
    let ts = field(cols.timestamp);
    let t_ms = timestamp::parse_ms(ts).ok_or_else(|| {
        format!("timestamp `{ts}` is not a date and time: write e.g. 2026-11-26T18:05:22.059Z or 2026-11-26 18:05:22.059")
    })?;
    let latency = field(cols.latency);
    let latency_ms = latency
        .parse::<f64>()
        .ok()
        .filter(|v| v.is_finite() && *v >= 0.0)
        .ok_or_else(|| format!("latency_ms `{latency}` is not a number of milliseconds >= 0"))?;
    let status = parse_status(field(cols.status)).ok_or_else(|| {
        format!(
            "status_code `{}` is not an HTTP status (100-599, or 0/empty for none)",
            field(cols.status)
        )
    })?;
    let backend = match cols.id.map(field).filter(|id| !id.is_empty()) {
        Some(id) => id.to_string(),
        None if !field(cols.url).is_empty() => backend_label(field(cols.url)),
        None => return Err("backend_url is empty".into()),
    };
    Ok(Row {
        timestamp: ts,
        t_ms,
        latency_ms,
        status,
        outcome: cols.outcome.map(field),
        backend,
        routing_mode: cols.mode.map(field).unwrap_or(""),
        upstream: cols.upstream.map(field).filter(|u| !u.is_empty()),
    })
}

fn columns(header: &csv::StringRecord) -> Result<Columns, String> {
    let find = |name: &str| header.iter().position(|h| h.trim() == name);
    let need = |name: &'static str| find(name).ok_or(name);
    match (
        need("timestamp"),
        need("backend_url"),
        need("latency_ms"),
        need("status_code"),
    ) {
        (Ok(timestamp), Ok(url), Ok(latency), Ok(status)) => Ok(Columns {
            timestamp,
            url,
            latency,
            status,
            mode: find("routing_mode"),
            id: find("backend_id"),
            outcome: find("outcome"),
            upstream: find("upstream"),
        }),
        (a, b, c, d) => {
            let missing: Vec<&str> = [a, b, c, d].into_iter().filter_map(Result::err).collect();
            Err(format!(
                "not a request log: missing column(s) {}; the header is `{}`, expected at least the study's `{}`",
                missing.join(", "),
                header.iter().collect::<Vec<_>>().join(","),
                STUDY_COLUMNS.join(",")
            ))
        }
    }
}

/// `200`, `200.0` (pandas writes integers with missing values as floats), or empty/`0` for
/// a request that got no response.
fn parse_status(text: &str) -> Option<u16> {
    if text.is_empty() {
        return Some(0);
    }
    let value = text.parse::<u16>().ok().or_else(|| {
        text.parse::<f64>()
            .ok()
            .filter(|v| v.fract() == 0.0 && (0.0..=999.0).contains(v))
            .map(|v| v as u16)
    })?;
    (value == 0 || (100..=599).contains(&value)).then_some(value)
}

fn csv_error(e: &csv::Error) -> String {
    match e.kind() {
        csv::ErrorKind::UnequalLengths {
            expected_len, len, ..
        } => format!(
            "{len} fields where the header has {expected_len}: is a comma missing or extra?"
        ),
        csv::ErrorKind::Utf8 { .. } => "not UTF-8 text: is this a CSV file?".into(),
        csv::ErrorKind::Io(io) => format!("cannot read: {io}"),
        _ => e.to_string(),
    }
}

/// The value with the highest count; ties go to the first in sorted order, so the result
/// never depends on row order.
fn most_frequent(counts: BTreeMap<String, u64>) -> Option<String> {
    let mut best: Option<(String, u64)> = None;
    for (value, n) in counts {
        if best.as_ref().is_none_or(|(_, m)| n > *m) {
            best = Some((value, n));
        }
    }
    best.map(|(v, _)| v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchyard_report::log::failed as is_failure;

    #[test]
    fn backend_labels_follow_the_study() {
        assert_eq!(backend_label("http://127.0.0.1:8081"), "A");
        assert_eq!(backend_label("http://localhost:8083/"), "C");
        assert_eq!(backend_label("http://10.0.0.5:9000"), "10.0.0.5:9000");
    }

    #[test]
    fn statuses() {
        assert_eq!(parse_status("200"), Some(200));
        assert_eq!(parse_status("502.0"), Some(502));
        assert_eq!(parse_status(""), Some(0));
        assert_eq!(parse_status("OK"), None);
        assert_eq!(parse_status("700"), None);
    }

    #[test]
    fn failures() {
        assert!(!is_failure(0, Some("aborted")));
        assert!(is_failure(200, Some("broken")));
        assert!(is_failure(503, Some("response")));
        assert!(is_failure(0, None));
        assert!(!is_failure(404, None));
    }
}
