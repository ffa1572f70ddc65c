//! One live, sandboxed instance of a policy component, and the calls into it.
//!
//! Every call runs under the epoch deadline and the memory cap; anything that goes wrong
//! comes back as a [`Fault`], never a panic. After a fault the instance must not be called
//! again (its state may be half-updated): the router replaces it.
//!
//! The instance speaks whichever contract its component was built against; the
//! conversions to each version's records are in [`v01`] and [`v02`].
pub(crate) mod rules;
mod v01;
mod v02;

use std::sync::Arc;
use std::time::Duration;

use wasmtime::{Store, Trap};

use crate::bindings;
use crate::component::{LoadError, PolicyComponent, Pre};
use crate::loads::BackendLoads;
use crate::sandbox::StoreState;
use crate::types::{Backend, FaultKind, Limits, Observation, Origin, ProbeResult, RequestView};

/// What the router hands a new instance: the same for every instance of a router.
#[derive(Debug, Clone)]
pub struct Setup {
    /// The backends, in index order.
    pub backends: Vec<Backend>,
    /// The policy's `KEY=VALUE` settings, passed to `configure` as given.
    pub config: Vec<(String, String)>,
    /// Passed to `configure`, and the seed of the instance's `wasi:random` stream.
    pub seed: u64,
}

/// A failed call: its kind and the engine's explanation.
#[derive(Debug, Clone)]
pub struct Fault {
    /// What went wrong.
    pub kind: FaultKind,
    /// The engine's explanation, one line (e.g. "wasm trap: interrupt").
    pub detail: String,
}

/// What a policy said about itself in `configure`.
#[derive(Debug, Clone)]
pub struct PolicyInfo {
    /// The policy's name, shown as its `routing_mode`.
    pub name: Arc<str>,
    /// What its scores mean (e.g. "ewma"); empty when it keeps none.
    pub score_label: String,
    /// Response headers `observe` and `probed` want (lower-case); `None`: none. An `Arc`,
    /// so that each request's [`Choice`](crate::Choice) carries it for a reference count.
    pub response_headers: Option<Arc<[String]>>,
    /// Where `host.probe` sends its GET; `None`: the policy does not probe.
    pub probe_path: Option<Arc<str>>,
    fields: Fields,
    /// Header names the policy reads, lower-cased (0.2: pseudo-headers too).
    headers: Vec<String>,
}

/// The request fields a 0.1 policy asked for (0.2 names them as pseudo-headers).
#[derive(Debug, Clone, Copy, Default)]
struct Fields {
    method: bool,
    path: bool,
    authority: bool,
    client: bool,
}

/// The parts of a request a 0.1 policy gets, filled in only where asked.
struct RequestParts {
    method: Option<String>,
    path: Option<String>,
    authority: Option<String>,
    client: Option<String>,
    headers: Option<Vec<(String, String)>>,
}

/// An observation on its way to an instance: the exchange, and who chose it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Delivery<'a> {
    pub(crate) backend: usize,
    pub(crate) attempt: u32,
    pub(crate) origin: Origin,
    pub(crate) obs: &'a Observation,
}

/// The component's exports, in the contract version it was built against.
enum Api {
    V01(bindings::v01::Router),
    V02(bindings::v02::Router),
}

/// One configured instance of a policy, in its own store. Not thread-safe by itself: the
/// [`Router`](crate::Router) keeps it behind a mutex.
pub struct PolicyInstance {
    store: Store<StoreState>,
    api: Api,
    info: PolicyInfo,
    backends: usize,
    /// Unique within its router (never [`Ticket::HOST`](crate::Ticket)), so that an
    /// observation can say whether this instance chose the request.
    id: u64,
    /// What the last call cost (CPU time, host work included), for the router's budget.
    last_cost: Duration,
}

impl PolicyInstance {
    /// Instantiates and configures `component`, on its own: `host.in-flight` reads zeros
    /// and `host.probe` refuses. Slow (microseconds to milliseconds): never on the
    /// request path. Routers use the crate's `with_host`.
    pub fn new(
        component: &PolicyComponent,
        setup: &Setup,
        limits: Limits,
        now_ns: u64,
    ) -> Result<Self, LoadError> {
        let loads = Arc::new(BackendLoads::new(setup.backends.len(), Duration::ZERO));
        Self::with_host(component, setup, limits, now_ns, loads, u64::MAX)
    }

    /// Like [`PolicyInstance::new`], sharing a router's per-backend `loads`, as instance `id`.
    pub(crate) fn with_host(
        component: &PolicyComponent,
        setup: &Setup,
        limits: Limits,
        now_ns: u64,
        loads: Arc<BackendLoads>,
        id: u64,
    ) -> Result<Self, LoadError> {
        let engine = match &component.pre {
            Pre::V01(pre) => pre.instance_pre().engine(),
            Pre::V02(pre) => pre.instance_pre().engine(),
        };
        let state = StoreState::new(component.label(), setup.seed, limits, loads);
        let mut store = Store::new(engine, state);
        store.limiter(|s| s.limiter());
        store.epoch_deadline_callback(|mut ctx| Ok(ctx.data_mut().on_deadline()));
        // Instantiation and the first call may do one-time work; give them more room.
        let setup_ticks = store.data_mut().arm_setup_deadline();
        store.set_epoch_deadline(setup_ticks);
        store.data_mut().set_now(now_ns);
        let faulted = |stage: &'static str, e: wasmtime::Error| LoadError::Faulted {
            path: component.path().to_path_buf(),
            stage,
            reason: first_line(&e),
        };
        // The policy's own words: escaped and cut, as they reach logs and the admin API.
        let rejected = |message: String| LoadError::Rejected {
            path: component.path().to_path_buf(),
            message: crate::stderr::escape(&message.chars().take(300).collect::<String>())
                .into_owned(),
        };
        let (api, info) = match &component.pre {
            Pre::V01(pre) => {
                let api = pre
                    .instantiate(&mut store)
                    .map_err(|e| faulted("instantiation", e))?;
                let info = v01::configure(&api, &mut store, setup, now_ns)
                    .map_err(|e| faulted("configure", e))?
                    .map_err(rejected)?;
                (Api::V01(api), info)
            }
            Pre::V02(pre) => {
                let api = match pre.instantiate(&mut store) {
                    Ok(api) => api,
                    Err(e) => {
                        return Err(match v02::diagnose(pre, &mut store) {
                            Some(reason) => LoadError::WrongWorld {
                                path: component.path().to_path_buf(),
                                reason,
                            },
                            None => faulted("instantiation", e),
                        })
                    }
                };
                let info = v02::configure(&api, &mut store, setup, now_ns)
                    .map_err(|e| faulted("configure", e))?
                    .map_err(rejected)?;
                (Api::V02(api), info)
            }
        };
        store.data_mut().finish_call();
        rules::check(&info).map_err(|message| LoadError::BrokeContract {
            path: component.path().to_path_buf(),
            message,
        })?;
        if info.probe_path.is_some() {
            store.data_mut().allow_probes();
        }
        Ok(PolicyInstance {
            store,
            api,
            info,
            backends: setup.backends.len(),
            id,
            last_cost: Duration::ZERO,
        })
    }

    /// What the policy said about itself in `configure`.
    pub fn info(&self) -> &PolicyInfo {
        &self.info
    }

    /// The instance's id within its router.
    pub(crate) fn id(&self) -> u64 {
        self.id
    }

    /// Makes `host.probe` refuse from now on (display twins).
    pub(crate) fn forbid_probes(&mut self) {
        self.store.data_mut().forbid_probes();
    }

    /// What the last call cost in CPU time, host work included (see `sandbox::deadline`
    /// for how it is measured).
    pub fn last_cost(&self) -> Duration {
        self.last_cost
    }

    /// Asks the policy for the backend of one request (an index into the setup's
    /// backends; an index out of range is a [`FaultKind::BadIndex`] fault).
    pub fn choose(&mut self, req: &dyn RequestView, now_ns: u64) -> Result<usize, Fault> {
        self.arm(now_ns);
        let answer = match &self.api {
            Api::V01(api) => {
                let parts = v01_parts(&self.info, req);
                v01::choose(api, &mut self.store, parts, now_ns)
            }
            Api::V02(api) => v02::choose(api, &mut self.store, &self.info.headers, req, now_ns),
        };
        let answer = self.finish(answer);
        match answer {
            Ok(i) if (i as usize) < self.backends => Ok(i as usize),
            Ok(i) => Err(Fault {
                kind: FaultKind::BadIndex,
                detail: format!(
                    "choose answered backend {i}, but there are only {}",
                    self.backends
                ),
            }),
            Err(e) => Err(self.fault(e)),
        }
    }

    /// Reports a finished exchange with `backend`, as one this instance chose on a first
    /// attempt (for callers that drive an instance without a router: benchmarks, tests).
    pub fn observe(&mut self, backend: usize, o: &Observation) -> Result<(), Fault> {
        self.deliver(Delivery {
            backend,
            attempt: 1,
            origin: Origin::Chosen,
            obs: o,
        })
    }

    /// Reports a finished exchange to the policy. A 0.1 policy is not told of aborts (as
    /// its contract says), nor of the origin or the attempt.
    pub(crate) fn deliver(&mut self, d: Delivery<'_>) -> Result<(), Fault> {
        self.arm(d.obs.now_ns);
        let result = match &self.api {
            Api::V01(api) => v01::observe(api, &mut self.store, d),
            Api::V02(api) => v02::observe(api, &mut self.store, d),
        };
        self.finish(result).map_err(|e| self.fault(e))
    }

    /// Delivers a probe's answer (0.2 only: a 0.1 policy cannot have asked).
    pub(crate) fn probed(&mut self, backend: usize, r: &ProbeResult) -> Result<(), Fault> {
        self.arm(r.now_ns);
        let result = match &self.api {
            Api::V01(_) => Ok(()),
            Api::V02(api) => v02::probed(api, &mut self.store, backend, r),
        };
        self.finish(result).map_err(|e| self.fault(e))
    }

    /// The policy's per-backend scores, as (backend index, value); entries naming no
    /// backend are dropped. More than [`MAX_SCORES_PER_BACKEND`] entries per backend is a
    /// [`FaultKind::Limit`] fault (the list is copied out of the policy before it can be
    /// counted, so the memory cap is what bounds that copy).
    pub fn scores(&mut self) -> Result<Vec<(usize, f64)>, Fault> {
        self.arm(0);
        let scores = match &self.api {
            Api::V01(api) => v01::scores(api, &mut self.store),
            Api::V02(api) => v02::scores(api, &mut self.store),
        };
        let scores = self.finish(scores).map_err(|e| self.fault(e))?;
        let cap = MAX_SCORES_PER_BACKEND * self.backends.max(1);
        if scores.len() > cap {
            return Err(Fault {
                kind: FaultKind::Limit,
                detail: format!(
                    "scores returned {} entries; the contract allows at most {MAX_SCORES_PER_BACKEND} per backend ({cap})",
                    scores.len()
                ),
            });
        }
        Ok(scores
            .into_iter()
            .filter(|&(b, _)| (b as usize) < self.backends)
            .map(|(b, v)| (b as usize, v))
            .collect())
    }

    /// The backends whose probes the policy asked for, and the host's gate accepted,
    /// since the last call of this; the router must send or release each.
    pub(crate) fn take_probes(&mut self) -> Vec<u32> {
        self.store.data_mut().take_probes()
    }

    /// Starts the CPU deadline for one call at `now_ns`.
    fn arm(&mut self, now_ns: u64) {
        let state = self.store.data_mut();
        state.set_now(now_ns);
        let ticks = state.arm_deadline();
        self.store.set_epoch_deadline(ticks);
    }

    /// Ends a call: notes its cost, and turns a call that finished over its deadline
    /// (host work after the last check) into a deadline fault.
    fn finish<T>(&mut self, result: wasmtime::Result<T>) -> wasmtime::Result<T> {
        let (cost, over) = self.store.data_mut().finish_call();
        self.last_cost = cost;
        match result {
            Ok(_) if over => Err(wasmtime::Error::from(Trap::Interrupt)),
            other => other,
        }
    }

    fn fault(&mut self, e: wasmtime::Error) -> Fault {
        let memory = self.store.data_mut().take_memory_hit();
        let limit = self.store.data_mut().take_limit_hit();
        let (kind, detail) = match e.downcast_ref::<Trap>() {
            Some(Trap::Interrupt) => (
                FaultKind::Deadline,
                format!(
                    "ran past its CPU deadline ({} ms of policy and host work, --policy-deadline)",
                    self.last_cost.as_secs_f64() * 1e3
                ),
            ),
            _ if memory => (FaultKind::Memory, first_line(&e)),
            _ => match limit {
                Some(why) => (FaultKind::Limit, why),
                None => (FaultKind::Trap, first_line(&e)),
            },
        };
        Fault { kind, detail }
    }
}

/// The request's fields a 0.1 policy asked for. The common case (none) allocates nothing
/// here and makes no allocation call into the policy.
fn v01_parts(info: &PolicyInfo, req: &dyn RequestView) -> RequestParts {
    let f = info.fields;
    RequestParts {
        method: f.method.then(|| req.method().to_string()),
        path: f.path.then(|| req.path_and_query().to_string()),
        authority: f.authority.then(|| req.authority().to_string()),
        client: f
            .client
            .then(|| req.client().map(|a| a.to_string()).unwrap_or_default()),
        headers: (!info.headers.is_empty()).then(|| {
            info.headers
                .iter()
                .filter_map(|h| req.header(h).map(|v| (h.clone(), v.to_string())))
                .collect()
        }),
    }
}

/// Score entries a policy may return per backend (the `ledger` fixture uses five).
pub const MAX_SCORES_PER_BACKEND: usize = 16;

/// Lower-cases the header names a policy gave, for lookups.
fn lower(names: Vec<String>) -> Vec<String> {
    names.into_iter().map(|h| h.to_ascii_lowercase()).collect()
}

/// The root cause (e.g. "wasm trap: interrupt", "unknown import: ..."), without the wasm
/// backtrace wasmtime wraps around it: one line for the log.
/// Escaped: a panic message is the policy's text.
fn first_line(e: &wasmtime::Error) -> String {
    let text = e.root_cause().to_string();
    let line: String = text
        .lines()
        .next()
        .unwrap_or("")
        .chars()
        .take(300)
        .collect();
    crate::stderr::escape(&line).into_owned()
}
