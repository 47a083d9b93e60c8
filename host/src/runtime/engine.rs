//! The wasmtime engine every block shares, and the ticker that drives its epochs.
//!
//! Invariant: one engine per host. The engine holds only compiled code and configuration; no
//! guest state lives in it, so sharing it does not share anything a guest can poison.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;

use anyhow::Context as _;
use wasmtime::{Config, Engine};

use crate::defaults::EPOCH_TICK;

/// Builds the engine: component model, async calls, epoch interruption for call deadlines.
pub fn new_engine() -> anyhow::Result<Engine> {
    let mut config = Config::new();
    config.wasm_component_model(true);
    config.epoch_interruption(true);
    // A guest that recurses without end hits this and traps with a stack overflow, which ends
    // its block only. The async fiber stack must be larger than it.
    config.max_wasm_stack(crate::defaults::WASM_STACK_BYTES);
    config.async_stack_size(4 << 20);
    // Each block's store holds a few memory mappings (its linear memory's reservation and
    // initial image, its fiber stack), and the kernel allows a process `vm.max_map_count` (65,530
    // by default). The guard region before each linear memory is one more mapping per block and
    // only guards against engine bugs (the one after it stays): without it, 10,000 blocks fit.
    config.guard_before_linear_memory(false);
    // For profiling guests: `BAGPIPE_PERFMAP=1` writes `/tmp/perf-<pid>.map`, so `perf` (and
    // whatever reads perf maps) names the blocks' compiled functions instead of bare addresses.
    if std::env::var_os("BAGPIPE_PERFMAP").is_some_and(|v| v == "1") {
        config.profiler(wasmtime::ProfilingStrategy::PerfMap);
    }
    Engine::new(&config).map_err(anyhow::Error::from).context("configuring the wasmtime engine")
}

/// Advances the engine's epoch every [`EPOCH_TICK`] on a thread of its own, until dropped.
///
/// A thread rather than a task: deadlines must keep working when every runtime worker is busy
/// running guests.
pub struct EpochTicker {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl EpochTicker {
    /// Starts ticking `engine`.
    pub fn start(engine: &Engine) -> anyhow::Result<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let engine = engine.clone();
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name("bagpipe-epoch".into())
            .spawn(move || {
                while !flag.load(Ordering::Relaxed) {
                    std::thread::sleep(EPOCH_TICK);
                    engine.increment_epoch();
                }
            })
            .context("starting the epoch ticker thread")?;
        Ok(Self { stop, thread: Some(thread) })
    }
}

impl Drop for EpochTicker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
