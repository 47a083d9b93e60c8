//! A block served by several workers (`workers = { min, max, idle_ms, scale_ms }`): the group's
//! task stands where one block task would (the supervisor sends it the same commands and reaps
//! the same outcome), and owns that many worker tasks, each a [`BlockTask`] with its own Store,
//! instance and small queue.
//!
//! The group's task is the dispatcher: it takes from the block's queue and hands each envelope to
//! a worker ([`dispatch`]: a partition value or a connection or stream stays with one worker), at
//! most [`WORKER_QUEUE`] in flight per worker. It adds a worker (up to `max`) when a bag has
//! waited `scale_ms` for one, and retires a worker (down to `min`) that had nothing for
//! `idle_ms` and holds no connection, stream or call outcome.
//!
//! A worker's fault is its own: it restarts by the block's policy (the restart intensity counts
//! for the group) while the others go on. A worker that ends failed (`none`, `escalate`, or too
//! many restarts) ends the group: the others finish, and the group fails as one block would.
//! `restart = "all"` reaches the supervisor with the group's index, which resets the group. A swap
//! goes to one worker after the other, with dispatch paused, so no key is served by two versions
//! at once; if one worker refuses it, those already swapped go back.
//!
//! Invariants: every worker task is in the group's `JoinSet` and joined before the group's task
//! ends; an envelope taken from the block's queue is handed to a worker, or accounted for
//! (dead letter or lost) when the group ends; the streams, calls, sockets and server side of the
//! block end with the group, never with one worker.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use futures_util::future::join_all;
use tokio::sync::{Notify, mpsc, oneshot};
use tokio::task::JoinSet;
use tracing::Instrument;
use wasmtime::Engine;

use crate::bindings::BlockState;
use crate::block::component::BlockComponent;
use crate::block::ctx::BlockParts;
use crate::defaults::{SCALE_RETRY, WORKER_QUEUE};
use crate::error::CallError;
use crate::manifest::BlockSpec;
use crate::restart::Intensity;
use crate::routing::queue::{BlockQueue, Envelope, QueueReceiver};
use crate::stats::{Counters, Pool, WorkerStatus};
use crate::supervision::task::{BlockTask, Command, Event, Mailbox, Outcome, WorkerLink};
use dispatch::{Choice, Key, Load, Pins};

pub mod dispatch;
mod ending;

/// One worker, as its group sees it.
struct Worker {
    id: u32,
    control: mpsc::Sender<Command>,
    /// Its own queue; `None` for a block that takes nothing from a queue.
    queue: Option<BlockQueue>,
    status: Arc<WorkerStatus>,
    /// When it last had something to do.
    busy_at: Instant,
}

/// Where the group is in its life.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Life {
    Down,
    Ready,
    Running,
}

/// A block's group of workers.
pub struct Group {
    index: usize,
    engine: Engine,
    component: Arc<BlockComponent>,
    spec: Arc<BlockSpec>,
    partition: Option<String>,
    /// The block's parts: every worker shares them (and its own queue as the inbox).
    parts: BlockParts,
    control: mpsc::Receiver<Command>,
    /// The block's queue: the sending side (to make worker queues like it) and the receiving one.
    queue_tx: Option<BlockQueue>,
    queue: Option<QueueReceiver>,
    events: mpsc::Sender<Event>,
    workers: Vec<Worker>,
    tasks: JoinSet<(u32, Outcome)>,
    /// Retired workers still finishing.
    retiring: Vec<u32>,
    intensity: Arc<std::sync::Mutex<Intensity>>,
    pins: Pins,
    /// An envelope taken from the block's queue that no worker had room for yet, and its key.
    pending: Option<(Envelope, Option<(Key, bool)>)>,
    /// Since when `pending` waits.
    blocked_since: Option<Instant>,
    /// Woken when a worker gets through something.
    progress: Arc<Notify>,
    life: Life,
    /// When finishing, the end of the drain timeout.
    drain_deadline: Option<tokio::time::Instant>,
    /// The group is ending: its workers stay in its stats, as they ended.
    ending: bool,
}

enum Next {
    Command(Option<Command>),
    Ended(Result<(u32, Outcome), tokio::task::JoinError>),
    Envelope(Envelope),
    Room,
    ScaleUp,
    Retire,
}

impl Group {
    /// A group for block `index`, whose queue (when it has one) is `queue_tx`; no worker runs
    /// until the first `Init`.
    pub fn new(
        index: usize,
        engine: &Engine,
        component: Arc<BlockComponent>,
        spec: Arc<BlockSpec>,
        parts: BlockParts,
        mailbox: Mailbox,
        queue_tx: Option<BlockQueue>,
    ) -> Self {
        let _ = parts.status.pool.set(Pool::new(spec.workers.min, spec.workers.max));
        Self {
            index,
            engine: engine.clone(),
            intensity: Arc::new(std::sync::Mutex::new(Intensity::new(spec.policy.max_restarts, spec.policy.window))),
            partition: spec.partition.clone(),
            component,
            spec,
            parts,
            control: mailbox.control,
            queue_tx,
            queue: mailbox.queue,
            events: mailbox.events,
            workers: Vec::new(),
            tasks: JoinSet::new(),
            retiring: Vec::new(),
            pins: Pins::default(),
            pending: None,
            blocked_since: None,
            progress: Arc::new(Notify::new()),
            life: Life::Down,
            drain_deadline: None,
            ending: false,
        }
    }

    fn pool(&self) -> Option<&Pool> {
        self.parts.status.pool.get()
    }

    /// Runs until the group is finished, or fails for good.
    pub async fn run(mut self) -> Outcome {
        loop {
            match self.next().await {
                Next::Command(None) => return self.end(Outcome::Abandoned).await,
                Next::Command(Some(Command::Finish { reply })) => return self.finish(reply).await,
                Next::Command(Some(cmd)) => self.command(cmd).await,
                Next::Ended(ended) => {
                    if let Some(outcome) = self.worker_ended(ended) {
                        return self.fail(outcome).await;
                    }
                    self.place();
                }
                Next::Envelope(env) => {
                    let key = dispatch::key_of(&env, self.partition.as_deref());
                    self.pending = Some((env, key));
                    self.place();
                }
                Next::Room => self.place(),
                Next::ScaleUp => {
                    self.scale_up().await;
                    self.place();
                }
                Next::Retire => self.retire_idle(),
            }
        }
    }

    async fn next(&mut self) -> Next {
        let running = self.life == Life::Running;
        let waiting = self.pending.is_some();
        let can_grow = running && self.workers.len() < self.spec.workers.max;
        let scale_at = self.blocked_since.map(|at| tokio::time::Instant::from_std(at + self.spec.workers.scale_after));
        let retire_at = self.retire_at().map(tokio::time::Instant::from_std);
        let queue = self.queue.as_mut();
        tokio::select! {
            biased;
            cmd = self.control.recv() => Next::Command(cmd),
            Some(ended) = self.tasks.join_next(), if !self.tasks.is_empty() => Next::Ended(ended),
            () = self.progress.notified(), if waiting => Next::Room,
            () = async {
                match scale_at {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            }, if waiting && can_grow => Next::ScaleUp,
            Some(env) = async {
                match queue {
                    Some(q) => q.recv().await,
                    None => None,
                }
            }, if running && !waiting => Next::Envelope(env),
            () = async {
                match retire_at {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            }, if running => Next::Retire,
        }
    }

    /// What the dispatcher sees of each worker now.
    fn loads(&self) -> Vec<Load> {
        self.workers
            .iter()
            .map(|w| {
                let handed = w.status.handed.load(Ordering::Acquire);
                let settled = w.status.settled.load(Ordering::Acquire);
                // Room in hand, and in its queue (where its calls' outcomes hold places too).
                let free = w.queue.as_ref().is_none_or(|q| q.free() > 0);
                Load { id: w.id, handed, settled, room: free && handed.saturating_sub(settled) < WORKER_QUEUE as u64 }
            })
            .collect()
    }

    /// Hands the pending envelope to a worker if one may take it now.
    fn place(&mut self) {
        while let Some((env, key)) = self.pending.take() {
            // A connection a worker opened itself is that worker's from its first event.
            if let (Some((Key::Conn(conn), _)), Some(hub)) = (key, &self.parts.net)
                && let Some(opener) = hub.opener(conn)
            {
                self.pins.claim(Key::Conn(conn), opener);
            }
            let loads = self.loads();
            let id = match self.pins.choose(key.map(|k| k.0), &loads) {
                Choice::To(id) => id,
                // Only a bag any worker could take adds a worker: one that must go to a busy
                // worker (its key is there) waits for that one.
                Choice::WaitAny => {
                    self.pending = Some((env, key));
                    self.blocked_since.get_or_insert_with(Instant::now);
                    return;
                }
                Choice::WaitFor(_) => {
                    self.pending = Some((env, key));
                    self.blocked_since = None;
                    return;
                }
            };
            let Some(worker) = self.workers.iter_mut().find(|w| w.id == id && w.queue.is_some()) else {
                self.pending = Some((env, key));
                return;
            };
            let Some(queue) = &worker.queue else {
                self.pending = Some((env, key));
                return;
            };
            // Counted as handed before it is in the queue, so the worker's progress can never
            // pass what it was handed.
            let counted = u64::from(env.counts_for_worker());
            let handed = worker.status.handed.fetch_add(counted, Ordering::AcqRel) + counted;
            match queue.offer(env) {
                Ok(()) => {
                    worker.busy_at = Instant::now();
                    self.pins.handed(key, id, handed, &loads);
                    self.blocked_since = None;
                }
                Err((_, env)) => {
                    // Its queue is full of places its calls hold, or closed as it ends: wait.
                    worker.status.handed.fetch_sub(counted, Ordering::AcqRel);
                    self.pending = Some((env, key));
                    self.blocked_since.get_or_insert_with(Instant::now);
                    return;
                }
            }
        }
    }

    /// Starts one more worker, as the block is running: `init`, then `run`.
    async fn scale_up(&mut self) {
        self.blocked_since = Some(Instant::now());
        let id = self.spawn_worker();
        let Some(control) = self.workers.last().map(|w| w.control.clone()) else { return };
        let started = match ask(&control, |reply| Command::Init { reply }).await {
            Ok(()) => ask(&control, |reply| Command::Run { reply }).await,
            Err(e) => Err(e),
        };
        match started {
            Ok(()) => {
                if let Some(pool) = self.pool() {
                    Counters::bump(&pool.scale_ups);
                }
                tracing::info!(
                    event = "scaled_up",
                    worker = id,
                    workers = self.workers.len(),
                    "bags waited: a worker was added"
                );
            }
            Err(e) => {
                // Its task ends without finishing (it never initialised): reaped as abandoned.
                // The next try waits a while: a version whose `init` fails must not spin.
                tracing::warn!(worker = id, "a worker added because bags waited did not start: {e}");
                self.drop_worker(id);
                self.blocked_since = Some(Instant::now() + SCALE_RETRY);
            }
        }
    }

    /// When the next worker may be retired for idleness, if any may.
    fn retire_at(&self) -> Option<Instant> {
        if self.pending.is_some() {
            return None;
        }
        self.workers.iter().skip(self.spec.workers.min).map(|w| w.busy_at + self.spec.workers.idle).min()
    }

    /// Retires workers above `min` that had nothing to do for `idle_ms` (the newest first).
    fn retire_idle(&mut self) {
        let streams = self.parts.links.streams.clone();
        self.pins.release_ended(|id| streams.is_open(id));
        let now = Instant::now();
        let idle = self.spec.workers.idle;
        for i in (self.spec.workers.min..self.workers.len()).rev() {
            let w = &mut self.workers[i];
            // Nothing in hand or in its queue (not even a place for a call's outcome), no timer
            // pending, no connection or stream of its own.
            let quiet = w.status.in_flight() == 0
                && w.queue.as_ref().is_none_or(|q| q.depth() == 0)
                && !w.status.timers.load(Ordering::Acquire);
            if !quiet || self.pins.pins_any(w.id) {
                w.busy_at = now;
                continue;
            }
            if now.duration_since(w.busy_at) < idle {
                continue;
            }
            let worker = self.workers.remove(i);
            self.pins.forget(worker.id);
            self.retiring.push(worker.id);
            if let Some(pool) = self.pool() {
                Counters::bump(&pool.retirements);
                pool.remove(worker.id);
            }
            tracing::info!(
                event = "retired",
                worker = worker.id,
                workers = self.workers.len(),
                "an idle worker was retired"
            );
            // It finishes on its own; its task is reaped like any other.
            let (reply, _) = oneshot::channel();
            if worker.control.try_send(Command::Finish { reply }).is_err() {
                tracing::warn!(worker = worker.id, "a retired worker could not be told to finish; it is let go");
            }
        }
    }

    /// A new worker's task (no instance until its `Init`); returns its id.
    fn spawn_worker(&mut self) -> u32 {
        // The lowest number no worker has (a retired one still finishing keeps its own).
        let taken = |id: &u32| self.workers.iter().any(|w| w.id == *id) || self.retiring.contains(id);
        let id = (0..).find(|id| !taken(id)).unwrap_or(u32::MAX);
        let status = Arc::new(WorkerStatus::new(id, self.component.hash.short(), self.progress.clone()));
        let (queue, receiver) = match &self.queue_tx {
            Some(group) => {
                let (tx, rx) = BlockQueue::for_worker(group, self.spec.limits.queue, status.clone());
                (Some(tx), Some(rx))
            }
            None => (None, None),
        };
        let hooks = self.component.hooks;
        let inbox = queue.clone().filter(|_| hooks.reply || hooks.stream);
        let parts = BlockParts { inbox, worker: Some(id), ..self.parts.clone() };
        let (control_tx, control) = mpsc::channel(4);
        let mailbox = Mailbox {
            control,
            commands: control_tx.downgrade(),
            queue: receiver,
            events: self.events.clone(),
            net: None,
            server: None,
            inbox: None,
        };
        let link = WorkerLink { status: status.clone(), intensity: self.intensity.clone() };
        let task = BlockTask::from_parts(
            self.index,
            &self.engine,
            self.component.clone(),
            self.spec.clone(),
            parts,
            mailbox,
            Some(link),
        );
        let span = tracing::info_span!("worker", worker = id);
        self.tasks.spawn(async move { (id, task.run().await) }.instrument(span));
        if let Some(pool) = self.pool() {
            pool.add(status.clone());
        }
        self.workers.push(Worker { id, control: control_tx, queue, status, busy_at: Instant::now() });
        id
    }

    /// Lets worker `id` go (its task ends once its control channel closes).
    fn drop_worker(&mut self, id: u32) {
        self.workers.retain(|w| w.id != id);
        self.pins.forget(id);
    }

    /// A worker's task ended: `Some` when that ends the group.
    fn worker_ended(&mut self, ended: Result<(u32, Outcome), tokio::task::JoinError>) -> Option<Outcome> {
        match ended {
            Ok((id, outcome)) => {
                if let Some(at) = self.retiring.iter().position(|r| *r == id) {
                    self.retiring.swap_remove(at);
                    return None;
                }
                self.drop_worker(id);
                if let Some(pool) = self.pool().filter(|_| !self.ending) {
                    pool.remove(id);
                }
                match outcome {
                    Outcome::Failed { error, gave_up } => {
                        tracing::error!(worker = id, "a worker ended failed: the group ends with it");
                        Some(Outcome::Failed { error, gave_up })
                    }
                    Outcome::Finished | Outcome::Abandoned => None,
                }
            }
            Err(e) => Some(Outcome::Failed {
                error: CallError::Host(format!("a worker's task ended abnormally: {e}")),
                gave_up: true,
            }),
        }
    }

    async fn command(&mut self, cmd: Command) {
        match cmd {
            Command::Init { reply } => {
                while self.workers.len() < self.spec.workers.min {
                    self.spawn_worker();
                }
                let results =
                    join_all(self.workers.iter().map(|w| ask(&w.control, |reply| Command::Init { reply }))).await;
                let r = results.iter().find_map(|r| r.clone().err()).map_or(Ok(()), Err);
                if r.is_ok() {
                    self.life = Life::Ready;
                } else {
                    // All or none: the workers that did initialise are finished, so that the
                    // next `Init` starts from nothing.
                    let inited = self.workers.iter().zip(&results).filter(|(_, r)| r.is_ok());
                    join_all(inited.map(|(w, _)| ask(&w.control, |reply| Command::Reset { reply }))).await;
                }
                let _ = reply.send(r);
            }
            Command::Run { reply } => {
                // Running once told to run, whatever each `run` answered: a worker whose `run`
                // faulted restarts by the block's policy, as one block would.
                let r = self.each(|reply| Command::Run { reply }).await;
                self.life = Life::Running;
                self.parts.status.set_state(BlockState::Running);
                let _ = reply.send(r);
            }
            Command::Reset { reply } => {
                self.parts.status.set_state(BlockState::Restarting);
                self.life = Life::Down;
                let _ = reply.send(self.each(|reply| Command::Reset { reply }).await);
            }
            Command::Swap { component, spec, reply } => {
                let _ = reply.send(self.swap(component, spec).await);
            }
            Command::Finish { .. } => unreachable!("handled by the loop"),
        }
    }

    /// Sends every worker the command `make` makes, at once, and waits for them all: the first
    /// error, if any.
    async fn each(&self, make: impl Fn(oneshot::Sender<Result<(), CallError>>) -> Command) -> Result<(), CallError> {
        let asks = self.workers.iter().map(|w| ask(&w.control, &make));
        join_all(asks).await.into_iter().find(Result::is_err).unwrap_or(Ok(()))
    }

    /// Swaps every worker to `component` with `spec`, one after the other, dispatch paused; if
    /// one refuses, the ones already swapped go back to the running version.
    async fn swap(&mut self, component: Arc<BlockComponent>, spec: Arc<BlockSpec>) -> Result<(), CallError> {
        let started = Instant::now();
        let (old_component, old_spec) = (self.component.clone(), self.spec.clone());
        for (i, worker) in self.workers.iter().enumerate() {
            let swapped =
                ask(&worker.control, |reply| Command::Swap { component: component.clone(), spec: spec.clone(), reply })
                    .await;
            if let Err(e) = swapped {
                for back in &self.workers[..i] {
                    let make =
                        |reply| Command::Swap { component: old_component.clone(), spec: old_spec.clone(), reply };
                    match ask(&back.control, make).await {
                        Ok(()) => back.status.set_version(old_component.hash.short()),
                        Err(again) => {
                            tracing::error!(
                                worker = back.id,
                                "a worker could not go back to the running version: {again}"
                            )
                        }
                    }
                }
                return Err(e);
            }
            worker.status.set_version(component.hash.short());
        }
        tracing::info!(
            event = "group_swapped",
            workers = self.workers.len(),
            version = %component.hash.short(),
            took_us = started.elapsed().as_micros() as u64,
            "every worker swapped"
        );
        self.component = component;
        self.spec = spec;
        Ok(())
    }
}

/// Sends a command to a worker and waits for its answer.
async fn ask(
    control: &mpsc::Sender<Command>,
    make: impl FnOnce(oneshot::Sender<Result<(), CallError>>) -> Command,
) -> Result<(), CallError> {
    let (reply, rx) = oneshot::channel();
    control.send(make(reply)).await.map_err(|_| CallError::Gone)?;
    rx.await.unwrap_or(Err(CallError::Gone))
}

/// How long a group's finish may take to hand out what is left in the block's queue.
fn until(deadline: tokio::time::Instant) -> Duration {
    deadline.saturating_duration_since(tokio::time::Instant::now())
}
