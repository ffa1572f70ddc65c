//! One live, sandboxed instance of a policy component, and the calls into it.
//!
//! Every call runs under the epoch deadline and the memory cap; anything that goes wrong
//! comes back as a [`Fault`], never a panic. After a fault the instance must not be called
//! again (its state may be half-updated): the router replaces it.
use std::sync::Arc;

use wasmtime::{Store, Trap};

use crate::bindings::{
    RequestFields, Router as Bindings, WitBackend, WitObservation, WitOutcome, WitRequest, WitSetup,
};
use crate::component::{LoadError, PolicyComponent};
use crate::sandbox::StoreState;
use crate::types::{Backend, FaultKind, Limits, Observation, Outcome, RequestView};

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
    fields: RequestFields,
    /// Header names the policy reads, lower-cased.
    headers: Vec<String>,
}

/// One configured instance of a policy, in its own store. Not thread-safe by itself: the
/// [`Router`](crate::Router) keeps it behind a mutex.
pub struct PolicyInstance {
    store: Store<StoreState>,
    bindings: Bindings,
    info: PolicyInfo,
    backends: usize,
}

impl PolicyInstance {
    /// Instantiates and configures `component`. Slow (microseconds to milliseconds): never
    /// on the request path.
    pub fn new(
        component: &PolicyComponent,
        setup: &Setup,
        limits: Limits,
        now_ns: u64,
    ) -> Result<Self, LoadError> {
        let engine = component.pre.instance_pre().engine();
        let mut store = Store::new(
            engine,
            StoreState::new(component.label(), setup.seed, limits),
        );
        store.limiter(|s| s.limiter());
        store.epoch_deadline_callback(|mut ctx| Ok(ctx.data_mut().on_deadline()));
        // Instantiation and the first call may do one-time work; give them more room.
        let setup_ticks = store.data_mut().arm_setup_deadline();
        store.set_epoch_deadline(setup_ticks);
        let faulted = |stage: &'static str, e: wasmtime::Error| LoadError::Faulted {
            path: component.path().to_path_buf(),
            stage,
            reason: first_line(&e),
        };
        let bindings = component
            .pre
            .instantiate(&mut store)
            .map_err(|e| faulted("instantiation", e))?;
        let wit_setup = WitSetup {
            backends: setup
                .backends
                .iter()
                .map(|b| WitBackend {
                    id: b.id.clone(),
                    url: b.url.clone(),
                    weight: b.weight,
                })
                .collect(),
            config: setup.config.clone(),
            seed: setup.seed,
            now_ns,
        };
        let info = bindings
            .switchyard_policy_policy()
            .call_configure(&mut store, &wit_setup)
            .map_err(|e| faulted("configure", e))?
            .map_err(|message| LoadError::Rejected {
                path: component.path().to_path_buf(),
                message,
            })?;
        Ok(PolicyInstance {
            store,
            bindings,
            info: PolicyInfo {
                name: Arc::from(info.name.as_str()),
                score_label: info.score_label,
                fields: info.fields,
                headers: info
                    .headers
                    .into_iter()
                    .map(|h| h.to_ascii_lowercase())
                    .collect(),
            },
            backends: setup.backends.len(),
        })
    }

    /// What the policy said about itself in `configure`.
    pub fn info(&self) -> &PolicyInfo {
        &self.info
    }

    /// Asks the policy for the backend of one request (an index into the setup's
    /// backends; an index out of range is a [`FaultKind::BadIndex`] fault).
    pub fn choose(&mut self, req: &dyn RequestView, now_ns: u64) -> Result<usize, Fault> {
        let request = self.request(req, now_ns);
        self.arm();
        let answer = self
            .bindings
            .switchyard_policy_policy()
            .call_choose(&mut self.store, &request);
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

    /// Reports a finished exchange to the policy.
    pub fn observe(&mut self, o: &Observation) -> Result<(), Fault> {
        let obs = WitObservation {
            backend: o.backend as u32,
            now_ns: o.now_ns,
            latency_ns: o.latency_ns,
            status: o.status,
            outcome: match o.outcome {
                Outcome::Response => WitOutcome::Response,
                Outcome::ConnectError => WitOutcome::ConnectError,
                Outcome::Timeout => WitOutcome::Timeout,
                Outcome::Broken => WitOutcome::Broken,
            },
        };
        self.arm();
        self.bindings
            .switchyard_policy_policy()
            .call_observe(&mut self.store, obs)
            .map_err(|e| self.fault(e))
    }

    /// The policy's per-backend scores, as (backend index, value); entries naming no
    /// backend are dropped.
    pub fn scores(&mut self) -> Result<Vec<(usize, f64)>, Fault> {
        self.arm();
        let scores = self
            .bindings
            .switchyard_policy_policy()
            .call_scores(&mut self.store)
            .map_err(|e| self.fault(e))?;
        Ok(scores
            .into_iter()
            .filter(|s| (s.backend as usize) < self.backends)
            .map(|s| (s.backend as usize, s.value))
            .collect())
    }

    /// Builds the request record with only the fields the policy asked for. The common case
    /// (none) allocates nothing here and makes no allocation call into the policy.
    fn request(&self, req: &dyn RequestView, now_ns: u64) -> WitRequest {
        let f = self.info.fields;
        let want = |field: RequestFields| f.contains(field);
        WitRequest {
            now_ns,
            method: want(RequestFields::METHOD).then(|| req.method().to_string()),
            path: want(RequestFields::PATH).then(|| req.path_and_query().to_string()),
            authority: want(RequestFields::AUTHORITY).then(|| req.authority().to_string()),
            client: want(RequestFields::CLIENT)
                .then(|| req.client().map(|a| a.to_string()).unwrap_or_default()),
            headers: (!self.info.headers.is_empty()).then(|| {
                self.info
                    .headers
                    .iter()
                    .filter_map(|h| req.header(h).map(|v| (h.clone(), v.to_string())))
                    .collect()
            }),
        }
    }

    /// Starts the CPU deadline for one call.
    fn arm(&mut self) {
        let ticks = self.store.data_mut().arm_deadline();
        self.store.set_epoch_deadline(ticks);
    }

    fn fault(&mut self, e: wasmtime::Error) -> Fault {
        let memory = self.store.data_mut().take_memory_hit();
        let kind = match e.downcast_ref::<Trap>() {
            Some(Trap::Interrupt) => FaultKind::Deadline,
            _ if memory => FaultKind::Memory,
            _ => FaultKind::Trap,
        };
        Fault {
            kind,
            detail: first_line(&e),
        }
    }
}

/// The root cause (e.g. "wasm trap: interrupt", "unknown import: ..."), without the wasm
/// backtrace wasmtime wraps around it: one line for the log.
fn first_line(e: &wasmtime::Error) -> String {
    let text = e.root_cause().to_string();
    text.lines()
        .next()
        .unwrap_or("")
        .chars()
        .take(300)
        .collect()
}
