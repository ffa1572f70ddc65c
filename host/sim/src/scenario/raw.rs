//! The scenario file as written: serde types that mirror the TOML, every field optional
//! where the file may leave it out. `check` turns them into the validated model.
use serde::Deserialize;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawScenario {
    pub(super) name: Option<String>,
    pub(super) description: Option<String>,
    pub(super) timeout: Option<String>,
    pub(super) connect_error: Option<String>,
    pub(super) client_timeout: Option<String>,
    pub(super) probe_rtt: Option<String>,
    #[serde(default, rename = "backend")]
    pub(super) backends: Vec<RawBackend>,
    pub(super) keys: Option<RawKeys>,
}

/// `[keys]`: the request key every request carries in a header.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawKeys {
    pub(super) header: Option<String>,
    pub(super) count: Option<i64>,
    pub(super) hot: Option<f64>,
    pub(super) zipf: Option<f64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawBackend {
    pub(super) id: String,
    pub(super) url: Option<String>,
    pub(super) weight: Option<u32>,
    pub(super) seed: Option<u64>,
    pub(super) replicas: Option<usize>,
    pub(super) cycle_ms: Option<Vec<f64>>,
    pub(super) latency: Option<RawLatency>,
    pub(super) error_rate: Option<f64>,
    pub(super) capacity: Option<RawCapacity>,
    pub(super) state: Option<String>,
    pub(super) report_load: Option<bool>,
    #[serde(default, rename = "change")]
    pub(super) changes: Vec<RawChange>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawChange {
    pub(super) at: String,
    pub(super) cycle_ms: Option<Vec<f64>>,
    pub(super) latency: Option<RawLatency>,
    pub(super) error_rate: Option<f64>,
    pub(super) capacity: Option<RawCapacity>,
    pub(super) state: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLatency {
    pub(super) dist: String,
    pub(super) ms: Option<f64>,
    pub(super) mean_ms: Option<f64>,
    pub(super) median_ms: Option<f64>,
    pub(super) sigma: Option<f64>,
    pub(super) min_ms: Option<f64>,
    pub(super) max_ms: Option<f64>,
}

#[derive(Deserialize)]
#[serde(untagged)]
pub(super) enum RawCapacity {
    Limit(i64),
    Word(String),
}
