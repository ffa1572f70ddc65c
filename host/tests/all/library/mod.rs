//! The policy library (`policies/`), each policy's rule pinned with deterministic inputs:
//! the simulator in virtual time, through the same router the proxy runs. Helpers
//! (`run`, `policy`, `share_of`, ..) are those of `simulate.rs`.
mod least_request;
mod maglev;
mod matrix;
mod prequal;
mod slo;
mod wrr_orca;
