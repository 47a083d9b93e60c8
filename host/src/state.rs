//! The host state inside one block's store: what the block's imports can reach.
//!
//! Invariant: nothing in here is shared with another block's store except through `Arc`s the
//! guest cannot corrupt (the router, the block statuses, the supervisor's request channel).
//! A trap poisons this store only.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use wasmtime::ResourceLimiter;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use crate::component::Hooks;
use crate::deadletter::DeadLetters;
use crate::defaults::{CALL_WAIT_BUDGET, Limits, MAX_RESOURCES, Settings};
use crate::guest_io::StderrTail;
use crate::router::Router;
use crate::stats::BlockStatus;
use crate::timers::Timers;

/// A request from a block to the supervisor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// Finish the block `responsibility` (`initiator`/`finisher`: shut the host down).
    Finish {
        /// What to finish.
        responsibility: String,
        /// Who asked.
        by: String,
    },
}

/// What every block's store links to: the rest of the host.
#[derive(Clone)]
pub struct Links {
    /// Cancelled when a block finishes `initiator` (or `finisher`): the host shuts down. A token,
    /// not a request, so that the request can never be lost.
    pub shutdown: tokio_util::sync::CancellationToken,
    /// Where bags go.
    pub router: Arc<Router>,
    /// Requests to the supervisor.
    pub requests: mpsc::Sender<Request>,
    /// Host-wide settings.
    pub settings: Arc<Settings>,
    /// Where bags that cannot be processed end up.
    pub dead_letters: Arc<DeadLetters>,
    /// The host's message server, if it has one.
    pub server: Option<Arc<crate::server::ServerLink>>,
}

/// The data of one block's store.
pub struct BlockCtx {
    wasi: WasiCtx,
    table: ResourceTable,
    /// Who this block is; its state and counters.
    pub me: Arc<BlockStatus>,
    /// The rest of the host.
    pub links: Links,
    /// This block's hooks (to refuse timers to a block without `on-timer`).
    pub hooks: Hooks,
    /// Pending timers.
    pub timers: Timers,
    /// Timing of the current call, for its deadline.
    pub clock: Arc<CallClock>,
    /// An `enqueue` in the current call already waited for a full queue in vain; later ones in
    /// the same call do not wait.
    pub refused: bool,
    /// The memory limit, and whether the guest ran into it.
    pub memory: MemoryLimit,
    /// The guest's stderr.
    pub stderr: StderrTail,
    /// The limits the block was started with.
    pub limits: Limits,
    /// The sockets the host holds for the block, if it has any grants.
    pub net: Option<Arc<crate::net::NetHub>>,
    /// The block's side of the message server, when the host has one.
    pub server: Option<Arc<crate::server::BlockServer>>,
}

impl BlockCtx {
    /// State for a new instance of the block `me`.
    pub fn new(me: Arc<BlockStatus>, hooks: Hooks, limits: &Limits, links: Links) -> Self {
        let stderr = StderrTail::default();
        // No environment, arguments, directories or sockets: a block reaches the world only
        // through the controller. Stdout is the host's (a sink may print); stderr is logged.
        let wasi = WasiCtx::builder().inherit_stdout().stderr(stderr.clone()).build();
        let mut table = ResourceTable::new();
        // Host-side objects a guest can create (pollables, streams) live outside its linear
        // memory limit; this bounds them.
        table.set_max_capacity(MAX_RESOURCES);
        Self {
            wasi,
            table,
            me,
            links,
            hooks,
            timers: Timers::new(limits.max_timers),
            clock: Arc::new(CallClock::new(limits.call_timeout)),
            refused: false,
            memory: MemoryLimit { limit: limits.memory_bytes, hit: None },
            stderr,
            limits: limits.clone(),
            net: None,
            server: None,
        }
    }
}

impl WasiView for BlockCtx {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView { ctx: &mut self.wasi, table: &mut self.table }
    }
}

/// The clock of the call in progress, shared between the store (the epoch callback, the
/// controller) and the task's wall-clock guard. Time the host spends waiting on the guest's behalf
/// (an `enqueue` to a full queue, being scheduled after a yield) is not the guest's computing time
/// and does not count against its deadline.
#[derive(Debug)]
pub struct CallClock {
    base: Instant,
    started_ns: AtomicU64,
    host_wait_ns: AtomicU64,
    /// When the host wait in progress began (0: none is).
    waiting_since_ns: AtomicU64,
    /// The guest's computing budget per call.
    pub timeout: Duration,
}

impl CallClock {
    /// A clock for calls of at most `timeout` guest time.
    pub fn new(timeout: Duration) -> Self {
        Self {
            base: Instant::now(),
            started_ns: AtomicU64::new(0),
            host_wait_ns: AtomicU64::new(0),
            waiting_since_ns: AtomicU64::new(0),
            timeout,
        }
    }

    /// Starts timing a call.
    pub fn start(&self) {
        self.started_ns.store(nanos(self.base.elapsed()), Ordering::Relaxed);
        self.host_wait_ns.store(0, Ordering::Relaxed);
        self.waiting_since_ns.store(0, Ordering::Relaxed);
    }

    /// Runs `wait` (the host waiting on the guest's behalf: a full queue, the network, being
    /// scheduled) with the clock stopped for the guest, the whole time it is in progress.
    pub async fn waiting<F: std::future::Future>(&self, wait: F) -> F::Output {
        self.waiting_since_ns.store(nanos(self.base.elapsed()).max(1), Ordering::Relaxed);
        let out = wait.await;
        let since = self.waiting_since_ns.swap(0, Ordering::Relaxed);
        let waited = nanos(self.base.elapsed()).saturating_sub(since);
        self.host_wait_ns.fetch_add(waited, Ordering::Relaxed);
        out
    }

    /// Time spent waiting in host calls in this call so far, the wait in progress included.
    pub fn host_wait(&self) -> Duration {
        let since = self.waiting_since_ns.load(Ordering::Relaxed);
        let current = if since == 0 { 0 } else { nanos(self.base.elapsed()).saturating_sub(since) };
        Duration::from_nanos(self.host_wait_ns.load(Ordering::Relaxed).saturating_add(current))
    }

    /// How long the guest has computed in this call.
    pub fn guest_time(&self) -> Duration {
        let now = Duration::from_nanos(nanos(self.base.elapsed()));
        let started = Duration::from_nanos(self.started_ns.load(Ordering::Relaxed));
        now.saturating_sub(started).saturating_sub(self.host_wait())
    }

    /// How much of the call's budgets is left: its computing time, and the host waits one call
    /// may add up ([`CALL_WAIT_BUDGET`]: a guest cannot hold its task with wait after wait).
    pub fn remaining(&self) -> Duration {
        self.timeout.saturating_sub(self.guest_time()).min(CALL_WAIT_BUDGET.saturating_sub(self.host_wait()))
    }
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// Caps a block's linear memory.
#[derive(Debug, Clone)]
pub struct MemoryLimit {
    /// Largest memory, in bytes.
    pub limit: usize,
    /// The size the guest asked for when it ran into the limit.
    pub hit: Option<usize>,
}

impl ResourceLimiter for BlockCtx {
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
        Ok(desired <= 1 << 20)
    }
}
