//! `wasi:random` for policies: a deterministic stream from the policy's seed, so that a
//! policy (and std's `HashMap` inside it) behaves the same in every run of a simulation.
//!
//! Each `wasi:random` call (each import call, not each policy call: a loop of them is
//! bounded by the deadline) may ask for at most `Limits::random_bytes_per_call` bytes:
//! generating them is
//! host work no deadline can interrupt, so a policy asking for megabytes per call would
//! slow the proxy without ever faulting. More is a `Limit` fault that names the bound.
use wasmtime::component::HasData;
use wasmtime_wasi::p2::bindings::random::{insecure, random};
use wasmtime_wasi::random::WasiRandomCtx;
use wasmtime_wasi::Deterministic;

/// `wasi:random`'s `random` and `insecure` interfaces, bounded per call; the seed
/// interface is wasmtime-wasi's own.
pub(super) struct CappedRandom;

impl HasData for CappedRandom {
    type Data<'a> = Capped<'a>;
}

/// The store's random context, with its per-call cap and where a refusal is noted.
pub(super) struct Capped<'a> {
    pub(super) ctx: &'a mut WasiRandomCtx,
    pub(super) cap: u64,
    pub(super) hit: &'a mut Option<String>,
}

impl Capped<'_> {
    fn check(&mut self, len: u64) -> wasmtime::Result<()> {
        if len <= self.cap {
            return Ok(());
        }
        let why = format!(
            "asked wasi:random for {len} bytes in one call; the sandbox gives at most {} (--policy-random-bytes)",
            self.cap
        );
        *self.hit = Some(why.clone());
        Err(wasmtime::format_err!(why))
    }
}

impl random::Host for Capped<'_> {
    fn get_random_bytes(&mut self, len: u64) -> wasmtime::Result<Vec<u8>> {
        self.check(len)?;
        random::Host::get_random_bytes(self.ctx, len)
    }
    fn get_random_u64(&mut self) -> wasmtime::Result<u64> {
        random::Host::get_random_u64(self.ctx)
    }
}

impl insecure::Host for Capped<'_> {
    fn get_insecure_random_bytes(&mut self, len: u64) -> wasmtime::Result<Vec<u8>> {
        self.check(len)?;
        insecure::Host::get_insecure_random_bytes(self.ctx, len)
    }
    fn get_insecure_random_u64(&mut self) -> wasmtime::Result<u64> {
        insecure::Host::get_insecure_random_u64(self.ctx)
    }
}

/// Bytes in the stream before it repeats.
const STREAM_BYTES: usize = 256;

/// The random stream of an instance seeded with `seed`: `STREAM_BYTES` bytes of
/// splitmix64 output, repeated.
pub(super) fn stream(seed: u64) -> Deterministic {
    Deterministic::new(bytes(seed))
}

/// The value of `wasi:random/insecure-seed` for `seed`.
pub(super) fn seed(seed: u64) -> u128 {
    u128::from(splitmix(seed ^ 0x5EED))
}

fn bytes(seed: u64) -> Vec<u8> {
    let mut random = Vec::with_capacity(STREAM_BYTES);
    let mut x = seed;
    while random.len() < STREAM_BYTES {
        x = splitmix(x);
        random.extend_from_slice(&x.to_le_bytes());
    }
    random
}

fn splitmix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stream_is_a_pure_function_of_the_seed() {
        assert_eq!(bytes(7), bytes(7));
        assert_ne!(bytes(7), bytes(8));
        assert_eq!(bytes(7).len(), STREAM_BYTES);
        // splitmix64's first output for seed 0 (the reference value).
        assert_eq!(&bytes(0)[..8], &0xE220_A839_7B1D_CDAFu64.to_le_bytes());
    }
}
