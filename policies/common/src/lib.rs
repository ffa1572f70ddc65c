//! Helpers shared by the bundled policies. Deliberately free of WIT types so that any
//! policy crate can use it whatever bindings it generates.
//!
//! Everything here is deterministic given its inputs: no clocks (callers pass `now_ns`) and
//! no randomness except through [`Rng`], so simulator runs replay exactly. Nothing panics on
//! any input, because a panic traps the policy on the request path.
//!
//! - [`config_f64`], [`config_usize`], [`reject_unknown`]: settings.
//! - [`Rng`]: the seeded PRNG; [`mix`], its 64-bit finaliser, for hashing-style mixing.
//! - [`pairs`]: settings from string literals, for tests.
//! - [`Probes`], [`choose_lowest`], [`measured`], [`lowest`]: the study's adaptive choice;
//!   [`sample_ms`] and [`Ended`]: what an exchange (an abort too) tells a latency score.
//! - [`orca`]: ORCA `endpoint-load-metrics` TEXT reports and the gRPC A58 weight.
//! - [`pool`]: Prequal's probe pool and hot-cold lexicographic selection.

mod adaptive;
mod config;
pub mod orca;
pub mod pool;
mod rng;

pub use adaptive::{choose_lowest, lowest, measured, sample_ms, Ended, Probes};
pub use config::{config_f64, config_usize, pairs, reject_unknown};
pub use rng::{mix, Rng};
