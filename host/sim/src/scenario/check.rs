//! Validation of the raw scenario into the typed model: one function per table, every error
//! a field path below the backend (e.g. ".change[0].at") and a message saying what to write
//! instead. [`super::Scenario::parse`] puts the file and the backend in front.
use super::raw::{RawBackend, RawCapacity, RawChange, RawKeys, RawLatency};
use super::{BackendSpec, Change, Keys, Latency, Settings, MAX_BACKENDS, MAX_KEYS, MAX_LATENCY_MS};
use crate::duration::parse_duration;

/// A field path below the backend (e.g. ".change[0].at") and a message.
pub(super) type FieldError = (String, String);

// === backends and changes ===

/// One `[[backend]]` entry, expanded into its replicas.
pub(super) fn backend(b: RawBackend) -> Result<Vec<BackendSpec>, FieldError> {
    let err = |field: &str, msg: String| (format!(".{field}"), msg);
    check_name(&b.id).map_err(|m| err("id", m))?;
    if let Some(url) = &b.url {
        check_url(url).map_err(|m| err("url", m))?;
    }
    let replicas = b.replicas.unwrap_or(1);
    if replicas == 0 || replicas > MAX_BACKENDS {
        return Err(err(
            "replicas",
            format!("{replicas} is outside 1..={MAX_BACKENDS}"),
        ));
    }
    if replicas > 1 && b.url.is_some() {
        return Err(err(
            "url",
            "cannot be combined with replicas (each replica is sim://ID)".into(),
        ));
    }
    let initial = settings(&b)?;
    let mut changes = b
        .changes
        .iter()
        .enumerate()
        .map(|(j, c)| change(c).map_err(|(f, m)| (format!(".change[{j}].{f}"), m)))
        .collect::<Result<Vec<_>, _>>()?;
    // Stable: two changes at the same instant apply in file order.
    changes.sort_by_key(|c| c.at_ns);
    Ok(expand(&b, replicas, &initial, &changes))
}

/// The backend's settings before any change.
fn settings(b: &RawBackend) -> Result<Settings, FieldError> {
    let err = |field: &str, msg: String| (format!(".{field}"), msg);
    let latency = parse_latency(b.cycle_ms.as_deref(), b.latency.as_ref())
        .map_err(|(f, m)| err(&f, m))?
        .ok_or_else(|| {
            err(
                "cycle_ms",
                "missing: give cycle_ms = [..] or latency = { dist = .. }".into(),
            )
        })?;
    Ok(Settings {
        latency,
        error_rate: b
            .error_rate
            .map_or(Ok(0.0), error_rate)
            .map_err(|m| err("error_rate", m))?,
        capacity: b
            .capacity
            .as_ref()
            .map_or(Ok(None), capacity)
            .map_err(|m| err("capacity", m))?,
        up: b
            .state
            .as_deref()
            .map_or(Ok(true), state)
            .map_err(|m| err("state", m))?,
    })
}

/// One `[[backend.change]]`; the field path is relative to it (e.g. "at").
fn change(c: &RawChange) -> Result<Change, FieldError> {
    let err = |field: &str, msg: String| (field.to_string(), msg);
    let change = Change {
        at_ns: duration_ns(&c.at).map_err(|m| err("at", m))?,
        latency: parse_latency(c.cycle_ms.as_deref(), c.latency.as_ref())?,
        error_rate: c
            .error_rate
            .map(error_rate)
            .transpose()
            .map_err(|m| err("error_rate", m))?,
        capacity: c
            .capacity
            .as_ref()
            .map(capacity)
            .transpose()
            .map_err(|m| err("capacity", m))?,
        up: c
            .state
            .as_deref()
            .map(state)
            .transpose()
            .map_err(|m| err("state", m))?,
    };
    if change.latency.is_none()
        && change.error_rate.is_none()
        && change.capacity.is_none()
        && change.up.is_none()
    {
        return Err(err(
            "at",
            "this change sets nothing: add cycle_ms, latency, error_rate, capacity or state".into(),
        ));
    }
    Ok(change)
}

/// `replicas = N` makes N backends `id01..idN` (zero-padded to N's width), each with its own
/// seed (`seed + r - 1`) when the entry fixes one.
fn expand(
    b: &RawBackend,
    replicas: usize,
    initial: &Settings,
    changes: &[Change],
) -> Vec<BackendSpec> {
    let width = replicas.to_string().len();
    (1..=replicas)
        .map(|r| {
            let id = if replicas == 1 {
                b.id.clone()
            } else {
                format!("{}{:0width$}", b.id, r)
            };
            BackendSpec {
                url: b.url.clone().unwrap_or_else(|| format!("sim://{id}")),
                id,
                weight: b.weight,
                seed: b.seed.map(|s| s.wrapping_add(r as u64 - 1)),
                initial: initial.clone(),
                changes: changes.to_vec(),
                report_load: b.report_load.unwrap_or(false),
            }
        })
        .collect()
}

fn check_name(id: &str) -> Result<(), String> {
    let ok = !id.is_empty()
        && id.len() <= 64
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{id:?} is not a usable backend id: use 1 to 64 letters, digits, '-', '_' or '.'"
        ))
    }
}

fn check_url(url: &str) -> Result<(), String> {
    if url.is_empty() || url.contains([',', '"', '\n', '\r']) {
        return Err(format!(
            "{url:?} cannot be written to a CSV log; use a URL without commas or quotes"
        ));
    }
    Ok(())
}

pub(super) fn duration_ns(text: &str) -> Result<u64, String> {
    parse_duration(text).map(|d| d.as_nanos() as u64)
}

// === keys ===

/// The `[keys]` table; the field path is relative to it (e.g. "count").
pub(super) fn keys(k: &RawKeys) -> Result<Keys, FieldError> {
    let err = |field: &str, msg: String| (field.to_string(), msg);
    let header = k.header.clone().unwrap_or_else(|| "x-user-id".into());
    let token = |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c);
    if header.is_empty() || header.len() > 64 || !header.chars().all(token) {
        return Err(err(
            "header",
            format!("{header:?} is not a header name: use an HTTP token of 1 to 64 bytes, e.g. \"x-user-id\""),
        ));
    }
    if header.chars().any(|c| c.is_ascii_uppercase()) {
        return Err(err(
            "header",
            format!("{header:?}: write header names in lower case, as policies ask for them"),
        ));
    }
    let count = k.count.unwrap_or(10_000);
    if !(1..=MAX_KEYS as i64).contains(&count) {
        return Err(err("count", format!("{count} is outside 1..={MAX_KEYS}")));
    }
    let hot = k.hot.unwrap_or(0.0);
    if !(0.0..=1.0).contains(&hot) {
        return Err(err(
            "hot",
            format!(
                "{hot} is outside 0..1: give the fraction of requests for the hot key, e.g. 0.3"
            ),
        ));
    }
    if let Some(s) = k.zipf {
        if !(s.is_finite() && s > 0.0 && s <= 10.0) {
            return Err(err(
                "zipf",
                format!("{s} is outside (0, 10]: give the exponent, e.g. 1.1"),
            ));
        }
    }
    Ok(Keys {
        header,
        count: count as u64,
        hot,
        zipf: k.zipf,
    })
}

// === latency ===

/// `cycle_ms` or `latency`, at most one of them; `None` when neither is given.
fn parse_latency(
    cycle_ms: Option<&[f64]>,
    dist: Option<&RawLatency>,
) -> Result<Option<Latency>, FieldError> {
    match (cycle_ms, dist) {
        (Some(_), Some(_)) => Err((
            "latency".into(),
            "give either cycle_ms or latency, not both".into(),
        )),
        (Some(cycle), None) => cycle_steps(cycle).map(|c| Some(Latency::Cycle(c))),
        (None, Some(d)) => distribution(d)
            .map(Some)
            .map_err(|(f, m)| (format!("latency.{f}"), m)),
        (None, None) => Ok(None),
    }
}

fn cycle_steps(cycle: &[f64]) -> Result<Vec<u64>, FieldError> {
    if cycle.is_empty() {
        return Err((
            "cycle_ms".into(),
            "is empty: give at least one step, e.g. [10]".into(),
        ));
    }
    cycle
        .iter()
        .map(|&ms| {
            if (0.0..=MAX_LATENCY_MS).contains(&ms) {
                Ok((ms * 1e6).round() as u64)
            } else {
                Err((
                    "cycle_ms".into(),
                    format!("step {ms} is outside 0..={MAX_LATENCY_MS} ms"),
                ))
            }
        })
        .collect()
}

/// A `latency = { dist = .. }` table: one function per distribution, each checking that
/// only its own fields are given.
fn distribution(d: &RawLatency) -> Result<Latency, FieldError> {
    match d.dist.as_str() {
        "constant" => {
            only(d, &["ms"])?;
            Ok(Latency::Cycle(vec![
                (need(d, "ms", d.ms)? * 1e6).round() as u64
            ]))
        }
        "exponential" => {
            only(d, &["mean_ms"])?;
            Ok(Latency::Exponential {
                mean_ns: need(d, "mean_ms", d.mean_ms)? * 1e6,
            })
        }
        "lognormal" => lognormal(d),
        "uniform" => uniform(d),
        other => Err((
            "dist".into(),
            format!(
                "{other:?} is not a distribution: use constant, exponential, lognormal or uniform"
            ),
        )),
    }
}

fn lognormal(d: &RawLatency) -> Result<Latency, FieldError> {
    only(d, &["median_ms", "mean_ms", "sigma"])?;
    let sigma = d.sigma.ok_or_else(|| {
        (
            "sigma".to_string(),
            "missing for dist = \"lognormal\"".to_string(),
        )
    })?;
    if !(sigma.is_finite() && (0.0..=5.0).contains(&sigma)) {
        return Err(("sigma".into(), format!("{sigma} is outside 0..=5")));
    }
    // The median of exp(mu + sigma z) is exp(mu); its mean is exp(mu + sigma^2 / 2).
    let mu = match (d.median_ms, d.mean_ms) {
        (Some(_), Some(_)) => {
            return Err((
                "median_ms".into(),
                "give median_ms or mean_ms, not both".into(),
            ))
        }
        (Some(_), None) => (need(d, "median_ms", d.median_ms)? * 1e6).ln(),
        (None, Some(_)) => (need(d, "mean_ms", d.mean_ms)? * 1e6).ln() - sigma * sigma / 2.0,
        (None, None) => {
            return Err((
                "median_ms".into(),
                "missing: give median_ms or mean_ms".into(),
            ))
        }
    };
    if !mu.is_finite() {
        return Err(("median_ms".into(), "must be more than 0".into()));
    }
    Ok(Latency::LogNormal { mu, sigma })
}

fn uniform(d: &RawLatency) -> Result<Latency, FieldError> {
    only(d, &["min_ms", "max_ms"])?;
    let (min, max) = (need(d, "min_ms", d.min_ms)?, need(d, "max_ms", d.max_ms)?);
    if min > max {
        return Err(("max_ms".into(), format!("{max} is below min_ms {min}")));
    }
    Ok(Latency::Uniform {
        min_ns: min * 1e6,
        max_ns: max * 1e6,
    })
}

/// A field the distribution needs, in 0..=MAX_LATENCY_MS.
fn need(d: &RawLatency, field: &'static str, v: Option<f64>) -> Result<f64, FieldError> {
    let v = v.ok_or_else(|| {
        (
            field.to_string(),
            format!("missing for dist = {:?}", d.dist),
        )
    })?;
    if v.is_finite() && (0.0..=MAX_LATENCY_MS).contains(&v) {
        Ok(v)
    } else {
        Err((
            field.to_string(),
            format!("{v} is outside 0..={MAX_LATENCY_MS}"),
        ))
    }
}

/// Rejects a field given for a distribution that does not take it.
fn only(d: &RawLatency, allowed: &[&str]) -> Result<(), FieldError> {
    let given = [
        ("ms", d.ms.is_some()),
        ("mean_ms", d.mean_ms.is_some()),
        ("median_ms", d.median_ms.is_some()),
        ("sigma", d.sigma.is_some()),
        ("min_ms", d.min_ms.is_some()),
        ("max_ms", d.max_ms.is_some()),
    ];
    match given.iter().find(|(k, set)| *set && !allowed.contains(k)) {
        Some((k, _)) => Err((
            k.to_string(),
            format!(
                "does not apply to dist = {:?} (it takes {})",
                d.dist,
                allowed.join(", ")
            ),
        )),
        None => Ok(()),
    }
}

// === scalar fields ===

fn error_rate(rate: f64) -> Result<f64, String> {
    if (0.0..=1.0).contains(&rate) {
        Ok(rate)
    } else {
        Err(format!(
            "{rate} is outside 0..1: give a fraction such as 0.05"
        ))
    }
}

fn capacity(c: &RawCapacity) -> Result<Option<usize>, String> {
    match c {
        RawCapacity::Limit(n) if (1..=1_000_000).contains(n) => Ok(Some(*n as usize)),
        RawCapacity::Word(w) if w == "unlimited" => Ok(None),
        RawCapacity::Limit(n) => Err(format!("{n} is outside 1..=1000000 (or \"unlimited\")")),
        RawCapacity::Word(w) => Err(format!("{w:?}: give a number of requests or \"unlimited\"")),
    }
}

fn state(s: &str) -> Result<bool, String> {
    match s {
        "up" => Ok(true),
        "down" => Ok(false),
        other => Err(format!("{other:?}: use \"up\" or \"down\"")),
    }
}
