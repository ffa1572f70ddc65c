//! The linear-memory cap of a policy instance.
use wasmtime::ResourceLimiter;

/// Caps linear memory, remembering that it refused a grow so that the trap which follows
/// (Rust aborts on allocation failure) is reported as a memory fault, not a plain trap.
pub(super) struct MemoryCap {
    pub(super) max_bytes: usize,
    pub(super) hit: bool,
}

impl ResourceLimiter for MemoryCap {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let ok = desired <= self.max_bytes;
        self.hit |= !ok;
        Ok(ok)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= 100_000)
    }
}
