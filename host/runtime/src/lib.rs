//! Switchyard's policy runtime: loads routing policies (wasm components implementing
//! `wit/policy.wit`), runs them sandboxed, and swaps them while traffic flows.
//!
//! It knows nothing of HTTP or sockets: the proxy, the simulator and the benchmarks all
//! drive the same [`Router`], passing time in as `now_ns` so that virtual time works too.
#![warn(missing_docs)]
mod bindings;
mod component;
mod instance;
mod loads;
mod router;
mod sandbox;
mod stderr;
mod types;

use std::path::Path;
use std::sync::Arc;

pub use component::{LoadError, PolicyComponent};
pub use instance::rules::{MAX_HEADERS, MAX_HEADER_NAME, MAX_LABEL, MAX_NAME, MAX_PROBE_PATH};
pub use instance::{Fault, PolicyInfo, PolicyInstance, Setup, MAX_SCORES_PER_BACKEND};
pub use router::{
    Choice, Counters, PolicyStatus, Rebuild, Router, RouterOptions, SwapReport, BUILTIN_NAME,
    FALLBACK_NAME, TIMING_SAMPLE,
};
pub use types::{
    Backend, FaultKind, Limits, NoRequest, Observation, Origin, Outcome, Probe, ProbeResult,
    Prober, RequestView, Scores, Ticket,
};

/// The engine, linker and epoch ticker shared by every policy a process loads.
pub struct PolicyRuntime {
    engine: wasmtime::Engine,
    linker: wasmtime::component::Linker<sandbox::StoreState>,
}

impl PolicyRuntime {
    /// Builds the engine and the sandbox's linker, and starts the epoch ticker thread
    /// behind call deadlines (it stops when the runtime is dropped). Once per process.
    pub fn new() -> anyhow::Result<Arc<Self>> {
        let engine = sandbox::engine().map_err(|e| anyhow::anyhow!("{e:#}"))?;
        let linker = sandbox::linker(&engine).map_err(|e| anyhow::anyhow!("{e:#}"))?;
        sandbox::start_epoch_ticker(&engine);
        Ok(Arc::new(PolicyRuntime { engine, linker }))
    }

    /// Reads, validates and compiles a policy file (tens of milliseconds: off the request path).
    pub fn load(&self, path: &Path) -> Result<Arc<PolicyComponent>, LoadError> {
        component::load(self, path)
    }

    /// Like [`PolicyRuntime::load`], for a file already read: `path` only names it in
    /// errors and log lines.
    pub fn load_bytes(&self, path: &Path, bytes: &[u8]) -> Result<Arc<PolicyComponent>, LoadError> {
        component::load_bytes(self, path, bytes)
    }

    pub(crate) fn engine(&self) -> &wasmtime::Engine {
        &self.engine
    }

    pub(crate) fn linker(&self) -> &wasmtime::component::Linker<sandbox::StoreState> {
        &self.linker
    }
}
