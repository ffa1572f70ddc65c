//! The discrete-event loop: wrk-like closed-loop clients, the router, the backend models.
//!
//! Determinism rests on three things: events are ordered by (virtual time, insertion
//! sequence), never by anything the machine decides; backend randomness is a pure function
//! of (seed, request index) (see `rng`); and the policy gets its seed from the options and
//! sees only virtual time.
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::anyhow;
use switchyard_input::UsageError;
use switchyard_runtime::{
    Backend, FaultKind, Limits, Observation, Outcome, PolicyComponent, Probe, ProbeResult, Rebuild,
    RequestView, Router, RouterOptions, Ticket,
};

use super::model::{BackendModel, Exchange};
use super::probes::{self, SimProber};
use super::queue::EventQueue;
use super::result::{label, run_stats};
pub use super::result::{SimRecord, SimResult};
use super::scenario::{KeySampler, Keys, Scenario};
use switchyard_rng as rng;

/// The per-call CPU deadline in the simulator. The proxy's 5 ms is measured in wall-clock
/// epochs, so a busy machine (a test run next to a build) could preempt a call past it and
/// turn an ordinary request into a fault, breaking byte-identical output. 100 ms still
/// stops a looping policy quickly (the breaker trips after five).
const SIM_DEADLINE: Duration = Duration::from_millis(100);
/// Connections are told apart by client port (as wrk's are), so a policy hashing on the
/// client address sees distinct clients.
pub const MAX_CONNECTIONS: usize = 64_000;
const FIRST_CLIENT_PORT: u16 = 1024;

// === impl SimOptions ===

/// How to drive a simulation; see `switchyard simulate --help` for the meaning of each.
#[derive(Debug, Clone)]
pub struct SimOptions {
    pub connections: usize,
    /// Clients stop sending new requests at this virtual time; requests in flight finish.
    pub duration: Duration,
    /// Seeds the policy's generator and every backend without a `seed` of its own.
    pub seed: u64,
    /// Proxy time per request before it reaches the backend: the policy is asked at
    /// send + overhead, and the client's latency includes it.
    pub overhead: Duration,
    /// Passed to the policy's `configure`, as `--policy-arg` does for the proxy.
    pub policy_args: Vec<(String, String)>,
    /// Requests sent before this are served and observed by the policy but left out of the
    /// statistics and the CSV: a start-up transient would otherwise blur steady state.
    pub warmup: Duration,
}

impl Default for SimOptions {
    fn default() -> Self {
        SimOptions {
            connections: 100,
            duration: Duration::from_secs(120),
            seed: 1,
            overhead: Duration::ZERO,
            policy_args: Vec::new(),
            warmup: Duration::ZERO,
        }
    }
}

impl SimOptions {
    /// Every mistake is a flag the operator passed: a [`UsageError`] naming it.
    fn validate(&self) -> Result<(), UsageError> {
        if !(1..=MAX_CONNECTIONS).contains(&self.connections) {
            return Err(UsageError::new(format!(
                "--connections {} is outside 1..={MAX_CONNECTIONS}",
                self.connections
            )));
        }
        if self.duration.is_zero() || self.duration > super::duration::MAX {
            return Err(UsageError::new(format!(
                "--duration must be more than 0 and at most {} s",
                super::duration::MAX.as_secs()
            )));
        }
        if self.warmup >= self.duration {
            return Err(UsageError::new(format!(
                "--warmup ({:?}) must be shorter than --duration ({:?}), or nothing would be measured",
                self.warmup, self.duration
            )));
        }
        if self.overhead > Duration::from_secs(60) {
            return Err(UsageError::new(format!(
                "--overhead {:?} is more than a minute per request",
                self.overhead
            )));
        }
        Ok(())
    }
}

// === the event loop ===

/// Runs `scenario` against `policy`, called through the same [`Router`] as the proxy.
pub fn simulate(
    policy: Arc<PolicyComponent>,
    scenario: &Scenario,
    opts: &SimOptions,
) -> anyhow::Result<SimResult> {
    opts.validate()?;
    let backends: Vec<Backend> = scenario
        .backends
        .iter()
        .map(|b| Backend {
            id: b.id.clone(),
            url: b.url.clone(),
            weight: b.weight,
        })
        .collect();
    let router = router(policy, &backends, opts)?;
    let policy_name = router.status().name.to_string();
    let mut models: Vec<BackendModel> = scenario
        .backends
        .iter()
        .enumerate()
        .map(|(i, b)| {
            let seed = b
                .seed
                .unwrap_or_else(|| rng::splitmix64_at(opts.seed, i as u64));
            BackendModel::new(b, seed, scenario.timeout_ns, scenario.connect_error_ns)
        })
        .collect();

    let prober = SimProber::new();
    router.set_prober(prober.clone());
    let started = Instant::now();
    let mut sim = Sim {
        router: &router,
        prober: &prober,
        models: &mut models,
        scenario,
        opts,
        keys: scenario
            .keys
            .as_ref()
            .map(|k| (k.header.as_str(), k.sampler())),
        sent: vec![0; opts.connections],
    };
    let run = sim.run()?;
    let wall = started.elapsed();

    let label = label(&policy_name, &opts.policy_args);
    let warmup_ns = opts.warmup.as_nanos() as u64;
    let measured_s = (opts.duration - opts.warmup).as_secs_f64();
    let stats = run_stats(&label, &backends, &run, warmup_ns, measured_s);
    let counters = router.counters();
    Ok(SimResult {
        policy: policy_name,
        label,
        backends,
        requests: run.requests,
        modes: run.modes,
        stats,
        warmup_ns,
        end_ns: run.end_ns,
        scores: router.live_scores(run.end_ns),
        faults: FaultKind::ALL
            .iter()
            .map(|&k| counters.fault_count(k))
            .sum(),
        fallback_routed: counters.fallback_routed.load(Relaxed),
        wall,
    })
}

/// The proxy's [`Router`] around the policy, rebuilt inline and seeded from the options. A
/// policy that rejects its arguments or faults while starting is the operator's to fix.
fn router(
    policy: Arc<PolicyComponent>,
    backends: &[Backend],
    opts: &SimOptions,
) -> Result<Router, UsageError> {
    let options = RouterOptions {
        rebuild: Rebuild::Inline,
        seed: opts.seed,
        limits: Limits {
            deadline: SIM_DEADLINE,
            // Virtual time: a budget per wall-clock second would make a run depend on
            // the machine's speed.
            cpu_budget: None,
            ..Limits::default()
        },
        ..RouterOptions::default()
    };
    Router::new(
        policy,
        backends.to_vec(),
        opts.policy_args.clone(),
        options,
        0,
    )
    .map_err(|e| UsageError::with_source("--policy", e))
}

/// What the event loop leaves behind.
pub(super) struct Run {
    /// In completion order.
    pub(super) requests: Vec<SimRecord>,
    pub(super) modes: Vec<Arc<str>>,
    /// When the last request finished.
    pub(super) end_ns: u64,
}

/// What the event loop works with.
struct Sim<'a, 'm> {
    router: &'a Router,
    prober: &'a SimProber,
    models: &'a mut [BackendModel<'m>],
    scenario: &'a Scenario,
    opts: &'a SimOptions,
    /// The header carrying request keys and their sampler (`[keys]`), if any.
    keys: Option<(&'a str, KeySampler)>,
    /// Requests each connection has sent so far: the index of its next key draw.
    sent: Vec<u64>,
}

impl Sim<'_, '_> {
    /// The event loop: every connection sends, gets its answer (or gives up on it), and
    /// sends again until `opts.duration`; requests in flight then still finish.
    fn run(&mut self) -> anyhow::Result<Run> {
        let duration_ns = self.opts.duration.as_nanos() as u64;
        let overhead_ns = self.opts.overhead.as_nanos() as u64;
        let mut queue = EventQueue::with_capacity(2 * self.opts.connections);
        for conn in 0..self.opts.connections as u32 {
            queue.push(overhead_ns, Event::Dispatch { conn, sent_ns: 0 });
        }
        let mut run = Run {
            requests: Vec::new(),
            modes: Vec::new(),
            end_ns: 0,
        };
        while let Some((now, event)) = queue.pop() {
            match event {
                Event::Dispatch { conn, sent_ns } => {
                    let done = self.dispatch(&mut run.modes, conn, sent_ns, now)?;
                    queue.push(done.record.done_ns, Event::Complete(done));
                }
                Event::Complete(done) => {
                    let conn = done.record.conn;
                    self.complete(done, now, &mut run);
                    if now < duration_ns {
                        let next = Event::Dispatch { conn, sent_ns: now };
                        queue.push(now + overhead_ns, next);
                    }
                }
                Event::ProbeArrives(probe) => self.probe_arrives(probe, now, &mut queue),
                Event::ProbeAnswered(probe, result) => probe.answer(result),
            }
            if now < duration_ns {
                self.schedule_probes(&mut queue);
            } else {
                // The clients have stopped: no new probes (a policy that probes from
                // `probed` would otherwise keep the run going forever). Dropping them
                // tells the router they were not sent.
                drop(self.prober.take());
            }
        }
        Ok(run)
    }

    /// The proxy's part at `now`: the policy chooses, the chosen backend's model serves,
    /// and the client gives up if the answer would come after its timeout.
    fn dispatch(
        &mut self,
        modes: &mut Vec<Arc<str>>,
        conn: u32,
        sent_ns: u64,
        now: u64,
    ) -> anyhow::Result<Dispatched> {
        let value = self.next_key(conn);
        let header = self.keys.as_ref().map(|(h, _)| *h);
        let request = SimRequest::new(conn, header.zip(value.as_deref()));
        let choice = self.router.choose(&request, now);
        let n = self.models.len();
        let model = self
            .models
            .get_mut(choice.backend)
            .ok_or_else(|| anyhow!("the router chose backend {} of {n}", choice.backend))?;
        let mut exchange = model.serve(now);
        if let Some(patience) = self.scenario.client_timeout_ns {
            let gives_up = sent_ns.saturating_add(patience).max(now);
            if exchange.end_ns > gives_up {
                exchange = Exchange {
                    end_ns: gives_up,
                    status: 0,
                    outcome: Outcome::Aborted,
                };
            }
        }
        let record = SimRecord {
            conn,
            backend: choice.backend as u32,
            mode: intern(modes, &choice.routing_mode),
            status: exchange.status,
            outcome: exchange.outcome,
            fault: choice.fault,
            sent_ns,
            dispatched_ns: now,
            done_ns: exchange.end_ns,
        };
        Ok(Dispatched {
            record,
            ticket: choice.ticket,
            wanted: choice.response_headers,
        })
    }

    /// The key of connection `conn`'s next request, when the scenario has `[keys]`.
    fn next_key(&mut self, conn: u32) -> Option<String> {
        let (_, sampler) = self.keys.as_ref()?;
        let n = self.sent.get_mut(conn as usize)?;
        let index = sampler.index(self.opts.seed, conn, *n);
        *n += 1;
        Some(Keys::value(index))
    }

    /// The exchange ends at `now`: the policy observes it (with the load headers it asked
    /// for, from a backend that reports them), and it is recorded.
    fn complete(&mut self, done: Dispatched, now: u64, run: &mut Run) {
        let record = done.record;
        let mut headers = Vec::new();
        if let (Some(wanted), Outcome::Response) = (&done.wanted, record.outcome) {
            if let Some(model) = self.models.get_mut(record.backend as usize) {
                if model.reports_load() {
                    if let Some(load) = model.load_at(now) {
                        headers = probes::wanted(Some(wanted), &load.headers());
                    }
                }
            }
        }
        let observation = Observation {
            now_ns: now,
            latency_ns: now - record.dispatched_ns,
            status: record.exchange().observed_status(),
            outcome: record.outcome,
            headers,
        };
        self.router.observe(done.ticket, observation);
        run.requests.push(record);
        run.end_ns = now;
    }

    /// Schedules the probes the last policy call asked for.
    fn schedule_probes(&mut self, queue: &mut EventQueue<Event>) {
        for probe in self.prober.take() {
            let up = self
                .models
                .get_mut(probe.backend)
                .and_then(|m| m.load_at(probe.asked_ns))
                .is_some();
            if up {
                let arrives = probe.asked_ns + self.scenario.probe_rtt_ns / 2;
                queue.push(arrives, Event::ProbeArrives(probe));
            } else {
                let done = probe.asked_ns + self.scenario.connect_error_ns;
                let result = probes::refused(&probe, done);
                queue.push(done, Event::ProbeAnswered(probe, result));
            }
        }
    }

    /// A probe reaches its backend at `now`: the load it reports is measured now.
    fn probe_arrives(&mut self, probe: Probe, now: u64, queue: &mut EventQueue<Event>) {
        let rtt = self.scenario.probe_rtt_ns;
        let answer = self
            .models
            .get_mut(probe.backend)
            .and_then(|m| probes::arrive(m, &probe, now, rtt));
        let result = answer.unwrap_or_else(|| probes::refused(&probe, now));
        queue.push(result.now_ns.max(now), Event::ProbeAnswered(probe, result));
    }
}

/// A request on its way: its record, decided at dispatch, and what observing it needs.
struct Dispatched {
    record: SimRecord,
    ticket: Ticket,
    wanted: Option<Arc<[String]>>,
}

/// Routing modes are few (the policy's name, the host's fallback); storing an index keeps
/// a record `Copy` and 48 bytes.
fn intern(modes: &mut Vec<Arc<str>>, mode: &Arc<str>) -> u32 {
    if let Some(i) = modes.iter().position(|m| Arc::ptr_eq(m, mode) || m == mode) {
        return i as u32;
    }
    modes.push(mode.clone());
    (modes.len() - 1) as u32
}

enum Event {
    /// The proxy routes connection `conn`'s request, sent by the client at `sent_ns`.
    Dispatch { conn: u32, sent_ns: u64 },
    /// The exchange ends (at the event's time, `record.done_ns`), or the client gives up.
    Complete(Dispatched),
    /// A probe reaches its backend.
    ProbeArrives(Probe),
    /// A probe's answer reaches the proxy.
    ProbeAnswered(Probe, ProbeResult),
}

// === impl SimRequest ===

/// The request the policy sees: a GET / from the connection's own client address, with
/// its key header when the scenario has `[keys]`.
struct SimRequest<'a> {
    client: SocketAddr,
    /// (header name, value).
    key: Option<(&'a str, &'a str)>,
}

impl<'a> SimRequest<'a> {
    fn new(conn: u32, key: Option<(&'a str, &'a str)>) -> Self {
        // validate() caps connections at MAX_CONNECTIONS, which fits above port 1024.
        let port = FIRST_CLIENT_PORT.saturating_add(conn as u16);
        SimRequest {
            client: SocketAddr::from((Ipv4Addr::LOCALHOST, port)),
            key,
        }
    }
}

impl RequestView for SimRequest<'_> {
    fn method(&self) -> &str {
        "GET"
    }
    fn path_and_query(&self) -> &str {
        "/"
    }
    fn authority(&self) -> &str {
        "switchyard.sim"
    }
    fn client(&self) -> Option<SocketAddr> {
        Some(self.client)
    }
    fn header(&self, name: &str) -> Option<&str> {
        self.key.filter(|(h, _)| *h == name).map(|(_, v)| v)
    }
    fn for_each_header(&self, f: &mut dyn FnMut(&str, &str)) {
        if let Some((h, v)) = self.key {
            f(h, v);
        }
    }
}
