//! [`Bench`]: one block under test, its life (start, swap, finish) and settling.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot};

use super::record::{self, Fault, LogLine};
use super::stand_in::{Arrived, StandIn};
use super::{PendingTimer, Published, Setup, TEST_SENDER, TestError, server, sockets};
use crate::block::component::{BlockComponent, Loader};
use crate::defaults::{Settings, TEST_STDOUT_MESSAGES, TEST_WAIT};
use crate::error::CallError;
use crate::io::net::NetHub;
use crate::manifest::BlockSpec;
use crate::restart::Intensity;
use crate::routing::calls::Calls;
use crate::routing::controller::{Links, Request};
use crate::routing::deadletter::DeadLetters;
use crate::routing::queue::BlockQueue;
use crate::routing::router::{Route, Router};
use crate::runtime::cache::ComponentCache;
use crate::runtime::engine::{EpochTicker, new_engine};
use crate::runtime::guest_stdout::GuestStdout;
use crate::runtime::virtual_time::VirtualClock;
use crate::stats::{BlockStatus, StatsSnapshot};
use crate::supervision::task::{BlockTask, Command, Event, Mailbox, Outcome, Stepped, Stepping};

/// One block under test.
pub struct Bench {
    engine: wasmtime::Engine,
    _ticker: EpochTicker,
    pub(super) spec: Arc<BlockSpec>,
    component: Arc<BlockComponent>,
    status: Arc<BlockStatus>,
    pub(super) links: Links,
    pub(super) clock: Arc<VirtualClock>,
    record: Arc<record::Record>,
    stdout: std::sync::mpsc::Receiver<Vec<u8>>,
    stepping: Stepping,
    control: Option<mpsc::Sender<Command>>,
    events: mpsc::Receiver<Event>,
    requests: mpsc::Receiver<Request>,
    /// Restarts of the whole block (`restart = "all"`), as the supervisor counts them.
    restarts_of_all: Intensity,
    /// The block's queue: where the test's bags go in.
    pub(super) queue: Option<BlockQueue>,
    pub(super) stand_ins: BTreeMap<String, StandIn>,
    /// The test's own route: where the outcomes of its calls, and bags the block sends to
    /// `test`, arrive.
    pub(super) me: StandIn,
    pub(super) seq: u64,
    pub(super) net: Option<Arc<NetHub>>,
    pub(super) server: Option<server::Server>,
    pub(super) sockets: sockets::Sockets,
    /// Blocks the block asked to finish (itself included).
    finish_requests: Vec<String>,
    pub(super) ended: Option<String>,
}

/// What a block did while it finished (the bags it sent, what it printed...), taken then.
#[derive(Debug)]
pub struct Finished {
    /// What it printed.
    pub printed: String,
    /// What it logged.
    pub logs: Vec<LogLine>,
    /// Its faults.
    pub faults: Vec<Fault>,
    /// The bags that reached each stand-in (and `test`).
    pub sent: BTreeMap<String, Vec<Arrived>>,
    /// What it published (confirmed by the server).
    pub published: Vec<Published>,
}

impl Bench {
    /// Loads and checks the block, sets up what it reaches, calls `init` and `run`, and settles.
    pub async fn start(setup: Setup) -> Result<Self, TestError> {
        if let Some(why) = setup.unsupported() {
            return Err(TestError::Misuse(why));
        }
        let Setup { spec, stand_ins, server } = setup;
        let engine = new_engine().map_err(TestError::Setup)?;
        let ticker = EpochTicker::start(&engine).map_err(TestError::Setup)?;
        let loader = Loader::new(&engine, ComponentCache::new(&engine, ComponentCache::default_dir()))
            .map_err(TestError::Setup)?;
        let component = loader.load(&spec.component).await?;
        component.fits(&spec)?;
        let status = Arc::new(BlockStatus::new(&spec.name, &spec.responsibility, component.hooks.enqueue));
        status.set_version(component.hash.short());
        let router = Arc::new(Router::new());
        let clock = Arc::new(VirtualClock::new());
        let record = record::Record::new();
        let (stdout_tx, stdout) = std::sync::mpsc::sync_channel(TEST_STDOUT_MESSAGES);
        // A full target refuses at once: nothing drains a stand-in while the block is in a call.
        let settings = Settings { enqueue_timeout: Duration::ZERO, ..Settings::default() };
        let (requests_tx, requests) = mpsc::channel(16);
        let links = Links {
            shutdown: tokio_util::sync::CancellationToken::new(),
            router: router.clone(),
            requests: requests_tx,
            settings: Arc::new(settings),
            dead_letters: Arc::new(DeadLetters::new(None)),
            cluster: None,
            stdout: GuestStdout::into_channel(stdout_tx),
            calls: Calls::new(TEST_SENDER),
            topics: Arc::default(),
            bridge: Arc::default(),
            streams: Arc::default(),
            clock: Some(clock.clone()),
            tap: Some(record.clone()),
        };
        let me = StandIn::new(TEST_SENDER, &router, None);
        let stand_ins =
            stand_ins.into_iter().map(|(name, answer)| (name.clone(), StandIn::new(&name, &router, answer)));
        let stand_ins = stand_ins.collect();

        // The block's queue, sockets and server side, as the supervisor makes them.
        let hooks = component.hooks;
        let (queue_tx, queue_rx) = crate::supervision::supervisor::block_queue(&spec, hooks, &status);
        let inbox = queue_tx.clone().filter(|_| hooks.reply || hooks.stream);
        let streams = queue_tx.clone().filter(|_| hooks.stream);
        let bag_queue = queue_tx.clone().filter(|_| hooks.enqueue);
        if !spec.topics.topics.is_empty() {
            let Some(queue) = &bag_queue else {
                return Err(TestError::Misuse(format!(
                    "`{}` subscribes to topics but does not export enqueue-hook (list `on_enqueue`): their bags \
                     could never reach it",
                    spec.responsibility
                )));
            };
            for sub in &spec.topics.topics {
                links.topics.subscribe(&spec.responsibility, queue, sub);
            }
        }
        let net = match &queue_tx {
            Some(tx) if hooks.net => {
                Some(NetHub::bind_watched(&spec, tx.clone(), status.clone(), true).await.map_err(TestError::Setup)?)
            }
            _ => None,
        };
        let server = match server {
            true => match server::Server::start(&spec, bag_queue.clone(), &status, &links.settings).await {
                Ok(server) => Some(server),
                Err(e) => {
                    if let Some(net) = &net {
                        net.shutdown().await;
                    }
                    return Err(e);
                }
            },
            false => None,
        };
        router.insert(Route { status: status.clone(), queue: bag_queue.clone(), via_server: false, streams });
        let (control_tx, control) = mpsc::channel(4);
        let (events_tx, events) = mpsc::channel(4);
        let mailbox = Mailbox {
            control,
            commands: control_tx.downgrade(),
            queue: queue_rx,
            events: events_tx,
            net: net.clone(),
            server: server.as_ref().map(|s| s.block.clone()),
            inbox,
        };
        let restarts_of_all = Intensity::new(spec.policy.max_restarts, spec.policy.window);
        let spec = Arc::new(spec);
        let task = BlockTask::new(0, &engine, component.clone(), spec.clone(), status.clone(), links.clone(), mailbox);
        let mut bench = Bench {
            engine,
            _ticker: ticker,
            spec,
            component,
            status,
            links,
            clock,
            record,
            stdout,
            stepping: Stepping::new(task),
            control: Some(control_tx),
            events,
            requests,
            restarts_of_all,
            queue: bag_queue,
            stand_ins,
            me,
            seq: 0,
            net,
            server,
            sockets: sockets::Sockets::default(),
            finish_requests: Vec::new(),
            ended: None,
        };
        let started = async {
            bench.command(|reply| Command::Init { reply }).await.map_err(TestError::Start)?;
            bench.command(|reply| Command::Run { reply }).await.map_err(TestError::Start)?;
            bench.settle().await
        };
        match started.await {
            Ok(()) => Ok(bench),
            Err(e) => {
                bench.abandon().await;
                Err(e)
            }
        }
    }

    /// Sends the task a lifecycle command and steps it until the command is answered.
    async fn command(
        &mut self,
        make: impl FnOnce(oneshot::Sender<Result<(), CallError>>) -> Command,
    ) -> Result<(), CallError> {
        let (reply, mut answer) = oneshot::channel();
        let Some(control) = &self.control else { return Err(CallError::Gone) };
        if control.send(make(reply)).await.is_err() {
            return Err(CallError::Gone);
        }
        let deadline = Instant::now() + TEST_WAIT;
        loop {
            if let Ok(result) = answer.try_recv() {
                return result;
            }
            match self.stepping.step().await {
                Stepped::Took => {}
                Stepped::Idle if Instant::now() < deadline => tokio::task::yield_now().await,
                Stepped::Idle | Stepped::Gone => {
                    self.note_end();
                    return answer.try_recv().unwrap_or(Err(CallError::Gone));
                }
            }
        }
    }

    fn note_end(&mut self) {
        if self.ended.is_none()
            && let Some(outcome) = self.stepping.outcome()
        {
            self.ended = Some(match outcome {
                Outcome::Finished => "finished".to_owned(),
                Outcome::Abandoned => "abandoned".to_owned(),
                Outcome::Failed { error, gave_up: true } => format!("failed for good (gave up restarting): {error}"),
                Outcome::Failed { error, gave_up: false } => format!("failed for good: {error}"),
            });
        }
    }

    /// Lets the block do everything that is ready, and the stand-ins answer, until nothing is
    /// left to do; then waits for what it sent to leave the host. Fails when that takes longer
    /// than the kit's wait (a block that always has more to do: a timer of zero, a restart loop).
    pub async fn settle(&mut self) -> Result<(), TestError> {
        let deadline = Instant::now() + TEST_WAIT;
        loop {
            let mut busy = false;
            while self.stepping.step().await == Stepped::Took {
                busy = true;
                if Instant::now() > deadline {
                    return Err(TestError::Timeout("the block to settle: it always has more to do".to_owned()));
                }
            }
            self.note_end();
            while let Ok(Event::RestartAll { error, .. }) = self.events.try_recv() {
                busy = true;
                self.restart_all(error).await;
            }
            while let Ok(Request::Finish { responsibility, .. }) = self.requests.try_recv() {
                self.finish_requests.push(responsibility);
            }
            for stand_in in self.stand_ins.values_mut() {
                busy |= stand_in.serve(&self.links.calls).await;
            }
            busy |= self.me.serve(&self.links.calls).await;
            self.sockets_flushed(deadline).await?;
            if let Some(server) = &self.server {
                server.flushed(deadline).await?;
            }
            // Whatever the host's own tasks had ready gets a turn, and the task's budget is
            // refilled, before "nothing is ready" is believed (see `Stepping::step`).
            tokio::task::yield_now().await;
            if busy {
                continue;
            }
            match self.stepping.step().await {
                Stepped::Took => {}
                Stepped::Idle | Stepped::Gone => {
                    self.note_end();
                    return Ok(());
                }
            }
            if Instant::now() > deadline {
                return Err(TestError::Timeout("the block to settle: it always has more to do".to_owned()));
            }
        }
    }

    /// The supervisor's part of `restart = "all"`, for a host of one block: reset, init, run,
    /// unless the block restarted too often within its window (then it ends, as it would).
    async fn restart_all(&mut self, error: CallError) {
        if !self.restarts_of_all.allow(Instant::now()) {
            tracing::error!(event = "gave_up", "restarted every block too often: giving up");
            self.ended = Some(format!("failed for good (gave up restarting): {error}"));
            self.control = None;
            while self.stepping.step().await == Stepped::Took {}
            return;
        }
        let restarted = async {
            self.command(|reply| Command::Reset { reply }).await?;
            self.command(|reply| Command::Init { reply }).await?;
            self.command(|reply| Command::Run { reply }).await
        };
        if let Err(e) = restarted.await {
            tracing::warn!("restarting the block failed: {e}");
        }
    }

    /// Moves the virtual clock `by` forward, settling at each timer due on the way (so a timer
    /// its handler sets again fires as often as it would in that time).
    pub async fn advance(&mut self, by: Duration) -> Result<(), TestError> {
        let to = self.clock.now().saturating_add(by);
        while let Some(due) = self.clock.next_due().filter(|due| *due <= to) {
            self.clock.advance_to(due);
            self.settle().await?;
        }
        self.clock.advance_to(to);
        self.settle().await
    }

    /// The timers the block has pending, soonest first, with when each is due (from the start).
    pub fn timers(&self) -> Vec<PendingTimer> {
        self.clock.pending()
    }

    /// How far the virtual clock has moved.
    pub fn now(&self) -> Duration {
        self.clock.now()
    }

    /// Takes the lines the block logged since the last call.
    pub fn logs(&self) -> Vec<LogLine> {
        self.record.take_logs()
    }

    /// Takes the faults of the block's instances since the last call.
    pub fn faults(&self) -> Vec<Fault> {
        self.record.take_faults()
    }

    /// Takes what the block printed since the last call.
    pub fn printed(&self) -> String {
        let bytes: Vec<u8> = std::iter::from_fn(|| self.stdout.try_recv().ok()).flatten().collect();
        String::from_utf8_lossy(&bytes).into_owned()
    }

    /// The blocks the block asked to finish since the start (its own responsibility when it asked
    /// to finish itself; `initiator` when it asked the host to shut down).
    pub fn finish_requests(&self) -> &[String] {
        &self.finish_requests
    }

    /// The block's counters and state now.
    pub fn stats(&self) -> StatsSnapshot {
        self.status.snapshot(
            self.queue.as_ref().map_or(0, BlockQueue::depth),
            self.queue.as_ref().map_or(0, |q| q.capacity() as u64),
        )
    }

    /// How the block ended, once it has (failed for good, or finished).
    pub fn ended(&self) -> Option<&str> {
        self.ended.as_deref()
    }

    /// The block's manifest entry.
    pub fn spec(&self) -> &BlockSpec {
        &self.spec
    }

    /// Hot-swaps the block to the component in `component` (its state carried over by its
    /// snapshot and restore, as the host does), then settles.
    pub async fn swap(&mut self, component: &Path) -> Result<(), TestError> {
        let cache = ComponentCache::new(&self.engine, ComponentCache::default_dir());
        let loader = Loader::new(&self.engine, cache).map_err(TestError::Setup)?;
        let component = loader.load(component).await?;
        component.fits(&self.spec)?;
        let spec = self.spec.clone();
        let new = component.clone();
        self.command(move |reply| Command::Swap { component: new, spec, reply }).await.map_err(TestError::Start)?;
        self.component = component;
        self.settle().await
    }

    /// Finishes the block (what is queued is delivered first, then `finish`), shuts down what
    /// it had, and gives what it did while finishing.
    pub async fn finish(mut self) -> Result<Finished, TestError> {
        let finished = match self.ended.clone() {
            Some(how) => Err(TestError::Ended(how)),
            None => self.command(|reply| Command::Finish { reply }).await.map_err(TestError::Finish),
        };
        for stand_in in self.stand_ins.values_mut() {
            stand_in.serve(&self.links.calls).await;
        }
        self.me.serve(&self.links.calls).await;
        if let Some(server) = &self.server {
            // The task's end gave the outbox its drain time; what is left was counted dropped.
            let _ = server.flushed(Instant::now()).await;
        }
        let published = self.server.as_mut().map(|s| s.take_published()).unwrap_or_default();
        let done = Finished {
            printed: self.printed(),
            logs: self.logs(),
            faults: self.faults(),
            sent: self.sent(),
            published,
        };
        self.shut_down().await;
        finished.map(|()| done)
    }

    /// Lets the block go without finishing it (its task ends, its sockets close).
    pub async fn abandon(mut self) {
        self.control = None;
        let deadline = Instant::now() + TEST_WAIT;
        loop {
            match self.stepping.step().await {
                Stepped::Took => {}
                Stepped::Gone => break,
                Stepped::Idle if Instant::now() > deadline => {
                    tracing::warn!("the block's task did not end when abandoned");
                    break;
                }
                Stepped::Idle => tokio::task::yield_now().await,
            }
        }
        self.shut_down().await;
    }

    async fn shut_down(&mut self) {
        self.sockets = sockets::Sockets::default();
        // The task's end shut the block's sockets down; a task that never ran (or was lost) did not.
        if let Some(net) = &self.net {
            net.shutdown().await;
        }
        if let Some(server) = self.server.take() {
            server.close().await;
        }
    }
}

impl std::fmt::Debug for Bench {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bench").field("block", &self.spec.responsibility).field("ended", &self.ended).finish()
    }
}
