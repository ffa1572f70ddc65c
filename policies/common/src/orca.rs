//! ORCA load reports carried in the `endpoint-load-metrics` response header, and the gRPC
//! A58 weight computed from them.
//!
//! ORCA's native TEXT form is the cheapest standard feedback channel a backend can send
//! (Envoy, gRPC and vLLM emit it), so a weighted policy can use real utilisation instead of
//! guessing from latency. The parser follows Envoy's `source/common/orca/orca_parser.cc`:
//!
//! ```text
//! endpoint-load-metrics: TEXT cpu_utilization:0.7,application_utilization:0.8,rps_fractional:1000,eps:2,named_metrics.foo:123
//! ```
//!
//! - The value must start with `TEXT `; `JSON ` and `BIN ` are valid ORCA but refused here
//!   (no JSON or protobuf decoder in a policy), as is anything else.
//! - Entries are comma-separated `name:value`; `=` is accepted as the separator too, and
//!   whitespace around entries, names and values is ignored. Empty entries are skipped.
//! - Top-level names: `cpu_utilization`, `mem_utilization`, `application_utilization`,
//!   `rps_fractional`, `eps`. Maps: `named_metrics.<key>`, `utilization.<key>`,
//!   `request_cost.<key>`. Anything else (including the deprecated integer `rps`) is refused.
//! - Refused as well: duplicate names, NaN, infinities (`1e999` included), negative values,
//!   unparsable numbers and empty map keys.
//!
//! Stricter than Envoy in one way: negative values are refused (every ORCA field is a
//! utilisation, rate or cost, and a negative one would make the A58 weight negative).

use std::fmt;

/// The response header carrying a per-request report (TEXT, JSON or BIN form).
pub const HEADER: &str = "endpoint-load-metrics";
/// The legacy gRPC header carrying a base64 `OrcaLoadReport` protobuf.
pub const HEADER_BIN: &str = "endpoint-load-metrics-bin";
/// gRFC A58's default `error_utilization_penalty` (Envoy's proto has the same default).
pub const DEFAULT_ERROR_UTILIZATION_PENALTY: f64 = 1.0;

const NAMED_METRICS: &str = "named_metrics.";
const UTILIZATION: &str = "utilization.";
const REQUEST_COST: &str = "request_cost.";
/// Longest entry quoted in an error, so a hostile header cannot flood the logs.
const MAX_QUOTED: usize = 80;

/// One parsed ORCA report. `None` means the backend did not send the field, which A58
/// treats differently from 0 (see [`weight`]).
///
/// The maps are sorted by key, so two equal headers give equal reports whatever the
/// order of their entries.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LoadReport {
    /// CPU utilisation; may exceed 1.0 on a backend that bursts past its allocation.
    pub cpu_utilization: Option<f64>,
    pub mem_utilization: Option<f64>,
    /// The backend's own notion of utilisation; A58 prefers it to CPU when it is above 0.
    pub application_utilization: Option<f64>,
    /// Queries per second (ORCA's `rps_fractional`; the integer `rps` is deprecated).
    pub rps_fractional: Option<f64>,
    /// Errors per second.
    pub eps: Option<f64>,
    pub named_metrics: Vec<(String, f64)>,
    pub utilization: Vec<(String, f64)>,
    pub request_cost: Vec<(String, f64)>,
}

impl LoadReport {
    /// The `named_metrics.<key>` value.
    pub fn named(&self, key: &str) -> Option<f64> {
        find(&self.named_metrics, key)
    }

    /// A value by its header name, such as `cpu_utilization` or `utilization.gpu`: the
    /// form Envoy's `metric_names_for_computing_utilization` setting uses.
    pub fn metric(&self, name: &str) -> Option<f64> {
        if let Some(key) = name.strip_prefix(NAMED_METRICS) {
            return find(&self.named_metrics, key);
        }
        if let Some(key) = name.strip_prefix(UTILIZATION) {
            return find(&self.utilization, key);
        }
        if let Some(key) = name.strip_prefix(REQUEST_COST) {
            return find(&self.request_cost, key);
        }
        match name {
            "cpu_utilization" => self.cpu_utilization,
            "mem_utilization" => self.mem_utilization,
            "application_utilization" => self.application_utilization,
            "rps_fractional" => self.rps_fractional,
            "eps" => self.eps,
            _ => None,
        }
    }
}

fn find(map: &[(String, f64)], key: &str) -> Option<f64> {
    map.iter().find(|(k, _)| k == key).map(|(_, v)| *v)
}

/// Why a header value was refused. Each variant quotes the offending entry (or format
/// word), clipped to 80 characters, because the message goes to an operator's log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OrcaError {
    /// A valid ORCA form this crate does not decode: `"JSON"` or `"BIN"`.
    Unsupported(&'static str),
    /// The value does not start with `TEXT `, `JSON ` or `BIN `; holds its first word.
    UnknownFormat(String),
    /// An entry with no `:` or `=`, or nothing after it.
    MissingValue(String),
    /// An entry with nothing before the separator.
    EmptyName(String),
    /// A map prefix (`named_metrics.` …) with no key after it.
    EmptyKey(String),
    /// A name that is neither a known field nor a known map prefix.
    UnknownName(String),
    /// The same name twice; holds the name.
    Duplicate(String),
    /// A value that is not a number.
    BadNumber(String),
    /// NaN or an infinity (including overflow such as `1e999`).
    NotFinite(String),
    /// A value below zero.
    Negative(String),
}

impl fmt::Display for OrcaError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{HEADER}: ")?;
        match self {
            OrcaError::Unsupported(form) => write!(
                f,
                "the {form} format is not supported, only `TEXT name:value,...`"
            ),
            OrcaError::UnknownFormat(w) => {
                write!(f, "unknown format `{w}`, expected `TEXT name:value,...`")
            }
            OrcaError::MissingValue(e) => write!(f, "entry `{e}` has no `:value`"),
            OrcaError::EmptyName(e) => write!(f, "entry `{e}` has no name"),
            OrcaError::EmptyKey(e) => write!(f, "entry `{e}` has an empty map key"),
            OrcaError::UnknownName(e) => write!(f, "entry `{e}` has an unknown metric name"),
            OrcaError::Duplicate(n) => write!(f, "metric `{n}` appears more than once"),
            OrcaError::BadNumber(e) => write!(f, "entry `{e}` is not a number"),
            OrcaError::NotFinite(e) => write!(f, "entry `{e}` is not finite"),
            OrcaError::Negative(e) => write!(f, "entry `{e}` is negative"),
        }
    }
}

impl std::error::Error for OrcaError {}

/// Looks a header up by name, ignoring ASCII case. The host lower-cases names, but a
/// policy fed by a test or another host should not silently miss a `Endpoint-Load-Metrics`.
/// The first match wins, as in Envoy (which reads `header[0]`).
pub fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// The report in a response's headers: `None` when the backend sent none.
///
/// Prefers [`HEADER`]; a lone [`HEADER_BIN`] gives [`OrcaError::Unsupported`]. (Envoy
/// prefers the `-bin` header when both are present; we cannot decode it, so we read the
/// one we can rather than refuse a usable report.)
pub fn from_headers(headers: &[(String, String)]) -> Option<Result<LoadReport, OrcaError>> {
    match header(headers, HEADER) {
        Some(v) => Some(parse(v)),
        None => header(headers, HEADER_BIN).map(|_| Err(OrcaError::Unsupported("BIN"))),
    }
}

/// Parses an `endpoint-load-metrics` value (see the module docs for the rules).
///
/// A bare `TEXT` (an HTTP stack trims the trailing space of `TEXT `) is an empty report.
pub fn parse(value: &str) -> Result<LoadReport, OrcaError> {
    let value = value.trim();
    let body = match value.strip_prefix("TEXT") {
        Some(rest) if rest.is_empty() || rest.starts_with(' ') => rest,
        _ => return Err(format_error(value)),
    };
    let mut report = LoadReport::default();
    for entry in body.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        let (name, raw) = split_entry(entry)?;
        let v = number(entry, raw)?;
        store(&mut report, entry, name, v)?;
    }
    sort_unique(&mut report.named_metrics, NAMED_METRICS)?;
    sort_unique(&mut report.utilization, UTILIZATION)?;
    sort_unique(&mut report.request_cost, REQUEST_COST)?;
    Ok(report)
}

fn format_error(value: &str) -> OrcaError {
    let word = value.split(char::is_whitespace).next().unwrap_or("");
    match word {
        "JSON" => OrcaError::Unsupported("JSON"),
        "BIN" => OrcaError::Unsupported("BIN"),
        _ => OrcaError::UnknownFormat(clip(word)),
    }
}

/// Splits at the first `:` or `=`, like Envoy's `MaxSplits(':', 1)`: a `:` inside the
/// value stays there (and then fails to parse as a number).
fn split_entry(entry: &str) -> Result<(&str, &str), OrcaError> {
    let (name, raw) = entry
        .split_once([':', '='])
        .ok_or_else(|| OrcaError::MissingValue(clip(entry)))?;
    let (name, raw) = (name.trim(), raw.trim());
    if name.is_empty() {
        return Err(OrcaError::EmptyName(clip(entry)));
    }
    if raw.is_empty() {
        return Err(OrcaError::MissingValue(clip(entry)));
    }
    Ok((name, raw))
}

fn number(entry: &str, raw: &str) -> Result<f64, OrcaError> {
    let v: f64 = raw.parse().map_err(|_| OrcaError::BadNumber(clip(entry)))?;
    if !v.is_finite() {
        return Err(OrcaError::NotFinite(clip(entry)));
    }
    if v < 0.0 {
        return Err(OrcaError::Negative(clip(entry)));
    }
    // `-0` is allowed but stored as 0, so equal reports compare equal.
    Ok(if v == 0.0 { 0.0 } else { v })
}

fn store(report: &mut LoadReport, entry: &str, name: &str, v: f64) -> Result<(), OrcaError> {
    for (prefix, map) in [
        (NAMED_METRICS, &mut report.named_metrics),
        (UTILIZATION, &mut report.utilization),
        (REQUEST_COST, &mut report.request_cost),
    ] {
        if let Some(key) = name.strip_prefix(prefix) {
            if key.is_empty() {
                return Err(OrcaError::EmptyKey(clip(entry)));
            }
            // Duplicates are found after sorting: O(n log n) even for a hostile header.
            map.push((key.to_string(), v));
            return Ok(());
        }
    }
    let slot = match name {
        "cpu_utilization" => &mut report.cpu_utilization,
        "mem_utilization" => &mut report.mem_utilization,
        "application_utilization" => &mut report.application_utilization,
        "rps_fractional" => &mut report.rps_fractional,
        "eps" => &mut report.eps,
        _ => return Err(OrcaError::UnknownName(clip(entry))),
    };
    if slot.is_some() {
        return Err(OrcaError::Duplicate(clip(name)));
    }
    *slot = Some(v);
    Ok(())
}

fn sort_unique(map: &mut [(String, f64)], prefix: &str) -> Result<(), OrcaError> {
    map.sort_unstable_by(|a, b| a.0.cmp(&b.0));
    match map.windows(2).find_map(|w| match w {
        [a, b] if a.0 == b.0 => Some(&a.0),
        _ => None,
    }) {
        Some(key) => Err(OrcaError::Duplicate(clip(&format!("{prefix}{key}")))),
        None => Ok(()),
    }
}

fn clip(s: &str) -> String {
    match s.char_indices().nth(MAX_QUOTED) {
        Some((end, _)) => format!("{}…", s.get(..end).unwrap_or("")),
        None => s.to_string(),
    }
}

/// The endpoint weight of gRFC A58 (gRPC `weighted_round_robin`, also Envoy's
/// `client_side_weighted_round_robin`), from one report:
///
/// ```text
/// utilization = application_utilization if > 0, else cpu_utilization
/// weight      = qps / (utilization + eps/qps · error_utilization_penalty)
/// ```
///
/// with `qps = rps_fractional`. Returns `None` when `qps` or `utilization` is absent or 0:
/// A58 gives such an endpoint weight 0 and ignores the report (it is then picked with the
/// mean weight of the others), so the caller should keep its previous weight, not store 0.
/// Dividing by `qps` is why a zero `qps` cannot be given a weight at all.
///
/// `error_utilization_penalty` defaults to 1.0 in A58 ([`DEFAULT_ERROR_UTILIZATION_PENALTY`])
/// and a negative one is a config error there; here a negative or NaN penalty counts as 0,
/// so the function has no failure mode of its own. A weight that would not be finite and
/// positive (an infinite penalty, a hand-built report with huge values) is `None` as well.
///
/// A58's other defaults live in the caller, which owns the clock: blackout 10 s after the
/// first non-zero report, expiry 3 min after the last, weights recomputed every 1 s.
/// (Envoy's optional `metric_names_for_computing_utilization` fallback, the max of named
/// metrics between application and CPU utilisation, can be built with
/// [`LoadReport::metric`].)
pub fn weight(report: &LoadReport, error_utilization_penalty: f64) -> Option<f64> {
    let qps = report.rps_fractional.filter(|&q| q > 0.0)?;
    let utilization = match report.application_utilization {
        Some(u) if u > 0.0 => u,
        _ => report.cpu_utilization.filter(|&u| u > 0.0)?,
    };
    let eps = report.eps.filter(|&e| e > 0.0).unwrap_or(0.0);
    let penalty = error_utilization_penalty.max(0.0); // NaN.max(0) is 0
    let error_term = if eps > 0.0 && penalty > 0.0 {
        eps / qps * penalty
    } else {
        0.0
    };
    let w = qps / (utilization + error_term);
    (w.is_finite() && w > 0.0).then_some(w)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(p: &[(&str, &str)]) -> Vec<(String, String)> {
        crate::pairs(p)
    }

    fn err(value: &str) -> OrcaError {
        parse(value).expect_err(value)
    }

    #[test]
    fn parses_envoys_example_header() {
        let r = parse(
            "TEXT cpu_utilization:0.7,application_utilization:0.8,mem_utilization:0.9,\
             rps_fractional:1000,eps:2,named_metrics.foo:123",
        )
        .unwrap();
        assert_eq!(r.cpu_utilization, Some(0.7));
        assert_eq!(r.application_utilization, Some(0.8));
        assert_eq!(r.mem_utilization, Some(0.9));
        assert_eq!(r.rps_fractional, Some(1000.0));
        assert_eq!(r.eps, Some(2.0));
        assert_eq!(r.named("foo"), Some(123.0));
        assert_eq!(r.named("bar"), None);
        assert!(r.utilization.is_empty() && r.request_cost.is_empty());
    }

    #[test]
    fn accepts_equals_separator_whitespace_and_all_maps() {
        let r = parse(
            "  TEXT  cpu_utilization = 1.5 , utilization.gpu=0.25,request_cost.db:3,, \
             named_metrics.b:2,named_metrics.a:1 ",
        )
        .unwrap();
        assert_eq!(r.cpu_utilization, Some(1.5), "above 1.0 is allowed");
        assert_eq!(r.utilization, vec![("gpu".to_string(), 0.25)]);
        assert_eq!(r.request_cost, vec![("db".to_string(), 3.0)]);
        let keys: Vec<&str> = r.named_metrics.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(keys, ["a", "b"], "maps are sorted by key");
        assert_eq!(r.metric("utilization.gpu"), Some(0.25));
        assert_eq!(r.metric("request_cost.db"), Some(3.0));
        assert_eq!(r.metric("named_metrics.a"), Some(1.0));
        assert_eq!(r.metric("cpu_utilization"), Some(1.5));
        assert_eq!(r.metric("eps"), None);
        assert_eq!(r.metric("bogus"), None);
    }

    #[test]
    fn empty_text_bodies_are_empty_reports() {
        assert_eq!(parse("TEXT "), Ok(LoadReport::default()));
        assert_eq!(parse("TEXT"), Ok(LoadReport::default()));
        assert_eq!(parse("TEXT ,, ,"), Ok(LoadReport::default()));
    }

    #[test]
    fn refuses_other_formats_saying_why() {
        assert_eq!(
            err("JSON {\"cpu_utilization\":0.5}"),
            OrcaError::Unsupported("JSON")
        );
        assert_eq!(err("BIN CgQIARAB"), OrcaError::Unsupported("BIN"));
        assert!(err("JSON {}")
            .to_string()
            .contains("JSON format is not supported"));
        assert_eq!(
            err("text cpu_utilization:1"),
            OrcaError::UnknownFormat("text".into())
        );
        assert_eq!(
            err("TEXTcpu_utilization:1"),
            OrcaError::UnknownFormat("TEXTcpu_utilization:1".into())
        );
        assert_eq!(err(""), OrcaError::UnknownFormat(String::new()));
        assert_eq!(
            err("cpu_utilization:1"),
            OrcaError::UnknownFormat("cpu_utilization:1".into())
        );
    }

    #[test]
    fn refuses_unknown_names_and_empty_keys() {
        assert_eq!(err("TEXT rps:10"), OrcaError::UnknownName("rps:10".into()));
        assert_eq!(
            err("TEXT named_metrics:1"),
            OrcaError::UnknownName("named_metrics:1".into())
        );
        assert_eq!(
            err("TEXT named_metrics.:1"),
            OrcaError::EmptyKey("named_metrics.:1".into())
        );
        assert_eq!(
            err("TEXT utilization.=1"),
            OrcaError::EmptyKey("utilization.=1".into())
        );
        assert_eq!(
            err("TEXT request_cost. :1"),
            OrcaError::EmptyKey("request_cost. :1".into())
        );
        assert!(err("TEXT cpu:1").to_string().contains("`cpu:1`"));
    }

    #[test]
    fn refuses_duplicates_across_separators_and_in_maps() {
        assert_eq!(
            err("TEXT cpu_utilization:0.1,cpu_utilization=0.2"),
            OrcaError::Duplicate("cpu_utilization".into())
        );
        assert_eq!(
            err("TEXT named_metrics.x:1,eps:0,named_metrics.x:1"),
            OrcaError::Duplicate("named_metrics.x".into())
        );
        // The same key in different maps is not a duplicate.
        assert!(parse("TEXT named_metrics.x:1,utilization.x:1,request_cost.x:1").is_ok());
    }

    #[test]
    fn refuses_bad_numbers() {
        for bad in ["NaN", "nan", "inf", "-inf", "infinity", "1e999"] {
            let e = err(&format!("TEXT eps:{bad}"));
            assert_eq!(e, OrcaError::NotFinite(format!("eps:{bad}")), "{bad}");
        }
        assert_eq!(err("TEXT eps:-1"), OrcaError::Negative("eps:-1".into()));
        assert_eq!(
            err("TEXT named_metrics.q:-0.5"),
            OrcaError::Negative("named_metrics.q:-0.5".into())
        );
        assert_eq!(err("TEXT eps:abc"), OrcaError::BadNumber("eps:abc".into()));
        assert_eq!(err("TEXT eps:1:2"), OrcaError::BadNumber("eps:1:2".into()));
        assert_eq!(
            err("TEXT eps:0x10"),
            OrcaError::BadNumber("eps:0x10".into())
        );
        assert_eq!(err("TEXT eps"), OrcaError::MissingValue("eps".into()));
        assert_eq!(err("TEXT eps:"), OrcaError::MissingValue("eps:".into()));
        assert_eq!(err("TEXT :1"), OrcaError::EmptyName(":1".into()));
        assert_eq!(
            parse("TEXT eps:-0").unwrap().eps.map(f64::is_sign_positive),
            Some(true)
        );
        assert_eq!(parse("TEXT eps:1e3").unwrap().eps, Some(1000.0));
    }

    #[test]
    fn errors_clip_long_entries_on_char_boundaries() {
        let long = format!("TEXT {}:1", "é".repeat(500));
        let msg = err(&long).to_string();
        assert!(msg.chars().count() < 200, "{msg}");
        assert!(msg.contains('…'));
    }

    #[test]
    fn header_lookup_ignores_case_and_takes_the_first() {
        let hs = h(&[
            ("X-Other", "1"),
            ("Endpoint-Load-Metrics", "TEXT eps:1"),
            (HEADER, "TEXT eps:2"),
        ]);
        assert_eq!(header(&hs, HEADER), Some("TEXT eps:1"));
        assert_eq!(header(&hs, "x-other"), Some("1"));
        assert_eq!(header(&hs, "missing"), None);
        assert_eq!(header(&[], HEADER), None);
    }

    #[test]
    fn from_headers_prefers_text_and_reports_bin_alone() {
        assert_eq!(from_headers(&h(&[("server", "x")])), None);
        let bin = h(&[(HEADER_BIN, "CgQIARAB")]);
        assert_eq!(from_headers(&bin), Some(Err(OrcaError::Unsupported("BIN"))));
        let both = h(&[(HEADER_BIN, "CgQIARAB"), (HEADER, "TEXT eps:3")]);
        assert_eq!(from_headers(&both).unwrap().unwrap().eps, Some(3.0));
    }

    fn report(
        qps: Option<f64>,
        app: Option<f64>,
        cpu: Option<f64>,
        eps: Option<f64>,
    ) -> LoadReport {
        LoadReport {
            rps_fractional: qps,
            application_utilization: app,
            cpu_utilization: cpu,
            eps,
            ..LoadReport::default()
        }
    }

    fn close(a: Option<f64>, b: f64) -> bool {
        a.is_some_and(|a| (a - b).abs() < 1e-9)
    }

    #[test]
    fn weight_follows_a58() {
        // Envoy's example header: utilisation 0.8 (application wins over cpu 0.7), error
        // term 2/1000 · 1.0 = 0.002, so 1000 / 0.802.
        let r =
            parse("TEXT cpu_utilization:0.7,application_utilization:0.8,rps_fractional:1000,eps:2")
                .unwrap();
        assert!(close(
            weight(&r, DEFAULT_ERROR_UTILIZATION_PENALTY),
            1000.0 / 0.802
        ));
        assert!(close(weight(&r, 0.0), 1250.0), "no penalty: 1000 / 0.8");
        // 100 qps, 10 eps, cpu 0.5, penalty 2: 100 / (0.5 + 0.1 · 2) = 142.857…
        let r = report(Some(100.0), None, Some(0.5), Some(10.0));
        assert!(close(weight(&r, 2.0), 100.0 / 0.7));
        // application_utilization 0 falls back to cpu.
        let r = report(Some(100.0), Some(0.0), Some(0.5), None);
        assert!(close(weight(&r, 1.0), 200.0));
    }

    #[test]
    fn weight_is_none_without_qps_or_utilization() {
        assert_eq!(weight(&report(None, Some(0.5), None, None), 1.0), None);
        assert_eq!(weight(&report(Some(0.0), Some(0.5), None, None), 1.0), None);
        assert_eq!(weight(&report(Some(10.0), None, None, None), 1.0), None);
        assert_eq!(
            weight(&report(Some(10.0), Some(0.0), Some(0.0), None), 1.0),
            None
        );
        assert_eq!(
            weight(&report(Some(10.0), None, Some(-1.0), None), 1.0),
            None
        );
    }

    #[test]
    fn weight_tolerates_odd_penalties_and_values() {
        let r = report(Some(100.0), None, Some(0.5), Some(10.0));
        assert!(
            close(weight(&r, -3.0), 200.0),
            "negative penalty counts as 0"
        );
        assert!(
            close(weight(&r, f64::NAN), 200.0),
            "NaN penalty counts as 0"
        );
        assert_eq!(weight(&r, f64::INFINITY), None, "weight 0 is no weight");
        let huge = report(Some(f64::MAX), None, Some(f64::MIN_POSITIVE), None);
        assert_eq!(weight(&huge, 1.0), None, "overflow to infinity");
        let nan = report(Some(f64::NAN), None, Some(0.5), None);
        assert_eq!(weight(&nan, 1.0), None);
    }
}
