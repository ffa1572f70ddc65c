//! The linear-memory cap of a policy instance (and a table cap, so that a policy cannot
//! exhaust host memory through tables either).
use wasmtime::ResourceLimiter;

/// Table elements an instance may have; far above what a policy needs.
const MAX_TABLE_ELEMENTS: usize = 100_000;

/// Caps linear memory, remembering that it refused a grow so that the trap which follows
/// (Rust aborts on allocation failure) is reported as a memory fault, not a plain trap.
pub(super) struct MemoryCap {
    max_bytes: usize,
    hit: bool,
}

impl MemoryCap {
    pub(super) fn new(max_bytes: usize) -> Self {
        MemoryCap {
            max_bytes,
            hit: false,
        }
    }

    /// Whether a grow was refused since the last call; clears the flag.
    pub(super) fn take_hit(&mut self) -> bool {
        std::mem::take(&mut self.hit)
    }
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
        Ok(desired <= MAX_TABLE_ELEMENTS)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refused_grow_is_remembered_once() {
        let mut cap = MemoryCap::new(1 << 20);
        assert!(cap.memory_growing(0, 1 << 20, None).unwrap_or(false));
        assert!(!cap.take_hit());
        assert!(!cap.memory_growing(0, (1 << 20) + 1, None).unwrap_or(true));
        assert!(cap.take_hit());
        assert!(!cap.take_hit());
    }
}
