//! Run statistics and the study's tables, shared by `switchyard simulate` and
//! `switchyard analyze`, so a simulated run and a live one are judged by the same arithmetic
//! and printed in the same format, and can be compared row by row.
//!
//! Everything here is a pure function of the records: no clocks, no hash-map iteration
//! order, fixed decimals. That is what lets the simulator promise byte-identical output.
//!
//! - [`log`]: the request log's columns, row writer and failure predicate, shared by the
//!   proxy, the simulator and `analyze`.
//! - [`RunStats`]: the numbers of one run; [`render_summary`] and friends: the tables.
pub mod log;
mod stats;
mod table;

pub use stats::{natural_cmp, percentile, BackendStats, ModeCount, RunStats};
pub use table::{escape_cell, render_backends, render_shares, render_summary};

/// One request as the report sees it: the common denominator of a proxy CSV log line and a
/// simulated request.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    /// When the request finished (was logged), in milliseconds since the start of the run.
    pub t_ms: f64,
    /// Backend id (e.g. "A") or, for logs without ids, its URL.
    pub backend: String,
    /// As the client saw it.
    pub latency_ms: f64,
    /// HTTP status sent to the client; 0 when none was sent.
    pub status: u16,
    /// Who routed the request: the policy's name, or the host's fallback.
    pub routing_mode: String,
}

impl Record {
    /// The study's definition of an error: a 5xx, or no response at all (status 0). A
    /// record has no outcome, so this is [`log::failed`] without one.
    pub fn is_error(&self) -> bool {
        log::failed(self.status, None)
    }
}
