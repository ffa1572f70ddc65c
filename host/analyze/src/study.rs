//! The study's published results, to be shown beside ours. Only the persistent runs'
//! figures were published to us; anything else is shown as "n/a", never estimated.

/// One published row (persistent upstream connections, `wrk -t4 -c100 -d120s`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Published {
    /// The study's short policy name, as `just bench` names policy files.
    pub policy: &'static str,
    pub req_per_s: f64,
    pub mean_ms: f64,
    pub p95_ms: f64,
    /// Approximate shares A, B, C in percent, where the study gave them.
    pub shares_pct: Option<[f64; 3]>,
}

/// Tables 1 and 3 of the study, persistent connections. The study gave the SMA and EWMA
/// shares as "about 23 % / 76 % / 1.5 %" and no shares for round robin.
pub const PERSISTENT: [Published; 3] = [
    Published {
        policy: "rr",
        req_per_s: 494.9,
        mean_ms: 201.6,
        p95_ms: 416.0,
        shares_pct: None,
    },
    Published {
        policy: "sma",
        req_per_s: 467.1,
        mean_ms: 213.6,
        p95_ms: 238.0,
        shares_pct: Some([23.0, 76.0, 1.5]),
    },
    Published {
        policy: "ewma",
        req_per_s: 468.7,
        mean_ms: 213.0,
        p95_ms: 239.0,
        shares_pct: Some([23.0, 76.0, 1.5]),
    },
];

/// The study's backends, in the order of [`Published::shares_pct`].
pub const BACKENDS: [&str; 3] = ["A", "B", "C"];

/// The published row for `mode` and `policy`, if the study published one.
pub fn published(mode: &str, policy: &str) -> Option<&'static Published> {
    if mode != super::config::PERSISTENT {
        return None;
    }
    PERSISTENT.iter().find(|p| p.policy == policy)
}
