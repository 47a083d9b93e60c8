//! The sandbox part of a block's store: its WASI context (no environment, arguments,
//! directories or sockets), its resource table, the clock of the call in progress, its memory
//! limit and its captured stderr. The capabilities a block reaches the host through are not
//! here: see `runtime::ctx`, which puts them together.
//!
//! Invariant: nothing in here is shared with another block's store; a trap poisons this store
//! only.

use std::sync::Arc;

use wasmtime::ResourceLimiter;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView};

use crate::defaults::{Limits, MAX_RESOURCES, MAX_TABLE_ELEMENTS};
use crate::runtime::clock::CallClock;
use crate::runtime::guest_io::StderrTail;
use crate::runtime::log_rate::LogRate;

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
    /// A sandbox within `limits`, whose stderr lines are logged within `log_rate`.
    pub fn new(limits: &Limits, log_rate: Arc<LogRate>) -> Self {
        let stderr = StderrTail::new(log_rate);
        // No environment, arguments, directories or sockets: a block reaches the world only
        // through its capabilities. Stdout is the host's (a sink may print); stderr is logged.
        let wasi = WasiCtx::builder().inherit_stdout().stderr(stderr.clone()).build();
        let mut table = ResourceTable::new();
        // Host-side objects a guest can create (pollables, streams) live outside its linear
        // memory limit; this bounds them.
        table.set_max_capacity(MAX_RESOURCES);
        Self {
            wasi,
            table,
            clock: Arc::new(CallClock::new(limits.call_timeout)),
            memory: MemoryLimit { limit: limits.memory_bytes, hit: None },
            stderr,
        }
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

/// Caps a block's linear memory.
#[derive(Debug, Clone)]
pub struct MemoryLimit {
    /// Largest memory, in bytes.
    pub limit: usize,
    /// The size the guest asked for when it ran into the limit.
    pub hit: Option<usize>,
}

impl ResourceLimiter for Sandbox {
    fn memory_growing(&mut self, _current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        if desired > self.memory.limit {
            // Refuse the growth; the guest sees an allocation failure (a Rust guest aborts). The
            // note lets the host say which limit ended it.
            self.memory.hit = Some(desired);
            return Ok(false);
        }
        Ok(true)
    }

    fn table_growing(&mut self, _current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        Ok(desired <= MAX_TABLE_ELEMENTS)
    }
}
