//! The `controller` import: what a block can ask of the host (send bags, look blocks up, finish
//! a block, log, set timers), and [`ControllerCtx`], the part of a block's store it works on.
//!
//! Sending bags (`enqueue`, `enqueue-many`) is in [`send`]; calls (`call`, `reply`) in [`call`].
//!
//! Invariant: nothing a guest passes here can panic the host or make it wait without bound. An
//! `enqueue` to a full queue waits at most the enqueue timeout (and not at all for the caller's
//! own queue, which cannot drain while the caller is inside a call, nor again in a call whose
//! earlier wait ran out).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::sync::mpsc::error::TrySendError;
use tokio_util::sync::CancellationToken;

use crate::bindings::bagpipe::block::{controller, types};
use crate::bindings::{BlockInfo, EnqueueError, Level};
use crate::defaults::{BUILTIN_RESPONSIBILITIES, LOG_MESSAGE_BYTES, Limits, Settings};
use crate::manifest::TopicGrants;
use crate::routing::bag::BagLimits;
use crate::routing::calls::Calls;
use crate::routing::deadletter::DeadLetters;
use crate::routing::queue::{BlockQueue, Refusal};
use crate::routing::router::{Route, RouteCache, Router};
use crate::runtime::clock::CallClock;
use crate::runtime::guest_stdout::GuestStdout;
use crate::runtime::hooks::Hooks;
use crate::runtime::log_rate::LogRate;
use crate::runtime::timers::Timers;
use crate::stats::{BlockStatus, Counters};

/// A request from a block to the supervisor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// Finish the block `responsibility`.
    Finish {
        /// What to finish.
        responsibility: String,
        /// Who asked.
        by: String,
    },
}

/// How a list of bags sent through the cluster went: how many were taken (from the first), and
/// `Ok(queued)` when all were, or why the first one not taken was not.
pub type ManyTaken = (u32, Result<bool, EnqueueError>);

/// Where bags go that this host does not take itself: the hosts of its cluster.
pub trait Cluster: Send + Sync {
    /// Sends a stamped bag to `responsibility` elsewhere in the cluster; the answer is what
    /// `enqueue` said on the host that took it.
    fn enqueue<'a>(
        &'a self,
        responsibility: &'a str,
        stamped: String,
        timeout: Duration,
    ) -> Pin<Box<dyn Future<Output = Result<bool, EnqueueError>> + Send + 'a>>;

    /// Sends a request (a stamped bag with `__reply`) of call `handle` to `responsibility`
    /// elsewhere in the cluster; the answer is what `enqueue` on the host that took it said.
    /// The call's outcome comes back later, to `handle`.
    fn call<'a>(
        &'a self,
        responsibility: &'a str,
        request: String,
        handle: &'a str,
        timeout: Duration,
    ) -> Pin<Box<dyn Future<Output = Result<bool, EnqueueError>> + Send + 'a>>;

    /// Sends stamped bags to `responsibility` elsewhere in the cluster, in order, in as few
    /// round trips as the server allows.
    fn enqueue_many<'a>(
        &'a self,
        responsibility: &'a str,
        stamped: Vec<String>,
        timeout: Duration,
    ) -> Pin<Box<dyn Future<Output = ManyTaken> + Send + 'a>>;
}

mod call;
mod send;
mod streams;
mod topics;

/// What every block's controller links to: the rest of the host.
#[derive(Clone)]
pub struct Links {
    /// Cancelled when a block finishes `initiator` (or `finisher`): the host shuts down. A token,
    /// not a request, so that the request can never be lost.
    pub shutdown: CancellationToken,
    /// Where bags go.
    pub router: Arc<Router>,
    /// Requests to the supervisor.
    pub requests: mpsc::Sender<Request>,
    /// Host-wide settings.
    pub settings: Arc<Settings>,
    /// Where bags that cannot be processed end up.
    pub dead_letters: Arc<DeadLetters>,
    /// The cluster, when the host is in one.
    pub cluster: Option<Arc<dyn Cluster>>,
    /// Where blocks' stdout goes.
    pub stdout: GuestStdout,
    /// The calls between blocks that wait for their outcome.
    pub calls: Arc<Calls>,
    /// Who is subscribed to which topics.
    pub topics: Arc<crate::routing::topics::Topics>,
    /// The topics bridged to the server.
    pub bridge: Arc<crate::routing::topics::Bridge>,
    /// The open streams between blocks.
    pub streams: Arc<crate::routing::streams::Streams>,
    /// Where blocks' timers wait: the runtime's clock (`None`), or a virtual one (the test kit's).
    pub clock: Option<Arc<crate::runtime::virtual_time::VirtualClock>>,
    /// Who watches blocks' log lines and faults, if anyone (the test kit).
    pub tap: Option<Arc<dyn crate::stats::Tap>>,
}

impl Links {
    /// Links to nothing: for checking a component, which calls no export (only start functions
    /// run, and find nothing to reach).
    pub fn detached() -> Self {
        let (requests, _) = mpsc::channel(1);
        Self {
            shutdown: CancellationToken::new(),
            router: Arc::new(Router::new()),
            requests,
            settings: Arc::new(Settings::default()),
            dead_letters: Arc::new(DeadLetters::new(None)),
            cluster: None,
            stdout: GuestStdout::discard(),
            calls: Calls::new("detached"),
            topics: Arc::default(),
            bridge: Arc::default(),
            streams: Arc::default(),
            clock: None,
            tap: None,
        }
    }
}

/// The controller's part of a block's store.
pub struct ControllerCtx {
    /// Who this block is; its state and counters.
    pub me: Arc<BlockStatus>,
    links: Links,
    /// Whether it exports `timer-hook` (a timer of a block without it could never fire).
    takes_timers: bool,
    /// Whether it exports `reply-hook` (the outcome of a call of a block without it could
    /// never be told).
    takes_replies: bool,
    /// Whether it exports `stream-hook` (a stream's opener hears its end through it).
    takes_streams: bool,
    /// Its own queue, where the outcomes of its calls and the ends of its streams go; `None`
    /// for a block without one.
    inbox: Option<BlockQueue>,
    /// Its pending timers (polled by its task).
    pub timers: Timers,
    /// What the bags it sends must keep to when no queue's limits apply (remote targets,
    /// blocks that take no bags).
    limits: BagLimits,
    /// The other blocks it may finish (`control`; `"*"`: any).
    control: Vec<String>,
    /// What it may emit and subscribe to at run time.
    topic_grants: TopicGrants,
    /// How many topic subscriptions it may hold at run time (`max_subscriptions`; its server
    /// subscriptions count separately, against the same number).
    max_subscriptions: usize,
    /// Its outbox to the server, for what it emits on bridged topics.
    topic_outbox: Option<Arc<dyn crate::routing::topics::TopicOutbox>>,
    /// How many log lines it may write (set by `logging_within`; `None` only before it is).
    log_rate: Option<Arc<LogRate>>,
    clock: Arc<CallClock>,
    /// The routes it sent to lately (`enqueue`, `enqueue-many`).
    routes: RouteCache,
}

impl ControllerCtx {
    /// The controller of a new instance of the block `me`.
    pub fn new(me: Arc<BlockStatus>, links: Links, hooks: Hooks, limits: &Limits, clock: Arc<CallClock>) -> Self {
        Self {
            timers: Timers::new(limits.max_timers, links.clock.as_ref()),
            me,
            links,
            takes_timers: hooks.timer,
            takes_replies: hooks.reply,
            takes_streams: hooks.stream,
            inbox: None,
            limits: BagLimits { max_bytes: limits.max_bag_bytes, max_depth: limits.max_bag_depth },
            control: Vec::new(),
            topic_grants: TopicGrants::default(),
            max_subscriptions: limits.max_subscriptions,
            topic_outbox: None,
            log_rate: None,
            clock,
            routes: RouteCache::default(),
        }
    }

    /// This controller, writing log lines within `rate`.
    pub fn logging_within(mut self, rate: Arc<LogRate>) -> Self {
        self.log_rate = Some(rate);
        self
    }

    /// This controller, emitting on bridged topics into `outbox` too.
    pub fn bridging_into(mut self, outbox: Option<Arc<dyn crate::routing::topics::TopicOutbox>>) -> Self {
        self.topic_outbox = outbox;
        self
    }

    /// This controller, with the block's own queue for the outcomes of its calls.
    pub fn answered_into(mut self, inbox: Option<BlockQueue>) -> Self {
        self.inbox = inbox;
        self
    }

    /// This controller, allowed to finish the blocks `control` names (`"*"`: any), and to emit
    /// and subscribe to the topics `topics` grants.
    pub fn granting(mut self, control: &[String], topics: &TopicGrants) -> Self {
        self.control = control.to_vec();
        self.topic_grants = topics.clone();
        self
    }

    /// Whether the block may finish `responsibility`: itself, or one its `control` grant names.
    fn may_finish(&self, responsibility: &str) -> bool {
        responsibility == self.me.responsibility || self.control.iter().any(|c| c == "*" || c == responsibility)
    }
}

impl types::Host for ControllerCtx {}

impl controller::Host for ControllerCtx {
    fn name(&mut self) -> String {
        self.me.name.clone()
    }

    fn responsibility(&mut self) -> String {
        self.me.responsibility.clone()
    }

    async fn enqueue(&mut self, target: String, bag: String) -> Result<bool, EnqueueError> {
        self.send_one(&target, bag).await
    }

    async fn enqueue_many(&mut self, target: String, bags: Vec<String>) -> controller::Sent {
        self.send_many(&target, bags).await
    }

    async fn call(&mut self, target: String, bag: String, timeout_ms: u64) -> Result<u64, EnqueueError> {
        self.call_one(&target, bag, timeout_ms).await
    }

    async fn reply(&mut self, handle: String, bag: String) -> Result<(), EnqueueError> {
        self.answer(&handle, bag).await
    }

    fn lookup(&mut self, responsibility: String) -> Option<BlockInfo> {
        self.links.router.resolve(&responsibility).map(|r| info(&r))
    }

    fn list_blocks(&mut self) -> Vec<BlockInfo> {
        self.links.router.routes().iter().map(|r| info(r)).collect()
    }

    fn finish(&mut self, responsibility: String) -> Result<(), String> {
        if BUILTIN_RESPONSIBILITIES.contains(&responsibility.as_str()) {
            tracing::info!("asked the host to shut down (finished `{responsibility}`)");
            self.links.shutdown.cancel();
            return Ok(());
        }
        if self.links.router.resolve(&responsibility).is_none() {
            return Err(format!("no block has responsibility `{responsibility}`"));
        }
        if !self.may_finish(&responsibility) {
            let why = format!(
                "finishing `{responsibility}` is not granted to this block; grant it with control = [\"{responsibility}\"]"
            );
            tracing::warn!(event = "not_granted", target = %responsibility, "refused: {why}");
            return Err(why);
        }
        let request = Request::Finish { responsibility, by: self.me.responsibility.clone() };
        match self.links.requests.try_send(request) {
            Ok(()) => Ok(()),
            Err(TrySendError::Full(_)) => {
                Err("the host is busy finishing other blocks; nothing was done, try again later".to_owned())
            }
            Err(TrySendError::Closed(_)) => Err("the host is shutting down".to_owned()),
        }
    }

    fn log(&mut self, level: Level, message: String) {
        if self.log_rate.as_ref().is_some_and(|rate| !rate.admit()) {
            return;
        }
        let mut message = message;
        if message.len() > LOG_MESSAGE_BYTES {
            let mut cut = LOG_MESSAGE_BYTES;
            while !message.is_char_boundary(cut) {
                cut -= 1;
            }
            message.truncate(cut);
            message.push_str(" [cut]");
        }
        if let Some(tap) = &self.links.tap {
            tap.log(&self.me.responsibility, level, &message);
        }
        match level {
            Level::Trace => tracing::trace!(target: "bagpipe::guest", "{message}"),
            Level::Debug => tracing::debug!(target: "bagpipe::guest", "{message}"),
            Level::Info => tracing::info!(target: "bagpipe::guest", "{message}"),
            Level::Warn => tracing::warn!(target: "bagpipe::guest", "{message}"),
            Level::Error => tracing::error!(target: "bagpipe::guest", "{message}"),
        }
    }

    fn set_timer(&mut self, delay_ms: u64, tag: String) -> Result<u64, String> {
        if !self.takes_timers {
            return Err("this block does not export timer-hook, so a timer could never fire".to_owned());
        }
        self.timers.set(Duration::from_millis(delay_ms), tag).map_err(|(over_budget, why)| {
            if over_budget {
                Counters::bump(&self.me.counters.budget_refusals);
            }
            why
        })
    }

    fn cancel_timer(&mut self, id: u64) -> bool {
        self.timers.cancel(id)
    }
}

/// What a block learns of the block `route` leads to: its status, and how much waits in its
/// queue now.
fn info(route: &Route) -> BlockInfo {
    let mut info = route.status.info();
    info.queued = route.queue_depth();
    info
}

/// What a sender is told when its bag was not queued.
pub fn refusal(target: &str, refusal: Refusal) -> EnqueueError {
    match refusal {
        Refusal::Full => EnqueueError::QueueFull,
        Refusal::TooLarge { limit } => EnqueueError::TooLarge(limit as u64),
        Refusal::Invalid(why) => EnqueueError::InvalidBag(why),
        Refusal::Closed => EnqueueError::Unavailable(format!("`{target}` has stopped taking bags")),
    }
}

/// What a sender is told when no block has responsibility `target`.
fn unknown(target: &str) -> EnqueueError {
    EnqueueError::UnknownTarget(format!("no block has responsibility `{target}`"))
}
