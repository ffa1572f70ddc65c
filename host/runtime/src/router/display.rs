//! Scores for display, from a twin of the routing instance that never routes.
//!
//! `scores` is called by consoles and dashboards, not by routing, so a policy whose
//! `scores` traps, loops or returns too much must not cost routing anything. A trap leaves
//! a component instance unusable, so the call cannot be made on the routing instance
//! itself. Instead each generation gets a display twin: a second instance, configured
//! like the first and fed the same observations from the replay ring (as replays) at
//! each display call (the newest `DISPLAY_CATCH_UP`: the latest observations settle the
//! current scores, and displays ask every second), off the routing lock and within
//! `RouterOptions::display_budget`.
//! Its scores are the routing instance's as far as they follow from the observations
//! (EWMA, SMA, peak-EWMA); state that follows from `choose` alone (a round-robin counter)
//! is not mirrored. The twin shares the host's in-flight counts, may not probe, and its
//! cost is not charged to the routing instance's CPU budget (the display budget bounds
//! it). A twin that faults is dropped; the generation shows no scores until the next
//! swap, and routing never notices.
use std::sync::atomic::Ordering;
use std::sync::{Mutex, MutexGuard};
use std::time::Instant;

use super::Router;
use crate::instance::PolicyInstance;
use crate::types::Scores;

/// Observations a display call feeds its twin at most (the newest ones).
const DISPLAY_CATCH_UP: usize = 256;

/// The display twin of the current generation, if built.
#[derive(Default)]
pub(super) struct Display {
    twin: Option<Twin>,
    /// A generation whose twin faulted: no new twin for it.
    faulted: Option<u64>,
}

struct Twin {
    instance: PolicyInstance,
    generation: u64,
    /// The replay ring's `seen` count it has been fed up to.
    seen: u64,
}

/// The display state behind its own lock (never the routing lock).
pub(super) type DisplayLock = Mutex<Display>;

// === impl Router ===

impl Router {
    /// The policy's current scores, for display (None while the policy has none to show,
    /// is disabled, or its display twin faulted). Never calls the routing instance: see
    /// the module doc.
    pub fn scores(&self, now_ns: u64) -> Option<Scores> {
        let (component, generation, label) = {
            let st = self.inner.lock();
            if st.active.disabled {
                return None;
            }
            let label = st.active.score_label.clone();
            (st.active.component.clone()?, st.active.generation, label)
        };
        if label.is_empty() {
            // The policy keeps no scores: nothing to build a twin for.
            return Some(Scores::default());
        }
        let mut display = lock(&self.inner.display);
        if display.faulted == Some(generation) {
            return None;
        }
        let budget = self.inner.options.display_budget;
        if display
            .twin
            .as_ref()
            .is_none_or(|t| t.generation != generation)
        {
            display.twin = None;
            let (setup, limits) = (&self.inner.setup, self.inner.options.limits);
            let loads = self.inner.loads.clone();
            match PolicyInstance::with_host(
                &component,
                setup,
                limits,
                now_ns,
                loads,
                self.next_id(),
            ) {
                Ok(mut instance) => {
                    instance.forbid_probes();
                    display.twin = Some(Twin {
                        instance,
                        generation,
                        seen: 0,
                    });
                }
                Err(e) => return self.display_fault(&mut display, generation, &e.to_string()),
            }
        }
        // The budget is for catching up: building the twin (configure) has its own deadline.
        let started = Instant::now();
        let twin = display.twin.as_mut()?;
        let (missed, seen) = {
            let st = self.inner.lock();
            (
                st.replay.newest_since(twin.seen, DISPLAY_CATCH_UP),
                st.replay.seen(),
            )
        };
        let mut cut = false;
        for o in &missed {
            if started.elapsed() >= budget {
                cut = true;
                break;
            }
            if let Err(f) = twin.instance.deliver(o.replayed()) {
                let why = format!("{} ({})", f.detail, f.kind.as_str());
                return self.display_fault(&mut display, generation, &why);
            }
        }
        if cut {
            self.inner
                .counters
                .replays_cut
                .fetch_add(1, Ordering::Relaxed);
        }
        twin.seen = seen;
        match twin.instance.scores() {
            Ok(values) => Some(Scores { label, values }),
            Err(f) => {
                let why = format!("{} ({})", f.detail, f.kind.as_str());
                self.display_fault(&mut display, generation, &why)
            }
        }
    }

    fn display_fault(&self, display: &mut Display, generation: u64, why: &str) -> Option<Scores> {
        display.twin = None;
        display.faulted = Some(generation);
        self.inner
            .counters
            .display_faults
            .fetch_add(1, Ordering::Relaxed);
        tracing::warn!(
            "policy {} faulted computing its scores for display: {why}; routing is not affected, and its scores are not shown until the next swap",
            self.inner.lock().active.name
        );
        None
    }
}

fn lock(display: &DisplayLock) -> MutexGuard<'_, Display> {
    // A poisoned lock means a panic while held; the twin is rebuilt if it was mid-call.
    display.lock().unwrap_or_else(|e| e.into_inner())
}
