//! Calls into a component built against `switchyard:policy@0.2.0`.
use wasmtime::Store;

use super::{lower, Delivery, Fields, PolicyInfo, Setup};
use crate::bindings::v02::{
    Backend, Observation, Origin, Outcome, ProbeResult, Request, Router, Setup as WitSetup,
};
use crate::sandbox::StoreState;
use crate::types::{
    Origin as HostOrigin, Outcome as HostOutcome, ProbeResult as HostProbe, RequestView,
};

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
    Ok(info.map(|info| {
        let response_headers = lower(info.response_headers);
        PolicyInfo {
            name: info.name.as_str().into(),
            score_label: info.score_label,
            response_headers: (!response_headers.is_empty()).then(|| response_headers.into()),
            probe_path: info.probe_path.map(|p| p.as_str().into()),
            // 0.2 names the fields as pseudo-headers in `headers`; see `choose`.
            fields: Fields::default(),
            headers: lower(info.headers),
        }
    }))
}

pub(super) fn choose(
    api: &Router,
    store: &mut Store<StoreState>,
    names: &[String],
    req: &dyn RequestView,
    now_ns: u64,
) -> Call<u32> {
    let tried = req.tried();
    let request = Request {
        now_ns,
        headers: (!names.is_empty()).then(|| parts(names, req)),
        tried: (!tried.is_empty()).then(|| tried.iter().map(|&b| b as u32).collect()),
    };
    api.switchyard_policy_policy().call_choose(store, &request)
}

/// The named headers and pseudo-headers the request has, in the order named.
fn parts(names: &[String], req: &dyn RequestView) -> Vec<(String, String)> {
    names
        .iter()
        .filter_map(|name| {
            let value = match name.as_str() {
                ":method" => req.method().to_string(),
                ":path" => req.path_and_query().to_string(),
                ":authority" => req.authority().to_string(),
                ":client" => req.client()?.to_string(),
                _ => req.header(name)?.to_string(),
            };
            Some((name.clone(), value))
        })
        .collect()
}

pub(super) fn observe(api: &Router, store: &mut Store<StoreState>, d: Delivery<'_>) -> Call<()> {
    let o = Observation {
        backend: d.backend as u32,
        now_ns: d.obs.now_ns,
        latency_ns: d.obs.latency_ns,
        status: d.obs.status,
        outcome: outcome(d.obs.outcome),
        origin: match d.origin {
            HostOrigin::Chosen => Origin::Chosen,
            HostOrigin::OtherInstance => Origin::OtherInstance,
            HostOrigin::Host => Origin::Host,
            HostOrigin::Replay => Origin::Replay,
        },
        attempt: d.attempt,
        headers: headers(&d.obs.headers),
    };
    api.switchyard_policy_policy().call_observe(store, &o)
}

pub(super) fn probed(
    api: &Router,
    store: &mut Store<StoreState>,
    backend: usize,
    r: &HostProbe,
) -> Call<()> {
    let result = ProbeResult {
        backend: backend as u32,
        now_ns: r.now_ns,
        latency_ns: r.latency_ns,
        status: r.status,
        outcome: outcome(r.outcome),
        headers: headers(&r.headers),
    };
    api.switchyard_policy_policy().call_probed(store, &result)
}

pub(super) fn scores(api: &Router, store: &mut Store<StoreState>) -> Call<Vec<(u32, f64)>> {
    let scores = api.switchyard_policy_policy().call_scores(store)?;
    Ok(scores.into_iter().map(|s| (s.backend, s.value)).collect())
}

fn outcome(o: HostOutcome) -> Outcome {
    match o {
        HostOutcome::Response => Outcome::Response,
        HostOutcome::ConnectError => Outcome::ConnectError,
        HostOutcome::Timeout => Outcome::Timeout,
        HostOutcome::Broken => Outcome::Broken,
        HostOutcome::Aborted => Outcome::Aborted,
    }
}

/// `None` rather than an empty list when there are none: a list costs an allocation in
/// the policy even when empty.
fn headers(h: &[(String, String)]) -> Option<Vec<(String, String)>> {
    (!h.is_empty()).then(|| h.to_vec())
}

/// Which export of a component that failed to instantiate against 0.2 has the wrong type,
/// as "export `choose`: type mismatch ...". wasmtime's generated bindings look exports up
/// by name at load and type-check them only at instantiation, with a message that does
/// not name the function; this checks each one by hand on a raw instance.
pub(super) fn diagnose(
    pre: &crate::bindings::v02::RouterPre<StoreState>,
    store: &mut Store<StoreState>,
) -> Option<String> {
    use crate::bindings::v02::exports::switchyard::policy::policy::{PolicyInfo, Score};
    const INTERFACE: &str = "switchyard:policy/policy@0.2.0";
    let instance = pre.instance_pre().instantiate(&mut *store).ok()?;
    let iface = instance.get_export_index(&mut *store, None, INTERFACE)?;
    macro_rules! check {
        ($name:literal, $params:ty, $results:ty) => {
            match instance.get_export_index(&mut *store, Some(&iface), $name) {
                None => return Some(format!("{INTERFACE} has no export `{}`", $name)),
                Some(idx) => {
                    if let Err(e) = instance.get_typed_func::<$params, $results>(&mut *store, &idx)
                    {
                        return Some(format!("export `{}` of {INTERFACE}: {e:#}", $name));
                    }
                }
            }
        };
    }
    check!("configure", (&WitSetup,), (Result<PolicyInfo, String>,));
    check!("choose", (&Request,), (u32,));
    check!("observe", (&Observation,), ());
    check!("probed", (&ProbeResult,), ());
    check!("scores", (), (Vec<Score>,));
    None
}
