//! A block's task: the one owner of a block's instance and queue. It takes lifecycle commands
//! from the supervisor, bags from the block's queue and the block's due timers, makes every call
//! into the guest, one at a time, and restarts the instance after a fault when the block's policy
//! says so.
//!
//! Invariants: only this task touches the instance; lifecycle commands go before bags and timers;
//! bags are delivered only while the block runs, in queue order; the queue outlives every
//! instance, so a restart loses no queued bag; the bag being processed when a fault hit is
//! delivered again (up to `max_attempts` in all) and then becomes a dead letter; when the task
//! ends every bag left in the queue is counted as lost and logged, never dropped silently.

use std::future::poll_fn;
use std::sync::Arc;
use std::time::Instant;

use tokio::sync::{mpsc, oneshot, watch};
use wasmtime::Engine;

use crate::bindings::BlockState;
use crate::component::BlockComponent;
use crate::defaults::QUEUE_BATCH;
use crate::error::CallError;
use crate::instance::BlockInstance;
use crate::manifest::BlockSpec;
use crate::net::NetHub;
use crate::restart::Intensity;
use crate::router::Envelope;
use crate::server::{BlockServer, ServerState};
use crate::state::{BlockCtx, Links};
use crate::stats::{BlockStatus, Counters};

mod end;
mod recover;
mod swap;

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

/// Everything the task owns.
pub struct BlockTask {
    index: usize,
    engine: Engine,
    component: Arc<BlockComponent>,
    spec: Arc<BlockSpec>,
    config: String,
    status: Arc<BlockStatus>,
    links: Links,
    control: mpsc::Receiver<Command>,
    queue: Option<mpsc::Receiver<Envelope>>,
    events: mpsc::Sender<Event>,
    instance: Option<BlockInstance>,
    running: bool,
    retry: Option<Retry>,
    consecutive: u32,
    intensity: Intensity,
    fault_at: Option<Instant>,
    /// A command that arrived while the block was restarting itself, to handle next.
    pending: Option<Command>,
    /// The block's sockets: they outlive every instance.
    net: Option<Arc<NetHub>>,
    /// The block's side of the message server: it outlives every instance too.
    server: Option<Arc<BlockServer>>,
    /// The server's connection state, watched for the instance's server hooks.
    server_state: Option<watch::Receiver<ServerState>>,
    /// What the current instance has been told of the server: (connected, generation).
    told: (bool, u64),
    /// The block has been told to run (and not reset since): a new instance must run too.
    wants_run: bool,
}

enum Next {
    Command(Option<Command>),
    /// The server connection changed.
    Server,
    Timer(String),
    Envelope(Envelope),
}

/// The supervisor's handles on a task: where its commands and bags go in.
pub struct Mailbox {
    /// Lifecycle commands.
    pub control: mpsc::Receiver<Command>,
    /// The block's bags; `None` for a block without `enqueue-hook`.
    pub queue: Option<mpsc::Receiver<Envelope>>,
    /// Events to the supervisor.
    pub events: mpsc::Sender<Event>,
    /// The block's sockets; the task shuts them down when it ends.
    pub net: Option<Arc<NetHub>>,
    /// The block's side of the message server; the task shuts it down when it ends.
    pub server: Option<Arc<BlockServer>>,
}

impl BlockTask {
    /// A task for block `index`; no instance exists until the first `Init`.
    pub fn new(
        index: usize,
        engine: &Engine,
        component: Arc<BlockComponent>,
        spec: Arc<BlockSpec>,
        status: Arc<BlockStatus>,
        links: Links,
        mailbox: Mailbox,
    ) -> Self {
        let config = serde_json::Value::Object(spec.config.clone()).to_string();
        let intensity = Intensity::new(spec.policy.max_restarts, spec.policy.window);
        Self {
            index,
            engine: engine.clone(),
            component,
            spec,
            config,
            status,
            links,
            control: mailbox.control,
            queue: mailbox.queue,
            events: mailbox.events,
            instance: None,
            running: false,
            retry: None,
            consecutive: 0,
            intensity,
            fault_at: None,
            pending: None,
            net: mailbox.net,
            server_state: mailbox.server.as_ref().map(|s| s.link().state()),
            server: mailbox.server,
            told: (false, 0),
            wants_run: false,
        }
    }

    /// Runs until the block is finished, or fails for good.
    pub async fn run(mut self) -> Outcome {
        loop {
            let next = match self.pending.take() {
                Some(cmd) => Next::Command(Some(cmd)),
                None if self.running && self.retry.is_some() => {
                    if let Err(fault) = self.redeliver().await
                        && let Some(outcome) = self.recover(fault).await
                    {
                        return self.end(outcome).await;
                    }
                    continue;
                }
                None => self.next().await,
            };
            let step = match next {
                Next::Command(None) => return self.end(Outcome::Abandoned).await,
                Next::Command(Some(Command::Finish { reply })) => return self.finish(reply).await,
                Next::Command(Some(cmd)) => self.command(cmd).await,
                Next::Timer(tag) => self.timer(tag).await,
                Next::Envelope(env) => self.deliver_batch(env).await,
                Next::Server => self.sync_server().await,
            };
            if let Err(fault) = step
                && let Some(outcome) = self.recover(fault).await
            {
                return self.end(outcome).await;
            }
        }
    }

    async fn next(&mut self) -> Next {
        let running = self.running && self.instance.is_some();
        let hears_server = running && self.component.hooks.server;
        let control = &mut self.control;
        let queue = self.queue.as_mut();
        let timers = self.instance.as_mut().map(|i| &mut i.ctx().timers);
        let server = self.server_state.as_mut();
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
            }, if running => Next::Envelope(env),
        }
    }

    async fn command(&mut self, cmd: Command) -> Result<(), Fault> {
        match cmd {
            Command::Init { reply } => {
                self.running = false;
                let r = self.start_instance().await;
                if r.is_err() {
                    self.instance = None;
                }
                let _ = reply.send(r);
                Ok(())
            }
            Command::Run { reply } => {
                let Some(instance) = self.instance.as_mut() else {
                    let _ = reply.send(Err(CallError::Gone));
                    return Ok(());
                };
                self.status.set_state(BlockState::Running);
                self.running = true;
                self.wants_run = true;
                let r = instance.run().await;
                let fault = r.as_ref().err().cloned();
                let _ = reply.send(r);
                match fault {
                    Some(e) => Err(e.into()),
                    None => self.sync_server().await,
                }
            }
            Command::Reset { reply } => {
                self.running = false;
                self.wants_run = false;
                self.status.set_state(BlockState::Restarting);
                let r = match self.instance.take() {
                    Some(mut instance) => instance.finish().await,
                    None => Ok(()),
                };
                let _ = reply.send(r);
                Ok(())
            }
            Command::Swap { component, spec, reply } => self.swap(component, spec, reply).await,
            Command::Finish { .. } => unreachable!("handled by the loop"),
        }
    }

    /// A fresh instance, initialised. Keeps the block's sequence numbers going.
    async fn start_instance(&mut self) -> Result<(), CallError> {
        self.instance = None;
        let mut ctx = BlockCtx::new(self.status.clone(), self.component.hooks, &self.spec.limits, self.links.clone());
        ctx.net = self.net.clone();
        ctx.server = self.server.clone();
        let mut instance = BlockInstance::new(&self.engine, &self.component, ctx).await?;
        instance.init(&self.config).await?;
        self.instance = Some(instance);
        self.told = (false, 0);
        Ok(())
    }

    /// Tells the instance of every server transition it has not heard of yet, in order: a
    /// disconnection (also when it missed one between two connections), then a connection.
    async fn sync_server(&mut self) -> Result<(), Fault> {
        if !self.running || !self.component.hooks.server {
            return Ok(());
        }
        let Some(state) = self.server_state.as_mut() else { return Ok(()) };
        let now = state.borrow_and_update().clone();
        let Some(instance) = self.instance.as_mut() else { return Ok(()) };
        let (told_connected, told_generation) = self.told;
        if told_connected && (!now.connected || now.generation != told_generation) {
            self.told = (false, told_generation);
            instance.on_server_disconnect().await?;
        }
        if now.connected
            && !self.told.0
            && let Some(info) = &now.info
        {
            self.told = (true, now.generation);
            instance.on_server_connect(info).await?;
        }
        Ok(())
    }

    async fn timer(&mut self, tag: String) -> Result<(), Fault> {
        let Some(instance) = self.instance.as_mut() else { return Ok(()) };
        Counters::bump(&self.status.counters.timers_fired);
        instance.on_timer(&tag).await?;
        self.healthy();
        Ok(())
    }

    /// Delivers `first` and then up to a batch of the bags already waiting, without going back
    /// to the runtime in between; a lifecycle command ends the batch early.
    async fn deliver_batch(&mut self, first: Envelope) -> Result<(), Fault> {
        self.deliver(first).await?;
        for _ in 1..QUEUE_BATCH {
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

    async fn deliver(&mut self, env: Envelope) -> Result<(), Fault> {
        self.call_on_enqueue(env).await
    }

    async fn redeliver(&mut self) -> Result<(), Fault> {
        match self.retry.as_ref() {
            Some(retry) => {
                tracing::info!(attempt = retry.attempts + 1, "delivering the bag that faulted again");
                let bag = retry.bag.clone();
                self.call_on_enqueue(bag).await?;
                self.retry = None;
                Ok(())
            }
            None => Ok(()),
        }
    }

    /// Calls the hook `env` is for: `on-enqueue` for a bag, the `net-hook` functions for socket
    /// events.
    async fn call_on_enqueue(&mut self, env: Envelope) -> Result<(), Fault> {
        let Some(instance) = self.instance.as_mut() else {
            return Err(Fault { error: CallError::Gone, bag: Some(Box::new(env)) });
        };
        let started = Instant::now();
        let result = match &env {
            Envelope::Bag(bag) | Envelope::Durable { bag, .. } => instance.on_enqueue(bag).await,
            Envelope::Accept { conn, listener, peer } => {
                if let Some(hub) = &self.net {
                    hub.told(*conn);
                }
                instance.on_accept(*conn, listener, peer).await
            }
            Envelope::Data { conn, data } => instance.on_data(*conn, data).await,
            Envelope::Closed { conn } => instance.on_close(*conn).await,
            Envelope::Datagram { listener, peer, data } => instance.on_datagram(listener, peer, data).await,
        };
        self.status.processing.record(started.elapsed());
        // A durable bag is acknowledged once the block is done with it, one way or the other;
        // after a fault it is delivered again (or dead-lettered, then acknowledged).
        if let (Envelope::Durable { ack, .. }, Ok(()) | Err(CallError::Guest(_))) = (&env, &result) {
            ack.ack().await;
        }
        match result {
            Ok(()) => {
                Counters::bump(&self.status.counters.processed);
                self.healthy();
                Ok(())
            }
            Err(CallError::Guest(why)) => {
                Counters::bump(&self.status.counters.failed);
                tracing::warn!("on-enqueue refused a bag: {why}");
                self.healthy();
                Ok(())
            }
            // The bag goes with the fault: it is delivered again or dead-lettered.
            Err(error) => Err(Fault { error, bag: Some(Box::new(env)) }),
        }
    }

    /// A call went well: the fault streak is over.
    fn healthy(&mut self) {
        self.consecutive = 0;
        if let Some(at) = self.fault_at.take() {
            self.status.recovery.record(at.elapsed());
        }
    }
}
