//! Switchyard's end-to-end tests, as one binary (one link of wasmtime, as in wasmtime's own
//! `tests/all`): real backends on ephemeral ports, the real proxy in-process or as the built
//! binary, real policy components from `policies/` (`just build-policies build-fixtures`).
//!
//! The headless-browser dashboard test needs node and chromium; it is `#[ignore]`d here
//! and run by `just test` (`-- --ignored dashboard_`).
mod common;

mod aborts;
mod admin;
mod analyze;
mod cli;
mod contract;
mod edge;
mod h2c;
mod library;
mod log;
mod passthrough;
mod proxy;
mod reload;
mod sandbox;
mod simulate;
mod tls;
