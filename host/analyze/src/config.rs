//! Which configuration (upstream mode x policy) a log belongs to. The study's tables are
//! organised by it, and logs say it in different ways: `just bench` names the folder
//! `<upstream>-<policy>`, the proxy writes `upstream` and `routing_mode` columns, and the
//! study's own logs have only `routing_mode` and whatever their file was called.
use std::cmp::Ordering;
use std::path::Path;

use switchyard_report::natural_cmp;

use super::load::Log;

pub const PERSISTENT: &str = "persistent";
pub const NON_PERSISTENT: &str = "non-persistent";
/// A log that says nothing about its upstream connections.
pub const UNKNOWN: &str = "unknown";

/// A run's configuration, in the study's short names (`rr`, `sma`, `ewma`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// `persistent`, `non-persistent`, or what else the log said (e.g. `simulated`).
    pub mode: String,
    /// The policy file's stem when known (`rr`, `peak-ewma`), else a short name derived
    /// from the policy's self-reported name.
    pub policy: String,
}

impl Config {
    /// How the configuration reads in tables and charts: `persistent rr`.
    pub fn label(&self) -> String {
        format!("{} {}", self.mode, self.policy)
    }
}

/// The configuration of the run logged in `csv` (already read into `log`): the bench
/// folder's name wins (it is what was asked for), then the log's columns, then words in the
/// file's path.
pub fn identify(csv: &Path, log: &Log) -> Config {
    let folder = csv
        .parent()
        .and_then(Path::file_name)
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let from_folder = [NON_PERSISTENT, PERSISTENT].iter().find_map(|mode| {
        let policy = folder.strip_prefix(mode)?.strip_prefix('-')?;
        (!policy.is_empty()).then(|| (mode.to_string(), policy.to_string()))
    });
    if let Some((mode, policy)) = from_folder {
        return Config { mode, policy };
    }
    let path = csv.to_string_lossy().to_lowercase();
    let mode = log.upstream.clone().unwrap_or_else(|| {
        if ["non-persistent", "non_persistent", "nonpersistent"]
            .iter()
            .any(|w| path.contains(w))
        {
            NON_PERSISTENT.into()
        } else if path.contains("persistent") {
            PERSISTENT.into()
        } else {
            UNKNOWN.into()
        }
    });
    let policy = if log.routing_mode.is_empty() {
        let stem = csv
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        if stem == "requests" && !folder.is_empty() {
            folder
        } else {
            stem
        }
    } else {
        short_policy(&log.routing_mode)
    };
    Config { mode, policy }
}

/// The study's short name for a policy's self-reported name (`round-robin` -> `rr`,
/// `adaptive_ewma` -> `ewma`); names it does not recognise are kept, lower-cased.
pub fn short_policy(name: &str) -> String {
    let n = name.trim().to_lowercase();
    if n.contains("round") || n == "rr" {
        "rr".into()
    } else if n.contains("peak") {
        "peak-ewma".into()
    } else if n.contains("ewma") {
        "ewma".into()
    } else if n.contains("sma") {
        "sma".into()
    } else {
        n
    }
}

/// The study's order: persistent before non-persistent, then other modes by name; within
/// a mode rr, sma, ewma, then other policies in natural order.
pub fn study_order(a: &Config, b: &Config) -> Ordering {
    rank(&a.mode, &[PERSISTENT, NON_PERSISTENT])
        .cmp(&rank(&b.mode, &[PERSISTENT, NON_PERSISTENT]))
        .then_with(|| natural_cmp(&a.mode, &b.mode))
        .then_with(|| {
            rank(&a.policy, &["rr", "sma", "ewma"]).cmp(&rank(&b.policy, &["rr", "sma", "ewma"]))
        })
        .then_with(|| natural_cmp(&a.policy, &b.policy))
}

fn rank(value: &str, known: &[&str]) -> usize {
    known
        .iter()
        .position(|k| *k == value)
        .unwrap_or(known.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policy_names() {
        assert_eq!(short_policy("round-robin"), "rr");
        assert_eq!(short_policy("adaptive_sma"), "sma");
        assert_eq!(short_policy("adaptive_ewma"), "ewma");
        assert_eq!(short_policy("p2c_peak_ewma"), "peak-ewma");
        assert_eq!(short_policy("Random"), "random");
    }

    #[test]
    fn order() {
        let c = |m: &str, p: &str| Config {
            mode: m.into(),
            policy: p.into(),
        };
        let mut v = [
            c("non-persistent", "rr"),
            c("persistent", "peak-ewma"),
            c("persistent", "ewma"),
            c("simulated", "rr"),
            c("persistent", "rr"),
        ];
        v.sort_by(study_order);
        let labels: Vec<String> = v.iter().map(Config::label).collect();
        assert_eq!(
            labels,
            [
                "persistent rr",
                "persistent ewma",
                "persistent peak-ewma",
                "non-persistent rr",
                "simulated rr"
            ]
        );
    }
}
