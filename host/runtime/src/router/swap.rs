//! Swapping in a new policy: a rehearsal on a throwaway instance, then a warm start from
//! the recent observations and a catch-up on what arrived meanwhile, all off the routing
//! lock and within the replay budget, then the switch under the lock (no policy call).
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::replay::Recorded;
use super::{Active, Router};
use crate::component::{LoadError, PolicyComponent};
use crate::instance::{Delivery, Fault, PolicyInstance};
use crate::loads::BackendLoads;
use crate::types::{NoRequest, Observation, Origin, Outcome};

/// Result of a successful swap.
#[derive(Debug, Clone)]
pub struct SwapReport {
    /// The name of the policy swapped out.
    pub from: Arc<str>,
    /// The name of the policy swapped in.
    pub to: Arc<str>,
    /// Instantiate + configure + replay, excluding compilation.
    pub took: Duration,
    /// Observations replayed into the new instance from the ring.
    pub replayed: usize,
    /// The replay budget ran out before the end of the ring (`replayed` is what fit).
    pub replay_cut: bool,
    /// The new policy's generation.
    pub generation: u64,
}

/// What a warm instance is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Warmth {
    /// To take traffic: it shares the router's in-flight counts and probe gate.
    Live,
    /// A throwaway for the rehearsal: its own zeroed counts, and no probes.
    Rehearsal,
}

/// A new instance fed the replay ring's snapshot.
pub(super) struct Warm {
    pub(super) instance: PolicyInstance,
    /// Observations replayed.
    pub(super) replayed: usize,
    /// The ring's `seen` count it has been fed up to.
    pub(super) seen: u64,
    /// The replay budget ran out before the end of the ring.
    pub(super) cut: bool,
    /// The counters and probe gate the instance was built with (the router's, or a
    /// rehearsal's copy): probes it asks for while replaying are released there.
    loads: Arc<BackendLoads>,
    /// When the warm start began (the replay budget's clock).
    started: Instant,
}

impl Router {
    /// Replaces the policy with `component`: rehearsed, then instantiated, configured and
    /// warm-started off the request path, and switched in under the lock (which calls no
    /// policy). On error the current policy stays, untouched.
    pub fn swap(
        &self,
        component: Arc<PolicyComponent>,
        now_ns: u64,
    ) -> Result<SwapReport, LoadError> {
        let started = Instant::now();
        let result = self
            .rehearse(&component, now_ns)
            .and_then(|()| self.warm_instance(&component, now_ns, Warmth::Live))
            .and_then(|mut warm| self.catch_up(&mut warm, &component).map(|()| warm));
        let warm = match result {
            Ok(warm) => warm,
            Err(e) => {
                self.record_failed_swap();
                return Err(e);
            }
        };
        if warm.cut {
            self.inner
                .counters
                .replays_cut
                .fetch_add(1, Ordering::Relaxed);
        }
        let mut st = self.inner.lock();
        let active = Active::new(
            component,
            warm.instance,
            st.active.generation + 1,
            &self.inner.options,
        );
        let report = SwapReport {
            from: st.active.name.clone(),
            to: active.name.clone(),
            took: started.elapsed(),
            replayed: warm.replayed,
            replay_cut: warm.cut,
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
    ///
    /// The rounds look like live traffic, so that a policy cannot behave only while it is
    /// rehearsed: the requests are recent real ones ([`super::traffic`]) at their real
    /// spacing, each answered like the chosen backend's latest real observation, and the
    /// in-flight counts are today's. Before any traffic, it falls back to a plain request
    /// answered in 500 us.
    fn rehearse(&self, component: &PolicyComponent, now_ns: u64) -> Result<(), LoadError> {
        const REHEARSALS: usize = 16;
        let mut warm = self.warm_instance(component, now_ns, Warmth::Rehearsal)?;
        let (recent, observed) = {
            let st = self.inner.lock();
            (
                st.traffic.recent(),
                st.replay.latest_per_backend(self.backends().len()),
            )
        };
        let failed = |f: Fault| LoadError::Faulted {
            path: component.path().to_path_buf(),
            stage: "rehearsal",
            reason: format!("{} ({})", f.detail, f.kind.as_str()),
        };
        let first_at = recent.first().map_or(0, |r| r.at_ns);
        for i in 0..REHEARSALS {
            let (t, backend) = match recent.get(i % recent.len().max(1)) {
                Some(req) => {
                    let t = now_ns + req.at_ns.saturating_sub(first_at) + (i / recent.len()) as u64;
                    (t, warm.instance.choose(req, t).map_err(failed)?)
                }
                None => {
                    let t = now_ns + i as u64 * 1_000_000;
                    (t, warm.instance.choose(&NoRequest, t).map_err(failed)?)
                }
            };
            let like = observed.get(backend).and_then(|o| o.as_ref());
            let mut obs = like
                .cloned()
                .unwrap_or_else(|| Observation::new(0, 500_000, 200, Outcome::Response));
            obs.now_ns = t + obs.latency_ns;
            warm.instance
                .deliver(Delivery {
                    backend,
                    attempt: 1,
                    origin: Origin::Chosen,
                    obs: &obs,
                })
                .map_err(failed)?;
        }
        Ok(())
    }

    /// A new instance of `component`, configured and fed a snapshot of the replay ring
    /// (taken under the lock, replayed outside it) within the replay budget. Probes it
    /// asks for meanwhile are not sent: replayed time is past.
    pub(super) fn warm_instance(
        &self,
        component: &PolicyComponent,
        now_ns: u64,
        warmth: Warmth,
    ) -> Result<Warm, LoadError> {
        let started = Instant::now();
        let (snapshot, seen) = self.inner.lock().replay.snapshot();
        let (setup, limits) = (&self.inner.setup, self.inner.options.limits);
        let loads = match warmth {
            Warmth::Live => self.inner.loads.clone(),
            Warmth::Rehearsal => Arc::new(self.inner.loads.copy()),
        };
        let instance = PolicyInstance::with_host(
            component,
            setup,
            limits,
            now_ns,
            loads.clone(),
            self.next_id(),
        )?;
        let mut warm = Warm {
            instance,
            replayed: 0,
            seen,
            cut: false,
            started,
            loads,
        };
        self.feed(&mut warm, &snapshot, component)?;
        Ok(warm)
    }

    /// Catches `warm` up on what traffic added to the ring since its snapshot, off the
    /// lock, in passes until a pass finds nothing new (or the budget is spent). Whatever
    /// arrives between the last pass and the switch is not replayed: a handful of
    /// observations, against a lock held for the replay of thousands by a slow policy.
    pub(super) fn catch_up(
        &self,
        warm: &mut Warm,
        component: &PolicyComponent,
    ) -> Result<(), LoadError> {
        const PASSES: usize = 8;
        for _ in 0..PASSES {
            let (missed, seen) = {
                let st = self.inner.lock();
                (st.replay.since(warm.seen), st.replay.seen())
            };
            warm.seen = seen;
            if missed.is_empty() || warm.cut {
                break;
            }
            self.feed(warm, &missed, component)?;
        }
        Ok(())
    }

    /// Replays `observations` into `warm` until the replay budget is spent.
    fn feed(
        &self,
        warm: &mut Warm,
        observations: &[Recorded],
        component: &PolicyComponent,
    ) -> Result<(), LoadError> {
        let budget = self.inner.options.replay_budget;
        for o in observations {
            if warm.started.elapsed() >= budget {
                warm.cut = true;
                return Ok(());
            }
            let replayed = warm.instance.deliver(o.replayed());
            for b in warm.instance.take_probes() {
                warm.loads.probes().release(b as usize);
            }
            replayed.map_err(|f| LoadError::Faulted {
                path: component.path().to_path_buf(),
                stage: "replay",
                reason: format!("{} ({})", f.detail, f.kind.as_str()),
            })?;
            warm.replayed += 1;
        }
        Ok(())
    }
}
