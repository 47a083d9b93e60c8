//! A block's task: the one owner of a block's instance and queue. It takes lifecycle commands
//! from the supervisor, bags from the block's queue and the block's due timers, makes every call
//! into the guest, one at a time, and restarts the instance after a fault when the block's policy
//! says so.
//!
//! The block's life is one [`Life`]: no instance (`Down`), initialised (`Ready`), `Running`, or
//! brought down by a fault while it should run (`Faulted`). Every way to a running instance (the
//! supervisor's `Run`, a restart, a swap during a restart, going back to the old version after a
//! failed swap) goes through [`BlockTask::start_running`].
//!
//! Invariants: only this task touches the instance; lifecycle commands go before bags and timers;
//! bags are delivered only while the block runs, in queue order; the queue outlives every
//! instance, so a restart loses no queued bag; the bag being processed when a fault hit is
//! delivered again (up to `max_attempts` in all) and then becomes a dead letter; when the task
//! ends every bag left in the queue becomes a dead letter (after a fault) or is counted as lost
//! (otherwise), and is logged, never dropped silently.

use std::future::poll_fn;
use std::sync::Arc;
use std::time::Instant;

use tokio::sync::{mpsc, oneshot, watch};
use wasmtime::Engine;

use crate::bindings::BlockState;
use crate::block::component::BlockComponent;
use crate::block::ctx::{BlockCtx, BlockParts};
use crate::block::delivery::CommandWaiting;
use crate::block::instance::BlockInstance;
use crate::defaults::BATCH_ITEMS;
use crate::error::CallError;
use crate::io::net::NetHub;
use crate::io::server::{BlockServer, ServerState};
use crate::manifest::BlockSpec;
use crate::restart::Intensity;
use crate::routing::queue::{Envelope, QueueReceiver};
use crate::stats::Counters;
use crate::stats::WorkerStatus;

mod end;
mod recover;
mod stepping;
mod swap;

pub(crate) use end::{end_streams_and_calls, failure, settle, shut_down};
pub use stepping::{Stepped, Stepping};

type Reply = oneshot::Sender<Result<(), CallError>>;

/// A lifecycle command from the supervisor; each is answered on its `reply`.
#[derive(Debug)]
pub enum Command {
    /// Start a fresh instance and call `init(config)`.
    Init {
        /// Where the outcome goes.
        reply: Reply,
    },
    /// Call `run()` and start delivering bags and timers.
    Run {
        /// Where the outcome goes.
        reply: Reply,
    },
    /// Stop taking bags, deliver the ones queued (within the drain timeout), call `finish()`.
    /// The task ends.
    Finish {
        /// Where the outcome goes.
        reply: Reply,
    },
    /// For a restart of every block: call `finish()` on the instance if it is alive, drop it,
    /// and keep the queue for the next instance. The task waits for `Init`.
    Reset {
        /// Where the outcome goes.
        reply: Reply,
    },
    /// Hot swap to a new version of the component, or a new config: see [`swap`](self::swap).
    Swap {
        /// The new version.
        component: Arc<BlockComponent>,
        /// The block's spec (config, limits, policy) from now on.
        spec: Arc<BlockSpec>,
        /// Where the outcome goes: an error means the old version carries on.
        reply: Reply,
    },
}

/// What a task tells the supervisor without being asked.
#[derive(Debug)]
pub enum Event {
    /// The block faulted and its policy is `restart = "all"`.
    RestartAll {
        /// The block's index in the manifest.
        index: usize,
        /// The fault.
        error: CallError,
    },
}

/// How a block's task ended.
#[derive(Debug)]
pub enum Outcome {
    /// `finish` was called (its error, if any, went to the supervisor with the reply).
    Finished,
    /// The supervisor let go of the block without finishing it (it never initialised, or it
    /// was dead when shutdown came).
    Abandoned,
    /// A fault ended the block for good: its policy does not restart it (`gave_up: false`), or
    /// it restarted too often (`gave_up: true`).
    Failed {
        /// The last fault.
        error: CallError,
        /// Whether the restart intensity was exceeded.
        gave_up: bool,
    },
}

/// What makes a task one worker of a group.
pub struct WorkerLink {
    /// The worker's own state and counters, and how far it got through its queue.
    pub status: Arc<WorkerStatus>,
    /// The group's restart intensity, which every worker's restarts count against.
    pub intensity: Arc<std::sync::Mutex<Intensity>>,
}

/// A fault and what was being delivered when it hit (a bag, or a socket event).
struct Fault {
    error: CallError,
    bag: Option<Box<Envelope>>,
}

impl From<CallError> for Fault {
    fn from(error: CallError) -> Self {
        Fault { error, bag: None }
    }
}

/// A bag (or socket event) waiting to be delivered again after a fault.
struct Retry {
    bag: Envelope,
    attempts: u32,
}

/// Where the block's instance is in its life.
enum Life {
    /// No instance: before the first `Init`, after a `Reset`, or after an `init` that failed.
    Down,
    /// Initialised, waiting for `Run`.
    Ready(BlockInstance),
    /// Running: bags, timers and server transitions are delivered to it.
    Running(BlockInstance, Told),
    /// A fault ended the running instance; the next one must run too (a restart, or a swap
    /// that comes during the restart's backoff).
    Faulted,
}

/// What a running instance has been told of the server: a connection (of which generation).
#[derive(Clone, Copy, Default)]
struct Told {
    connected: bool,
    generation: u64,
}

impl Life {
    /// The instance, when there is one.
    fn instance(&mut self) -> Option<&mut BlockInstance> {
        match self {
            Life::Ready(instance) | Life::Running(instance, _) => Some(instance),
            Life::Down | Life::Faulted => None,
        }
    }

    fn is_running(&self) -> bool {
        matches!(self, Life::Running(..))
    }

    /// The block was told to run (and not reset since): a new instance must run too.
    fn wants_run(&self) -> bool {
        matches!(self, Life::Running(..) | Life::Faulted)
    }
}

/// Everything the task owns.
pub struct BlockTask {
    index: usize,
    engine: Engine,
    component: Arc<BlockComponent>,
    spec: Arc<BlockSpec>,
    /// What every instance is made of: who the block is, the host, its sockets and server side.
    parts: BlockParts,
    control: mpsc::Receiver<Command>,
    /// Whether a lifecycle command waits: it ends a batch early.
    command_waiting: CommandWaiting,
    queue: Option<QueueReceiver>,
    events: mpsc::Sender<Event>,
    life: Life,
    retry: Option<Retry>,
    consecutive: u32,
    /// Restarts within the policy's window; shared by the workers of a group.
    intensity: Arc<std::sync::Mutex<Intensity>>,
    /// Set when this task is one worker of a group (see [`crate::supervision::group`]).
    worker: Option<WorkerLink>,
    fault_at: Option<Instant>,
    /// The server's connection state, watched for the instance's server hooks.
    server_state: Option<watch::Receiver<ServerState>>,
    /// When finishing, the end of the drain timeout: the queue and then the outbox share it.
    drain_deadline: Option<tokio::time::Instant>,
}

/// How a step ends the task.
enum Ending {
    /// With this outcome (after settling what is left).
    End(Outcome),
    /// Finishing, as the supervisor asked.
    Finish(Reply),
    /// The host panicked in the step.
    HostFailed { panic: String, carries_bag: bool },
}

enum Next {
    Command(Option<Command>),
    /// Deliver the bag that faulted again.
    Redeliver,
    /// The server connection changed.
    Server,
    Timer(String),
    Envelope(Envelope),
    /// The outbox has room again.
    Room,
}

/// The supervisor's handles on a task: where its commands and bags go in.
pub struct Mailbox {
    /// Lifecycle commands.
    pub control: mpsc::Receiver<Command>,
    /// The sending side of `control`, to see whether a command waits (it does not keep the
    /// channel open).
    pub commands: mpsc::WeakSender<Command>,
    /// The block's bags; `None` for a block without `enqueue-hook`.
    pub queue: Option<QueueReceiver>,
    /// Events to the supervisor.
    pub events: mpsc::Sender<Event>,
    /// The block's sockets; the task shuts them down when it ends.
    pub net: Option<Arc<NetHub>>,
    /// The block's side of the message server; the task shuts it down when it ends.
    pub server: Option<Arc<BlockServer>>,
    /// The sending side of the block's own queue, where the outcomes of its calls go; `None`
    /// for a block without `reply-hook`.
    pub inbox: Option<crate::routing::queue::BlockQueue>,
}

impl BlockTask {
    /// A task for block `index`; no instance exists until the first `Init`.
    pub fn new(
        index: usize,
        engine: &Engine,
        component: Arc<BlockComponent>,
        spec: Arc<BlockSpec>,
        status: Arc<crate::stats::BlockStatus>,
        links: crate::routing::controller::Links,
        mailbox: Mailbox,
    ) -> Self {
        let parts =
            BlockParts::new(&spec, status, links, mailbox.net.clone(), mailbox.server.clone(), mailbox.inbox.clone());
        Self::from_parts(index, engine, component, spec, parts, mailbox, None)
    }

    /// A task made of `parts`; with `worker`, one worker of the group `index`, which shares the
    /// group's parts (status, sockets, server side, log rate) and restart intensity, and has a
    /// queue of its own.
    pub fn from_parts(
        index: usize,
        engine: &Engine,
        component: Arc<BlockComponent>,
        spec: Arc<BlockSpec>,
        parts: BlockParts,
        mailbox: Mailbox,
        worker: Option<WorkerLink>,
    ) -> Self {
        let intensity = worker.as_ref().map_or_else(
            || Arc::new(std::sync::Mutex::new(Intensity::new(spec.policy.max_restarts, spec.policy.window))),
            |w| w.intensity.clone(),
        );
        Self {
            index,
            engine: engine.clone(),
            component,
            spec,
            server_state: parts.server.as_ref().map(|s| s.link().state()),
            parts,
            control: mailbox.control,
            command_waiting: {
                let commands = mailbox.commands;
                Arc::new(move || commands.upgrade().is_some_and(|tx| tx.capacity() < tx.max_capacity()))
            },
            queue: mailbox.queue,
            events: mailbox.events,
            life: Life::Down,
            retry: None,
            consecutive: 0,
            intensity,
            worker,
            fault_at: None,
            drain_deadline: None,
        }
    }

    /// Runs until the block is finished, or fails for good.
    pub async fn run(mut self) -> Outcome {
        // A command the supervisor sent while the block was restarting itself, to obey next.
        let mut obey = None;
        loop {
            let next = match obey.take() {
                Some(cmd) => Next::Command(Some(cmd)),
                None => self.next().await,
            };
            match self.step(next).await {
                Ok(cmd) => obey = cmd,
                Err(ending) => return self.ending(ending).await,
            }
        }
    }

    /// Takes one step: a command, a bag (or batch), a timer, a server transition. `Ok`: the
    /// task goes on (with a command to obey next); `Err`: how it ends.
    async fn step(&mut self, next: Next) -> Result<Option<Command>, Ending> {
        let carries_bag = matches!(next, Next::Envelope(_));
        let step = match next {
            Next::Command(None) => return Err(Ending::End(Outcome::Abandoned)),
            Next::Command(Some(Command::Finish { reply })) => return Err(Ending::Finish(reply)),
            Next::Command(Some(cmd)) => caught(self.command(cmd)).await,
            Next::Redeliver => caught(self.redeliver()).await,
            Next::Timer(tag) => caught(self.timer(tag)).await,
            Next::Envelope(env) => caught(self.deliver_batch(env)).await,
            Next::Server => caught(self.sync_server()).await,
            Next::Room => return Ok(None),
        };
        let step = match step {
            Ok(step) => step,
            Err(panic) => return Err(Ending::HostFailed { panic, carries_bag }),
        };
        match step {
            Ok(()) => Ok(None),
            Err(fault) => self.recover(fault).await.map_err(Ending::End),
        }
    }

    /// Ends the task as `ending` says.
    async fn ending(self, ending: Ending) -> Outcome {
        match ending {
            Ending::End(outcome) => self.end(outcome).await,
            Ending::Finish(reply) => self.finish(reply).await,
            Ending::HostFailed { panic, carries_bag } => self.host_failed(panic, carries_bag).await,
        }
    }

    /// The host panicked in one of this task's steps: a host bug, not the guest's. The instance
    /// (whose state the panic may have left half-changed) is dropped and the block ends as
    /// failed, so its queued bags become dead letters and its sockets and subscriptions close;
    /// the bag in flight, if the step was delivering one, is counted lost.
    async fn host_failed(mut self, panic: String, carries_bag: bool) -> Outcome {
        tracing::error!(event = "host_panic", "the host panicked while serving the block: {panic}");
        self.parts.status.note_fault();
        // A panic in the middle of a batch leaves the queue in the instance's batch.
        if self.queue.is_none()
            && let Some(instance) = self.life.instance()
        {
            self.queue = instance.ctx().delivery.abandon();
        }
        if carries_bag {
            Counters::bump(&self.parts.status.counters.lost);
            tracing::error!(event = "lost", bags = 1, "the bag being delivered when the host panicked is lost");
        }
        self.life = Life::Down;
        self.end(Outcome::Failed { error: CallError::Host(panic), gave_up: true }).await
    }

    async fn next(&mut self) -> Next {
        // Between two steps, everything taken from the queue is done with, unless it waits to be
        // delivered again: a group's dispatcher learns its worker's progress here.
        if let Some(worker) = &self.worker {
            let timers = self.life.instance().is_some_and(|i| !i.ctx().controller.timers.is_empty());
            worker.status.timers.store(timers, std::sync::atomic::Ordering::Release);
            if self.retry.is_none() {
                worker.status.settle();
            }
        }
        let running = self.life.is_running();
        if running && self.retry.is_some() {
            return Next::Redeliver;
        }
        let hears_server = running && self.component.hooks.server;
        let control = &mut self.control;
        let queue = self.queue.as_mut();
        let timers = self.life.instance().filter(|_| running).map(|i| &mut i.ctx().controller.timers);
        let server = self.server_state.as_mut();
        // While the block's outbox is over half full, its queue waits (and fills, and pushes
        // back on whoever feeds it), so a block is never handed work it cannot publish.
        let outbox = self.parts.server.as_ref().map(|s| s.outbox());
        let room = outbox.is_none_or(|o| o.has_room());
        tokio::select! {
            biased;
            cmd = control.recv() => Next::Command(cmd),
            Some(()) = async {
                match server {
                    Some(state) => state.changed().await.ok(),
                    None => None,
                }
            }, if hears_server => Next::Server,
            Some(tag) = async {
                match timers {
                    Some(t) => poll_fn(|cx| t.poll_due(cx)).await,
                    None => None,
                }
            }, if running => Next::Timer(tag),
            Some(env) = async {
                match queue {
                    Some(q) => q.recv().await,
                    None => None,
                }
            }, if running && room => Next::Envelope(env),
            () = async {
                if let Some(o) = outbox {
                    o.room().await;
                }
            }, if running && !room => Next::Room,
        }
    }

    async fn command(&mut self, cmd: Command) -> Result<(), Fault> {
        match cmd {
            Command::Init { reply } => {
                self.life = Life::Down;
                let r = self.ready_instance(&self.component.clone(), &self.spec.clone(), None).await;
                let _ = reply.send(r.map(|instance| self.life = Life::Ready(instance)));
                Ok(())
            }
            Command::Run { reply } => match std::mem::replace(&mut self.life, Life::Down) {
                Life::Ready(instance) => self.start_running(instance, Some(reply)).await,
                other => {
                    self.life = other;
                    let _ = reply.send(Err(CallError::Gone));
                    Ok(())
                }
            },
            Command::Reset { reply } => {
                self.set_state(BlockState::Restarting);
                let r = match std::mem::replace(&mut self.life, Life::Down).instance() {
                    Some(instance) => instance.finish().await,
                    None => Ok(()),
                };
                let _ = reply.send(r);
                Ok(())
            }
            Command::Swap { component, spec, reply } => self.swap(component, spec, reply).await,
            Command::Finish { .. } => unreachable!("handled by the loop"),
        }
    }

    /// A fresh instance of `component` with `spec`'s config, initialised, and restored from
    /// `state` when there is one. Keeps the block's sequence numbers going.
    async fn ready_instance(
        &mut self,
        component: &Arc<BlockComponent>,
        spec: &BlockSpec,
        state: Option<&[u8]>,
    ) -> Result<BlockInstance, CallError> {
        let ctx = BlockCtx::new(&self.parts, component.hooks, &spec.limits, &spec.control, &spec.topics);
        let mut instance = BlockInstance::new(&self.engine, component, ctx).await?;
        instance.init(&self.config(spec)).await?;
        if let Some(state) = state {
            instance.restore(state).await?;
        }
        Ok(instance)
    }

    /// Brings an initialised instance to running: `run` (its outcome goes to `reply`, when the
    /// supervisor asked), then what it must hear of the server. The one way to a running instance.
    async fn start_running(&mut self, instance: BlockInstance, reply: Option<Reply>) -> Result<(), Fault> {
        self.set_state(BlockState::Running);
        self.life = Life::Running(instance, Told::default());
        let Some(instance) = self.life.instance() else { return Err(CallError::Gone.into()) };
        let r = instance.run().await;
        if let Some(reply) = reply {
            let _ = reply.send(r.clone());
        }
        r?;
        self.sync_server().await
    }

    /// Tells the running instance of every server transition it has not heard of yet, in order:
    /// a disconnection (also when it missed one between two connections), then a connection.
    async fn sync_server(&mut self) -> Result<(), Fault> {
        if !self.component.hooks.server {
            return Ok(());
        }
        let Some(state) = self.server_state.as_mut() else { return Ok(()) };
        let Life::Running(instance, told) = &mut self.life else { return Ok(()) };
        let now = state.borrow_and_update().clone();
        if told.connected && (!now.connected || now.generation != told.generation) {
            told.connected = false;
            instance.on_server_disconnect().await?;
        }
        if now.connected
            && !told.connected
            && let Some(info) = &now.info
        {
            *told = Told { connected: true, generation: now.generation };
            instance.on_server_connect(info).await?;
        }
        Ok(())
    }

    async fn timer(&mut self, tag: String) -> Result<(), Fault> {
        let Some(instance) = self.life.instance() else { return Ok(()) };
        Counters::bump(&self.parts.status.counters.timers_fired);
        instance.on_timer(&tag).await?;
        self.healthy();
        Ok(())
    }

    /// Delivers `first` and what else is queued, up to a batch: in one `on-batch` call when the
    /// block exports `batch-hook` (see [`crate::block::delivery`]), otherwise one call per item
    /// without going back to the runtime in between.
    async fn deliver_batch(&mut self, first: Envelope) -> Result<(), Fault> {
        if !self.component.hooks.batch {
            return self.deliver_each(first).await;
        }
        let Some(queue) = self.queue.take() else { return self.deliver(first).await };
        let Some(instance) = self.life.instance() else {
            self.queue = Some(queue);
            return Err(Fault { error: CallError::Gone, bag: Some(Box::new(first)) });
        };
        instance.ctx().delivery.open(first, queue, self.command_waiting.clone());
        let result = instance.on_batch().await;
        let Some(end) = instance.ctx().delivery.close(result.is_ok()) else {
            // Opened just above: only a host bug gets here, and the queue is gone with it.
            tracing::error!("the batch's queue was not handed back");
            return Err(Fault { error: CallError::Host("the batch's queue was lost".to_owned()), bag: None });
        };
        Counters::bump(&self.parts.status.counters.batches);
        self.queue = Some(end.queue);
        if end.went_well {
            self.healthy();
        }
        if let Some(env) = end.untaken {
            // Never handed out, so never delivered: first in line (for the next instance after a
            // fault), alone, no attempt counted.
            self.retry = Some(Retry { bag: env, attempts: 0 });
        }
        if let Some((env, why)) = end.refused {
            self.account(env, &CallError::Guest(why), false);
        }
        result.map_err(|error| Fault { error, bag: end.current.map(Box::new) })
    }

    /// Delivers `first` and then up to a batch of the items already waiting, one call each,
    /// without going back to the runtime in between; a lifecycle command ends the batch early.
    async fn deliver_each(&mut self, first: Envelope) -> Result<(), Fault> {
        self.deliver(first).await?;
        for _ in 1..BATCH_ITEMS {
            if !self.control.is_empty() {
                break;
            }
            let Some(queue) = self.queue.as_mut() else { break };
            match queue.try_recv() {
                Ok(env) => self.deliver(env).await?,
                Err(_) => break,
            }
        }
        Ok(())
    }

    async fn redeliver(&mut self) -> Result<(), Fault> {
        let Some(retry) = self.retry.as_ref() else { return Ok(()) };
        if retry.attempts > 0 {
            tracing::info!(attempt = retry.attempts + 1, "delivering the bag that faulted again");
        }
        let (bag, attempts) = (retry.bag.clone(), retry.attempts);
        self.deliver(bag).await?;
        // Delivered, unless a refused durable bag is back with one more attempt (or became a
        // dead letter, which took it out already).
        if self.retry.as_ref().is_some_and(|r| r.attempts == attempts) {
            self.retry = None;
        }
        Ok(())
    }

    /// Calls the hook `env` is for: `on-enqueue` for a bag, the `net-hook` functions for socket
    /// events.
    async fn deliver(&mut self, env: Envelope) -> Result<(), Fault> {
        #[cfg(debug_assertions)]
        crate::block::delivery::test_panic(&self.spec.responsibility, &env);
        if env.stale() {
            return Ok(());
        }
        let Some(instance) = self.life.instance() else {
            return Err(Fault { error: CallError::Gone, bag: Some(Box::new(env)) });
        };
        let started = Instant::now();
        let result = match &env {
            Envelope::StreamOpen { stream, from, bag, .. } => instance.on_stream_open(*stream, from, bag).await,
            Envelope::StreamData { stream, bag, .. } => instance.on_stream_data(*stream, bag).await,
            Envelope::StreamEnd { stream, end } => instance.on_stream_end(*stream, end).await,
            Envelope::Bag(bag) | Envelope::Durable { bag, .. } | Envelope::Call { bag, .. } => {
                instance.on_enqueue(bag).await
            }
            Envelope::Reply { call, outcome } => instance.on_reply(*call, outcome).await,
            Envelope::Accept { conn, listener, peer } => {
                if let Some(hub) = &self.parts.net {
                    hub.told(*conn);
                }
                instance.on_accept(*conn, listener, peer).await
            }
            Envelope::Data { conn, data } => instance.on_data(*conn, data).await,
            Envelope::Closed { conn } => instance.on_close(*conn).await,
            Envelope::Datagram { listener, peer, data } => instance.on_datagram(listener, peer, data).await,
        };
        let status = &self.parts.status;
        status.processing.record(started.elapsed());
        match result {
            Ok(()) => {
                // A durable bag is done with once the block is done with it, one way or the
                // other; after a fault it is delivered again (or dead-lettered, then done with).
                env.done();
                Counters::bump(&status.counters.processed);
                self.healthy();
                Ok(())
            }
            Err(CallError::Guest(why)) if matches!(env, Envelope::Durable { .. }) => {
                // A durable bag is never acknowledged and forgotten on a refusal: it is delivered
                // again (up to `max_attempts` in all), then it is a dead letter.
                Counters::bump(&status.counters.failed);
                tracing::warn!("on-enqueue refused a durable bag: {why}");
                self.account(env, &CallError::Guest(why), false);
                self.healthy();
                Ok(())
            }
            Err(CallError::Guest(why)) => {
                env.refused(&why);
                Counters::bump(&status.counters.failed);
                tracing::warn!("on-enqueue refused a bag: {why}");
                self.healthy();
                Ok(())
            }
            // The bag goes with the fault: it is delivered again or dead-lettered.
            Err(error) => Err(Fault { error, bag: Some(Box::new(env)) }),
        }
    }

    /// Moves the block (or, for a worker, this worker) to `state`.
    fn set_state(&self, state: BlockState) {
        match &self.worker {
            Some(worker) => worker.status.set_state(state),
            None => self.parts.status.set_state(state),
        }
    }

    /// The config `init` is handed: the manifest's, and a worker's number under `__worker`.
    fn config(&self, spec: &BlockSpec) -> String {
        let mut config = spec.config.clone();
        if let Some(worker) = &self.worker {
            config.insert("__worker".to_owned(), serde_json::Value::from(worker.status.id));
        }
        serde_json::Value::Object(config).to_string()
    }

    /// A call went well: the fault streak is over.
    fn healthy(&mut self) {
        self.consecutive = 0;
        if let Some(at) = self.fault_at.take() {
            self.parts.status.recovery.record(at.elapsed());
        }
    }
}

/// Runs one step of the task, catching a panic (a host bug) so that the task can still account
/// for the block's bags and close its sockets; the panic's message is the error.
async fn caught<T>(step: impl std::future::Future<Output = T>) -> Result<T, String> {
    use futures_util::FutureExt as _;
    std::panic::AssertUnwindSafe(step).catch_unwind().await.map_err(|payload| {
        payload
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "a panic without a message".to_owned())
    })
}
