//! Maglev consistent hashing with bounded loads: requests with the same key (by default
//! the `x-user-id` header) go to the same backend, as long as that backend is healthy and
//! not carrying more than its share of the load.
//!
//! The rule:
//! - The key (`key`, default `header:x-user-id`; also `cookie:<name>`, `client-ip`,
//!   `path`; a request without its header or cookie falls back to its client IP) is hashed
//!   with xxHash64 (`hash`: hand-written and pinned by tests, because std's `DefaultHasher`
//!   may change between Rust releases and move every key).
//! - The hash picks a slot of a Maglev table (`table`; Eisenbud et al., NSDI '16) of
//!   `table-size` slots (a prime, default 16411, at most 65537, Envoy's default, so that
//!   the build fits the host's 5 ms per call), filled from the backends' ids and weights (Envoy's
//!   weighted populate), so every instance and every proxy with the same pool agrees.
//! - Bounded loads (`bounded`; Mirrokni, Thorup, Zadimoghaddam, arXiv 1608.01350): a
//!   backend may hold at most `ceil(c * (in flight + 1) * w / W)` requests
//!   (`ceil(c * (m + 1) / n)` unweighted), `c` = `balance-factor`, default 1.25 (as Go's
//!   liblb and Envoy's `hash_balance_factor: 125` in the wild); 0 turns the bound off
//!   (plain Maglev). A key whose backend is full walks on along its own sequence of table
//!   slots, `h mod M + j * stride(h) mod M` (double hashing over the prime table), to the
//!   first backend with room: slots keep the overflow weighted and stable per key, and
//!   each key's own stride scatters a full backend's keys over all the others instead of
//!   cascading them onto one neighbour, as Envoy's hash-seeded shuffle does. The requests in flight per
//!   backend are the host's exact count (`host.in-flight`); the total is this instance's
//!   own count of the requests it chose and has not yet seen observed (O(1) per request,
//!   where summing the host's counts would cost one call per backend).
//! - Passive ejection (`health`; Envoy's outlier detection): `eject-after` failures in a
//!   row (default 5; 0: never) eject a backend for `eject-ms` (default 1000) times its
//!   ejections in a row, at most 30 s. An ejected backend keeps its slots: its keys walk on
//!   exactly as if it were full, so a backend that goes down moves only its own keys, and
//!   they come back when it does, with no table rebuild. A retry skips the backends the
//!   request already tried, the same way.
//!
//! Cost: the table is built in `configure` only when the (id, weight) pool or the size
//! changes, in O(M log M) (65537 slots: 0.7 to 1.5 ms natively, 2 to 3 ms in wasm; see
//! `table`); an ejection costs nothing to the table, one O(N) recount of the usable weight
//! when the set of usable backends changes. `choose` hashes the key and reads one slot: O(1), plus O(1) expected
//! steps when a backend is full or ejected.
//!
//! Scores (`load-factor`): each backend's requests in flight over its current capacity.
//! Above 1 a backend is full and its keys overflow. Chosen over slot shares because those
//! follow from the weights and never change, while this shows what the bound does now.
//!
//! On the simulator (`scenarios/hot-key.toml`, 30 % of requests on one key): p99 32 ms
//! against 71 ms for plain Maglev and 70 ms for `sticky`, at 4856 req/s against 2664; on
//! `churn.toml` none of the keys off the backend that left moved, all came back, 25 errors.
//!
//! What it wins: affinity (caches, sessions) that survives pool changes, a backend going
//! down moving only its ~1/N of the keys (`hash % n`, which the `sticky` policy does, moves
//! (N-1)/N), and a hot key that cannot overload its backend: it spills onto others once its
//! backend holds c times its share. Where it loses: it is blind to latency, so a slow but
//! healthy backend keeps its keys until it is full (and with a large `balance-factor`,
//! forever); bounded loads trade affinity for balance (a hot key's spill lands on other
//! backends, cold for it); and with few distinct keys the load follows the keys, not the
//! backends' capacity.
mod bounded;
mod hash;
mod health;
mod key;
mod table;

use std::cell::RefCell;

wit_bindgen::generate!({ path: "../../wit", world: "router" });

use exports::switchyard::policy::policy::{
    Guest, Observation, PolicyInfo, ProbeResult, Request, Score, Setup,
};
use switchyard::policy::host;
use switchyard::policy::types::{Origin, Outcome};

/// The settings, validated.
struct Settings {
    key: key::Source,
    size: usize,
    /// `balance-factor` in thousandths; `None`: bounded loads off.
    factor_milli: Option<u64>,
    rule: health::Rule,
}

#[derive(Default)]
struct State {
    settings: Option<Settings>,
    ids: Vec<String>,
    weights: Vec<u64>,
    table: Vec<u32>,
    health: Vec<health::Backend>,
    /// Requests in flight in all: the host's counts summed every `RESUM` choices (and at
    /// the first after `configure`), plus this instance's own choices and answers between.
    /// Why not only its own: after a swap the old instance's requests are still in the
    /// host's per-backend counts, and a total without them would make every backend look
    /// full. Why not the sum every time: that is O(n) host calls a request.
    total: u64,
    chosen: u64,
    /// Weight of the backends not ejected, and when that may next change.
    usable_weight: u64,
    recheck_ns: u64,
    marks: bounded::Marks,
}

/// How often `choose` re-reads the total in flight from the host (see `State::total`).
const RESUM: u64 = 64;

thread_local! {
    static STATE: RefCell<State> = RefCell::default();
}

fn settings(config: &[(String, String)], n: usize) -> Result<Settings, String> {
    common::reject_unknown(
        config,
        &[
            "key",
            "table-size",
            "balance-factor",
            "eject-after",
            "eject-ms",
        ],
    )?;
    let spec = config
        .iter()
        .rev()
        .find(|(k, _)| k == "key")
        .map_or(key::DEFAULT, |(_, v)| v.as_str());
    let key = key::Source::parse(spec)?;
    let size = common::config_usize(
        config,
        "table-size",
        table::DEFAULT_SIZE,
        2..=table::MAX_SIZE,
    )?;
    if !table::is_prime(size) {
        return Err(format!(
            "table-size={size} is invalid: it must be prime (e.g. 1009, 10007 or 65537)"
        ));
    }
    if size < n {
        return Err(format!(
            "table-size={size} is invalid: it is smaller than the {n} backends; use a prime above 100 x {n}"
        ));
    }
    let c = common::config_f64(config, "balance-factor", 1.25, 0.0..=1e6)?;
    if c != 0.0 && c < 1.0 {
        return Err(format!(
            "balance-factor={c} is invalid: use 0 (off) or a factor from 1 to 1000000, e.g. 1.25"
        ));
    }
    let after = common::config_usize(config, "eject-after", 5, 0..=1000)?;
    let eject_ms = common::config_f64(config, "eject-ms", 1000.0, 0.0..=3.6e6)?;
    Ok(Settings {
        key,
        size,
        factor_milli: (c != 0.0).then(|| (c * 1000.0).round() as u64),
        rule: health::Rule {
            after: after as u32,
            eject_ns: (eject_ms * 1e6) as u64,
        },
    })
}

impl State {
    /// Takes the new pool: rebuilds the table only if ids, weights or size changed, and
    /// keeps each backend's ejection state by id.
    fn configure(&mut self, setup: &Setup, settings: Settings) {
        let ids: Vec<String> = setup.backends.iter().map(|b| b.id.clone()).collect();
        let mut weights: Vec<u64> = setup
            .backends
            .iter()
            .map(|b| b.weight.map_or(1, u64::from))
            .collect();
        if weights.iter().all(|&w| w == 0) {
            weights.iter_mut().for_each(|w| *w = 1);
        }
        let same_size = self
            .settings
            .as_ref()
            .is_some_and(|s| s.size == settings.size);
        if !(same_size && ids == self.ids && weights == self.weights) {
            let names: Vec<&str> = ids.iter().map(String::as_str).collect();
            self.table = table::build(&names, &weights, settings.size);
        }
        self.health = ids
            .iter()
            .map(|id| {
                self.ids
                    .iter()
                    .position(|old| old == id)
                    .and_then(|i| self.health.get(i).copied())
                    .unwrap_or_default()
            })
            .collect();
        self.ids = ids;
        // The first choice re-reads the total from the host.
        self.chosen = 0;
        self.weights = weights;
        self.settings = Some(settings);
        self.recheck_ns = 0;
    }

    /// Recounts the usable weight when an ejection may have started or ended.
    fn refresh(&mut self, now_ns: u64) {
        if now_ns < self.recheck_ns {
            return;
        }
        self.usable_weight = 0;
        self.recheck_ns = u64::MAX;
        for (b, &w) in self.health.iter().zip(&self.weights) {
            if b.ejected(now_ns) {
                self.recheck_ns = self.recheck_ns.min(b.until_ns());
            } else {
                self.usable_weight += w;
            }
        }
    }

    fn choose(&mut self, req: Request) -> u32 {
        let Some(settings) = &self.settings else {
            return 0;
        };
        let n = self.health.len();
        let headers = req.headers.unwrap_or_default();
        let h = hash::xxh64(settings.key.extract(&headers).as_bytes(), 0);
        let factor = settings.factor_milli;
        self.refresh(req.now_ns);
        if self.chosen.is_multiple_of(RESUM) {
            self.total = (0..n).map(|i| u64::from(host::in_flight(i as u32))).sum();
        }
        let tried = req.tried.unwrap_or_default();
        let mut view = HostView {
            weights: &self.weights,
            health: &self.health,
            now_ns: req.now_ns,
            tried: &tried,
            factor_milli: factor,
            total: self.total,
            usable_weight: self.usable_weight,
        };
        let pick = bounded::pick(&self.table, n, h, &mut self.marks, &mut view);
        self.total = self.total.saturating_add(1);
        self.chosen = self.chosen.wrapping_add(1);
        pick as u32
    }

    fn observe(&mut self, o: &Observation) {
        if o.origin == Origin::Chosen {
            self.total = self.total.saturating_sub(1);
        }
        if o.outcome == Outcome::Aborted {
            return;
        }
        let failed = o.outcome != Outcome::Response || o.status >= 500;
        let Some(settings) = &self.settings else {
            return;
        };
        if let Some(b) = self.health.get_mut(o.backend as usize) {
            let was = b.ejected(o.now_ns);
            settings.rule.record(b, failed, o.now_ns);
            if b.ejected(o.now_ns) != was {
                self.recheck_ns = 0;
            }
        }
    }
}

/// What the walk sees of the pool during one `choose`.
struct HostView<'a> {
    weights: &'a [u64],
    health: &'a [health::Backend],
    now_ns: u64,
    tried: &'a [u32],
    factor_milli: Option<u64>,
    total: u64,
    usable_weight: u64,
}

impl bounded::View for HostView<'_> {
    fn usable(&self, i: usize) -> bool {
        self.weights.get(i).is_some_and(|&w| w > 0)
            && self.health.get(i).is_some_and(|b| !b.ejected(self.now_ns))
            && !self.tried.contains(&(i as u32))
    }
    fn in_flight(&mut self, i: usize) -> u64 {
        u64::from(host::in_flight(i as u32))
    }
    fn capacity(&self, i: usize) -> u64 {
        let w = self.weights.get(i).copied().unwrap_or(0);
        self.factor_milli.map_or(u64::MAX, |f| {
            bounded::capacity(f, self.total, w, self.usable_weight)
        })
    }
}

struct Maglev;

impl Guest for Maglev {
    fn configure(setup: Setup) -> Result<PolicyInfo, String> {
        let settings = settings(&setup.config, setup.backends.len())?;
        let headers = settings.key.headers();
        STATE.with_borrow_mut(|s| s.configure(&setup, settings));
        Ok(PolicyInfo {
            name: "maglev".into(),
            score_label: "load-factor".into(),
            headers,
            response_headers: Vec::new(),
            probe_path: None,
        })
    }

    fn choose(request: Request) -> u32 {
        STATE.with_borrow_mut(|s| s.choose(request))
    }

    fn observe(o: Observation) {
        STATE.with_borrow_mut(|s| s.observe(&o))
    }

    fn probed(_answer: ProbeResult) {}

    fn scores() -> Vec<Score> {
        STATE.with_borrow(|s| {
            let loads: Vec<u64> = (0..s.weights.len() as u32)
                .map(|i| u64::from(host::in_flight(i)))
                .collect();
            let total: u64 = loads.iter().sum();
            let w_sum: u64 = s.weights.iter().sum();
            // With the bound off, relative to the fair share (c = 1).
            let f = s
                .settings
                .as_ref()
                .and_then(|s| s.factor_milli)
                .unwrap_or(1000);
            loads
                .iter()
                .zip(&s.weights)
                .enumerate()
                .map(|(i, (&load, &w))| Score {
                    backend: i as u32,
                    value: load as f64 / bounded::capacity(f, total, w, w_sum) as f64,
                })
                .collect()
        })
    }
}

export!(Maglev);
