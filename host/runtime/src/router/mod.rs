//! The router: the one object the proxy, the simulator and the benchmarks drive.
//!
//! It owns the live policy instance and everything that keeps routing safe around it:
//! the host's own round-robin for requests a policy fails to route, replacement of a
//! faulted instance (warm-started from recent observations), a circuit breaker that stops
//! calling a policy that keeps faulting, and atomic swaps to a new policy.
//!
//! One mutex guards the instance: a call costs well under a microsecond, so a lock held
//! for its duration is cheaper than any cross-thread hand-off would be.
mod breaker;
mod counters;
mod options;
mod replay;
mod swap;

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Instant, SystemTime};

use crate::component::{LoadError, PolicyComponent};
use crate::instance::{PolicyInstance, Setup};
use crate::types::{Backend, FaultKind, Observation, RequestView, Scores};

pub use counters::{Counters, TIMING_SAMPLE};
pub use options::{Rebuild, RouterOptions};
pub use swap::SwapReport;

/// The `routing_mode` of requests the host routed itself.
pub const FALLBACK_NAME: &str = "host-round-robin";
/// The `routing_mode` of a router built with [`Router::builtin_round_robin`].
pub const BUILTIN_NAME: &str = "native-round-robin";

/// The answer for one request.
#[derive(Debug, Clone)]
pub struct Choice {
    pub backend: usize,
    /// Who chose: the policy's name, or [`FALLBACK_NAME`].
    pub routed_by: Arc<str>,
    /// Set when this very call faulted.
    pub fault: Option<FaultKind>,
}

/// What is loaded now, for consoles and the admin API.
#[derive(Debug, Clone)]
pub struct PolicyStatus {
    pub name: Arc<str>,
    pub file: std::path::PathBuf,
    pub generation: u64,
    pub loaded_at: SystemTime,
    /// The breaker has tripped: every request goes round-robin until a new policy loads.
    pub disabled: bool,
    /// An instance is live (false while a replacement is being built).
    pub live: bool,
}

#[derive(Clone)]
pub struct Router {
    inner: Arc<Inner>,
}

struct Inner {
    /// Routing natively (no policy) until the first swap; see [`Router::builtin_round_robin`].
    builtin: std::sync::atomic::AtomicBool,
    builtin_name: Arc<str>,
    setup: Setup,
    options: RouterOptions,
    state: Mutex<State>,
    counters: Counters,
    fallback_next: AtomicUsize,
    fallback_name: Arc<str>,
}

struct State {
    active: Active,
    /// Recent observations, oldest first, for warm starts.
    ring: VecDeque<Observation>,
    /// Observations ever recorded; with `ring` it locates what a replay missed.
    seen: u64,
}

struct Active {
    /// None for the built-in round-robin.
    component: Option<Arc<PolicyComponent>>,
    instance: Option<PolicyInstance>,
    name: Arc<str>,
    score_label: String,
    generation: u64,
    loaded_at: SystemTime,
    fault_times: VecDeque<u64>,
    disabled: bool,
}

impl Router {
    /// Starts routing with `component`. Fails if it cannot be instantiated or configured.
    pub fn new(
        component: Arc<PolicyComponent>,
        backends: Vec<Backend>,
        config: Vec<(String, String)>,
        options: RouterOptions,
        now_ns: u64,
    ) -> Result<Router, LoadError> {
        let setup = Setup {
            backends,
            config,
            seed: options.seed,
        };
        let instance = PolicyInstance::new(&component, &setup, options.limits, now_ns)?;
        let active = Active::new(component, instance, 1);
        Ok(Router::with(active, setup, options, false))
    }

    /// A router that round-robins natively, without any wasm: the baseline that shows what
    /// the policy call costs in benchmarks. A swap replaces it with a real policy.
    pub fn builtin_round_robin(backends: Vec<Backend>, options: RouterOptions) -> Router {
        let setup = Setup {
            backends,
            config: Vec::new(),
            seed: options.seed,
        };
        let active = Active {
            component: None,
            instance: None,
            name: Arc::from(BUILTIN_NAME),
            score_label: String::new(),
            generation: 1,
            loaded_at: SystemTime::now(),
            fault_times: VecDeque::new(),
            disabled: false,
        };
        Router::with(active, setup, options, true)
    }

    fn with(active: Active, setup: Setup, options: RouterOptions, builtin: bool) -> Router {
        Router {
            inner: Arc::new(Inner {
                builtin: std::sync::atomic::AtomicBool::new(builtin),
                builtin_name: Arc::from(BUILTIN_NAME),
                setup,
                state: Mutex::new(State {
                    active,
                    ring: VecDeque::with_capacity(options.replay),
                    seen: 0,
                }),
                options,
                counters: Counters::default(),
                fallback_next: AtomicUsize::new(0),
                fallback_name: Arc::from(FALLBACK_NAME),
            }),
        }
    }

    pub fn backends(&self) -> &[Backend] {
        &self.inner.setup.backends
    }

    pub fn counters(&self) -> &Counters {
        &self.inner.counters
    }

    /// Picks the backend for one request. Never fails: if the policy cannot answer, the
    /// host's round-robin does.
    pub fn choose(&self, req: &dyn RequestView, now_ns: u64) -> Choice {
        if self.inner.builtin.load(Ordering::Relaxed) {
            let n = self.inner.setup.backends.len().max(1);
            return Choice {
                backend: self.inner.fallback_next.fetch_add(1, Ordering::Relaxed) % n,
                routed_by: self.inner.builtin_name.clone(),
                fault: None,
            };
        }
        let c = &self.inner.counters;
        let mut st = self.inner.lock();
        if let Some(instance) = st.active.instance.as_mut() {
            let timed = c
                .choose_calls
                .fetch_add(1, Ordering::Relaxed)
                .is_multiple_of(TIMING_SAMPLE);
            let started = timed.then(Instant::now);
            let answer = instance.choose(req, now_ns);
            c.record_timing(started);
            match answer {
                Ok(backend) => {
                    return Choice {
                        backend,
                        routed_by: st.active.name.clone(),
                        fault: None,
                    }
                }
                Err(fault) => {
                    let kind = fault.kind;
                    self.on_fault(st, fault, "choose", now_ns);
                    return self.fallback(Some(kind));
                }
            }
        }
        drop(st);
        self.fallback(None)
    }

    /// Reports a finished exchange to the policy and keeps it for warm starts.
    pub fn observe(&self, o: Observation) {
        if self.inner.builtin.load(Ordering::Relaxed) {
            return;
        }
        let c = &self.inner.counters;
        let mut st = self.inner.lock();
        st.record(o, self.inner.options.replay);
        if let Some(instance) = st.active.instance.as_mut() {
            let timed = c
                .observe_calls
                .fetch_add(1, Ordering::Relaxed)
                .is_multiple_of(TIMING_SAMPLE);
            let started = timed.then(Instant::now);
            let result = instance.observe(&o);
            c.record_timing(started);
            if let Err(fault) = result {
                self.on_fault(st, fault, "observe", o.now_ns);
            }
        }
    }

    /// The policy's current scores (None while no instance is live).
    pub fn scores(&self, now_ns: u64) -> Option<Scores> {
        let mut st = self.inner.lock();
        let label = st.active.score_label.clone();
        let result = st.active.instance.as_mut()?.scores();
        match result {
            Ok(values) => Some(Scores { label, values }),
            Err(fault) => {
                self.on_fault(st, fault, "scores", now_ns);
                None
            }
        }
    }

    pub fn status(&self) -> PolicyStatus {
        let st = self.inner.lock();
        PolicyStatus {
            name: st.active.name.clone(),
            file: st
                .active
                .component
                .as_ref()
                .map(|c| c.path().to_path_buf())
                .unwrap_or_else(|| BUILTIN_NAME.into()),
            generation: st.active.generation,
            loaded_at: st.active.loaded_at,
            disabled: st.active.disabled,
            live: st.active.instance.is_some(),
        }
    }

    fn fallback(&self, fault: Option<FaultKind>) -> Choice {
        let n = self.inner.setup.backends.len().max(1);
        let i = self.inner.fallback_next.fetch_add(1, Ordering::Relaxed) % n;
        self.inner
            .counters
            .fallback_routed
            .fetch_add(1, Ordering::Relaxed);
        Choice {
            backend: i,
            routed_by: self.inner.fallback_name.clone(),
            fault,
        }
    }
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A poisoned lock means a panic while held; the state is still consistent enough
        // to keep routing (worst case the instance is faulted and replaced).
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Active {
    fn new(component: Arc<PolicyComponent>, instance: PolicyInstance, generation: u64) -> Self {
        Active {
            name: instance.info().name.clone(),
            score_label: instance.info().score_label.clone(),
            component: Some(component),
            instance: Some(instance),
            generation,
            loaded_at: SystemTime::now(),
            fault_times: VecDeque::new(),
            disabled: false,
        }
    }
}

fn component_path(active: &Active) -> std::path::PathBuf {
    active
        .component
        .as_ref()
        .map(|c| c.path().to_path_buf())
        .unwrap_or_else(|| BUILTIN_NAME.into())
}
