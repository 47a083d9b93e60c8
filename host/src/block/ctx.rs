//! A block's store: its sandbox and one context per capability, each linked to its own WIT
//! interface (the way wasmtime-wasi hands out `WasiCtxView`): `controller`, `topics` and `streams` →
//! [`ControllerCtx`],
//! `net` → [`NetCtx`], `server` → [`ServerCtx`], `delivery` → [`DeliveryCtx`]. This is the one place that puts them together.
//!
//! Architecture invariant: a capability sees only its own context (and the call clock it shares
//! with the others); nothing in a store is shared with another block's store except through
//! `Arc`s a guest cannot corrupt.

use std::sync::Arc;

use wasmtime::component::{HasSelf, Linker};
use wasmtime::{Engine, Store, UpdateDeadline};
use wasmtime_wasi::{WasiCtxView, WasiView};

use crate::bindings::bagpipe::block::{controller, delivery, net, server, streams, topics, types};
use crate::block::delivery::DeliveryCtx;
use crate::defaults::Limits;
use crate::io::net::{NetCtx, NetHub};
use crate::io::server::{BlockServer, ServerCtx};
use crate::manifest::TopicGrants;
use crate::routing::controller::{ControllerCtx, Links};
use crate::routing::queue::BlockQueue;
use crate::runtime::hooks::Hooks;
use crate::runtime::log_rate::LogRate;
use crate::runtime::output_pace::Paces;
use crate::runtime::state::Sandbox;
use crate::stats::BlockStatus;

/// The data of one block instance's store.
pub struct BlockCtx {
    /// WASI, the call clock, limits and stderr.
    pub sandbox: Sandbox,
    /// The `controller` import: bags, timers, the host.
    pub controller: ControllerCtx,
    /// The `net` import: the sockets the host holds for the block.
    pub net: NetCtx,
    /// The `server` import: the block's side of the message server.
    pub server: ServerCtx,
    /// The `delivery` import: the batch of queued items being delivered.
    pub delivery: DeliveryCtx,
}

/// What a block's instances are made of besides their component and limits: it outlives every
/// instance (the block's task keeps it).
#[derive(Clone)]
pub struct BlockParts {
    /// Who the block is; its state and counters.
    pub status: Arc<BlockStatus>,
    /// The rest of the host.
    pub links: Links,
    /// The sockets the host holds for the block, if it has `net-hook`.
    pub net: Option<Arc<NetHub>>,
    /// The block's side of the message server, when the host has one.
    pub server: Option<Arc<BlockServer>>,
    /// The block's own queue, where the outcomes of its calls go (a block with `reply-hook`).
    pub inbox: Option<BlockQueue>,
    /// How many log lines it may write (its `log` calls and its stderr together).
    pub log_rate: Arc<LogRate>,
    /// How many bytes a second it may print, on stdout and on stderr.
    pub output_pace: Paces,
    /// For one worker of a block served by several: its number.
    pub worker: Option<u32>,
}

impl BlockParts {
    /// The parts of the block `spec` describes: its own log rate and output pace.
    pub fn new(
        spec: &crate::manifest::BlockSpec,
        status: Arc<BlockStatus>,
        links: Links,
        net: Option<Arc<NetHub>>,
        server: Option<Arc<BlockServer>>,
        inbox: Option<BlockQueue>,
    ) -> Self {
        Self {
            log_rate: Arc::new(LogRate::new(spec.limits.log_lines_per_sec, status.clone())),
            output_pace: Paces::new(&spec.limits, &status),
            status,
            links,
            net,
            server,
            inbox,
            worker: None,
        }
    }
}

impl BlockCtx {
    /// The store data of a new instance of the block `parts` describe, within `limits`, which
    /// may finish the blocks `control` grants and use the topics `topics` grants.
    pub fn new(parts: &BlockParts, hooks: Hooks, limits: &Limits, control: &[String], topics: &TopicGrants) -> Self {
        let stdout = parts.links.stdout.for_block(parts.status.clone());
        let sandbox = Sandbox::new(limits, stdout, parts.log_rate.clone(), &parts.output_pace);
        let clock = sandbox.clock.clone();
        let timeout = parts.links.settings.enqueue_timeout;
        let controller = ControllerCtx::new(parts.status.clone(), parts.links.clone(), hooks, limits, clock.clone())
            .logging_within(parts.log_rate.clone())
            .answered_into(parts.inbox.clone())
            .bridging_into(parts.server.clone().map(|s| s as Arc<dyn crate::routing::topics::TopicOutbox>));
        Self {
            controller: controller.granting(control, topics),
            net: NetCtx::new(parts.net.clone(), clock.clone(), timeout).of_worker(parts.worker),
            server: ServerCtx::new(parts.server.clone(), parts.status.clone(), limits, clock.clone()),
            delivery: DeliveryCtx::new(parts.status.clone(), clock, parts.net.clone(), parts.server.clone()),
            sandbox,
        }
    }

    /// A store holding this context, with its limits and deadline handling in place.
    pub fn into_store(self, engine: &Engine) -> Store<BlockCtx> {
        let mut store = Store::new(engine, self);
        store.limiter(|ctx| &mut ctx.sandbox);
        // The deadline is checked every tick: past the call timeout the guest is interrupted;
        // before it, the guest yields to the runtime so a busy guest cannot starve other blocks.
        store.epoch_deadline_callback(|ctx| {
            let clock = ctx.data().sandbox.clock.clone();
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
}

impl WasiView for BlockCtx {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        self.sandbox.wasi()
    }
}

/// A linker offering WASI and every capability, each bound to its own context.
pub fn linker(engine: &Engine) -> anyhow::Result<Linker<BlockCtx>> {
    let mut linker = Linker::<BlockCtx>::new(engine);
    wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
    types::add_to_linker::<_, HasSelf<ControllerCtx>>(&mut linker, |ctx| &mut ctx.controller)?;
    controller::add_to_linker::<_, HasSelf<ControllerCtx>>(&mut linker, |ctx| &mut ctx.controller)?;
    topics::add_to_linker::<_, HasSelf<ControllerCtx>>(&mut linker, |ctx| &mut ctx.controller)?;
    streams::add_to_linker::<_, HasSelf<ControllerCtx>>(&mut linker, |ctx| &mut ctx.controller)?;
    net::add_to_linker::<_, HasSelf<NetCtx>>(&mut linker, |ctx| &mut ctx.net)?;
    server::add_to_linker::<_, HasSelf<ServerCtx>>(&mut linker, |ctx| &mut ctx.server)?;
    delivery::add_to_linker::<_, HasSelf<DeliveryCtx>>(&mut linker, |ctx| &mut ctx.delivery)?;
    Ok(linker)
}
