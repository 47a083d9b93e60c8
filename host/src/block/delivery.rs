//! The `delivery` capability: a block that exports `batch-hook` takes what is queued for it in
//! one call, item by item, through `next`.
//!
//! The block's task opens a [`Batch`] (the first item and the block's queue) before it calls
//! `on-batch` and closes it after, whatever the call's outcome. Each `next` settles the item the
//! block took before (done, refused, counted) and hands out the next one, until the batch is as
//! large as one batch may be (`BATCH_ITEMS`, `BATCH_BYTES`), a lifecycle command waits or the queue is empty.
//!
//! Each item handed out starts the call's clock again: it has the call timeout and the wait
//! allowance a call of its own would have.
//!
//! Invariants: exactly one item is "current" (taken, not settled) at a time, and it is the one a
//! fault hit: the task gets it back from [`DeliveryCtx::close`] and delivers it again or
//! dead-letters it; items before it were settled once, items after it are still in the queue.
//! A batch always takes at least one item, however large; an item that would take a batch past
//! its byte bound waits for the next one, alone. A refused durable bag ends the batch
//! (it is delivered again before anything queued after it). While the block's outbox is over half
//! full, no further item is handed out. The queue always goes back to the task.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::bindings::bagpipe::block::delivery::{
    self, Accepted, Answer, Datagram, Item, Received, StreamBag, StreamEnded, StreamOpened,
};
use crate::defaults::{BATCH_BYTES, BATCH_ITEMS};
use crate::io::net::NetHub;
use crate::io::server::BlockServer;
use crate::routing::queue::{Envelope, QueueReceiver};
use crate::runtime::clock::CallClock;
use crate::stats::{BlockStatus, Counters};

/// A block's `delivery` context: the batch being delivered, if any.
pub struct DeliveryCtx {
    status: Arc<BlockStatus>,
    /// The call's clock: it starts again for each item.
    clock: Arc<CallClock>,
    net: Option<Arc<NetHub>>,
    server: Option<Arc<BlockServer>>,
    batch: Option<Batch>,
}

/// Whether a lifecycle command waits for the block's task: it ends a batch early.
pub type CommandWaiting = Arc<dyn Fn() -> bool + Send + Sync>;

/// One call's worth of the queue.
struct Batch {
    first: Option<Envelope>,
    queue: QueueReceiver,
    command_waiting: CommandWaiting,
    taken: usize,
    bytes: usize,
    /// The item handed out and not settled yet, with when it was handed out.
    current: Option<(Envelope, Instant)>,
    /// A durable bag the block refused: the task delivers it again or dead-letters it.
    refused: Option<(Envelope, String)>,
    /// Whether some item was processed (or refused) without a fault.
    went_well: bool,
}

/// What a batch hands back to the task when the call is over.
pub struct BatchEnd {
    /// The block's queue, with the items the batch did not take.
    pub queue: QueueReceiver,
    /// The item the block had taken and not reported: the one a fault hit.
    pub current: Option<Envelope>,
    /// An item taken from the queue and not handed out: the first one, when the block never
    /// took it, or one that would have taken the batch past its byte bound. It was not
    /// delivered; it is next in line.
    pub untaken: Option<Envelope>,
    /// A durable bag the block refused, with why.
    pub refused: Option<(Envelope, String)>,
    /// Whether some item went well.
    pub went_well: bool,
}

impl DeliveryCtx {
    /// The context of an instance of the block `status` describes, with its sockets and server
    /// side, timed by the store's call `clock`.
    pub fn new(
        status: Arc<BlockStatus>,
        clock: Arc<CallClock>,
        net: Option<Arc<NetHub>>,
        server: Option<Arc<BlockServer>>,
    ) -> Self {
        Self { status, clock, net, server, batch: None }
    }

    /// Opens a batch: `first` (already taken from the queue) and what `queue` holds, until
    /// `command_waiting` says the task has a lifecycle command to obey.
    pub fn open(&mut self, first: Envelope, queue: QueueReceiver, command_waiting: CommandWaiting) {
        self.batch = Some(Batch {
            first: Some(first),
            queue,
            command_waiting,
            taken: 0,
            bytes: 0,
            current: None,
            refused: None,
            went_well: false,
        });
    }

    /// Closes the batch after the call. `completed`: the call returned, so an item the block took
    /// and did not report went well. `None` when no batch was open.
    pub fn close(&mut self, completed: bool) -> Option<BatchEnd> {
        let mut batch = self.batch.take()?;
        if completed && let Some((env, started)) = batch.current.take() {
            settle(&self.status, &mut batch, env, started.elapsed(), Ok(()));
        }
        let Batch { first, queue, current, refused, went_well, .. } = batch;
        Some(BatchEnd { queue, current: current.map(|(env, _)| env), untaken: first, refused, went_well })
    }

    /// Takes the queue back without settling anything: the host failed in the middle of a batch.
    pub fn abandon(&mut self) -> Option<QueueReceiver> {
        self.batch.take().map(|b| b.queue)
    }
}

/// Settles the item the block had taken: done (processed or refused), or, a durable bag the
/// block refused, kept for the task (which ends the batch).
fn settle(status: &BlockStatus, batch: &mut Batch, env: Envelope, took: Duration, outcome: Result<(), String>) {
    status.processing.record(took);
    match outcome {
        Ok(()) => {
            env.done();
            Counters::bump(&status.counters.processed);
        }
        Err(why) if matches!(env, Envelope::Durable { .. }) => {
            // Never acknowledged and forgotten on a refusal: delivered again (up to
            // `max_attempts` in all), then a dead letter.
            Counters::bump(&status.counters.failed);
            tracing::warn!("on-enqueue refused a durable bag: {why}");
            batch.refused = Some((env, why));
        }
        Err(why) => {
            env.refused(&why);
            Counters::bump(&status.counters.failed);
            tracing::warn!("on-enqueue refused a bag: {why}");
        }
    }
    batch.went_well = true;
}

/// Whether the batch may hand out one more item.
fn more(server: Option<&BlockServer>, batch: &Batch) -> bool {
    if batch.refused.is_some() {
        return false;
    }
    if batch.taken == 0 {
        return true;
    }
    let room = server.is_none_or(|s| s.outbox().has_room());
    room && batch.taken < BATCH_ITEMS && batch.bytes < BATCH_BYTES && !(batch.command_waiting)()
}

impl delivery::Host for DeliveryCtx {
    fn next(&mut self, previous: Option<Result<(), String>>) -> Option<Item> {
        // The batch stays in the context throughout: a host panic here leaves the queue where
        // the task finds it (`abandon`).
        let batch = self.batch.as_mut()?;
        // One reading of the clock per item: it ends the last item's time and starts this one's.
        let now = Instant::now();
        if let Some((env, started)) = batch.current.take() {
            // A block that takes the next item without a word about the last one is done with it.
            settle(&self.status, batch, env, now.saturating_duration_since(started), previous.unwrap_or(Ok(())));
        }
        if !more(self.server.as_deref(), batch) {
            return None;
        }
        let env = loop {
            let env = match batch.first.take() {
                Some(first) => first,
                None => {
                    let env = batch.queue.try_recv().ok()?;
                    if batch.bytes + env.bytes() > BATCH_BYTES {
                        // Past the bound with what the batch holds: it goes alone, first in line
                        // after this batch (`BatchEnd::untaken`).
                        batch.first = Some(env);
                        return None;
                    }
                    env
                }
            };
            // A bag of a stream that has ended since is not handed out.
            if !env.stale() {
                break env;
            }
        };
        #[cfg(debug_assertions)]
        test_panic(&self.status.responsibility, &env);
        batch.taken += 1;
        batch.bytes += env.bytes();
        if let (Envelope::Accept { conn, .. }, Some(hub)) = (&env, &self.net) {
            hub.told(*conn);
        }
        let item = item_of(&env);
        batch.current = Some((env, now));
        // Each item is timed as a call of its own would be: the whole call timeout for its guest
        // time, and waits of its own (an earlier item's wait that ran out does not stop this
        // one's sends from waiting).
        self.clock.start_at(now);
        Some(item)
    }
}

/// The WIT form of an envelope.
fn item_of(env: &Envelope) -> Item {
    match env {
        Envelope::Bag(bag) | Envelope::Durable { bag, .. } | Envelope::Call { bag, .. } => Item::Bag(bag.clone()),
        Envelope::Reply { call, outcome } => Item::Reply(Answer { call: *call, outcome: outcome.clone() }),
        Envelope::StreamOpen { stream, from, bag, .. } => {
            Item::StreamOpen(StreamOpened { id: *stream, from: from.clone(), bag: bag.clone() })
        }
        Envelope::StreamData { stream, bag, .. } => Item::StreamData(StreamBag { id: *stream, bag: bag.clone() }),
        Envelope::StreamEnd { stream, end } => Item::StreamEnd(StreamEnded { id: *stream, end: end.clone() }),
        Envelope::Accept { conn, listener, peer } => {
            Item::Accept(Accepted { conn: *conn, listener: listener.clone(), peer: peer.clone() })
        }
        Envelope::Data { conn, data } => Item::Data(Received { conn: *conn, data: data.clone() }),
        Envelope::Closed { conn } => Item::Closed(*conn),
        Envelope::Datagram { listener, peer, data } => {
            Item::Datagram(Datagram { listener: listener.clone(), peer: peer.clone(), data: data.clone() })
        }
    }
}

/// Fault injection for the tests of a host panic while a bag is delivered, in debug builds only:
/// with `BAGPIPE_TEST_PANIC_ON_BAG=<responsibility>` set, that block's task panics when it is
/// about to deliver a bag containing `"panic_the_host_task"`. A release build has no such hook.
#[cfg(debug_assertions)]
pub(crate) fn test_panic(responsibility: &str, env: &Envelope) {
    if let Envelope::Bag(bag) | Envelope::Durable { bag, .. } = env
        && bag.contains("panic_the_host_task")
        && std::env::var("BAGPIPE_TEST_PANIC_ON_BAG").is_ok_and(|r| r == responsibility)
    {
        panic!("injected by BAGPIPE_TEST_PANIC_ON_BAG for `{responsibility}`");
    }
}

#[cfg(test)]
#[path = "delivery_tests.rs"]
mod tests;
