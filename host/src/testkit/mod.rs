//! The block authors' test kit: one block, run by the host's own machinery (its component
//! loaded and checked, its store, capabilities, queue, sockets and server side made as the
//! supervisor makes them, its task taking the same steps), driven by a test instead of a
//! supervisor. Whatever the block reaches is real: other blocks are *stand-ins* the test plays
//! (routes with a queue the test reads, `stand_in.rs`), sockets are real loopback sockets
//! (`sockets.rs`), the server is a real NATS-protocol server in the test's process
//! (`broker.rs`, `server.rs`). Time is virtual: a timer fires when the test moves the clock.
//!
//! [`Bench`] is the async core (`bagpipe test` runs scenarios on it); the `bagpipe-test` crate
//! wraps it for a block's own `cargo test`.
//!
//! Invariant: after every action the bench *settles*: the block's task takes steps until none is
//! ready, stand-ins answer what reached them, and what the block sent has left the host (written
//! to its sockets, confirmed by the server). So what a test reads after an action is everything
//! that action caused, and a test never sleeps.

pub mod broker;
mod diff;
mod record;
pub mod scenario;
mod server;
mod sockets;
mod stand_in;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use tokio::sync::{mpsc, oneshot};

use crate::block::component::{BlockComponent, Loader};
use crate::defaults::{Settings, TEST_STDOUT_MESSAGES, TEST_WAIT};
use crate::error::{CallError, LoadError, ManifestError};
use crate::io::net::NetHub;
use crate::manifest::{BlockSpec, Manifest};
use crate::routing::bag::{self, BagLimits};
use crate::routing::calls::{CallToken, Calls};
use crate::routing::controller::Links;
use crate::routing::deadletter::DeadLetters;
use crate::routing::queue::{BlockQueue, Envelope, Refusal};
use crate::routing::router::{Route, Router};
use crate::runtime::cache::ComponentCache;
use crate::runtime::engine::{EpochTicker, new_engine};
use crate::runtime::guest_stdout::GuestStdout;
use crate::runtime::virtual_time::VirtualClock;
use crate::stats::{BlockStatus, StatsSnapshot};
use crate::supervision::task::{BlockTask, Command, Event, Mailbox, Outcome, Stepping};

pub use crate::bindings::CallFailure;
pub use crate::runtime::virtual_time::PendingTimer;
pub use broker::Published;
pub use record::{Fault, LogLine};
pub use sockets::Conn;
pub use stand_in::{Answer, Arrived};

/// The name the test's own bags and calls come from (`__from`).
pub const TEST_SENDER: &str = "test";

/// Why a test kit action did not do what the test asked.
#[derive(Debug, thiserror::Error)]
pub enum TestError {
    /// The block's manifest entry is wrong.
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    /// The component could not be loaded, or is not a block.
    #[error(transparent)]
    Load(#[from] LoadError),
    /// `init` or `run` failed.
    #[error("the block did not start: {0}")]
    Start(CallError),
    /// `finish` failed.
    #[error("the block's finish failed: {0}")]
    Finish(CallError),
    /// The block's queue refused what the test sent.
    #[error("the block refused it: {0}")]
    Refused(String),
    /// The block has ended (it failed for good, or finished).
    #[error("the block has ended: {0}")]
    Ended(String),
    /// The test asked for something this block or bench does not have.
    #[error("{0}")]
    Misuse(String),
    /// The world outside the block did not catch up within the test kit's wait.
    #[error("waited {TEST_WAIT:?} for {0}")]
    Timeout(String),
    /// The host could not be set up.
    #[error("setting up the host: {0:#}")]
    Setup(anyhow::Error),
    /// A socket of the test failed.
    #[error("a socket of the test: {0}")]
    Io(#[from] std::io::Error),
}

/// What to run: a block's manifest entry, the blocks it talks to, and whether it has a server.
pub struct Setup {
    /// The block's entry as the host would read it from a manifest.
    pub spec: BlockSpec,
    /// The stand-ins, by name, and how each answers calls (`None`: it does not).
    pub stand_ins: Vec<(String, Option<Answer>)>,
    /// Whether the block gets a message server (a [`broker::Broker`] in this process).
    pub server: bool,
}

impl Setup {
    /// The block in the component file `component`, with the manifest keys `entry` (TOML, as
    /// under `[[block]]`: `listen = [...]`, `restart = "none"`, limits...) and `config` as its
    /// config (a JSON object).
    pub fn component(component: &Path, entry: &str, config: Value) -> Result<Self, TestError> {
        let spec = spec_for(component, entry)?;
        Self::from_spec(spec).config(config)
    }

    /// The block `spec` describes (e.g. one of a manifest's).
    pub fn from_spec(spec: BlockSpec) -> Self {
        Self { spec, stand_ins: Vec::new(), server: false }
    }

    /// The same, with `config` as its config (a JSON object).
    pub fn config(mut self, config: Value) -> Result<Self, TestError> {
        match config {
            Value::Object(map) => self.spec.config = map,
            Value::Null => self.spec.config.clear(),
            other => return Err(TestError::Misuse(format!("a block's config is a JSON object, not `{other}`"))),
        }
        Ok(self)
    }
}

/// The manifest entry `entry` for the component file `component` (named for its file).
fn spec_for(component: &Path, entry: &str) -> Result<BlockSpec, TestError> {
    let name = component.file_stem().and_then(|s| s.to_str()).unwrap_or_default();
    let dir = component.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let manifest_path = dir.join("bagpipe-test.toml");
    let text = format!("[[block]]\nname = {}\n{entry}\n", Value::String(name.to_owned()));
    let manifest = Manifest::parse(&manifest_path, &text)?;
    manifest.blocks.into_iter().next().ok_or_else(|| TestError::Misuse("the entry holds no block".to_owned()))
}

/// One block under test.
pub struct Bench {
    engine: wasmtime::Engine,
    _ticker: EpochTicker,
    spec: Arc<BlockSpec>,
    component: Arc<BlockComponent>,
    status: Arc<BlockStatus>,
    links: Links,
    clock: Arc<VirtualClock>,
    record: Arc<record::Record>,
    stdout: std::sync::mpsc::Receiver<Vec<u8>>,
    stepping: Stepping,
    control: Option<mpsc::Sender<Command>>,
    events: mpsc::Receiver<Event>,
    requests: mpsc::Receiver<crate::routing::controller::Request>,
    /// The block's queue: where the test's bags go in.
    queue: Option<BlockQueue>,
    stand_ins: BTreeMap<String, stand_in::StandIn>,
    /// The test's own route, where the outcomes of its calls arrive.
    me: stand_in::StandIn,
    seq: u64,
    net: Option<Arc<NetHub>>,
    server: Option<server::Server>,
    sockets: sockets::Sockets,
    /// Blocks the block asked to finish (itself included).
    finish_requests: Vec<String>,
    ended: Option<String>,
}

impl Bench {
    /// Loads and checks the block, sets up what it reaches, calls `init` and `run`, and settles.
    pub async fn start(setup: Setup) -> Result<Self, TestError> {
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
        let me = stand_in::StandIn::new(TEST_SENDER, &router, None);
        let stand_ins = stand_ins
            .into_iter()
            .map(|(name, answer)| (name.clone(), stand_in::StandIn::new(&name, &router, answer)))
            .collect();

        // The block's queue, sockets and server side, as the supervisor makes them.
        let hooks = component.hooks;
        let (queue_tx, queue_rx) = if hooks.enqueue || hooks.net || hooks.reply || hooks.stream {
            let limits = BagLimits { max_bytes: spec.limits.max_bag_bytes, max_depth: spec.limits.max_bag_depth };
            let (tx, rx) = BlockQueue::new(spec.limits.queue, spec.limits.queue_bytes, status.clone(), limits);
            (Some(tx), Some(rx))
        } else {
            (None, None)
        };
        let net = match &queue_tx {
            Some(tx) if hooks.net => {
                Some(NetHub::bind(&spec, tx.clone(), status.clone()).await.map_err(TestError::Setup)?)
            }
            _ => None,
        };
        let inbox = queue_tx.clone().filter(|_| hooks.reply || hooks.stream);
        let streams = queue_tx.clone().filter(|_| hooks.stream);
        let bag_queue = queue_tx.filter(|_| hooks.enqueue);
        let server = match server {
            true => Some(server::Server::start(&spec, bag_queue.clone(), &status, &links.settings).await?),
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
        bench.command(|reply| Command::Init { reply }).await.map_err(TestError::Start)?;
        bench.command(|reply| Command::Run { reply }).await.map_err(TestError::Start)?;
        bench.settle().await;
        Ok(bench)
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
        loop {
            if let Ok(result) = answer.try_recv() {
                return result;
            }
            if !self.stepping.step().await {
                self.note_end();
                if self.stepping.outcome().is_some() {
                    return answer.try_recv().unwrap_or(Err(CallError::Gone));
                }
                tokio::task::yield_now().await;
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
    /// left to do; then waits for what it sent to leave the host.
    pub async fn settle(&mut self) {
        loop {
            let mut busy = false;
            while self.stepping.step().await {
                busy = true;
            }
            self.note_end();
            while let Ok(Event::RestartAll { .. }) = self.events.try_recv() {
                busy = true;
                // The supervisor's part of `restart = "all"`, for a host of one block.
                let restarted = async {
                    self.command(|reply| Command::Reset { reply }).await?;
                    self.command(|reply| Command::Init { reply }).await?;
                    self.command(|reply| Command::Run { reply }).await
                };
                if let Err(e) = restarted.await {
                    tracing::warn!("restarting the block failed: {e}");
                }
            }
            while let Ok(crate::routing::controller::Request::Finish { responsibility, .. }) = self.requests.try_recv()
            {
                self.finish_requests.push(responsibility);
            }
            for stand_in in self.stand_ins.values_mut() {
                busy |= stand_in.serve(&self.links.calls).await;
            }
            busy |= self.me.serve(&self.links.calls).await;
            self.sockets_flushed().await;
            if let Some(server) = &self.server {
                server.flushed().await;
            }
            // Whatever the host's own tasks (socket readers, subscriptions) had ready gets a turn.
            tokio::task::yield_now().await;
            if !busy && !self.stepping_ready().await {
                return;
            }
        }
    }

    /// Takes one step if one is ready; whether it did.
    async fn stepping_ready(&mut self) -> bool {
        let stepped = self.stepping.step().await;
        self.note_end();
        stepped
    }

    /// Sends `bag` to the block, as a block called `test` would, and settles.
    pub async fn enqueue(&mut self, bag: &Value) -> Result<(), TestError> {
        self.enqueue_text(&bag.to_string()).await
    }

    /// Sends the JSON text `bag` to the block (which may be anything: the queue checks it), and
    /// settles.
    pub async fn enqueue_text(&mut self, bag: &str) -> Result<(), TestError> {
        let queue = self.bag_queue()?;
        self.seq += 1;
        let stamped = queue.stamp(bag, TEST_SENDER, self.seq).map_err(|r| TestError::Refused(r.to_string()))?;
        queue.try_push(Envelope::Bag(stamped)).map_err(|(r, _)| self.refusal(r))?;
        self.settle().await;
        Ok(())
    }

    /// Calls the block with `bag` (its `__reply` set), settles, and gives the call's outcome.
    pub async fn call(&mut self, bag: &Value) -> Result<Result<Value, CallFailure>, TestError> {
        let queue = self.bag_queue()?;
        let calls = self.links.calls.clone();
        let slot = self.me.queue().reserve().map_err(|r| TestError::Misuse(format!("the test's queue: {r}")))?;
        let id = calls
            .open(slot, TEST_SENDER, &self.spec.responsibility)
            .ok_or_else(|| TestError::Misuse("the call could not be opened".to_owned()))?;
        self.seq += 1;
        let stamped = match queue.stamp(&bag.to_string(), TEST_SENDER, self.seq) {
            Ok(stamped) => stamped,
            Err(r) => {
                calls.cancel(id);
                return Err(TestError::Refused(r.to_string()));
            }
        };
        let request = Envelope::Call {
            bag: bag::with_reply(&stamped, &calls.handle(id)),
            call: CallToken::new(calls.clone(), id),
        };
        if let Err((r, request)) = queue.offer(request) {
            calls.cancel(id);
            drop(request);
            return Err(self.refusal(r));
        }
        self.settle().await;
        match self.me.outcome(id) {
            Some(Ok(answer)) => Ok(Ok(serde_json::from_str(&answer).unwrap_or(Value::String(answer)))),
            Some(Err(failure)) => Ok(Err(failure)),
            None => {
                calls.cancel(id);
                Err(TestError::Misuse("the block has not answered the call (nor ended it) after settling".to_owned()))
            }
        }
    }

    fn bag_queue(&self) -> Result<BlockQueue, TestError> {
        self.queue.clone().ok_or_else(|| {
            TestError::Misuse("the block takes no bags (it does not export enqueue-hook: list `on_enqueue`)".to_owned())
        })
    }

    fn refusal(&self, r: Refusal) -> TestError {
        match (&self.ended, r) {
            (Some(how), Refusal::Closed) => TestError::Ended(how.clone()),
            (_, r) => TestError::Refused(r.to_string()),
        }
    }

    /// Moves the virtual clock `by` forward (timers it passes fire) and settles.
    pub async fn advance(&mut self, by: Duration) {
        self.clock.advance(by);
        self.settle().await;
    }

    /// The timers the block has pending, soonest first, with when each is due (from the start).
    pub fn timers(&self) -> Vec<PendingTimer> {
        self.clock.pending()
    }

    /// How far the virtual clock has moved.
    pub fn now(&self) -> Duration {
        self.clock.now()
    }

    /// Takes the bags that reached stand-in `target` since the last call.
    pub fn sent_to(&mut self, target: &str) -> Result<Vec<Arrived>, TestError> {
        match self.stand_ins.get_mut(target) {
            Some(stand_in) => Ok(stand_in.take()),
            None => Err(TestError::Misuse(format!("there is no stand-in `{target}`"))),
        }
    }

    /// Takes the bags that reached any stand-in, by stand-in.
    pub fn sent(&mut self) -> BTreeMap<String, Vec<Arrived>> {
        self.stand_ins.iter_mut().map(|(name, s)| (name.clone(), s.take())).filter(|(_, v)| !v.is_empty()).collect()
    }

    /// Makes stand-in `target` refuse every bag (`queue-full`) until [`Bench::reopen`].
    pub fn fill(&mut self, target: &str) -> Result<(), TestError> {
        self.stand_in(target)?.fill();
        Ok(())
    }

    /// Lets stand-in `target` take bags again.
    pub fn reopen(&mut self, target: &str) -> Result<(), TestError> {
        self.stand_in(target)?.open();
        Ok(())
    }

    fn stand_in(&mut self, target: &str) -> Result<&mut stand_in::StandIn, TestError> {
        self.stand_ins.get_mut(target).ok_or_else(|| TestError::Misuse(format!("there is no stand-in `{target}`")))
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
    /// to finish itself).
    pub fn finish_requests(&self) -> &[String] {
        &self.finish_requests
    }

    /// The block's counters and state now.
    pub fn stats(&self) -> StatsSnapshot {
        self.status.snapshot(self.queue.as_ref().map_or(0, BlockQueue::depth))
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
        self.settle().await;
        Ok(())
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
        if let Some(server) = &self.server {
            server.flushed().await;
        }
        let published = self.server.as_ref().map(|s| s.take_published()).unwrap_or_default();
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
        while self.stepping.outcome().is_none() {
            if !self.stepping.step().await {
                tokio::task::yield_now().await;
            }
        }
        self.shut_down().await;
    }

    async fn shut_down(&mut self) {
        self.sockets = sockets::Sockets::default();
        if let Some(server) = self.server.take() {
            server.close().await;
        }
    }
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
    /// The bags that reached each stand-in.
    pub sent: BTreeMap<String, Vec<Arrived>>,
    /// What it published (confirmed by the server).
    pub published: Vec<Published>,
}

impl std::fmt::Debug for Bench {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bench").field("block", &self.spec.responsibility).field("ended", &self.ended).finish()
    }
}
