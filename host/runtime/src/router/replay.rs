//! The ring of recent observations that warm-starts a new or replacement instance.
use super::State;
use crate::types::Observation;

impl State {
    pub(super) fn record(&mut self, o: Observation, cap: usize) {
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
    pub(super) fn since(&self, seen: u64) -> Vec<Observation> {
        let missed = (self.seen - seen) as usize;
        let skip = self.ring.len().saturating_sub(missed);
        self.ring.iter().skip(skip).copied().collect()
    }
}
