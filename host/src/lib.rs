//! Switchyard: a reverse-proxy load balancer whose routing policies are wasm components.
//!
//! One module per concern; dependencies point one way:
//! - `switchyard_runtime` (host/runtime): policies, sandbox, swaps. Knows nothing of HTTP.
//! - [`upstream`]: connections to backends (pooled or one per request). Knows nothing of policies.
//! - [`proxy`]: the listener and forwarding; asks the router, uses upstreams, emits events.
//! - [`telemetry`]: receives request events; CSV log, console summary, counters.
//! - [`sim`]: the deterministic simulator, driving the same router in virtual time.
//! - [`report`]: run statistics and the study's tables, shared by `analyze` and `simulate`.
//! - [`app`] wires them together for the proxy command; [`console`] prints what it does;
//!   [`admin`] serves the live dashboard, Prometheus metrics and the admin API.
pub mod admin;
pub mod analyze;
pub mod app;
pub mod cli;
pub mod console;
pub mod proxy;
pub mod report;
pub mod sim;
pub mod telemetry;
pub mod upstream;
