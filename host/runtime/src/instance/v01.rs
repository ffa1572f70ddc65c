//! Calls into a component built against the frozen `switchyard:policy@0.1.0`: the
//! conversions that make it behave exactly as before 0.2 existed.
use wasmtime::Store;

use super::{lower, Delivery, Fields, PolicyInfo, RequestParts, Setup};
use crate::bindings::v01::{
    Backend, Observation, Outcome, Request, RequestFields, Router, Setup as WitSetup,
};
use crate::sandbox::StoreState;
use crate::types::Outcome as HostOutcome;

type Call<T> = wasmtime::Result<T>;

pub(super) fn configure(
    api: &Router,
    store: &mut Store<StoreState>,
    setup: &Setup,
    now_ns: u64,
) -> Call<Result<PolicyInfo, String>> {
    let wit = WitSetup {
        backends: setup
            .backends
            .iter()
            .map(|b| Backend {
                id: b.id.clone(),
                url: b.url.clone(),
                weight: b.weight,
            })
            .collect(),
        config: setup.config.clone(),
        seed: setup.seed,
        now_ns,
    };
    let info = api.switchyard_policy_policy().call_configure(store, &wit)?;
    Ok(info.map(|info| PolicyInfo {
        name: info.name.as_str().into(),
        score_label: info.score_label,
        response_headers: None,
        probe_path: None,
        fields: Fields {
            method: info.fields.contains(RequestFields::METHOD),
            path: info.fields.contains(RequestFields::PATH),
            authority: info.fields.contains(RequestFields::AUTHORITY),
            client: info.fields.contains(RequestFields::CLIENT),
        },
        headers: lower(info.headers),
    }))
}

pub(super) fn choose(
    api: &Router,
    store: &mut Store<StoreState>,
    p: RequestParts,
    now_ns: u64,
) -> Call<u32> {
    let request = Request {
        now_ns,
        method: p.method,
        path: p.path,
        authority: p.authority,
        client: p.client,
        headers: p.headers,
    };
    api.switchyard_policy_policy().call_choose(store, &request)
}

/// 0.1 says a request the client abandoned is logged but not observed: not delivered.
pub(super) fn observe(api: &Router, store: &mut Store<StoreState>, d: Delivery<'_>) -> Call<()> {
    let outcome = match d.obs.outcome {
        HostOutcome::Response => Outcome::Response,
        HostOutcome::ConnectError => Outcome::ConnectError,
        HostOutcome::Timeout => Outcome::Timeout,
        HostOutcome::Broken => Outcome::Broken,
        HostOutcome::Aborted => return Ok(()),
    };
    let o = Observation {
        backend: d.backend as u32,
        now_ns: d.obs.now_ns,
        latency_ns: d.obs.latency_ns,
        status: d.obs.status,
        outcome,
    };
    api.switchyard_policy_policy().call_observe(store, o)
}

pub(super) fn scores(api: &Router, store: &mut Store<StoreState>) -> Call<Vec<(u32, f64)>> {
    let scores = api.switchyard_policy_policy().call_scores(store)?;
    Ok(scores.into_iter().map(|s| (s.backend, s.value)).collect())
}
