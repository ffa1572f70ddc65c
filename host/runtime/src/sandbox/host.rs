//! The contract's `host` interface (0.2): what a policy may ask the host during a call.
//! Both functions are bounded by construction: `in-flight` reads one atomic, `probe` only
//! takes the router's gate (one probe in flight and one per `--probe-interval` per
//! backend) and queues the backend for the router to send after the call.
use super::StoreState;
use crate::bindings::v02::switchyard::policy::host::Host;

impl Host for StoreState {
    fn in_flight(&mut self, backend: u32) -> u32 {
        self.loads.in_flight(backend as usize)
    }

    fn probe(&mut self, backend: u32) -> bool {
        if !self.may_probe {
            return false;
        }
        let accepted = self
            .loads
            .probes()
            .try_acquire(backend as usize, self.now_ns);
        if accepted {
            self.probes.push(backend);
        }
        accepted
    }
}
