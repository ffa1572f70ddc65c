//! Host-side bindings for `wit/policy.wit`, generated at compile time so a change to the
//! contract that the host does not follow fails the build.
wasmtime::component::bindgen!({
    path: "../../wit",
    world: "router",
});

pub(crate) use switchyard::policy::types::{
    Backend as WitBackend, Observation as WitObservation, Outcome as WitOutcome,
    Request as WitRequest, RequestFields, Setup as WitSetup,
};
