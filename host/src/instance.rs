//! One running instance of a block: its own store, its own instance, calls with a deadline.
//!
//! Architecture invariant: a guest cannot panic or hang the host. Every call runs under an epoch
//! deadline (the guest's computing time, host waits excluded), a memory limit and a wasm stack
//! limit; any trap is turned into a [`CallError`] and the instance is marked dead, because a trap
//! poisons the whole store. A dead instance is never called again.

use std::future::Future;
use std::time::Duration;

use wasmtime::{Engine, Store, Trap, UpdateDeadline};

use crate::bindings::{ServerInfo, enqueue_hook, lifecycle, net_hook, server_hook, state_hook, timer_hook};
use crate::component::BlockComponent;
use crate::defaults::DEADLINE_GRACE;
use crate::error::CallError;
use crate::state::{BlockCtx, CallClock};

/// A live block instance.
pub struct BlockInstance {
    store: Store<BlockCtx>,
    lifecycle: lifecycle::Guest,
    enqueue: Option<enqueue_hook::Guest>,
    timer: Option<timer_hook::Guest>,
    server: Option<server_hook::Guest>,
    state: Option<state_hook::Guest>,
    net: Option<net_hook::Guest>,
    dead: bool,
}

/// A store for one block instance, with its limits and deadline handling in place.
pub(crate) fn new_store(engine: &Engine, ctx: BlockCtx) -> Store<BlockCtx> {
    let mut store = Store::new(engine, ctx);
    store.limiter(|ctx| ctx);
    // The deadline is checked every tick: past the call timeout the guest is interrupted;
    // before it, the guest yields to the runtime so a busy guest cannot starve other blocks.
    store.epoch_deadline_callback(|ctx| {
        let clock = ctx.data().clock.clone();
        if clock.guest_time() >= clock.timeout {
            return Ok(UpdateDeadline::Interrupt);
        }
        // Time spent waiting to be scheduled again is not the guest's computing time.
        Ok(UpdateDeadline::YieldCustom(1, Box::pin(async move { clock.waiting(tokio::task::yield_now()).await })))
    });
    // Instantiation runs guest code (start functions): it needs a deadline too.
    store.set_epoch_deadline(1);
    store
}

impl BlockInstance {
    /// Instantiates `component` in a fresh store holding `ctx`.
    pub async fn new(engine: &Engine, component: &BlockComponent, ctx: BlockCtx) -> Result<Self, CallError> {
        let mut store = new_store(engine, ctx);
        store.data_mut().clock.start();
        let trap =
            |e: wasmtime::Error| CallError::Trap { trap: format!("instantiation failed: {e:#}"), stderr: Vec::new() };
        let instance = component.pre.instantiate_async(&mut store).await.map_err(trap)?;
        let i = &component.indices;
        let lifecycle = i.lifecycle.load(&mut store, &instance).map_err(trap)?;
        let enqueue = i.enqueue.as_ref().map(|x| x.load(&mut store, &instance)).transpose().map_err(trap)?;
        let timer = i.timer.as_ref().map(|x| x.load(&mut store, &instance)).transpose().map_err(trap)?;
        let server = i.server.as_ref().map(|x| x.load(&mut store, &instance)).transpose().map_err(trap)?;
        let state = i.state.as_ref().map(|x| x.load(&mut store, &instance)).transpose().map_err(trap)?;
        let net = i.net.as_ref().map(|x| x.load(&mut store, &instance)).transpose().map_err(trap)?;
        Ok(Self { store, lifecycle, enqueue, timer, server, state, net, dead: false })
    }

    /// The host state in the instance's store.
    pub fn ctx(&mut self) -> &mut BlockCtx {
        self.store.data_mut()
    }

    /// Whether a fault ended this instance.
    pub fn is_dead(&self) -> bool {
        self.dead
    }

    /// `init(config)`.
    pub async fn init(&mut self, config: &str) -> Result<(), CallError> {
        self.enter()?;
        let clock = self.store.data().clock.clone();
        let r = guard(&clock, self.lifecycle.call_init(&mut self.store, config)).await;
        self.settle(r)?.map_err(CallError::Guest)
    }

    /// `run()`.
    pub async fn run(&mut self) -> Result<(), CallError> {
        self.enter()?;
        let clock = self.store.data().clock.clone();
        let r = guard(&clock, self.lifecycle.call_run(&mut self.store)).await;
        self.settle(r)
    }

    /// `finish()`.
    pub async fn finish(&mut self) -> Result<(), CallError> {
        self.enter()?;
        let clock = self.store.data().clock.clone();
        let r = guard(&clock, self.lifecycle.call_finish(&mut self.store)).await;
        self.settle(r)?.map_err(CallError::Guest)
    }

    /// `on-enqueue(bag)`; a block without the hook is never sent bags, so this is `Ok`.
    pub async fn on_enqueue(&mut self, bag: &String) -> Result<(), CallError> {
        let Some(hook) = self.enqueue.as_ref() else { return Ok(()) };
        let hook = hook.clone();
        self.enter()?;
        let clock = self.store.data().clock.clone();
        let r = guard(&clock, hook.call_on_enqueue(&mut self.store, bag)).await;
        self.settle(r)?.map_err(CallError::Guest)
    }

    /// `on-timer(tag)`.
    pub async fn on_timer(&mut self, tag: &str) -> Result<(), CallError> {
        let Some(hook) = self.timer.as_ref() else { return Ok(()) };
        let hook = hook.clone();
        self.enter()?;
        let clock = self.store.data().clock.clone();
        let r = guard(&clock, hook.call_on_timer(&mut self.store, tag)).await;
        self.settle(r)
    }

    /// `on-server-connect(info)`.
    pub async fn on_server_connect(&mut self, info: &ServerInfo) -> Result<(), CallError> {
        let Some(hook) = self.server.as_ref() else { return Ok(()) };
        let hook = hook.clone();
        self.enter()?;
        let clock = self.store.data().clock.clone();
        let r = guard(&clock, hook.call_on_server_connect(&mut self.store, info)).await;
        self.settle(r)
    }

    /// `on-accept(conn, listener, peer)`; a block without `net-hook` gets no socket events.
    pub async fn on_accept(&mut self, conn: u64, listener: &str, peer: &str) -> Result<(), CallError> {
        let Some(hook) = self.net.clone() else { return Ok(()) };
        self.enter()?;
        let clock = self.store.data().clock.clone();
        let r = guard(&clock, hook.call_on_accept(&mut self.store, conn, listener, peer)).await;
        self.settle(r)
    }

    /// `on-data(conn, data)`.
    pub async fn on_data(&mut self, conn: u64, data: &[u8]) -> Result<(), CallError> {
        let Some(hook) = self.net.clone() else { return Ok(()) };
        self.enter()?;
        let clock = self.store.data().clock.clone();
        let r = guard(&clock, hook.call_on_data(&mut self.store, conn, data)).await;
        self.settle(r)
    }

    /// `on-close(conn)`.
    pub async fn on_close(&mut self, conn: u64) -> Result<(), CallError> {
        let Some(hook) = self.net.clone() else { return Ok(()) };
        self.enter()?;
        let clock = self.store.data().clock.clone();
        let r = guard(&clock, hook.call_on_close(&mut self.store, conn)).await;
        self.settle(r)
    }

    /// `on-datagram(listener, peer, data)`.
    pub async fn on_datagram(&mut self, listener: &str, peer: &str, data: &[u8]) -> Result<(), CallError> {
        let Some(hook) = self.net.clone() else { return Ok(()) };
        self.enter()?;
        let clock = self.store.data().clock.clone();
        let r = guard(&clock, hook.call_on_datagram(&mut self.store, listener, peer, data)).await;
        self.settle(r)
    }

    /// `snapshot()`; `None` when the block does not export `state-hook`.
    pub async fn snapshot(&mut self) -> Result<Option<Vec<u8>>, CallError> {
        let Some(hook) = self.state.as_ref() else { return Ok(None) };
        let hook = hook.clone();
        self.enter()?;
        let clock = self.store.data().clock.clone();
        let r = guard(&clock, hook.call_snapshot(&mut self.store)).await;
        self.settle(r).map(Some)
    }

    /// `restore(state)`; a block without `state-hook` starts fresh, so this is `Ok`.
    pub async fn restore(&mut self, state: &[u8]) -> Result<(), CallError> {
        let Some(hook) = self.state.as_ref() else { return Ok(()) };
        let hook = hook.clone();
        self.enter()?;
        let clock = self.store.data().clock.clone();
        let r = guard(&clock, hook.call_restore(&mut self.store, state)).await;
        self.settle(r)?.map_err(CallError::Guest)
    }

    /// `on-server-disconnect()`.
    pub async fn on_server_disconnect(&mut self) -> Result<(), CallError> {
        let Some(hook) = self.server.as_ref() else { return Ok(()) };
        let hook = hook.clone();
        self.enter()?;
        let clock = self.store.data().clock.clone();
        let r = guard(&clock, hook.call_on_server_disconnect(&mut self.store)).await;
        self.settle(r)
    }

    /// Prepares a call: refuses a dead instance, starts the clock and the deadline.
    fn enter(&mut self) -> Result<(), CallError> {
        if self.dead {
            return Err(CallError::Gone);
        }
        let ctx = self.store.data_mut();
        ctx.clock.start();
        ctx.refused = false;
        ctx.memory.hit = None;
        ctx.stderr.clear();
        self.store.set_epoch_deadline(1);
        Ok(())
    }

    /// Turns a call's outcome into ours; any error from wasmtime is a fault that kills the
    /// instance.
    fn settle<T>(&mut self, outcome: wasmtime::Result<T>) -> Result<T, CallError> {
        outcome.map_err(|e| {
            self.dead = true;
            let ctx = self.store.data_mut();
            let stderr = ctx.stderr.take();
            classify(&e, ctx.clock.timeout, ctx.memory.hit, stderr)
        })
    }
}

/// Runs a call, stopping it when the guest's remaining budget (plus [`DEADLINE_GRACE`]) has
/// passed. The epoch deadline stops a guest that computes; this stops one that is blocked inside
/// a host call, where epochs are never checked. Dropping the call poisons the store, which is why
/// the caller marks the instance dead on any error.
async fn guard<T>(clock: &CallClock, call: impl Future<Output = wasmtime::Result<T>>) -> wasmtime::Result<T> {
    tokio::pin!(call);
    // Most calls complete on their first poll: those never read the clock or arm a timer.
    let mut first = true;
    let ready = std::future::poll_fn(|cx| match call.as_mut().poll(cx) {
        std::task::Poll::Pending if first => {
            first = false;
            std::task::Poll::Ready(None)
        }
        std::task::Poll::Pending => std::task::Poll::Pending,
        std::task::Poll::Ready(r) => std::task::Poll::Ready(Some(r)),
    })
    .await;
    if let Some(r) = ready {
        return r;
    }
    loop {
        let sleep = tokio::time::sleep(clock.remaining() + DEADLINE_GRACE);
        tokio::select! {
            biased;
            r = &mut call => return r,
            () = sleep => {
                if clock.remaining().is_zero() {
                    return Err(Trap::Interrupt.into());
                }
            }
        }
    }
}

fn classify(e: &wasmtime::Error, timeout: Duration, memory_hit: Option<usize>, stderr: Vec<String>) -> CallError {
    let limit =
        |what: &str, detail: Option<String>| CallError::Limit { what: what.to_owned(), detail, stderr: stderr.clone() };
    match (e.downcast_ref::<Trap>(), memory_hit) {
        (Some(Trap::Interrupt), _) => CallError::Deadline(timeout),
        (Some(Trap::StackOverflow), _) => limit("wasm stack", None),
        (_, Some(asked)) => limit("memory", Some(format!("it asked for {asked} bytes"))),
        // The root cause is the trap itself; the chain above it is a long wasm backtrace that
        // belongs in a debug log, not in every error message.
        _ => {
            tracing::debug!("trap details: {e:?}");
            CallError::Trap { trap: e.root_cause().to_string(), stderr }
        }
    }
}
