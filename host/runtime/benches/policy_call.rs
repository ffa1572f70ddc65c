//! One `choose` + `observe` round trip: through the router into the wasm policy, straight
//! into the wasm instance, and the same logic in native Rust, in nanoseconds.
//!
//! Run with `cargo bench -p switchyard-runtime --bench policy_call` after
//! `just build-policies build-fixtures`. The ratio wasm/native is the policy's price; the
//! `-v0.1` rows are the same policies frozen at contract 0.1.0, so the ratio 0.2/0.1 is
//! what the new contract costs.
use std::hint::black_box;
use std::path::PathBuf;

use criterion::{criterion_group, Criterion};
use switchyard_runtime::{
    Backend, Limits, NoRequest, Observation, Outcome, PolicyComponent, PolicyInstance,
    PolicyRuntime, Router, RouterOptions, Setup,
};

fn backends() -> Vec<Backend> {
    ["A", "B", "C"]
        .iter()
        .enumerate()
        .map(|(i, id)| Backend {
            id: id.to_string(),
            url: format!("http://127.0.0.1:{}", 8081 + i),
            weight: None,
        })
        .collect()
}

/// A bare instance of `component`, configured for three backends.
fn instance(component: &PolicyComponent) -> PolicyInstance {
    let setup = Setup {
        backends: backends(),
        config: Vec::new(),
        seed: 1,
    };
    PolicyInstance::new(component, &setup, Limits::default(), 0).expect("instance")
}

fn obs(backend: usize, t: u64) -> Observation {
    let latency_ns = 200_000_000 + (backend as u64) * 25_000_000;
    Observation::new(t, latency_ns, 200, Outcome::Response)
}

/// The study's EWMA in plain Rust, for comparison.
struct NativeEwma {
    alpha: f64,
    scores: Vec<Option<f64>>,
}

impl NativeEwma {
    fn choose(&mut self) -> usize {
        if let Some(i) = self.scores.iter().position(Option::is_none) {
            return i;
        }
        let mut best = 0;
        for (i, s) in self.scores.iter().enumerate() {
            if s < &self.scores[best] {
                best = i;
            }
        }
        best
    }
    fn observe(&mut self, backend: usize, o: &Observation) {
        let x = o.latency_ns as f64 / 1e6;
        let s = &mut self.scores[backend];
        *s = Some(s.map_or(x, |p| self.alpha * x + (1.0 - self.alpha) * p));
    }
}

fn bench(c: &mut Criterion) {
    let rt = PolicyRuntime::new().expect("runtime");
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../policies");
    let mut group = c.benchmark_group("choose+observe");
    for (name, file) in [
        ("rr", "rr.wasm"),
        ("ewma", "ewma.wasm"),
        ("rr-v0.1", "fixtures/wasm/rr-v01.wasm"),
        ("ewma-v0.1", "fixtures/wasm/ewma-v01.wasm"),
    ] {
        let component = rt
            .load(&dir.join(file))
            .expect("run `just build-policies build-fixtures` first");
        let router = Router::new(
            component.clone(),
            backends(),
            Vec::new(),
            RouterOptions::default(),
            0,
        )
        .expect("router");
        let mut t = 0u64;
        group.bench_function(format!("router/wasm-{name}"), |b| {
            b.iter(|| {
                t += 1000;
                let c = router.choose(&NoRequest, t);
                router.observe(c.ticket, obs(c.backend, t));
            })
        });
        let mut instance = instance(&component);
        group.bench_function(format!("instance/wasm-{name}"), |b| {
            b.iter(|| {
                t += 1000;
                let i = instance.choose(&NoRequest, t).unwrap_or(0);
                let _ = instance.observe(i, &obs(i, t));
            })
        });
    }
    // The two halves, to see where the time goes.
    for (name, file) in [("rr", "rr.wasm"), ("rr-v0.1", "fixtures/wasm/rr-v01.wasm")] {
        let component = rt.load(&dir.join(file)).expect(file);
        let mut instance = instance(&component);
        group.bench_function(format!("instance/wasm-{name}-choose-only"), |b| {
            b.iter(|| instance.choose(&NoRequest, 0).unwrap_or(0))
        });
        group.bench_function(format!("instance/wasm-{name}-observe-only"), |b| {
            b.iter(|| instance.observe(0, &obs(0, 0)))
        });
    }
    let builtin = Router::builtin_round_robin(backends(), RouterOptions::default());
    group.bench_function("router/native-rr", |b| {
        b.iter(|| {
            let c = builtin.choose(&NoRequest, 0);
            builtin.observe(c.ticket, obs(c.backend, 0));
        })
    });
    let mut native = NativeEwma {
        alpha: 0.2,
        scores: vec![None; 3],
    };
    group.bench_function("direct/native-ewma", |b| {
        b.iter(|| {
            let i = native.choose();
            native.observe(i, black_box(&obs(i, 0)));
        })
    });
    group.finish();
}

/// Contract 0.2 against 0.1 as paired ratios: on two noisy cores, timings taken minutes
/// apart in criterion's sequence drift more than the difference being measured, so each
/// round times the same number of round trips on both, in alternating order, and the
/// median of the per-round ratios is reported.
fn paired_ratios() {
    const ROUNDS: usize = 31;
    const TRIPS: u64 = 20_000;
    let rt = PolicyRuntime::new().expect("runtime");
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../policies");
    let router = |file: &str| {
        let c = rt
            .load(&dir.join(file))
            .expect("run `just build-policies build-fixtures`");
        Router::new(c, backends(), Vec::new(), RouterOptions::default(), 0).expect("router")
    };
    let time = |r: &Router, t: &mut u64| {
        let started = std::time::Instant::now();
        for _ in 0..TRIPS {
            *t += 1000;
            let c = r.choose(&NoRequest, *t);
            r.observe(c.ticket, obs(c.backend, *t));
        }
        started.elapsed().as_secs_f64()
    };
    println!(
        "\npaired: router choose+observe, contract 0.2 / 0.1, median of {ROUNDS} rounds of {TRIPS}"
    );
    for (name, new, old) in [
        ("rr", "rr.wasm", "fixtures/wasm/rr-v01.wasm"),
        ("ewma", "ewma.wasm", "fixtures/wasm/ewma-v01.wasm"),
    ] {
        let (a, b) = (router(new), router(old));
        let (mut ta, mut tb) = (0, 0);
        let mut ratios: Vec<f64> = (0..ROUNDS)
            .map(|round| {
                let (x, y) = if round % 2 == 0 {
                    let x = time(&a, &mut ta);
                    (x, time(&b, &mut tb))
                } else {
                    let y = time(&b, &mut tb);
                    (time(&a, &mut ta), y)
                };
                x / y
            })
            .collect();
        ratios.sort_by(f64::total_cmp);
        let ns = |secs: f64| secs * 1e9 / TRIPS as f64;
        let (x, y) = (time(&a, &mut ta), time(&b, &mut tb));
        println!(
            "paired: {name:<5} 0.2/0.1 = {:.3} (last round {:.0} ns vs {:.0} ns)",
            ratios[ROUNDS / 2],
            ns(x),
            ns(y)
        );
    }
}

criterion_group!(benches, bench);

fn main() {
    benches();
    Criterion::default().configure_from_args().final_summary();
    paired_ratios();
}
