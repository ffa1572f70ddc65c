//! Scenario files: the backends a simulation runs against and how they change over time.
//!
//! ```toml
//! name = "degrade"
//! description = "B slows down tenfold at 40 s."
//! timeout = "5s"            # optional: the proxy's upstream timeout (504 after it)
//! connect_error = "0.1ms"   # optional: how long a refused connection takes (default 0.1ms)
//! client_timeout = "200ms"  # optional: clients hang up on a request after this (aborted)
//! probe_rtt = "0.1ms"       # optional: a probe's round trip to an up backend (default 0.1ms)
//!
//! [[backend]]
//! id = "A"
//! cycle_ms = [10, 15, 20, 400]   # the i-th request gets cycle_ms[i % len], like backend/
//! error_rate = 0.01              # optional: fraction answered 500
//! capacity = 4                   # optional: requests in service at once, the rest queue FIFO
//! report_load = true             # optional: responses carry load headers, as backend --report-load
//!
//! [[backend]]
//! id = "B"
//! latency = { dist = "lognormal", median_ms = 40, sigma = 0.3 }
//! [[backend.change]]             # from 40 s on
//! at = "40s"
//! latency = { dist = "lognormal", median_ms = 400, sigma = 0.3 }
//!
//! [keys]                         # optional: every request carries a key, for hashing policies
//! header = "x-user-id"           # the (lower-case) header that carries it (default x-user-id)
//! count = 10000                  # distinct keys "user-0".."user-9999" (default 10000)
//! hot = 0.3                      # optional: this fraction of requests carry the hot key user-0
//! zipf = 1.1                     # optional: the others follow Zipf(s) by rank (default uniform)
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
//! Load reports and probes are modelled as `backend/` has them: with `report_load`, every
//! response carries `endpoint-load-metrics` (ORCA TEXT), `x-prequal-rif` and
//! `x-prequal-latency-us`, measured as the response leaves; a probe (`host.probe`) always
//! gets them, measured when it arrives (half its round trip after it was sent), and does
//! no work. A client that hangs up (`client_timeout`) leaves its request to the backend,
//! which finishes it; the policy observes it as aborted at that moment.
//!
//! Request keys (`[keys]`): without the table requests carry no headers (a GET / from
//! 127.0.0.1, one port per connection), exactly as before. With it, each request carries
//! `header: user-<i>`: with probability `hot` the hot key `user-0`, otherwise `i` uniform in
//! `0..count`, or with `zipf = s` rank `i + 1` drawn with probability proportional to
//! `(i + 1)^-s`. The draw is a pure function of (`--seed`, connection, that connection's
//! request number), see [`KeySampler::index`], so tests can recompute every request's key
//! from the records, and nothing else in the run (backend draws included) shifts.
//!
//! The file is checked in full before anything runs, and every error names the file and
//! the field, because a typo in a scenario otherwise shows up as a puzzling result. Errors
//! are [`UsageError`]s (exit code 2). The serde types that mirror the file are in `raw`;
//! their validation into the model below is in `check`.
mod check;
mod raw;

use std::collections::HashSet;
use std::path::Path;

use switchyard_input::UsageError;

use raw::RawScenario;
use switchyard_rng as rng;

/// Longest latency step accepted, as in `backend/`: catches seconds typed for milliseconds.
pub const MAX_LATENCY_MS: f64 = 3_600_000.0;
/// Backends in one scenario, replicas included; far beyond any real pool.
const MAX_BACKENDS: usize = 10_000;
const DEFAULT_CONNECT_ERROR_NS: u64 = 100_000;
const DEFAULT_PROBE_RTT_NS: u64 = 100_000;
/// Distinct request keys in `[keys]`: a Zipf table of this many costs 8 MB.
pub const MAX_KEYS: usize = 1_000_000;

/// A validated scenario, times in nanoseconds of virtual time.
#[derive(Debug, Clone, PartialEq)]
pub struct Scenario {
    pub name: String,
    pub description: String,
    /// The proxy's upstream timeout: an exchange taking longer ends as a 504 at this point.
    pub timeout_ns: Option<u64>,
    /// How long a connection attempt to a dead backend takes to fail.
    pub connect_error_ns: u64,
    /// Clients hang up on a request still unanswered after this long.
    pub client_timeout_ns: Option<u64>,
    /// A probe's round trip to a backend that is up.
    pub probe_rtt_ns: u64,
    pub backends: Vec<BackendSpec>,
    /// The request keys (`[keys]`); `None`: requests carry no headers.
    pub keys: Option<Keys>,
}

/// Which key each request carries, and in which header.
#[derive(Debug, Clone, PartialEq)]
pub struct Keys {
    /// Lower-case header name.
    pub header: String,
    /// Distinct keys, `user-0` to `user-{count - 1}`.
    pub count: u64,
    /// Fraction of requests with the hot key `user-0`.
    pub hot: f64,
    /// Zipf exponent over the keys by rank; `None`: uniform.
    pub zipf: Option<f64>,
}

impl Keys {
    /// The sampler for a run (builds the Zipf table once).
    pub fn sampler(&self) -> KeySampler {
        let cdf = self.zipf.map_or_else(Vec::new, |s| {
            let mut acc = 0.0;
            let mut cdf: Vec<f64> = (1..=self.count)
                .map(|r| {
                    acc += (r as f64).powf(-s);
                    acc
                })
                .collect();
            cdf.iter_mut().for_each(|c| *c /= acc);
            cdf
        });
        KeySampler {
            count: self.count.max(1),
            hot: rng::FailureRate::new(self.hot),
            cdf,
        }
    }

    /// The header value of key number `index`.
    pub fn value(index: u64) -> String {
        format!("user-{index}")
    }
}

/// Draws each request's key: see [`KeySampler::index`].
#[derive(Debug, Clone)]
pub struct KeySampler {
    count: u64,
    hot: rng::FailureRate,
    /// Cumulative Zipf probabilities by rank; empty: uniform.
    cdf: Vec<f64>,
}

/// Keeps key draws apart from the backends' streams, which are derived from the same seed.
const KEY_STREAM: u64 = 0x6b65_7973_5f73_696d;

impl KeySampler {
    /// The key number (`0..count`) of connection `conn`'s `n`-th request (from 0) in a run
    /// with seed `seed`: a pure function, so it does not depend on how requests interleave.
    pub fn index(&self, seed: u64, conn: u32, n: u64) -> u64 {
        let stream = rng::splitmix64_at(seed ^ KEY_STREAM, u64::from(conn));
        if self.hot.fails(stream, 2 * n) {
            return 0;
        }
        let u = rng::splitmix64_at(stream, 2 * n + 1);
        if self.cdf.is_empty() {
            return ((u128::from(u) * u128::from(self.count)) >> 64) as u64;
        }
        let p = rng::unit(u);
        (self.cdf.partition_point(|&c| c <= p) as u64).min(self.count - 1)
    }
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
    /// Responses carry load headers (`backend --report-load`).
    pub report_load: bool,
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
    pub fn load(path: &Path) -> Result<Scenario, UsageError> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            UsageError::with_source(
                format!(
                    "cannot read scenario file {}: pass --scenario FILE, e.g. scenarios/study.toml",
                    path.display()
                ),
                e,
            )
        })?;
        Scenario::parse(&text, &path.display().to_string())
    }

    /// Parses scenario text; `origin` (usually the file name) starts every error message.
    pub fn parse(text: &str, origin: &str) -> Result<Scenario, UsageError> {
        let raw: RawScenario = toml::from_str(text).map_err(|e| toml_error(origin, text, &e))?;
        let fail = |field: &str, msg: String| UsageError::new(format!("{origin}: {field}: {msg}"));
        let stem = Path::new(origin)
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        let timeout_ns = raw
            .timeout
            .as_deref()
            .map(|t| check::duration_ns(t).map_err(|m| fail("timeout", m)))
            .transpose()?;
        if timeout_ns == Some(0) {
            return Err(fail("timeout", "must be more than 0".into()));
        }
        let connect_error_ns = raw
            .connect_error
            .as_deref()
            .map(|t| check::duration_ns(t).map_err(|m| fail("connect_error", m)))
            .transpose()?
            .unwrap_or(DEFAULT_CONNECT_ERROR_NS);
        let client_timeout_ns = raw
            .client_timeout
            .as_deref()
            .map(|t| check::duration_ns(t).map_err(|m| fail("client_timeout", m)))
            .transpose()?;
        if client_timeout_ns == Some(0) {
            return Err(fail("client_timeout", "must be more than 0".into()));
        }
        let probe_rtt_ns = raw
            .probe_rtt
            .as_deref()
            .map(|t| check::duration_ns(t).map_err(|m| fail("probe_rtt", m)))
            .transpose()?
            .unwrap_or(DEFAULT_PROBE_RTT_NS);
        if raw.backends.is_empty() {
            return Err(fail(
                "backend",
                "no backends: add at least one [[backend]] table with an id".into(),
            ));
        }
        let mut backends = Vec::new();
        for (i, b) in raw.backends.into_iter().enumerate() {
            let path = format!("backend[{i}] (id {:?})", b.id);
            backends.extend(
                check::backend(b).map_err(|(field, msg)| fail(&format!("{path}{field}"), msg))?,
            );
            if backends.len() > MAX_BACKENDS {
                return Err(fail(
                    &path,
                    format!("more than {MAX_BACKENDS} backends in all"),
                ));
            }
        }
        let keys = raw
            .keys
            .as_ref()
            .map(|k| check::keys(k).map_err(|(field, msg)| fail(&format!("keys.{field}"), msg)))
            .transpose()?;
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
            client_timeout_ns,
            probe_rtt_ns,
            backends,
            keys,
        })
    }
}

/// A TOML or schema error on one line: the file, where, and serde's message (which names
/// the field and, for a typo, the fields that are allowed). toml's own rendering spans
/// several lines with a source excerpt; the binary's errors are one line each.
fn toml_error(origin: &str, text: &str, e: &toml::de::Error) -> UsageError {
    let message = e
        .message()
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join("; ");
    let Some(start) = e.span().map(|s| s.start.min(text.len())) else {
        return UsageError::new(format!("{origin}: {message}"));
    };
    let before = text.get(..start).unwrap_or("");
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    UsageError::new(format!("{origin}: line {line}, column {column}: {message}"))
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
            // The one duration grammar's message (switchyard_input::duration), after the field.
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

    const ONE: &str = "[[backend]]\nid = \"A\"\ncycle_ms = [1]\n";

    #[test]
    fn keys_parse_with_defaults() {
        assert_eq!(Scenario::parse(ONE, "s.toml").unwrap().keys, None);
        let s = Scenario::parse(&format!("{ONE}[keys]\n"), "s.toml").unwrap();
        assert_eq!(
            s.keys,
            Some(Keys {
                header: "x-user-id".into(),
                count: 10_000,
                hot: 0.0,
                zipf: None
            })
        );
        let text =
            format!("{ONE}[keys]\nheader = \"x-tenant\"\ncount = 50\nhot = 0.25\nzipf = 1.1\n");
        let k = Scenario::parse(&text, "s.toml").unwrap().keys.unwrap();
        assert_eq!(
            (k.header.as_str(), k.count, k.hot, k.zipf),
            ("x-tenant", 50, 0.25, Some(1.1))
        );
    }

    #[test]
    fn keys_errors_name_the_file_and_field() {
        let bad = |keys: &str| err(&format!("{ONE}[keys]\n{keys}\n"));
        let e = bad("count = 0");
        assert!(
            e.contains("s.toml: keys.count: 0 is outside 1..=1000000"),
            "{e}"
        );
        let e = bad("hot = 1.5");
        assert!(e.contains("s.toml: keys.hot: 1.5 is outside 0..1"), "{e}");
        let e = bad("zipf = 0");
        assert!(e.contains("s.toml: keys.zipf: 0 is outside (0, 10]"), "{e}");
        let e = bad("header = \"x user\"");
        assert!(
            e.contains("s.toml: keys.header: \"x user\" is not a header name"),
            "{e}"
        );
        let e = bad("header = \"X-User\"");
        assert!(
            e.contains("s.toml: keys.header: \"X-User\": write header names in lower case"),
            "{e}"
        );
        let e = bad("heder = \"x\"");
        assert!(e.starts_with("s.toml: line ") && e.contains("heder"), "{e}");
    }

    #[test]
    fn key_draws_are_pure_and_follow_the_popularity_rule() {
        let keys = |hot: f64, zipf: Option<f64>| Keys {
            header: "x-user-id".into(),
            count: 1000,
            hot,
            zipf,
        };
        let uniform = keys(0.0, None).sampler();
        assert_eq!(uniform.index(1, 3, 7), uniform.index(1, 3, 7));
        assert_ne!(
            (0..20).map(|n| uniform.index(1, 0, n)).collect::<Vec<_>>(),
            (0..20).map(|n| uniform.index(2, 0, n)).collect::<Vec<_>>()
        );
        let share = |s: &KeySampler, key: u64| {
            (0..100_000)
                .filter(|&n| s.index(1, (n % 7) as u32, n) == key)
                .count() as f64
                / 1e5
        };
        let hot = keys(0.3, None).sampler();
        assert!((share(&hot, 0) - 0.3).abs() < 0.01, "{}", share(&hot, 0));
        assert!(share(&uniform, 0) < 0.003);
        // Zipf(1.1) over 1000 ranks: rank 1 has 1 / H(1000, 1.1) of the mass, about 18 %.
        let zipf = keys(0.0, Some(1.1)).sampler();
        let h: f64 = (1..=1000).map(|r| (r as f64).powf(-1.1)).sum();
        assert!(
            (share(&zipf, 0) - 1.0 / h).abs() < 0.01,
            "{}",
            share(&zipf, 0)
        );
        assert!(share(&zipf, 1) < share(&zipf, 0));
        assert!((0..1000).all(|n| zipf.index(5, 1, n) < 1000 && uniform.index(5, 1, n) < 1000));
    }
}
