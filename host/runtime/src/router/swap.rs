//! Swapping in a new policy: a rehearsal on a throwaway instance, then a warm start from
//! the recent observations off the routing lock, then a catch-up on what arrived
//! meanwhile and the switch, under the lock.
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{component_path, Active, Router};
use crate::component::{LoadError, PolicyComponent};
use crate::instance::Delivery;
use crate::instance::{Fault, PolicyInstance};
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
    /// The ring's `seen` count at the snapshot, to catch up from.
    pub(super) seen: u64,
}

impl Router {
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
            .and_then(|()| self.warm_instance(&component, now_ns, Warmth::Live));
        let warm = match result {
            Ok(warm) => warm,
            Err(e) => {
                self.record_failed_swap();
                return Err(e);
            }
        };
        let mut st = self.inner.lock();
        let mut active = Active::new(component, warm.instance, st.active.generation + 1);
        let missed = st.replay.since(warm.seen);
        if let Some(instance) = active.instance.as_mut() {
            for o in &missed {
                if instance.deliver(o.replayed()).is_err() {
                    active.instance = None;
                    break;
                }
            }
        }
        if active.instance.is_none() {
            drop(st);
            self.record_failed_swap();
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
            replayed: warm.replayed,
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
        let mut instance = self
            .warm_instance(component, now_ns, Warmth::Rehearsal)?
            .instance;
        let failed = |f: Fault| LoadError::Faulted {
            path: component.path().to_path_buf(),
            stage: "rehearsal",
            reason: format!("{} ({})", f.detail, f.kind.as_str()),
        };
        for i in 0..REHEARSALS {
            let t = now_ns + i * 1_000_000;
            let backend = instance.choose(&NoRequest, t).map_err(failed)?;
            let obs = Observation::new(t + 500_000, 500_000, 200, Outcome::Response);
            instance
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
    /// (taken under the lock, replayed outside it). Probes it asks for meanwhile are not
    /// sent: replayed time is past.
    pub(super) fn warm_instance(
        &self,
        component: &PolicyComponent,
        now_ns: u64,
        warmth: Warmth,
    ) -> Result<Warm, LoadError> {
        let (snapshot, seen) = self.inner.lock().replay.snapshot();
        let (setup, limits) = (&self.inner.setup, self.inner.options.limits);
        let mut instance = match warmth {
            Warmth::Live => PolicyInstance::with_host(
                component,
                setup,
                limits,
                now_ns,
                self.inner.loads.clone(),
                self.next_id(),
            )?,
            Warmth::Rehearsal => PolicyInstance::new(component, setup, limits, now_ns)?,
        };
        for o in &snapshot {
            let replayed = instance.deliver(o.replayed());
            self.release(instance.take_probes());
            replayed.map_err(|f| LoadError::Faulted {
                path: component.path().to_path_buf(),
                stage: "replay",
                reason: f.detail,
            })?;
        }
        Ok(Warm {
            instance,
            replayed: snapshot.len(),
            seen,
        })
    }
}
