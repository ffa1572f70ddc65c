//! The router: the one object the proxy, the simulator and the benchmarks drive.
//!
//! It owns the live policy instance and everything that keeps routing safe around it:
//! the host's own round-robin for requests a policy fails to route, replacement of a
//! faulted instance (warm-started from recent observations), a circuit breaker that stops
//! calling a policy that keeps faulting, and atomic swaps to a new policy.
//!
//! One mutex guards the instance: a call costs well under a microsecond, so a lock held
//! for its duration is cheaper than any cross-thread hand-off would be.
//!
//! Every routed request holds a [`Ticket`] from `choose` until `observe`: the router counts
//! it in flight against its backend for that long (atomics, no lock), and tells the policy
//! who chose it, so that each `choose` is matched by exactly one observation whatever
//! happened in between (a swap, a fault rebuild, the client hanging up).
//!
//! Files: the counters ([`counters`]), the options ([`options`]), the breaker and the
//! replacement of a faulted instance ([`breaker`]), swaps with their rehearsal and warm
//! start ([`swap`]), the ring of recent observations they replay ([`replay`]), and the
//! probes policies ask for ([`probes`]).
mod breaker;
mod budget;
mod counters;
mod display;
mod options;
mod probes;
mod replay;
pub(crate) mod swap;
mod traffic;

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::SystemTime;

use crate::component::{LoadError, PolicyComponent};
use crate::instance::{Delivery, PolicyInstance, Setup};
use crate::loads::BackendLoads;
use crate::types::{Backend, FaultKind, Observation, Origin, Prober, RequestView, Scores, Ticket};

use breaker::FaultWindow;
use budget::CpuBudget;
use replay::{Recorded, Replay};

pub use counters::{Counters, TIMING_SAMPLE};
pub use options::{Rebuild, RouterOptions};
pub(crate) use probes::ProbeReply;
pub use swap::SwapReport;

/// The `routing_mode` of requests the host routed itself.
pub const FALLBACK_NAME: &str = "host-round-robin";
/// The `routing_mode` of a router built with [`Router::builtin_round_robin`].
pub const BUILTIN_NAME: &str = "native-round-robin";

/// The answer for one request.
#[derive(Debug)]
pub struct Choice {
    /// Index of the chosen backend in [`Router::backends`].
    pub backend: usize,
    /// Who chose: the policy's name, or [`FALLBACK_NAME`].
    pub routing_mode: Arc<str>,
    /// Set when this very call faulted.
    pub fault: Option<FaultKind>,
    /// Response headers the policy wants in the observation (lower-case names); `None`
    /// when it wants none, so that nothing is copied.
    pub response_headers: Option<Arc<[String]>>,
    /// Hand it back to [`Router::observe`] when the request ends, however it ends.
    pub ticket: Ticket,
}

/// What is loaded now, for consoles and the admin API.
#[derive(Debug, Clone)]
pub struct PolicyStatus {
    /// The policy's name (from its `configure`), or [`BUILTIN_NAME`].
    pub name: Arc<str>,
    /// The policy file, or [`BUILTIN_NAME`] for the built-in round-robin.
    pub file: PathBuf,
    /// 1 for the first policy, one more for each successful swap.
    pub generation: u64,
    /// When this generation was switched in.
    pub loaded_at: SystemTime,
    /// The breaker has tripped: every request goes round-robin until a new policy loads.
    pub disabled: bool,
    /// An instance is live (false while a replacement is being built).
    pub live: bool,
}

/// Routes requests through the loaded policy, and keeps routing when it faults: the one
/// object the proxy, the simulator and the benchmarks drive. Cheap to clone (one `Arc`);
/// every clone drives the same policy.
#[derive(Clone)]
pub struct Router {
    inner: Arc<Inner>,
}

struct Inner {
    /// Routing natively (no policy) until the first swap; see [`Router::builtin_round_robin`].
    builtin: AtomicBool,
    /// [`BUILTIN_NAME`] as an `Arc`, so that a [`Choice`] clones a
    /// pointer instead of allocating.
    builtin_name: Arc<str>,
    setup: Setup,
    options: RouterOptions,
    state: Mutex<RouterState>,
    counters: Counters,
    /// The next backend of the host's round-robin (fallback and built-in).
    fallback_next: AtomicUsize,
    /// [`FALLBACK_NAME`], likewise.
    fallback_name: Arc<str>,
    /// Requests in flight per backend, and the probe gate; shared with every instance.
    loads: Arc<BackendLoads>,
    /// The id of the next instance built (ids start at 1; 0 is the host).
    next_id: AtomicU64,
    /// Sends the probes policies ask for; none attached: `host.probe` refuses.
    prober: OnceLock<Arc<dyn Prober>>,
    /// The display twin behind `scores` (its own lock, never the routing lock's).
    display: display::DisplayLock,
}

/// What the router's mutex guards: the live policy and the observations to replay.
struct RouterState {
    active: Active,
    replay: Replay,
    /// A sample of recent requests, for rehearsals.
    traffic: traffic::Traffic,
}

/// The policy generation in use, with its instance (absent while faulted).
struct Active {
    /// None for the built-in round-robin.
    component: Option<Arc<PolicyComponent>>,
    /// None after a fault, until a replacement is built (or for good, once disabled).
    instance: Option<PolicyInstance>,
    name: Arc<str>,
    score_label: String,
    generation: u64,
    loaded_at: SystemTime,
    /// Recent faults, for the breaker.
    faults: FaultWindow,
    /// What the live calls of this generation spent in the current second.
    budget: CpuBudget,
    /// The breaker tripped: no instance until the next swap.
    disabled: bool,
    /// From the policy's `policy-info`, kept here so that requests the host routes
    /// while the instance is being replaced still collect them.
    response_headers: Option<Arc<[String]>>,
}

// === impl Router ===

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
        let loads = Arc::new(BackendLoads::new(
            setup.backends.len(),
            options.probe_interval,
        ));
        let instance = PolicyInstance::with_host(
            &component,
            &setup,
            options.limits,
            now_ns,
            loads.clone(),
            1,
        )?;
        let active = Active::new(component, instance, 1, &options);
        Ok(Router::with(active, setup, options, loads, false))
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
            faults: FaultWindow::default(),
            budget: CpuBudget::new(None),
            disabled: false,
            response_headers: None,
        };
        let loads = Arc::new(BackendLoads::new(
            setup.backends.len(),
            options.probe_interval,
        ));
        Router::with(active, setup, options, loads, true)
    }

    fn with(
        active: Active,
        setup: Setup,
        options: RouterOptions,
        loads: Arc<BackendLoads>,
        builtin: bool,
    ) -> Router {
        Router {
            inner: Arc::new(Inner {
                builtin: AtomicBool::new(builtin),
                builtin_name: Arc::from(BUILTIN_NAME),
                setup,
                state: Mutex::new(RouterState {
                    active,
                    replay: Replay::new(options.replay),
                    traffic: Default::default(),
                }),
                options,
                counters: Counters::default(),
                fallback_next: AtomicUsize::new(0),
                fallback_name: Arc::from(FALLBACK_NAME),
                loads,
                // Instance 1 is the first policy's (built before the router).
                next_id: AtomicU64::new(2),
                prober: OnceLock::new(),
                display: Default::default(),
            }),
        }
    }

    /// Requests in flight to backend `i` now: routed, and not yet observed.
    pub fn in_flight(&self, i: usize) -> u32 {
        self.inner.loads.in_flight(i)
    }

    /// The backends, in the order their indices refer to (in [`Choice`], [`Observation`]).
    pub fn backends(&self) -> &[Backend] {
        &self.inner.setup.backends
    }

    /// The router's counters (lock-free).
    pub fn counters(&self) -> &Counters {
        &self.inner.counters
    }

    /// Picks the backend for one request. Never fails: if the policy cannot answer, the
    /// host's round-robin does. The request counts as in flight until its ticket is
    /// handed back to [`Router::observe`].
    pub fn choose(&self, req: &dyn RequestView, now_ns: u64) -> Choice {
        if self.inner.builtin.load(Ordering::Relaxed) {
            let n = self.inner.setup.backends.len().max(1);
            let backend = self.inner.fallback_next.fetch_add(1, Ordering::Relaxed) % n;
            return self.routed(backend, self.inner.builtin_name.clone(), None, req, None);
        }
        let c = &self.inner.counters;
        let mut st = self.inner.lock();
        let headers = st.active.response_headers.clone();
        st.traffic.saw(req, now_ns);
        if let Some(instance) = st.active.instance.as_mut() {
            let answer = instance.choose(req, now_ns);
            let asked = instance.take_probes();
            let (chooser, cost) = (instance.id(), instance.last_cost());
            c.counted(&c.choose_calls, cost);
            match st.active.budget.charge(answer, cost) {
                Ok(backend) => {
                    let name = st.active.name.clone();
                    let probes = self.probes(&st, asked, now_ns);
                    drop(st);
                    self.send(probes);
                    let mut choice = self.routed(backend, name, None, req, headers);
                    choice.ticket.chooser = chooser;
                    return choice;
                }
                Err(fault) => {
                    let kind = fault.kind;
                    self.release(asked);
                    self.on_fault(st, fault, "choose", now_ns);
                    return self.fallback(Some(kind), req, headers);
                }
            }
        }
        drop(st);
        self.fallback(None, req, headers)
    }

    /// Reports how a routed request ended (exactly once per [`Choice`]: the ticket is
    /// consumed), and keeps it for warm starts.
    pub fn observe(&self, ticket: Ticket, o: Observation) {
        self.inner.loads.end(ticket.backend);
        if self.inner.builtin.load(Ordering::Relaxed) {
            return;
        }
        let c = &self.inner.counters;
        let mut st = self.inner.lock();
        if let Some(instance) = st.active.instance.as_mut() {
            let origin = match ticket.chooser {
                Ticket::HOST => Origin::Host,
                id if id == instance.id() => Origin::Chosen,
                _ => Origin::OtherInstance,
            };
            let delivery = Delivery {
                backend: ticket.backend,
                attempt: ticket.attempt,
                origin,
                obs: &o,
            };
            let result = instance.deliver(delivery);
            let asked = instance.take_probes();
            let cost = instance.last_cost();
            c.counted(&c.observe_calls, cost);
            match st.active.budget.charge(result, cost) {
                Ok(()) => {
                    let probes = self.probes(&st, asked, o.now_ns);
                    st.replay.record(Recorded::new(&ticket, o));
                    drop(st);
                    self.send(probes);
                    return;
                }
                Err(fault) => {
                    self.release(asked);
                    let now_ns = o.now_ns;
                    st.replay.record(Recorded::new(&ticket, o));
                    self.on_fault(st, fault, "observe", now_ns);
                    return;
                }
            }
        }
        st.replay.record(Recorded::new(&ticket, o));
    }

    /// The routing instance's own scores (None while no instance is live): for tests and
    /// tools that must read the very instance that routes. A fault here is a routing
    /// fault (the instance is replaced and counts toward the breaker); displays call
    /// [`Router::scores`], which never touches the routing instance.
    pub fn live_scores(&self, now_ns: u64) -> Option<Scores> {
        let mut st = self.inner.lock();
        let label = st.active.score_label.clone();
        let instance = st.active.instance.as_mut()?;
        let result = instance.scores();
        // `scores` is for display, not a moment to probe from.
        let asked = instance.take_probes();
        self.release(asked);
        match result {
            Ok(values) => Some(Scores { label, values }),
            Err(fault) => {
                self.on_fault(st, fault, "scores", now_ns);
                None
            }
        }
    }

    /// What is loaded now. Takes the routing lock briefly (no call into the policy).
    pub fn status(&self) -> PolicyStatus {
        let st = self.inner.lock();
        PolicyStatus {
            name: st.active.name.clone(),
            file: component_path(&st.active),
            generation: st.active.generation,
            loaded_at: st.active.loaded_at,
            disabled: st.active.disabled,
            live: st.active.instance.is_some(),
        }
    }

    /// Routes one request with the host's round-robin, counting it.
    fn fallback(
        &self,
        fault: Option<FaultKind>,
        req: &dyn RequestView,
        headers: Option<Arc<[String]>>,
    ) -> Choice {
        let n = self.inner.setup.backends.len().max(1);
        let i = self.inner.fallback_next.fetch_add(1, Ordering::Relaxed) % n;
        self.inner
            .counters
            .fallback_routed
            .fetch_add(1, Ordering::Relaxed);
        self.routed(i, self.inner.fallback_name.clone(), fault, req, headers)
    }

    /// The choice of `backend`, counted in flight from now; chosen by the host unless the
    /// caller sets the ticket's chooser.
    #[inline]
    fn routed(
        &self,
        backend: usize,
        routing_mode: Arc<str>,
        fault: Option<FaultKind>,
        req: &dyn RequestView,
        response_headers: Option<Arc<[String]>>,
    ) -> Choice {
        self.inner.loads.start(backend);
        Choice {
            backend,
            routing_mode,
            fault,
            response_headers,
            ticket: Ticket {
                backend,
                chooser: Ticket::HOST,
                attempt: u32::try_from(req.tried().len()).map_or(u32::MAX, |n| n.saturating_add(1)),
            },
        }
    }

    /// A fresh id for a new instance of this router.
    fn next_id(&self) -> u64 {
        self.inner.next_id.fetch_add(1, Ordering::Relaxed)
    }
}

// === impl Inner ===

impl Inner {
    fn lock(&self) -> MutexGuard<'_, RouterState> {
        // A poisoned lock means a panic while held; the state is still consistent enough
        // to keep routing (worst case the instance is faulted and replaced).
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

// === impl Active ===

impl Active {
    fn new(
        component: Arc<PolicyComponent>,
        instance: PolicyInstance,
        generation: u64,
        options: &RouterOptions,
    ) -> Self {
        Active {
            budget: CpuBudget::new(options.limits.cpu_budget),
            response_headers: instance.info().response_headers.clone(),
            name: instance.info().name.clone(),
            score_label: instance.info().score_label.clone(),
            component: Some(component),
            instance: Some(instance),
            generation,
            loaded_at: SystemTime::now(),
            faults: FaultWindow::default(),
            disabled: false,
        }
    }
}

/// The file `active` was loaded from, or [`BUILTIN_NAME`] for the built-in round-robin.
fn component_path(active: &Active) -> PathBuf {
    active
        .component
        .as_ref()
        .map(|c| c.path().to_path_buf())
        .unwrap_or_else(|| BUILTIN_NAME.into())
}
