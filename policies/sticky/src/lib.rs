//! Sticky sessions: the same `x-user-id` header (or, without one, the same client IP)
//! always goes to the same backend. The README's example policy, kept compiling here.
use std::cell::Cell;
use std::hash::{DefaultHasher, Hash, Hasher};

wit_bindgen::generate!({ path: "../../wit", world: "router" });

use exports::switchyard::policy::policy::{
    Guest, Observation, PolicyInfo, ProbeResult, Request, Score, Setup,
};

thread_local!(static BACKENDS: Cell<u32> = const { Cell::new(1) });

struct Sticky;

impl Guest for Sticky {
    fn configure(setup: Setup) -> Result<PolicyInfo, String> {
        BACKENDS.set(setup.backends.len().max(1) as u32);
        Ok(PolicyInfo {
            name: "sticky".into(),
            score_label: String::new(),
            // The user header if there is one, else the client's address.
            headers: vec!["x-user-id".into(), ":client".into()],
            response_headers: Vec::new(),
            probe_path: None,
        })
    }
    fn choose(req: Request) -> u32 {
        let mut h = DefaultHasher::new();
        let headers = req.headers.unwrap_or_default();
        let value = |name: &str| headers.iter().find(|(k, _)| k == name).map(|(_, v)| v);
        match value("x-user-id") {
            Some(user) => user.hash(&mut h),
            None => value(":client")
                .and_then(|c| c.rsplit_once(':'))
                .map(|(ip, _port)| ip)
                .hash(&mut h),
        }
        (h.finish() % u64::from(BACKENDS.get())) as u32
    }
    fn observe(_: Observation) {}
    fn probed(_answer: ProbeResult) {}

    fn scores() -> Vec<Score> {
        Vec::new()
    }
}

export!(Sticky);
