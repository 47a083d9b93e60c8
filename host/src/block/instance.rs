//! One running instance of a block: its own store, its own instance, calls with a deadline.
//!
//! Architecture invariant: a guest cannot panic or hang the host. Every call runs under an epoch
//! deadline (the guest's computing time, host waits excluded), a memory limit and a wasm stack
//! limit; any trap is turned into a [`CallError`] and the instance is marked dead, because a trap
//! poisons the whole store. A dead instance is never called again.

use std::future::Future;
use std::time::Duration;

use wasmtime::{Engine, Store, Trap};

use crate::bindings::{CallFailure, ServerInfo, StreamEnd};
use crate::block::component::BlockComponent;
use crate::block::ctx::BlockCtx;
use crate::defaults::DEADLINE_GRACE;
use crate::error::CallError;
use crate::runtime::clock::CallClock;
use crate::runtime::hooks::Exports;

/// A live block instance.
pub struct BlockInstance {
    store: Store<BlockCtx>,
    exports: Exports,
    dead: bool,
}

impl BlockInstance {
    /// Instantiates `component` in a fresh store holding `ctx`.
    pub async fn new(engine: &Engine, component: &BlockComponent, ctx: BlockCtx) -> Result<Self, CallError> {
        let mut store = ctx.into_store(engine);
        store.data_mut().sandbox.enter();
        let trap = |e: String| CallError::Trap { trap: format!("instantiation failed: {e}"), stderr: Vec::new() };
        // Instantiating runs guest code (start functions): the same deadline and guard as a call.
        let clock = store.data().sandbox.clock.clone();
        let instance = guard(&clock, component.pre.instantiate_async(&mut store)).await.map_err(|e| {
            let sandbox = &mut store.data_mut().sandbox;
            match classify(&e, sandbox.clock.timeout, sandbox.memory.hit, sandbox.stderr.take()) {
                CallError::Trap { trap: t, .. } => trap(t),
                other => other,
            }
        })?;
        let exports = component.indices.load(&mut store, &instance).map_err(|(_, e)| trap(format!("{e:#}")))?;
        Ok(Self { store, exports, dead: false })
    }

    /// The host state in the instance's store.
    pub fn ctx(&mut self) -> &mut BlockCtx {
        self.store.data_mut()
    }

    /// `init(config)`.
    pub async fn init(&mut self, config: &str) -> Result<(), CallError> {
        let f = self.exports.lifecycle.clone();
        self.call(async |s| f.call_init(s, config).await).await?.map_err(CallError::Guest)
    }

    /// `run()`.
    pub async fn run(&mut self) -> Result<(), CallError> {
        let f = self.exports.lifecycle.clone();
        self.call(async |s| f.call_run(s).await).await
    }

    /// `finish()`.
    pub async fn finish(&mut self) -> Result<(), CallError> {
        let f = self.exports.lifecycle.clone();
        self.call(async |s| f.call_finish(s).await).await?.map_err(CallError::Guest)
    }

    /// `on-enqueue(bag)`; a block without the hook is never sent bags, so this is `Ok`.
    pub async fn on_enqueue(&mut self, bag: &String) -> Result<(), CallError> {
        let Some(f) = self.exports.enqueue.clone() else { return Ok(()) };
        self.call(async |s| f.call_on_enqueue(s, bag).await).await?.map_err(CallError::Guest)
    }

    /// `on-batch()`: the block takes the batch its `delivery` context holds.
    pub async fn on_batch(&mut self) -> Result<(), CallError> {
        let Some(f) = self.exports.batch.clone() else { return Ok(()) };
        self.call(async |s| f.call_on_batch(s).await).await
    }

    /// `on-reply(call, outcome)`; a block without the hook cannot make calls, so this is `Ok`.
    pub async fn on_reply(&mut self, call: u64, outcome: &Result<String, CallFailure>) -> Result<(), CallError> {
        let Some(f) = self.exports.reply.clone() else { return Ok(()) };
        self.call(async |s| f.call_on_reply(s, call, outcome.as_ref()).await).await
    }

    /// `on-stream-open(stream, from, bag)`: an error refuses the stream.
    pub async fn on_stream_open(&mut self, stream: u64, from: &str, bag: &String) -> Result<(), CallError> {
        let Some(f) = self.exports.stream.clone() else { return Ok(()) };
        self.call(async |s| f.call_on_stream_open(s, stream, from, bag).await).await?.map_err(CallError::Guest)
    }

    /// `on-stream-data(stream, bag)`.
    pub async fn on_stream_data(&mut self, stream: u64, bag: &String) -> Result<(), CallError> {
        let Some(f) = self.exports.stream.clone() else { return Ok(()) };
        self.call(async |s| f.call_on_stream_data(s, stream, bag).await).await
    }

    /// `on-stream-end(stream, end)`.
    pub async fn on_stream_end(&mut self, stream: u64, end: &StreamEnd) -> Result<(), CallError> {
        let Some(f) = self.exports.stream.clone() else { return Ok(()) };
        self.call(async |s| f.call_on_stream_end(s, stream, end).await).await
    }

    /// `on-timer(tag)`.
    pub async fn on_timer(&mut self, tag: &str) -> Result<(), CallError> {
        let Some(f) = self.exports.timer.clone() else { return Ok(()) };
        self.call(async |s| f.call_on_timer(s, tag).await).await
    }

    /// `on-server-connect(info)`.
    pub async fn on_server_connect(&mut self, info: &ServerInfo) -> Result<(), CallError> {
        let Some(f) = self.exports.server.clone() else { return Ok(()) };
        self.call(async |s| f.call_on_server_connect(s, info).await).await
    }

    /// `on-server-disconnect()`.
    pub async fn on_server_disconnect(&mut self) -> Result<(), CallError> {
        let Some(f) = self.exports.server.clone() else { return Ok(()) };
        self.call(async |s| f.call_on_server_disconnect(s).await).await
    }

    /// `on-accept(conn, listener, peer)`; a block without `net-hook` gets no socket events.
    pub async fn on_accept(&mut self, conn: u64, listener: &str, peer: &str) -> Result<(), CallError> {
        let Some(f) = self.exports.net.clone() else { return Ok(()) };
        self.call(async |s| f.call_on_accept(s, conn, listener, peer).await).await
    }

    /// `on-data(conn, data)`.
    pub async fn on_data(&mut self, conn: u64, data: &[u8]) -> Result<(), CallError> {
        let Some(f) = self.exports.net.clone() else { return Ok(()) };
        self.call(async |s| f.call_on_data(s, conn, data).await).await
    }

    /// `on-close(conn)`.
    pub async fn on_close(&mut self, conn: u64) -> Result<(), CallError> {
        let Some(f) = self.exports.net.clone() else { return Ok(()) };
        self.call(async |s| f.call_on_close(s, conn).await).await
    }

    /// `on-datagram(listener, peer, data)`.
    pub async fn on_datagram(&mut self, listener: &str, peer: &str, data: &[u8]) -> Result<(), CallError> {
        let Some(f) = self.exports.net.clone() else { return Ok(()) };
        self.call(async |s| f.call_on_datagram(s, listener, peer, data).await).await
    }

    /// `snapshot()`; `None` when the block does not export `state-hook`.
    pub async fn snapshot(&mut self) -> Result<Option<Vec<u8>>, CallError> {
        let Some(f) = self.exports.state.clone() else { return Ok(None) };
        self.call(async |s| f.call_snapshot(s).await).await.map(Some)
    }

    /// `restore(state)`; a block without `state-hook` starts fresh, so this is `Ok`.
    pub async fn restore(&mut self, state: &[u8]) -> Result<(), CallError> {
        let Some(f) = self.exports.state.clone() else { return Ok(()) };
        self.call(async |s| f.call_restore(s, state).await).await?.map_err(CallError::Guest)
    }

    /// Every call into the guest: refuses a dead instance, starts the clock and the deadline,
    /// runs the call under the wall-clock guard, and turns any error from wasmtime into a fault
    /// that kills the instance.
    async fn call<T>(
        &mut self,
        call: impl AsyncFnOnce(&mut Store<BlockCtx>) -> wasmtime::Result<T>,
    ) -> Result<T, CallError> {
        if self.dead {
            return Err(CallError::Gone);
        }
        self.store.data_mut().sandbox.enter();
        self.store.set_epoch_deadline(1);
        let clock = self.store.data().sandbox.clock.clone();
        let outcome = guard(&clock, call(&mut self.store)).await;
        outcome.map_err(|e| {
            self.dead = true;
            let sandbox = &mut self.store.data_mut().sandbox;
            let stderr = sandbox.stderr.take();
            classify(&e, sandbox.clock.timeout, sandbox.memory.hit, stderr)
        })
    }
}

/// Runs a call, stopping it when the guest's remaining budget (plus [`DEADLINE_GRACE`]) has
/// passed. The epoch deadline stops a guest that computes; this stops one that is blocked inside
/// a host call, where epochs are never checked. Dropping the call poisons the store, which is why
/// the caller marks the instance dead on any error.
pub(crate) async fn guard<T>(
    clock: &CallClock,
    call: impl Future<Output = wasmtime::Result<T>>,
) -> wasmtime::Result<T> {
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
        (_, Some(asked)) => limit("memory", Some(format!("its memories and tables together would take {asked} bytes"))),
        // The root cause is the trap itself; the chain above it is a long wasm backtrace that
        // belongs in a debug log, not in every error message.
        _ => {
            tracing::debug!("trap details: {e:?}");
            CallError::Trap { trap: e.root_cause().to_string(), stderr }
        }
    }
}
