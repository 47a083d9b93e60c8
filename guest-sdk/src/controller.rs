//! [`Controller`]: what the host offers a block.

use std::sync::OnceLock;
use std::time::Duration;

use crate::bag::Bag;
use crate::bindings::block::bagpipe::block::controller as host;
use crate::bindings::block::bagpipe::block::net;
use crate::bindings::block::bagpipe::block::server;
use crate::bindings::block::bagpipe::block::streams;
use crate::bindings::block::bagpipe::block::topics;

/// Why a stream call failed: `NotOpen(id)`, `NotSender(id)` (only the opener sends),
/// `InvalidBag`, `TooLarge(limit)`, `Busy` (the receiver's window stayed full: send again later).
pub use crate::bindings::block::bagpipe::block::streams::StreamError;

/// Why a stream ended, as its other side is told: `Ended(reason)`, `Refused(why)`,
/// `Faulted(why)`, `Finished`.
pub use crate::bindings::block::bagpipe::block::types::StreamEnd;

/// A stream's id, as [`Controller::open_stream`] returns it and the stream hooks are given it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StreamId(pub u64);

/// Why a topic call failed: `NotGranted`, `InvalidTopic`, `InvalidBag`, `TooLarge(limit)`,
/// `Busy` (a subscriber that is not lossy had no room: nobody was sent the bag) or
/// `Unavailable`.
pub use crate::bindings::block::bagpipe::block::topics::TopicError;

pub use crate::bindings::block::bagpipe::block::server::ServerError;

/// An open connection of the block: its id, the listener it came in on (`None` for one the block
/// opened), and the peer.
pub use crate::bindings::block::bagpipe::block::net::ConnectionInfo;
pub use crate::bindings::block::bagpipe::block::net::NetError;

/// A TCP connection the host holds for the block.
pub type Connection = u64;

pub use crate::bindings::block::bagpipe::block::types::{BlockInfo, BlockState, EnqueueError, Level, ServerInfo};

/// How a call ([`Controller::call`]) ended without an answer: `Timeout`, `Faulted(why)` (the
/// target trapped or panicked handling it), `Refused(why)` (its `on_enqueue` returned an error),
/// `NoReply` (it returned without answering) or `Unavailable(why)` (it stopped first, or the
/// answer could not reach this block).
pub use crate::bindings::block::bagpipe::block::types::CallError;

/// The id of a call, as [`Controller::call`] returned it and [`Block::on_reply`](crate::Block::on_reply)
/// is given it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CallId(pub u64);

/// Why [`Controller::reply`] did not deliver an answer.
#[derive(Clone, Debug)]
pub enum ReplyError {
    /// The request came from the message server, and publishing the answer failed.
    Server(ServerError),
    /// The request came from a block's call, and the answer did not reach it (the call ended
    /// already, or the caller would not take the answer).
    Call(EnqueueError),
}

impl std::fmt::Display for ReplyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ReplyError::Server(e) => write!(f, "{e}"),
            ReplyError::Call(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for ReplyError {}

/// Where the host's call handles start (a bag's `__reply` that names a call between blocks,
/// not a server subject).
const CALL_HANDLE_PREFIX: &str = "_CALL.";

/// What [`Controller::enqueue_many`] did: how many bags, from the first, `to` took (`taken`),
/// whether they were queued (`queued`: `false` when `to` does not receive bags), and why the bag
/// after them was not taken (`error`; `None` when all were).
pub use crate::bindings::block::bagpipe::block::controller::Sent;

/// The responsibility of the host's built-in initiator; finishing it shuts the host down.
pub const INITIATOR: &str = "initiator";

/// The id of a pending timer, as returned by [`Controller::set_timer`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TimerId(pub u64);

/// A handle on the host, passed to every hook of a [`Block`](crate::Block).
///
/// Every method is a call into the host; none of them blocks for long: `enqueue` waits at most the
/// host's enqueue timeout when the target's queue is full.
#[derive(Clone, Copy, Debug)]
pub struct Controller {
    _private: (),
}

impl Controller {
    pub(crate) const fn new() -> Self {
        Self { _private: () }
    }

    /// This block's name: its component.
    pub fn name(&self) -> String {
        // An instance never changes its name or responsibility (a swap starts a new instance,
        // with fresh statics), so each is asked of the host once.
        static NAME: OnceLock<String> = OnceLock::new();
        NAME.get_or_init(host::name).clone()
    }

    /// This block's responsibility: the running instance bags are addressed to.
    pub fn responsibility(&self) -> String {
        static RESPONSIBILITY: OnceLock<String> = OnceLock::new();
        RESPONSIBILITY.get_or_init(host::responsibility).clone()
    }

    /// Sends `bag` to the block with responsibility `to`.
    ///
    /// `Ok(true)`: queued for a block that receives bags. `Ok(false)`: `to` exists but does not
    /// receive bags, nothing was sent. Bags from one sender to one receiver arrive in order.
    pub fn enqueue(&self, to: &str, bag: &Bag) -> Result<bool, EnqueueError> {
        host::enqueue(to, &bag.to_json())
    }

    /// Sends JSON text as a bag, as it is; the host checks it (it must be a JSON object).
    pub fn enqueue_json(&self, to: &str, json: &str) -> Result<bool, EnqueueError> {
        host::enqueue(to, json)
    }

    /// Sends `bags` to the block with responsibility `to`, in order, in one call into the host:
    /// what [`enqueue`](Self::enqueue) would do for each, stopping at the first one not taken
    /// (none after it is sent, so sending the rest again keeps the order). To a block on another
    /// host of the cluster the list travels in one round trip, not one per bag.
    ///
    /// ```no_run
    /// # use bagpipe_guest::{Bag, Controller};
    /// # fn f(ctl: &Controller, bags: Vec<Bag>) {
    /// let mut rest = &bags[..];
    /// while !rest.is_empty() {
    ///     let sent = ctl.enqueue_many("sink", rest);
    ///     rest = &rest[sent.taken as usize..];
    ///     if let Some(e) = sent.error {
    ///         ctl.warn(&format!("{} bags not sent: {e}", rest.len()));
    ///         break;
    ///     }
    /// }
    /// # }
    /// ```
    pub fn enqueue_many(&self, to: &str, bags: &[Bag]) -> Sent {
        let texts: Vec<String> = bags.iter().map(Bag::to_json).collect();
        host::enqueue_many(to, &texts)
    }

    /// Sends JSON texts as bags, as they are, like [`enqueue_many`](Self::enqueue_many).
    pub fn enqueue_many_json(&self, to: &str, bags: &[String]) -> Sent {
        host::enqueue_many(to, bags)
    }

    /// Describes the block with responsibility `responsibility`, if there is one.
    pub fn lookup(&self, responsibility: &str) -> Option<BlockInfo> {
        host::lookup(responsibility)
    }

    /// Describes every block, the host's built-in ones included, in start order.
    pub fn list(&self) -> Vec<BlockInfo> {
        host::list_blocks()
    }

    /// Asks the host to finish the block `responsibility` after the current call returns (this
    /// block too). Finishing [`INITIATOR`] shuts the host down.
    pub fn finish(&self, responsibility: &str) -> Result<(), String> {
        host::finish(responsibility)
    }

    /// Asks the host to shut down gracefully: every block is finished in reverse start order.
    pub fn shutdown(&self) {
        // The initiator always exists, so this cannot fail.
        let _ = host::finish(INITIATOR);
    }

    /// Writes a line to the host's log, tagged with this block's responsibility.
    pub fn log(&self, level: Level, message: &str) {
        host::log(level, message)
    }

    /// Logs at `debug` level.
    pub fn debug(&self, message: &str) {
        self.log(Level::Debug, message)
    }

    /// Logs at `info` level.
    pub fn info(&self, message: &str) {
        self.log(Level::Info, message)
    }

    /// Logs at `warn` level.
    pub fn warn(&self, message: &str) {
        self.log(Level::Warn, message)
    }

    /// Logs at `error` level.
    pub fn error(&self, message: &str) {
        self.log(Level::Error, message)
    }

    /// Has the host call `on_timer(tag)` once after `delay`. The block must list `on_timer` in
    /// [`export_block!`](crate::export_block).
    pub fn set_timer(&self, delay: Duration, tag: &str) -> Result<TimerId, String> {
        let ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX);
        host::set_timer(ms, tag).map(TimerId)
    }

    /// Cancels a pending timer; returns whether it was still pending.
    pub fn cancel_timer(&self, id: TimerId) -> bool {
        host::cancel_timer(id.0)
    }

    /// Sends bytes on a connection, in order after what was sent before.
    pub fn send(&self, conn: Connection, data: &[u8]) -> Result<(), NetError> {
        net::send(conn, data)
    }

    /// Closes a connection (after what was sent on it); `on_close` follows.
    pub fn close(&self, conn: Connection) -> Result<(), NetError> {
        net::close(conn)
    }

    /// Sends a datagram from one of the block's UDP listeners (as [`Controller::listeners`]
    /// shows it) to `peer` (`ip:port`).
    pub fn send_datagram(&self, listener: &str, peer: &str, data: &[u8]) -> Result<(), NetError> {
        net::send_datagram(listener, peer, data)
    }

    /// Opens a TCP connection to `address` (`host:port`), which the manifest must grant with
    /// `connect`. What the peer sends arrives through `on_data`.
    pub fn connect(&self, address: &str) -> Result<Connection, NetError> {
        net::connect(address)
    }

    /// The block's listeners as bound (`tcp://127.0.0.1:40123` for a `tcp://127.0.0.1:0` grant).
    pub fn listeners(&self) -> Vec<String> {
        net::listeners()
    }

    /// The open connections this block has been told of (by `on_accept`, or by opening them),
    /// oldest first. Connections outlive a restart of the block: a fresh instance calls this
    /// from `run` to pick up the clients its previous instance had.
    pub fn connections(&self) -> Vec<ConnectionInfo> {
        net::connections()
    }

    /// Publishes `bag` to a message server subject the manifest grants (`publish = [..]`). It goes
    /// into the block's outbox and this returns at once; the host sends it, in order, and keeps
    /// it until the server confirmed it, also across outages. [`ServerError::Busy`]: the outbox
    /// is full (nothing was taken; keep the bag and try again later, e.g. from a timer).
    pub fn publish(&self, subject: &str, bag: &Bag) -> Result<(), ServerError> {
        server::publish(subject, &bag.to_json())
    }

    /// Subscribes to a subject the manifest grants (`subscribe = [..]`); its messages arrive
    /// through `on_enqueue` with [`Bag::subject`] (and [`Bag::reply`]) set. The subscription
    /// belongs to the block: it outlives swaps and restarts.
    pub fn subscribe(&self, subject: &str) -> Result<(), ServerError> {
        server::subscribe(subject)
    }

    /// Ends a subscription; returns whether there was one.
    pub fn unsubscribe(&self, subject: &str) -> bool {
        server::unsubscribe(subject)
    }

    /// Sends `bag` to `subject` and waits up to `timeout` for one reply.
    pub fn request(&self, subject: &str, bag: &Bag, timeout: Duration) -> Result<Bag, ServerError> {
        let ms = u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX);
        let reply = server::request(subject, &bag.to_json(), ms)?;
        Bag::from_json(&reply).map_err(|e| ServerError::Io(e.to_string()))
    }

    /// Asks the block with responsibility `to` something: sends it `bag` as a request and
    /// returns at once, without waiting for the answer. The target sees an ordinary bag (through
    /// `on_enqueue`) and answers with [`reply`](Self::reply); this block then hears how the call
    /// ended through [`Block::on_reply`](crate::Block::on_reply) (list `on_reply`): the answer,
    /// or why there is none ([`CallError`]: a timeout after `timeout`; the target faulted,
    /// refused, returned without answering, or stopped). Exactly once for every call that
    /// returned `Ok`, also across swaps and restarts of either side. Because it never waits,
    /// two blocks that call each other cannot deadlock.
    ///
    /// Errs at once (and no `on_reply` follows) when the request was not sent: no such block,
    /// its queue is full (`QueueFull`: it is busy, try later), a bad bag, or `Unavailable`.
    ///
    /// ```no_run
    /// # use bagpipe_guest::{Bag, Block, CallError, CallId, Config, Controller};
    /// # use std::time::Duration;
    /// # struct Asker;
    /// # impl Block for Asker {
    /// # fn init(_: &Controller, _: Config) -> Result<Self, String> { Ok(Asker) }
    /// fn run(&mut self, ctl: &Controller) {
    ///     let question = Bag::new().with("user", 42);
    ///     if let Err(e) = ctl.call("users", &question, Duration::from_secs(1)) {
    ///         ctl.warn(&format!("could not ask: {e}"));
    ///     }
    /// }
    ///
    /// fn on_reply(&mut self, ctl: &Controller, _call: CallId, outcome: Result<Bag, CallError>) {
    ///     match outcome {
    ///         Ok(answer) => ctl.info(&format!("answer: {answer}")),
    ///         Err(why) => ctl.warn(&format!("no answer: {why:?}")),
    ///     }
    /// }
    /// # }
    /// ```
    pub fn call(&self, to: &str, bag: &Bag, timeout: Duration) -> Result<CallId, EnqueueError> {
        let ms = u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX);
        host::call(to, &bag.to_json(), ms).map(CallId)
    }

    /// Opens a stream to the block with responsibility `to` (which lists `streams`): an ordered,
    /// flow-controlled sequence of bags this block sends with [`send_stream`](Self::send_stream)
    /// and `to` receives through `on_stream_data`. Never waits (a full target is `QueueFull`).
    /// How it ends (ended by `to`, refused, `to` faulted or finished) comes through
    /// `on_stream_end` (list `streams`). It survives swaps of either side.
    pub fn open_stream(&self, to: &str, bag: &Bag) -> Result<StreamId, EnqueueError> {
        streams::open(to, &bag.to_json()).map(StreamId)
    }

    /// Sends `bag` on a stream this block opened, in order. At most 64 bags may be on their way
    /// and not yet handled: past that this waits up to the host's enqueue timeout, then `Busy`.
    pub fn send_stream(&self, stream: StreamId, bag: &Bag) -> Result<(), StreamError> {
        streams::send(stream.0, &bag.to_json())
    }

    /// Ends a stream of this block (either side may); the other side hears
    /// `StreamEnd::Ended(reason)` after every bag sent before. Returns whether it was open.
    pub fn end_stream(&self, stream: StreamId, reason: &str) -> bool {
        streams::end(stream.0, reason)
    }

    /// Emits `bag` on `topic` (granted by the manifest's `emit`): every block subscribed to a
    /// pattern that covers it gets a copy, with [`Bag::topic`] set, in emit order. Returns how
    /// many got one. A full subscriber that is not lossy makes this wait up to the host's
    /// enqueue timeout, then `Busy` (then nobody was sent it: emit it again later); a lossy one
    /// just misses it.
    pub fn emit(&self, topic: &str, bag: &Bag) -> Result<u32, TopicError> {
        topics::emit(topic, &bag.to_json())
    }

    /// Subscribes this block to `pattern` (NATS wildcards; within the manifest's
    /// `subscribe_topics`): the bags emitted on matching topics arrive through `on_enqueue`.
    /// `lossy`: when this block's queue is full, a bag is dropped (counted) instead of making
    /// the emitter wait. The subscription is the block's: it outlives swaps and restarts.
    pub fn subscribe_topic(&self, pattern: &str, lossy: bool) -> Result<(), TopicError> {
        topics::subscribe(pattern, lossy)
    }

    /// Ends the subscription to `pattern`; returns whether there was one.
    pub fn unsubscribe_topic(&self, pattern: &str) -> bool {
        topics::unsubscribe(pattern)
    }

    /// Answers a bag that came with `__reply`: a request from another block's
    /// [`call`](Self::call) (answer it while handling it: once `on_enqueue` returned, the call
    /// has ended), or a server message that wants a reply (published to its reply subject; no
    /// grant needed). Returns `Ok(false)` when the bag wants no reply.
    pub fn reply(&self, to: &Bag, bag: &Bag) -> Result<bool, ReplyError> {
        match to.reply() {
            Some(handle) if handle.starts_with(CALL_HANDLE_PREFIX) => {
                host::reply(handle, &bag.to_json()).map(|()| true).map_err(ReplyError::Call)
            }
            Some(subject) => server::publish(subject, &bag.to_json()).map(|()| true).map_err(ReplyError::Server),
            None => Ok(false),
        }
    }

    /// Whether the host is connected to its message server now.
    pub fn server_connected(&self) -> bool {
        server::connected()
    }
}
