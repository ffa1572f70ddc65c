//! The router: the one object the proxy, the simulator and the benchmarks drive.
//!
//! It owns the live policy instance and everything that keeps routing safe around it:
//! the host's own round-robin for requests a policy fails to route, replacement of a
//! faulted instance (warm-started from recent observations), a circuit breaker that stops
//! calling a policy that keeps faulting, and atomic swaps to a new policy.
//!
//! One mutex guards the instance: a call costs well under a microsecond, so a lock held
//! for its duration is cheaper than any cross-thread hand-off would be.
use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

use crate::component::{LoadError, PolicyComponent};
use crate::instance::{Fault, PolicyInstance, Setup};
use crate::types::{Backend, FaultKind, Limits, Observation, RequestView, Scores};

/// The `routing_mode` of requests the host routed itself.
pub const FALLBACK_NAME: &str = "host-round-robin";
/// The `routing_mode` of a router built with [`Router::builtin_round_robin`].
pub const BUILTIN_NAME: &str = "native-round-robin";

/// How a faulted instance is replaced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rebuild {
    /// On a background thread, while the host routes round-robin (the proxy).
    Background,
    /// Before the call that faulted returns (the simulator, which must be deterministic).
    Inline,
}

#[derive(Debug, Clone)]
pub struct RouterOptions {
    pub limits: Limits,
    /// Recent observations kept to warm-start a new or replacement instance (0: cold start).
    pub replay: usize,
    pub rebuild: Rebuild,
    /// This many faults within `breaker_window` disable the policy until the next swap.
    pub breaker_faults: usize,
    pub breaker_window: Duration,
    pub seed: u64,
}

impl Default for RouterOptions {
    fn default() -> Self {
        RouterOptions {
            limits: Limits::default(),
            replay: 4096,
            rebuild: Rebuild::Background,
            breaker_faults: 5,
            breaker_window: Duration::from_secs(10),
            seed: 0x5eed,
        }
    }
}

/// The answer for one request.
#[derive(Debug, Clone)]
pub struct Choice {
    pub backend: usize,
    /// Who chose: the policy's name, or [`FALLBACK_NAME`].
    pub routed_by: Arc<str>,
    /// Set when this very call faulted.
    pub fault: Option<FaultKind>,
}

/// Result of a successful swap.
#[derive(Debug, Clone)]
pub struct SwapReport {
    pub from: Arc<str>,
    pub to: Arc<str>,
    /// Instantiate + configure + replay, excluding compilation.
    pub took: Duration,
    pub replayed: usize,
    pub generation: u64,
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

/// Monotonic counters; read them any time without locking.
#[derive(Debug, Default)]
pub struct Counters {
    pub choose_calls: AtomicU64,
    pub observe_calls: AtomicU64,
    pub fallback_routed: AtomicU64,
    pub faults: [AtomicU64; 4],
    pub swaps: AtomicU64,
    pub failed_swaps: AtomicU64,
    pub rebuilds: AtomicU64,
    pub breaker_trips: AtomicU64,
    /// Nanoseconds spent in the timed `choose` + `observe` calls: one call in
    /// `TIMING_SAMPLE` is timed, since reading the clock twice per call would cost a
    /// third of the call itself.
    pub call_ns: AtomicU64,
    /// How many calls `call_ns` covers.
    pub timed_calls: AtomicU64,
}

/// One policy call in this many is timed for `Counters::call_ns`.
pub const TIMING_SAMPLE: u64 = 16;

impl Counters {
    pub fn fault_count(&self, kind: FaultKind) -> u64 {
        self.faults[kind.index()].load(Ordering::Relaxed)
    }

    fn record_timing(&self, started: Option<Instant>) {
        if let Some(started) = started {
            self.call_ns
                .fetch_add(started.elapsed().as_nanos() as u64, Ordering::Relaxed);
            self.timed_calls.fetch_add(1, Ordering::Relaxed);
        }
    }
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

    /// Replaces the policy with `component`: rehearsed, then instantiated, configured and
    /// warm-started off the request path, and switched in under the lock. On error the
    /// current policy stays, untouched.
    pub fn swap(
        &self,
        component: Arc<PolicyComponent>,
        now_ns: u64,
    ) -> Result<SwapReport, LoadError> {
        let started = Instant::now();
        let result = self
            .rehearse(&component, now_ns)
            .and_then(|()| self.warm_instance(&component, now_ns));
        let (instance, replayed) = match result {
            Ok(ok) => ok,
            Err(e) => {
                self.inner
                    .counters
                    .failed_swaps
                    .fetch_add(1, Ordering::Relaxed);
                return Err(e);
            }
        };
        let mut st = self.inner.lock();
        let mut active = Active::new(component, instance, st.active.generation + 1);
        let missed = st.since(replayed.1);
        if let Some(instance) = active.instance.as_mut() {
            for o in missed {
                if instance.observe(&o).is_err() {
                    active.instance = None;
                    break;
                }
            }
        }
        if active.instance.is_none() {
            drop(st);
            self.inner
                .counters
                .failed_swaps
                .fetch_add(1, Ordering::Relaxed);
            return Err(LoadError::Faulted {
                path: component_path(&active),
                stage: "replay",
                reason: "observe trapped while catching up".into(),
            });
        }
        let report = SwapReport {
            from: st.active.name.clone(),
            to: active.name.clone(),
            took: started.elapsed(),
            replayed: replayed.0,
            generation: active.generation,
        };
        st.active = active;
        self.inner.builtin.store(false, Ordering::Relaxed);
        drop(st);
        self.inner.counters.swaps.fetch_add(1, Ordering::Relaxed);
        Ok(report)
    }

    /// Counts a reload that failed before reaching `swap` (the file did not load).
    pub fn record_failed_swap(&self) {
        self.inner
            .counters
            .failed_swaps
            .fetch_add(1, Ordering::Relaxed);
    }

    /// Exercises a throwaway instance of `component` before it may take traffic: configure,
    /// replay, then `REHEARSALS` rounds of choose + observe under the real limits. A policy
    /// that traps, loops or leaks memory on its first requests is refused here, and the
    /// running policy keeps routing, instead of faulting on live traffic.
    fn rehearse(&self, component: &PolicyComponent, now_ns: u64) -> Result<(), LoadError> {
        const REHEARSALS: u64 = 16;
        let (mut instance, _) = self.warm_instance(component, now_ns)?;
        let failed = |f: Fault| LoadError::Faulted {
            path: component.path().to_path_buf(),
            stage: "rehearsal",
            reason: format!("{} ({})", f.detail, f.kind.as_str()),
        };
        for i in 0..REHEARSALS {
            let t = now_ns + i * 1_000_000;
            let backend = instance
                .choose(&crate::types::NoRequest, t)
                .map_err(failed)?;
            instance
                .observe(&Observation {
                    backend,
                    now_ns: t + 500_000,
                    latency_ns: 500_000,
                    status: 200,
                    outcome: crate::types::Outcome::Response,
                })
                .map_err(failed)?;
        }
        Ok(())
    }

    /// A new instance of `component`, configured and fed the recent observations. Returns
    /// it with (observations replayed, `seen` at the snapshot).
    fn warm_instance(
        &self,
        component: &PolicyComponent,
        now_ns: u64,
    ) -> Result<(PolicyInstance, (usize, u64)), LoadError> {
        let (snapshot, seen) = {
            let st = self.inner.lock();
            (st.ring.iter().copied().collect::<Vec<_>>(), st.seen)
        };
        let mut instance = PolicyInstance::new(
            component,
            &self.inner.setup,
            self.inner.options.limits,
            now_ns,
        )?;
        for o in &snapshot {
            instance.observe(o).map_err(|f| LoadError::Faulted {
                path: component.path().to_path_buf(),
                stage: "replay",
                reason: f.detail,
            })?;
        }
        Ok((instance, (snapshot.len(), seen)))
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

    /// Drops the faulted instance, then either trips the breaker or replaces it.
    fn on_fault(&self, mut st: MutexGuard<'_, State>, fault: Fault, call: &str, now_ns: u64) {
        let opts = &self.inner.options;
        self.inner.counters.faults[fault.kind.index()].fetch_add(1, Ordering::Relaxed);
        let active = &mut st.active;
        active.instance = None;
        let window_ns = opts.breaker_window.as_nanos() as u64;
        active.fault_times.push_back(now_ns);
        while active
            .fault_times
            .front()
            .is_some_and(|&t| now_ns.saturating_sub(t) > window_ns)
        {
            active.fault_times.pop_front();
        }
        tracing::warn!(
            "policy {} faulted in {call} ({}): {}; request routed round-robin by the host",
            active.name,
            fault.kind.as_str(),
            fault.detail
        );
        if active.fault_times.len() >= opts.breaker_faults {
            active.disabled = true;
            self.inner
                .counters
                .breaker_trips
                .fetch_add(1, Ordering::Relaxed);
            tracing::error!(
                "POLICY DISABLED: {} faulted {} times within {:?}; the host routes round-robin until a new policy file loads",
                active.name,
                active.fault_times.len(),
                opts.breaker_window
            );
            return;
        }
        let generation = active.generation;
        match opts.rebuild {
            Rebuild::Inline => {
                drop(st);
                self.rebuild(generation, now_ns);
            }
            Rebuild::Background => {
                drop(st);
                let router = self.clone();
                let spawned = std::thread::Builder::new()
                    .name("policy-rebuild".into())
                    .spawn(move || router.rebuild(generation, now_ns));
                if let Err(e) = spawned {
                    tracing::error!("cannot start a thread to replace the policy instance: {e}");
                }
            }
        }
    }

    /// Replaces a faulted instance of generation `generation` with a fresh, warm one,
    /// unless a swap happened meanwhile.
    fn rebuild(&self, generation: u64, now_ns: u64) {
        let Some(component) = self.inner.lock().active.component.clone() else {
            return;
        };
        let built = self.warm_instance(&component, now_ns);
        let mut st = self.inner.lock();
        if st.active.generation != generation || st.active.disabled {
            return;
        }
        match built {
            Ok((mut instance, (_, seen))) => {
                let caught_up = st.since(seen).iter().all(|o| instance.observe(o).is_ok());
                if caught_up {
                    st.active.instance = Some(instance);
                    self.inner.counters.rebuilds.fetch_add(1, Ordering::Relaxed);
                    return;
                }
                st.active.disabled = true;
            }
            Err(e) => {
                st.active.disabled = true;
                tracing::error!("POLICY DISABLED: cannot replace the faulted instance: {e}");
            }
        }
        self.inner
            .counters
            .breaker_trips
            .fetch_add(1, Ordering::Relaxed);
    }
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A poisoned lock means a panic while held; the state is still consistent enough
        // to keep routing (worst case the instance is faulted and replaced).
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl State {
    fn record(&mut self, o: Observation, cap: usize) {
        self.seen += 1;
        if cap == 0 {
            return;
        }
        if self.ring.len() >= cap {
            self.ring.pop_front();
        }
        self.ring.push_back(o);
    }

    /// Observations recorded after `seen` was read (as many as the ring still has).
    fn since(&self, seen: u64) -> Vec<Observation> {
        let missed = (self.seen - seen) as usize;
        let skip = self.ring.len().saturating_sub(missed);
        self.ring.iter().skip(skip).copied().collect()
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
