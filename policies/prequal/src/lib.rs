//! Prequal (Wydrowski, Kleinberg, Rumble, Archer, "Load is not what you should balance",
//! NSDI '24; YouTube's load balancer): route on what backends say about themselves, their
//! requests in flight (RIF) and their latency at that load, not on the client's own
//! latency samples.
//!
//! Per query it asks the host to probe `probes-per-query` random backends (the paper's
//! `r_probe`, default 3; a fraction is rounded at random) and pools the answers, along with
//! the same two headers (`x-prequal-rif`, `x-prequal-latency-us`) whenever a response
//! piggybacks them (`backend --report-load`). It routes by the hot-cold lexicographic rule:
//! an entry is hot when its RIF is above the `q-rif` quantile of the pooled RIFs (default
//! `2^-0.25 ≈ 0.84`); the cold entry with the lowest latency wins, and if every entry is
//! hot, the lowest RIF. A chosen entry's RIF rises by 1 (this query is load its probe
//! predates) and it routes at most `max-uses` queries (default 16). Entries older than
//! `probe-age-ms` (default 1000) are ignored; the pool keeps `pool-size` entries (default
//! 16), the newest per backend, and drops one, alternately the oldest and the worst, per 3
//! answers (the paper's `r_remove = 1` per `r_probe = 3`; see `balancer`). With fewer than 2
//! usable entries it routes uniformly at random, as the paper does, redrawing a backend
//! whose last request or probe failed. A failed request or probe also drops the backend's
//! entry (the paper's sinkholing hazard: a backend that fails fast looks fast and idle).
//!
//! Defaults are the paper's, as quoted by `poise-rs` and `prequal-rs` (reviewed in
//! `lb-algorithms.md` §1), except `max-uses`: the paper derives `b_reuse` (1–2 at its
//! probe rate), but here the host's gate allows one probe per backend per 10 ms, so the
//! budget is prequal-rs's cap of 16 and the RIF compensation does the spreading.
//!
//! What it wins: heterogeneous capacity, where the backend that is fastest when idle is the
//! one that saturates (`scenarios/saturating.toml`). The backends' own latency reports
//! include their queueing, and RIF compensation spreads a burst over the pool, so it stops
//! sending to a small backend once its queue makes it no faster than the rest, where rr
//! queues a third of the load on it and ewma herds (there: p99 56 ms against rr's 86 and
//! ewma's 65, mean 28 against 44 and 41). Reports count every client's load, not just this
//! proxy's. Where it loses: with only a few backends the pool holds a few entries, so
//! hot/cold says little (with 3, only a compensated entry is hot) and it is latency
//! equalisation, no better than peak-EWMA with exact in-flight counts (tied on
//! capacity.toml, p99 within 3% on saturating.toml); backends that piggyback no reports
//! leave it probe-limited (100 answers/s per backend), so a busy proxy routes part of its
//! queries at random; and a backend that fails fast is evicted only by its failures, with
//! no ejection: each probe answer brings it back. The scores are each backend's latest
//! reported latency in ms.
mod balancer;

use std::cell::RefCell;

use balancer::{load_report, Prequal, Settings, LATENCY_HEADER, RIF_HEADER};

wit_bindgen::generate!({ path: "../../wit", world: "router" });

use exports::switchyard::policy::policy::{
    Guest, Observation, PolicyInfo, ProbeResult, Request, Score, Setup,
};
use switchyard::policy::host;
use switchyard::policy::types::Outcome;

thread_local! {
    /// `None` until the first `configure`.
    static STATE: RefCell<Option<Prequal>> = const { RefCell::new(None) };
}

struct Policy;

impl Guest for Policy {
    fn configure(setup: Setup) -> Result<PolicyInfo, String> {
        let settings = Settings::parse(&setup.config)?;
        // Backend indices change with the set, so the pool starts afresh; probes refill
        // it within one probe interval.
        let state = Prequal::new(settings, setup.backends.len(), setup.seed);
        STATE.with_borrow_mut(|s| *s = Some(state));
        Ok(PolicyInfo {
            name: "prequal".into(),
            score_label: "latency-ms".into(),
            headers: Vec::new(),
            response_headers: vec![RIF_HEADER.into(), LATENCY_HEADER.into()],
            probe_path: Some("/probe".into()),
        })
    }

    fn choose(request: Request) -> u32 {
        STATE.with_borrow_mut(|s| match s {
            Some(p) => {
                let tried = request.tried.as_deref().unwrap_or_default();
                p.choose(request.now_ns, tried, host::probe)
            }
            None => 0,
        })
    }

    fn observe(o: Observation) {
        STATE.with_borrow_mut(|s| {
            let Some(p) = s else { return };
            match o.outcome {
                // The client hung up: nothing said about the backend, and no headers.
                Outcome::Aborted => {}
                Outcome::Response if o.status < 500 => {
                    let report = o.headers.as_deref().and_then(load_report);
                    match report {
                        Some((rif, latency_us)) => p.report(o.backend, rif, latency_us, o.now_ns),
                        None => p.succeeded(o.backend),
                    }
                }
                _ => p.failed(o.backend),
            }
        })
    }

    fn probed(r: ProbeResult) {
        STATE.with_borrow_mut(|s| {
            let Some(p) = s else { return };
            let report = match (r.outcome, r.status) {
                (Outcome::Response, 200) => r.headers.as_deref().and_then(load_report),
                _ => None,
            };
            match report {
                Some((rif, latency_us)) => p.report(r.backend, rif, latency_us, r.now_ns),
                // Unreachable, erroring or not speaking Prequal: do not route on it.
                None => p.failed(r.backend),
            }
        })
    }

    fn scores() -> Vec<Score> {
        STATE.with_borrow(|s| {
            s.iter()
                .flat_map(|p| p.latencies_ms())
                .map(|(backend, value)| Score { backend, value })
                .collect()
        })
    }
}

export!(Policy);
