//! The study's published results (`shared/study/study-report.txt`, section 15), to be
//! shown beside ours. Anything it did not publish is shown as "n/a", never estimated.

/// One published row (`wrk -t4 -c100 -d120s`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Published {
    /// The study's short policy name, as `just bench` names policy files.
    pub policy: &'static str,
    pub req_per_s: f64,
    pub mean_ms: f64,
    pub p95_ms: f64,
    /// Shares A, B, C in percent, as the study gave them.
    pub shares_pct: Option<[f64; 3]>,
}

/// Tables 1 and 3 of the study, persistent upstream connections (section 15.1 gives
/// round-robin's shares).
pub const PERSISTENT: [Published; 3] = [
    Published {
        policy: "rr",
        req_per_s: 494.93,
        mean_ms: 201.57,
        p95_ms: 416.0,
        shares_pct: Some([33.33, 33.33, 33.33]),
    },
    Published {
        policy: "sma",
        req_per_s: 467.11,
        mean_ms: 213.61,
        p95_ms: 238.0,
        shares_pct: Some([22.83, 75.48, 1.69]),
    },
    Published {
        policy: "ewma",
        req_per_s: 468.70,
        mean_ms: 213.03,
        p95_ms: 239.0,
        shares_pct: Some([22.60, 76.06, 1.34]),
    },
];

/// Tables 2 and 3 of the study, a new upstream connection per request (section 15.2
/// gives round-robin's shares).
pub const NON_PERSISTENT: [Published; 3] = [
    Published {
        policy: "rr",
        req_per_s: 490.61,
        mean_ms: 203.28,
        p95_ms: 429.0,
        shares_pct: Some([33.34, 33.33, 33.33]),
    },
    Published {
        policy: "sma",
        req_per_s: 437.29,
        mean_ms: 228.08,
        p95_ms: 416.0,
        shares_pct: Some([34.62, 63.19, 2.19]),
    },
    Published {
        policy: "ewma",
        req_per_s: 442.53,
        mean_ms: 225.30,
        p95_ms: 416.0,
        shares_pct: Some([34.32, 63.92, 1.76]),
    },
];

/// The study's backends, in the order of [`Published::shares_pct`].
pub const BACKENDS: [&str; 3] = ["A", "B", "C"];

/// The published row for `mode` and `policy`, if the study published one.
pub fn published(mode: &str, policy: &str) -> Option<&'static Published> {
    table(mode).iter().find(|p| p.policy == policy)
}

/// The study's rows for `mode`; none for a mode it did not run (h2c, say).
pub fn table(mode: &str) -> &'static [Published] {
    match mode {
        super::config::PERSISTENT => &PERSISTENT,
        super::config::NON_PERSISTENT => &NON_PERSISTENT,
        _ => &[],
    }
}
