//! Host-side bindings for both contract versions, generated at compile time so a change to
//! a contract that the host does not follow fails the build.
//!
//! - [`v02`]: `wit/policy.wit`, `switchyard:policy@0.2.0`, the current contract.
//! - [`v01`]: `wit/0.1.0/policy.wit`, frozen: components built against it keep loading.

/// `switchyard:policy@0.2.0`.
pub(crate) mod v02 {
    wasmtime::component::bindgen!({
        path: "../../wit",
        world: "router",
    });

    pub(crate) use switchyard::policy::types::{
        Backend, Observation, Origin, Outcome, ProbeResult, Request, Setup,
    };
}

/// `switchyard:policy@0.1.0`, frozen.
pub(crate) mod v01 {
    wasmtime::component::bindgen!({
        path: "../../wit/0.1.0",
        world: "router",
    });

    pub(crate) use switchyard::policy::types::{
        Backend, Observation, Outcome, Request, RequestFields, Setup,
    };
}
