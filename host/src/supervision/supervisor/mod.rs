//! The supervisor: starts the blocks in dependency order (independent ones in parallel), runs
//! them, applies their restart policies, and finishes them in reverse dependency order. It owns
//! every block task.
//!
//! Invariants: every task is in the supervisor's `JoinSet` and is joined before `run` returns (no
//! detached tasks); `run` is called only after every required `init` succeeded; `finish` is called
//! at most once per block instance and only on instances whose `init` succeeded; a shutdown signal
//! during start-up stops further starts, lets the `init`s in progress end, then finishes what was
//! initialised.

use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;
use wasmtime::Engine;

use crate::bindings::BlockState;
use crate::block::component::BlockComponent;
use crate::block::ctx::BlockParts;
use crate::defaults::{FINISH_REQUESTS, OutboxMode};
use crate::deps::Graph;
use crate::error::{CallError, RunError};
use crate::io::net::NetHub;
use crate::io::server::cluster::HostDeadLetters;
use crate::io::server::outbox::Outbox;
use crate::io::server::{BlockServer, BlockServerSpec, ServerLink};
use crate::manifest::{BlockSpec, Manifest};
use crate::restart::{GiveUp, Restart, jitter};
use crate::routing::bag::BagLimits;
use crate::routing::calls::Calls;
use crate::routing::controller::{Cluster, Links, Request};
use crate::routing::deadletter::DeadLetters;
use crate::routing::queue::BlockQueue;
use crate::routing::router::{Route, Router};
use crate::routing::topics::Bridge;
use crate::runtime::guest_stdout::GuestStdout;
use crate::stats::{BlockStatus, StatsSnapshot};
use crate::supervision::group::Group;
use crate::supervision::task::{BlockTask, Command, Event, Mailbox, Outcome};

mod reconfigure;
mod start;
mod stop;

pub use reconfigure::{Reload, SwapOutcome};

/// How a run ended, when it ended without a start-up error.
#[derive(Debug, Default)]
pub struct RunReport {
    /// Blocks whose `finish` returned an error or trapped.
    pub finish_errors: Vec<(String, CallError)>,
    /// Blocks that failed for good (including optional blocks the host ran without).
    pub failed: Vec<(String, CallError)>,
    /// Every block's stats at the end.
    pub stats: Vec<StatsSnapshot>,
    /// Every dead letter (the last 1000).
    pub dead_letters: Vec<crate::routing::deadletter::DeadLetter>,
    /// The block whose fault shut the host down (`restart = "escalate"` or
    /// `on_give_up = "escalate"`), and the fault. Every block was still finished.
    pub escalated: Option<(String, CallError)>,
    /// The message server connection's stats, when the host had one.
    pub server: Option<crate::io::server::ServerSnapshot>,
}

/// One block, as the supervisor tracks it. Slots are never removed (a task's index must stay
/// valid); a block taken out of the manifest leaves a `removed` slot.
struct Slot {
    spec: Arc<BlockSpec>,
    /// Taken out of the manifest while running.
    removed: bool,
    status: Arc<BlockStatus>,
    /// `None` once the task has ended or been told to finish.
    control: Option<mpsc::Sender<Command>>,
    /// The current instance's `init` succeeded, so its `finish` is owed.
    inited: bool,
    /// The sockets of a block with `net-hook` (its `listen` and `connect` grants).
    net: Option<Arc<NetHub>>,
    /// What it may do on the server (its `publish` and `subscribe` grants).
    server: Option<Arc<BlockServer>>,
}

/// Runs one manifest's blocks.
pub struct Supervisor {
    engine: Engine,
    links: Links,
    event_tx: mpsc::Sender<Event>,
    /// New versions and manifests from the reloader.
    reloads: mpsc::Receiver<Reload>,
    slots: Vec<Slot>,
    graph: Graph,
    tasks: JoinSet<(usize, Outcome)>,
    /// Which slot each task serves, for a task that ended abnormally (and so returned no index).
    task_slots: std::collections::HashMap<tokio::task::Id, usize>,
    requests: mpsc::Receiver<Request>,
    events: mpsc::Receiver<Event>,
    router: Arc<Router>,
    dead_letters: Arc<DeadLetters>,
    /// The host's message server, if it has one.
    server: Option<Arc<ServerLink>>,
    /// Cancelled by a block that finishes `initiator`.
    shutdown: CancellationToken,
    report: RunReport,
    /// When everything was restarted (`restart = "all"`), whichever block's fault caused it: the
    /// restart intensity of the supervisor as a whole, as in OTP.
    restarts_of_all: std::collections::VecDeque<Instant>,
}

impl Supervisor {
    /// Routes every block and spawns its task; no guest code runs yet. New versions and
    /// manifests arrive on `reloads`.
    pub async fn start(
        engine: &Engine,
        manifest: &Manifest,
        components: &[Arc<BlockComponent>],
        router: Arc<Router>,
        reloads: mpsc::Receiver<Reload>,
        server: Option<Arc<ServerLink>>,
        stdout: GuestStdout,
    ) -> Result<Self, RunError> {
        let (request_tx, requests) = mpsc::channel(FINISH_REQUESTS);
        // Room for one event per block and then some: a task never waits to send one (it uses
        // `try_send`; a full channel means a restart of everything is pending anyway).
        let (event_tx, events) = mpsc::channel(2 * manifest.blocks.len().max(1) + 16);
        let dead_letters = Arc::new(DeadLetters::new(manifest.settings.dead_letters.clone()));
        let shutdown = CancellationToken::new();
        let calls = Calls::for_this_run();
        let bridge =
            Arc::new(Bridge { patterns: manifest.settings.bridge_topics.clone(), host: calls.host().to_owned() });
        let links = Links {
            shutdown: shutdown.clone(),
            router: router.clone(),
            requests: request_tx,
            settings: Arc::new(manifest.settings.clone()),
            dead_letters: dead_letters.clone(),
            cluster: server.clone().filter(|link| link.cluster.is_some()).map(|link| link as Arc<dyn Cluster>),
            stdout,
            calls: calls.clone(),
            topics: Arc::default(),
            bridge: bridge.clone(),
            streams: Arc::default(),
            clock: None,
            tap: None,
        };
        // In a cluster, the outcomes of calls travel between hosts through the server.
        if let Some(link) = server.as_ref().filter(|link| link.cluster.is_some()) {
            link.serve_calls(links.calls.clone()).await;
        }
        // Bridged topics: what other hosts emit on them reaches this host's subscribers.
        if let Some(link) = server.as_ref().filter(|_| !bridge.patterns.is_empty()) {
            link.serve_topics(links.topics.clone(), bridge, manifest.settings.enqueue_timeout).await;
        }
        let mut sup = Supervisor {
            engine: engine.clone(),
            links,
            event_tx,
            reloads,
            slots: Vec::new(),
            graph: manifest.graph.clone(),
            tasks: JoinSet::new(),
            task_slots: std::collections::HashMap::new(),
            requests,
            events,
            router,
            dead_letters,
            server,
            shutdown,
            report: RunReport::default(),
            restarts_of_all: std::collections::VecDeque::new(),
        };
        for (spec, component) in manifest.blocks.iter().zip(components) {
            let responsibility = spec.responsibility.clone();
            if let Err(e) = sup.add_block(Arc::new(spec.clone()), component.clone()).await {
                sup.stop_all().await;
                return Err(RunError::Init { responsibility, error: CallError::Guest(format!("{e:#}")) });
            }
        }
        Ok(sup)
    }

    /// Routes a block, binds its sockets and spawns its task; returns its slot index.
    async fn add_block(&mut self, spec: Arc<BlockSpec>, component: Arc<BlockComponent>) -> anyhow::Result<usize> {
        let index = self.slots.len();
        let status = Arc::new(BlockStatus::new(&spec.name, &spec.responsibility, component.hooks.enqueue));
        status.set_version(component.hash.short());
        // One queue for bags, socket events, the outcomes of its calls and its streams; only a
        // block with `on-enqueue` is routed bags.
        let hooks = component.hooks;
        let (queue_tx, queue_rx) = block_queue(&spec, hooks, &status);
        // Every block with `net-hook` has a hub, so that a manifest edit can grant it sockets.
        let net = match &queue_tx {
            Some(tx) if component.hooks.net => Some(NetHub::bind(&spec, tx.clone(), status.clone()).await?),
            _ => None,
        };
        let inbox = queue_tx.clone().filter(|_| hooks.reply || hooks.stream);
        let group_queue = queue_tx.clone();
        let streams = queue_tx.clone().filter(|_| hooks.stream);
        let bag_queue = queue_tx.filter(|_| component.hooks.enqueue);
        let spilled = match (&self.server, spec.outbox) {
            (Some(link), OutboxMode::Disk) => {
                Some(Outbox::for_block(link, &self.links.settings, &spec, &status).await?)
            }
            _ => None,
        };
        let server = self.server.clone().map(|link| {
            let server =
                BlockServer::new(link.clone(), BlockServerSpec::of(&spec, spilled), bag_queue.clone(), status.clone());
            if let Some(cluster) = &link.cluster {
                if spec.durable {
                    let dead_letters =
                        HostDeadLetters { letters: self.dead_letters.clone(), router: self.router.clone() };
                    server.serve_durable(cluster, spec.limits.queue, spec.policy.max_attempts, dead_letters);
                } else {
                    server.serve_cluster(cluster, self.links.settings.enqueue_timeout, self.links.calls.clone());
                }
            }
            server
        });
        // Its subscriptions from the start: a block that takes no bags could never be given one.
        if !spec.topics.topics.is_empty() {
            let Some(queue) = &bag_queue else {
                anyhow::bail!(
                    "`{}` subscribes to topics but does not export enqueue-hook (list `on_enqueue`): their bags could never reach it",
                    spec.responsibility
                );
            };
            for sub in &spec.topics.topics {
                self.links.topics.subscribe(&spec.responsibility, queue, sub);
            }
        }
        self.router.insert(Route {
            status: status.clone(),
            queue: bag_queue,
            via_server: spec.durable || spec.shared,
            streams,
        });
        let (control_tx, control) = mpsc::channel(4);
        let mailbox = Mailbox {
            control,
            commands: control_tx.downgrade(),
            queue: queue_rx,
            events: self.event_tx.clone(),
            net: net.clone(),
            server: server.clone(),
            inbox,
        };
        let span = tracing::info_span!("block", responsibility = %spec.responsibility);
        let handle = if spec.workers.pooled() {
            let parts = BlockParts::new(&spec, status.clone(), self.links.clone(), net.clone(), server.clone(), None);
            let group = Group::new(index, &self.engine, component, spec.clone(), parts, mailbox, group_queue);
            self.tasks.spawn(async move { (index, group.run().await) }.instrument(span))
        } else {
            let task = BlockTask::new(
                index,
                &self.engine,
                component,
                spec.clone(),
                status.clone(),
                self.links.clone(),
                mailbox,
            );
            self.tasks.spawn(async move { (index, task.run().await) }.instrument(span))
        };
        self.task_slots.insert(handle.id(), index);
        self.slots.push(Slot { spec, removed: false, status, control: Some(control_tx), inited: false, net, server });
        Ok(index)
    }

    /// The calls between its blocks: their deadlines must run beside [`Supervisor::run`].
    pub fn calls(&self) -> Arc<Calls> {
        self.links.calls.clone()
    }

    /// Starts every block, runs them all, and serves until `shutdown` resolves or a block
    /// finishes `initiator`; then finishes every block in reverse dependency order.
    pub async fn run(mut self, shutdown: impl Future<Output = ()>) -> Result<RunReport, RunError> {
        let mut signal = Signal { future: Box::pin(shutdown), fired: false };
        let all: Vec<usize> = (0..self.slots.len()).collect();
        if let Err(e) = self.start_blocks(&all, &mut signal).await {
            self.stop_all().await;
            return Err(e);
        }
        if signal.fired || self.shutdown.is_cancelled() {
            tracing::info!("shutdown requested during start-up");
            self.stop_all().await;
            return Ok(self.into_report());
        }
        self.run_blocks(&all).await;
        tracing::info!(event = "running", blocks = self.slots.len(), "all blocks running");
        let escalated = self.serve(&mut signal).await;
        // No restart of everything can be wanted any more.
        self.events.close();
        self.stop_all().await;
        self.report.escalated = escalated;
        Ok(self.into_report())
    }

    /// Serves requests and events until it is time to shut down; returns the fault to escalate,
    /// if one must be.
    async fn serve<F: Future<Output = ()>>(&mut self, signal: &mut Signal<F>) -> Option<(String, CallError)> {
        loop {
            if self.slots.iter().all(|s| s.control.is_none()) {
                tracing::info!("every block has ended");
                return None;
            }
            tokio::select! {
                () = signal.wait() => {
                    tracing::info!("shutdown requested");
                    return None;
                }
                () = self.shutdown.cancelled() => {
                    tracing::info!("a block finished `initiator`: shutting down");
                    return None;
                }
                Some(request) = self.requests.recv() => {
                    let Request::Finish { responsibility, by } = request;
                    if let Some(i) = self.slots.iter().position(|s| s.spec.responsibility == responsibility) {
                        tracing::info!("`{by}` asked to finish `{responsibility}`");
                        self.finish_one(i).await;
                    }
                }
                Some(reload) = self.reloads.recv() => self.reload(reload, signal).await,
                Some(Event::RestartAll { index, error }) = self.events.recv() => {
                    if let Some(escalate) = self.restart_all(index, error, signal).await {
                        return Some(escalate);
                    }
                }
                Some(joined) = self.tasks.join_next_with_id() => {
                    if let Some(escalate) = self.reap(joined) {
                        return Some(escalate);
                    }
                }
            }
        }
    }

    /// Records a task that ended on its own; returns the fault to escalate, if its policy says so.
    fn reap(
        &mut self,
        joined: Result<(tokio::task::Id, (usize, Outcome)), tokio::task::JoinError>,
    ) -> Option<(String, CallError)> {
        let (i, outcome) = match joined {
            Ok((id, ended)) => {
                self.task_slots.remove(&id);
                ended
            }
            // A task catches a panic in its steps and ends as failed; one that still ends
            // abnormally (a panic while ending) leaves its block failed, never looking alive.
            Err(e) => {
                let Some(i) = self.task_slots.remove(&e.id()) else {
                    tracing::error!("a block task ended abnormally: {e}");
                    return None;
                };
                let error = CallError::Host(format!("its task ended abnormally: {e}"));
                self.slots[i].status.set_state(BlockState::Failed);
                (i, Outcome::Failed { error, gave_up: true })
            }
        };
        let slot = &mut self.slots[i];
        slot.control = None;
        slot.inited = false;
        let Outcome::Failed { error, gave_up } = outcome else { return None };
        let responsibility = slot.spec.responsibility.clone();
        self.report.failed.push((responsibility.clone(), error.clone()));
        let escalate = if gave_up {
            slot.spec.policy.on_give_up == GiveUp::Escalate
        } else {
            slot.spec.policy.restart == Restart::Escalate
        };
        if escalate {
            tracing::error!(event = "escalated", block = %responsibility, "escalating: shutting the host down");
            return Some((responsibility, error));
        }
        tracing::warn!(block = %responsibility, "block stays failed; bags sent to it are refused");
        None
    }

    /// `restart = "all"`: finishes every block in reverse order and starts them all again.
    async fn restart_all<F: Future<Output = ()>>(
        &mut self,
        index: usize,
        error: CallError,
        signal: &mut Signal<F>,
    ) -> Option<(String, CallError)> {
        // One restart of everything answers every fault reported so far.
        while self.events.try_recv().is_ok() {}
        let responsibility = self.slots[index].spec.responsibility.clone();
        let slot = &mut self.slots[index];
        // The faulting block's policy says how many restarts of everything, by any block, it
        // tolerates within its window.
        let now = Instant::now();
        let window = slot.spec.policy.window;
        self.restarts_of_all.retain(|at| now.duration_since(*at) <= window);
        let recent = self.restarts_of_all.len();
        if recent as u32 >= slot.spec.policy.max_restarts {
            tracing::error!(event = "gave_up", block = %responsibility, "restarted every block too often: giving up");
            if let Some(control) = slot.control.take() {
                drop(control);
            }
            slot.inited = false;
            slot.status.set_state(BlockState::Failed);
            self.report.failed.push((responsibility.clone(), error.clone()));
            return (slot.spec.policy.on_give_up == GiveUp::Escalate).then_some((responsibility, error));
        }
        self.restarts_of_all.push_back(now);
        let delay = slot.spec.policy.backoff.delay(recent as u32 + 1, jitter());
        tracing::warn!(event = "restart_all", block = %responsibility, delay_ms = delay.as_millis() as u64, "restarting every block: {error}");
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            () = signal.wait() => return None,
        }
        self.in_reverse_order(false).await;
        let all: Vec<usize> = (0..self.slots.len()).filter(|&i| !self.slots[i].removed).collect();
        if let Err(e) = self.start_blocks(&all, signal).await {
            tracing::error!("restarting every block failed: {e}");
            let RunError::Init { responsibility, error } = e else { return None };
            return Some((responsibility, error));
        }
        if signal.fired || self.shutdown.is_cancelled() {
            return None;
        }
        self.run_blocks(&all).await;
        None
    }

    /// The dead letters of this run.
    pub fn dead_letters(&self) -> Arc<DeadLetters> {
        self.dead_letters.clone()
    }

    fn into_report(mut self) -> RunReport {
        self.report.stats = self.router.routes().iter().filter(|r| !r.status.builtin).map(|r| r.snapshot()).collect();
        self.report.dead_letters = self.dead_letters.list();
        self.report
    }
}

/// Sends a command and waits for its answer.
async fn command(
    control: mpsc::Sender<Command>,
    make: impl FnOnce(oneshot::Sender<Result<(), CallError>>) -> Command,
) -> Result<(), CallError> {
    let (reply, rx) = oneshot::channel();
    control.send(make(reply)).await.map_err(|_| CallError::Gone)?;
    rx.await.unwrap_or(Err(CallError::Gone))
}

/// The shutdown signal, awaitable any number of times: once it fired, it stays fired.
struct Signal<F> {
    future: std::pin::Pin<Box<F>>,
    fired: bool,
}

impl<F: Future<Output = ()>> Signal<F> {
    async fn wait(&mut self) {
        if !self.fired {
            self.future.as_mut().await;
            self.fired = true;
        }
    }
}

/// The queue of the block `spec` with `hooks` (both ends): one for bags, socket events, the
/// outcomes of its calls and its streams; `None` for a block that takes none of them.
pub(crate) fn block_queue(
    spec: &BlockSpec,
    hooks: crate::runtime::hooks::Hooks,
    status: &Arc<BlockStatus>,
) -> (Option<BlockQueue>, Option<crate::routing::queue::QueueReceiver>) {
    if !(hooks.enqueue || hooks.net || hooks.reply || hooks.stream) {
        return (None, None);
    }
    let limits = BagLimits { max_bytes: spec.limits.max_bag_bytes, max_depth: spec.limits.max_bag_depth };
    let (tx, rx) = BlockQueue::new(spec.limits.queue, spec.limits.queue_bytes, status.clone(), limits);
    (Some(tx), Some(rx))
}
