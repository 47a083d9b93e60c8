//! The sandbox part of a block's store: its WASI context (no environment, arguments,
//! directories or sockets), its resource table, the clock of the call in progress, its memory
//! limit and its captured stderr. The capabilities a block reaches the host through are not
//! here: see `block::ctx`, which puts them together.
//!
//! Invariant: nothing in here is shared with another block's store; a trap poisons this store
//! only.

use std::sync::Arc;

use wasmtime::ResourceLimiter;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView};

use crate::defaults::{
    Limits, MAX_INSTANCES, MAX_MEMORIES, MAX_RESOURCES, MAX_TABLE_ELEMENTS, MAX_TABLES, TABLE_ELEMENT_BYTES,
};
use crate::runtime::clock::CallClock;
use crate::runtime::guest_io::StderrTail;
use crate::runtime::guest_stdout::GuestStdout;
use crate::runtime::log_rate::LogRate;
use crate::runtime::output::Output;
use crate::runtime::output_pace::Paces;

/// The sandbox of one block instance.
pub struct Sandbox {
    wasi: WasiCtx,
    table: ResourceTable,
    /// Timing of the current call, for its deadline.
    pub clock: Arc<CallClock>,
    /// The memory limit, and whether the guest ran into it.
    pub memory: MemoryLimit,
    /// The guest's stderr.
    pub stderr: StderrTail,
}

impl Sandbox {
    /// A sandbox within `limits`, printing to `stdout`, whose stderr lines are logged within
    /// `log_rate`, each stream within its budget in `paces`.
    pub fn new(limits: &Limits, stdout: GuestStdout, log_rate: Arc<LogRate>, paces: &Paces) -> Self {
        let stderr = StderrTail::new(log_rate);
        let clock = Arc::new(CallClock::new(limits.call_timeout));
        // No environment, arguments, directories or sockets: a block reaches the world only
        // through its capabilities. Stdout is the host's, never waited on (a sink may print);
        // stderr is logged. Both are paced: past its output budget, a guest waits.
        let wasi = WasiCtx::builder()
            .stdout(Output::paced(stdout, paces.stdout.clone(), clock.clone()))
            .stderr(Output::paced(stderr.clone(), paces.stderr.clone(), clock.clone()))
            .build();
        let mut table = ResourceTable::new();
        // Host-side objects a guest can create (pollables, streams) live outside its linear
        // memory limit; this bounds them.
        table.set_max_capacity(MAX_RESOURCES);
        Self { wasi, table, clock, memory: MemoryLimit::new(limits.memory_bytes), stderr }
    }

    /// Before a call: the clock starts, and what explains a fault is forgotten.
    pub fn enter(&mut self) {
        self.clock.start();
        self.memory.hit = None;
        self.stderr.clear();
    }

    /// The WASI view of the sandbox.
    pub fn wasi(&mut self) -> WasiCtxView<'_> {
        WasiCtxView { ctx: &mut self.wasi, table: &mut self.table }
    }
}

/// Caps what a block's store may hold in linear memories and tables, all of them together (a
/// component may have several of each).
#[derive(Debug, Clone)]
pub struct MemoryLimit {
    /// Most bytes, memories and tables together.
    pub limit: usize,
    /// Bytes held now: every memory's size plus every table's elements at
    /// [`TABLE_ELEMENT_BYTES`] each.
    used: usize,
    /// The total the guest asked for when it ran into the limit.
    pub hit: Option<usize>,
    /// The last growth allowed (from, to), taken back if the engine then fails it.
    last: Option<(usize, usize)>,
}

impl MemoryLimit {
    /// Nothing held yet, at most `limit` bytes.
    pub fn new(limit: usize) -> Self {
        Self { limit, used: 0, hit: None, last: None }
    }

    /// Whether growing something from `current` to `desired` bytes keeps the store within the
    /// limit; if so, it counts.
    fn grow(&mut self, current: usize, desired: usize) -> bool {
        let total = self.used.saturating_sub(current).saturating_add(desired);
        if total > self.limit {
            // Refused; the guest sees an allocation failure (a Rust guest aborts). The note lets
            // the host say which limit ended it.
            self.hit = Some(total);
            // Nothing to take back if the engine reports this refusal as a failure.
            self.last = None;
            return false;
        }
        self.used = total;
        self.last = Some((current, desired));
        true
    }

    /// The growth just allowed did not happen (past a declared maximum, or out of memory).
    fn failed(&mut self) {
        if let Some((current, desired)) = self.last.take() {
            self.used = self.used.saturating_sub(desired).saturating_add(current);
        }
    }
}

impl ResourceLimiter for Sandbox {
    fn memory_growing(&mut self, current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        Ok(self.memory.grow(current, desired))
    }

    fn table_growing(&mut self, current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        if desired > MAX_TABLE_ELEMENTS {
            return Ok(false);
        }
        let bytes = |elements: usize| elements.saturating_mul(TABLE_ELEMENT_BYTES);
        Ok(self.memory.grow(bytes(current), bytes(desired)))
    }

    fn memory_grow_failed(&mut self, _error: wasmtime::Error) -> wasmtime::Result<()> {
        self.memory.failed();
        Ok(())
    }

    fn table_grow_failed(&mut self, _error: wasmtime::Error) -> wasmtime::Result<()> {
        self.memory.failed();
        Ok(())
    }

    fn instances(&self) -> usize {
        MAX_INSTANCES
    }

    fn tables(&self) -> usize {
        MAX_TABLES
    }

    fn memories(&self) -> usize {
        MAX_MEMORIES
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_limit_holds_for_everything_together() {
        let mut limit = MemoryLimit::new(100);
        assert!(limit.grow(0, 60), "a first memory");
        assert!(!limit.grow(0, 50), "a second one past the total");
        assert_eq!(limit.hit, Some(110));
        assert!(limit.grow(0, 40), "one that fits");
        assert!(limit.grow(40, 10), "shrinking frees");
        assert!(limit.grow(60, 90), "so the first may grow");
        assert!(!limit.grow(10, 11));
        assert!(limit.grow(10, 10), "no change");
        assert!(limit.grow(0, 0));
        let mut limit = MemoryLimit::new(100);
        assert!(limit.grow(0, 80));
        limit.failed();
        assert!(limit.grow(0, 90), "a growth the engine failed is not counted");
    }
}
