//! Switchyard: a reverse-proxy load balancer whose routing policies are wasm components.
//!
//! The proxy's own crate. The seams whose direction matters are crates, so breaking them is
//! a compile error (README, "Layout"):
//! - `switchyard-listener`: binding and accepting, shared with the admin server and backends;
//! - `switchyard-runtime`: policies, sandbox, swaps; knows nothing of HTTP or files;
//! - `switchyard-upstream`: connections to backends; knows nothing of policies;
//! - `switchyard-sim`, `switchyard-analyze`, `switchyard-report`: offline tools, optional
//!   features of the binary.
//!
//! Inside this crate, dependencies point one way too: [`cli`] -> [`config`] -> [`app`], which
//! wires [`proxy`] (forwarding: asks the router, uses upstreams, emits events), [`telemetry`]
//! (receives events: CSV log, live aggregates), [`reload`] (watches the policy file),
//! [`admin`] (dashboard, metrics, API: reads what the others keep) and [`console`] (prints).
pub mod admin;
pub mod app;
pub mod cli;
pub mod config;
pub mod console;
#[cfg(feature = "sim")]
pub mod matrix;
mod out;
pub mod proxy;
pub mod reload;
pub mod telemetry;
pub mod tls_args;
