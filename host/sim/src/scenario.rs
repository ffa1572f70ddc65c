//! Scenario files: the backends a simulation runs against and how they change over time.
//!
//! ```toml
//! name = "degrade"
//! description = "B slows down tenfold at 40 s."
//! timeout = "5s"            # optional: the proxy's upstream timeout (504 after it)
//! connect_error = "0.1ms"   # optional: how long a refused connection takes (default 0.1ms)
//!
//! [[backend]]
//! id = "A"
//! cycle_ms = [10, 15, 20, 400]   # the i-th request gets cycle_ms[i % len], like backend/
//! error_rate = 0.01              # optional: fraction answered 500
//! capacity = 4                   # optional: requests in service at once, the rest queue FIFO
//!
//! [[backend]]
//! id = "B"
//! latency = { dist = "lognormal", median_ms = 40, sigma = 0.3 }
//! [[backend.change]]             # from 40 s on
//! at = "40s"
//! latency = { dist = "lognormal", median_ms = 400, sigma = 0.3 }
//! ```
//!
//! Latency is either `cycle_ms` or a `latency` distribution: `constant` (`ms`),
//! `exponential` (`mean_ms`), `lognormal` (`median_ms` or `mean_ms`, and `sigma`, the
//! standard deviation of the log) or `uniform` (`min_ms`, `max_ms`). A change sets any of
//! `cycle_ms`/`latency`, `error_rate`, `capacity` (a number or "unlimited") and `state`
//! ("down": connections are refused and requests in flight are cut; "up": the backend
//! restarts, its cycle from the first step). `replicas = N` expands one entry into N
//! backends named `id01..idN`.
//!
//! The file is checked in full before anything runs, and every error names the file and
//! the field, because a typo in a scenario otherwise shows up as a puzzling result.
use std::collections::HashSet;
use std::path::Path;

use anyhow::{anyhow, Context as _};
use serde::Deserialize;

use super::duration::parse_duration;

/// Longest latency step accepted, as in `backend/`: catches seconds typed for milliseconds.
pub const MAX_LATENCY_MS: f64 = 3_600_000.0;
/// Backends in one scenario, replicas included; far beyond any real pool.
const MAX_BACKENDS: usize = 10_000;
const DEFAULT_CONNECT_ERROR_NS: u64 = 100_000;

/// A validated scenario, times in nanoseconds of virtual time.
#[derive(Debug, Clone, PartialEq)]
pub struct Scenario {
    pub name: String,
    pub description: String,
    /// The proxy's upstream timeout: an exchange taking longer ends as a 504 at this point.
    pub timeout_ns: Option<u64>,
    /// How long a connection attempt to a dead backend takes to fail.
    pub connect_error_ns: u64,
    pub backends: Vec<BackendSpec>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct BackendSpec {
    pub id: String,
    pub url: String,
    pub weight: Option<u32>,
    /// Fixes this backend's random draws whatever `--seed` says; `None` derives them from it.
    pub seed: Option<u64>,
    pub initial: Settings,
    /// In time order.
    pub changes: Vec<Change>,
}

/// How a backend behaves between two changes.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    pub latency: Latency,
    pub error_rate: f64,
    /// Requests in service at once (`None`: unlimited); the rest wait in FIFO order.
    pub capacity: Option<usize>,
    pub up: bool,
}

/// What changes at `at_ns`; `None` fields stay as they were.
#[derive(Debug, Clone, PartialEq)]
pub struct Change {
    pub at_ns: u64,
    pub latency: Option<Latency>,
    pub error_rate: Option<f64>,
    pub capacity: Option<Option<usize>>,
    pub up: Option<bool>,
}

/// Service time of one request, before any queueing.
#[derive(Debug, Clone, PartialEq)]
pub enum Latency {
    /// The i-th request gets `cycle[i % len]`, in nanoseconds.
    Cycle(Vec<u64>),
    Exponential {
        mean_ns: f64,
    },
    /// `exp(mu + sigma * z)` nanoseconds, z standard normal.
    LogNormal {
        mu: f64,
        sigma: f64,
    },
    Uniform {
        min_ns: f64,
        max_ns: f64,
    },
}

impl Scenario {
    /// Reads and validates a scenario file.
    pub fn load(path: &Path) -> anyhow::Result<Scenario> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read scenario file {}", path.display()))?;
        Scenario::parse(&text, &path.display().to_string())
    }

    /// Parses scenario text; `origin` (usually the file name) starts every error message.
    pub fn parse(text: &str, origin: &str) -> anyhow::Result<Scenario> {
        let raw: RawScenario =
            toml::from_str(text).map_err(|e| anyhow!("{origin}: {}", e.to_string().trim_end()))?;
        let fail = |field: &str, msg: String| anyhow!("{origin}: {field}: {msg}");
        let stem = Path::new(origin)
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        let timeout_ns = raw
            .timeout
            .as_deref()
            .map(|t| duration_ns(t).map_err(|m| fail("timeout", m)))
            .transpose()?;
        if timeout_ns == Some(0) {
            return Err(fail("timeout", "must be more than 0".into()));
        }
        let connect_error_ns = raw
            .connect_error
            .as_deref()
            .map(|t| duration_ns(t).map_err(|m| fail("connect_error", m)))
            .transpose()?
            .unwrap_or(DEFAULT_CONNECT_ERROR_NS);
        if raw.backends.is_empty() {
            return Err(fail(
                "backend",
                "no backends: add at least one [[backend]] table with an id".into(),
            ));
        }
        let mut backends = Vec::new();
        for (i, b) in raw.backends.into_iter().enumerate() {
            let path = format!("backend[{i}] (id {:?})", b.id);
            backends
                .extend(backend(b).map_err(|(field, msg)| fail(&format!("{path}{field}"), msg))?);
            if backends.len() > MAX_BACKENDS {
                return Err(fail(
                    &path,
                    format!("more than {MAX_BACKENDS} backends in all"),
                ));
            }
        }
        let mut seen = HashSet::new();
        for b in &backends {
            if !seen.insert(b.id.as_str()) {
                return Err(fail(
                    "backend",
                    format!("two backends are named {:?}; ids must be unique", b.id),
                ));
            }
        }
        Ok(Scenario {
            name: raw.name.unwrap_or(stem),
            description: raw.description.unwrap_or_default().trim().to_string(),
            timeout_ns,
            connect_error_ns,
            backends,
        })
    }
}

/// A field path below the backend (e.g. ".change[0].at") and a message.
type FieldError = (String, String);

fn backend(b: RawBackend) -> Result<Vec<BackendSpec>, FieldError> {
    let err = |field: &str, msg: String| (format!(".{field}"), msg);
    check_name(&b.id).map_err(|m| err("id", m))?;
    if let Some(url) = &b.url {
        if url.is_empty() || url.contains([',', '"', '\n', '\r']) {
            return Err(err(
                "url",
                format!(
                    "{url:?} cannot be written to a CSV log; use a URL without commas or quotes"
                ),
            ));
        }
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
    let latency = parse_latency(b.cycle_ms.as_deref(), b.latency.as_ref())
        .map_err(|(f, m)| err(&f, m))?
        .ok_or_else(|| {
            err(
                "cycle_ms",
                "missing: give cycle_ms = [..] or latency = { dist = .. }".into(),
            )
        })?;
    let initial = Settings {
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
    };
    let mut changes = Vec::new();
    for (j, c) in b.changes.iter().enumerate() {
        let cerr = |field: &str, msg: String| (format!(".change[{j}].{field}"), msg);
        let change = Change {
            at_ns: duration_ns(&c.at).map_err(|m| cerr("at", m))?,
            latency: parse_latency(c.cycle_ms.as_deref(), c.latency.as_ref())
                .map_err(|(f, m)| cerr(&f, m))?,
            error_rate: c
                .error_rate
                .map(error_rate)
                .transpose()
                .map_err(|m| cerr("error_rate", m))?,
            capacity: c
                .capacity
                .as_ref()
                .map(capacity)
                .transpose()
                .map_err(|m| cerr("capacity", m))?,
            up: c
                .state
                .as_deref()
                .map(state)
                .transpose()
                .map_err(|m| cerr("state", m))?,
        };
        if change.latency.is_none()
            && change.error_rate.is_none()
            && change.capacity.is_none()
            && change.up.is_none()
        {
            return Err(cerr(
                "at",
                "this change sets nothing: add cycle_ms, latency, error_rate, capacity or state"
                    .into(),
            ));
        }
        changes.push(change);
    }
    // Stable: two changes at the same instant apply in file order.
    changes.sort_by_key(|c| c.at_ns);

    let width = replicas.to_string().len();
    Ok((1..=replicas)
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
                changes: changes.clone(),
            }
        })
        .collect())
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

fn duration_ns(text: &str) -> Result<u64, String> {
    parse_duration(text).map(|d| d.as_nanos() as u64)
}

fn parse_latency(
    cycle_ms: Option<&[f64]>,
    dist: Option<&RawLatency>,
) -> Result<Option<Latency>, FieldError> {
    match (cycle_ms, dist) {
        (Some(_), Some(_)) => Err((
            "latency".into(),
            "give either cycle_ms or latency, not both".into(),
        )),
        (Some(cycle), None) => {
            if cycle.is_empty() {
                return Err((
                    "cycle_ms".into(),
                    "is empty: give at least one step, e.g. [10]".into(),
                ));
            }
            let steps = cycle
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
                .collect::<Result<Vec<_>, _>>()?;
            Ok(Some(Latency::Cycle(steps)))
        }
        (None, Some(d)) => distribution(d)
            .map(Some)
            .map_err(|(f, m)| (format!("latency.{f}"), m)),
        (None, None) => Ok(None),
    }
}

fn distribution(d: &RawLatency) -> Result<Latency, FieldError> {
    let need = |field: &'static str, v: Option<f64>| -> Result<f64, FieldError> {
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
    };
    let unexpected = |allowed: &[&str]| -> Result<(), FieldError> {
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
    };
    match d.dist.as_str() {
        "constant" => {
            unexpected(&["ms"])?;
            Ok(Latency::Cycle(vec![
                (need("ms", d.ms)? * 1e6).round() as u64
            ]))
        }
        "exponential" => {
            unexpected(&["mean_ms"])?;
            Ok(Latency::Exponential {
                mean_ns: need("mean_ms", d.mean_ms)? * 1e6,
            })
        }
        "lognormal" => {
            unexpected(&["median_ms", "mean_ms", "sigma"])?;
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
                (Some(_), None) => (need("median_ms", d.median_ms)? * 1e6).ln(),
                (None, Some(_)) => (need("mean_ms", d.mean_ms)? * 1e6).ln() - sigma * sigma / 2.0,
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
        "uniform" => {
            unexpected(&["min_ms", "max_ms"])?;
            let (min, max) = (need("min_ms", d.min_ms)?, need("max_ms", d.max_ms)?);
            if min > max {
                return Err(("max_ms".into(), format!("{max} is below min_ms {min}")));
            }
            Ok(Latency::Uniform {
                min_ns: min * 1e6,
                max_ns: max * 1e6,
            })
        }
        other => Err((
            "dist".into(),
            format!(
                "{other:?} is not a distribution: use constant, exponential, lognormal or uniform"
            ),
        )),
    }
}

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

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawScenario {
    name: Option<String>,
    description: Option<String>,
    timeout: Option<String>,
    connect_error: Option<String>,
    #[serde(default, rename = "backend")]
    backends: Vec<RawBackend>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBackend {
    id: String,
    url: Option<String>,
    weight: Option<u32>,
    seed: Option<u64>,
    replicas: Option<usize>,
    cycle_ms: Option<Vec<f64>>,
    latency: Option<RawLatency>,
    error_rate: Option<f64>,
    capacity: Option<RawCapacity>,
    state: Option<String>,
    #[serde(default, rename = "change")]
    changes: Vec<RawChange>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawChange {
    at: String,
    cycle_ms: Option<Vec<f64>>,
    latency: Option<RawLatency>,
    error_rate: Option<f64>,
    capacity: Option<RawCapacity>,
    state: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLatency {
    dist: String,
    ms: Option<f64>,
    mean_ms: Option<f64>,
    median_ms: Option<f64>,
    sigma: Option<f64>,
    min_ms: Option<f64>,
    max_ms: Option<f64>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum RawCapacity {
    Limit(i64),
    Word(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(text: &str) -> String {
        format!("{:#}", Scenario::parse(text, "s.toml").unwrap_err())
    }

    #[test]
    fn parses_everything() {
        let s = Scenario::parse(
            r#"
            description = "d"
            timeout = "2s"
            [[backend]]
            id = "A"
            cycle_ms = [10, 0.5]
            capacity = 2
            [[backend.change]]
            at = "1m"
            state = "down"
            [[backend.change]]
            at = "30s"
            capacity = "unlimited"
            [[backend]]
            id = "w"
            replicas = 10
            seed = 5
            latency = { dist = "lognormal", mean_ms = 10, sigma = 0.5 }
            "#,
            "dir/x.toml",
        )
        .unwrap();
        assert_eq!(s.name, "x");
        assert_eq!(s.timeout_ns, Some(2_000_000_000));
        assert_eq!(s.connect_error_ns, 100_000);
        assert_eq!(s.backends.len(), 11);
        let a = &s.backends[0];
        assert_eq!(a.url, "sim://A");
        assert_eq!(a.initial.latency, Latency::Cycle(vec![10_000_000, 500_000]));
        assert_eq!(a.initial.capacity, Some(2));
        assert_eq!(a.changes[0].at_ns, 30_000_000_000);
        assert_eq!(a.changes[0].capacity, Some(None));
        assert_eq!(a.changes[1].up, Some(false));
        assert_eq!(s.backends[1].id, "w01");
        assert_eq!(s.backends[10].id, "w10");
        assert_eq!(s.backends[10].seed, Some(14));
        let Latency::LogNormal { mu, sigma } = s.backends[1].initial.latency else {
            panic!("not lognormal")
        };
        assert!(((mu + sigma * sigma / 2.0).exp() - 1e7).abs() < 1e-3);
    }

    #[test]
    fn errors_name_the_file_and_field() {
        let e = err("[[backend]]\nid = \"A\"\ncycle_m = [1]\n");
        assert!(e.starts_with("s.toml: ") && e.contains("cycle_m"), "{e}");
        let e = err("[[backend]]\nid = \"A\"\ncycle_ms = []\n");
        assert!(
            e.contains("s.toml: backend[0] (id \"A\").cycle_ms: is empty"),
            "{e}"
        );
        let e = err("[[backend]]\nid = \"A\"\ncycle_ms = [1]\n[[backend.change]]\nat = \"5\"\nstate = \"down\"\n");
        assert!(
            e.contains("backend[0] (id \"A\").change[0].at: invalid duration"),
            "{e}"
        );
        let e = err("[[backend]]\nid = \"A\"\nlatency = { dist = \"lognormal\", median_ms = 5 }\n");
        assert!(e.contains(".latency.sigma: missing"), "{e}");
        let e = err("[[backend]]\nid = \"A\"\ncycle_ms = [1]\nerror_rate = 2\n");
        assert!(e.contains(".error_rate: 2 is outside"), "{e}");
        let e = err(
            "[[backend]]\nid = \"A\"\ncycle_ms = [1]\n[[backend]]\nid = \"A\"\ncycle_ms = [1]\n",
        );
        assert!(e.contains("two backends are named \"A\""), "{e}");
        let e = err("[[backend]]\nid = \"A,B\"\ncycle_ms = [1]\n");
        assert!(e.contains(".id: \"A,B\" is not a usable backend id"), "{e}");
        let e = err("[[backend]]\nid = \"A\"\n");
        assert!(e.contains(".cycle_ms: missing"), "{e}");
        let e = err("name = \"x\"\n");
        assert!(e.contains("s.toml: backend: no backends"), "{e}");
        let e = err("[[backend]]\nid = \"A\"\ncycle_ms = [1]\ncapacity = 0\n");
        assert!(e.contains(".capacity: 0 is outside"), "{e}");
    }
}
