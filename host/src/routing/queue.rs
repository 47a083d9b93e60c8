//! A block's queue: the one way into it ([`BlockQueue`]), and the places reserved in it
//! ([`ReplySlot`], [`Reservation`]). What travels in it is [`Envelope`]
//! ([`crate::routing::envelope`]).
//!
//! Everything a block is given goes through its one bounded queue, in the order it arrived:
//! bags from other blocks (the controller's `enqueue`), dead letters, bags from other hosts and
//! from the server, and the events of the block's sockets.
//!
//! A queue is bounded twice: by count (`queue`) and by the bytes it holds (`queue_bytes`), so
//! what waits for a block never passes its budget, whatever the size of what it is sent.
//!
//! Architecture invariant: [`BlockQueue`] is the only sender into a block's queue, and the only
//! place that counts what was queued (`received`), what was refused and why (`refused_full`,
//! `refused_too_large`, `refused_invalid`, `udp_dropped`) and the high-water mark. What a queue
//! holds never passes either bound: every envelope carries the permit for its bytes until the
//! task takes it out (the outcome of a call and the end of a stream hold no bytes and a bounded
//! text, and go into a place reserved for them ahead, within the count). No I/O: a durable bag carries a [`Receipt`], and the server side that took
//! it from its stream acknowledges it once the receipt is settled (done, or dead: then only once
//! the cluster's dead-letter stream stored it).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::mpsc::error::{TryRecvError, TrySendError};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, TryAcquireError, mpsc};

use crate::routing::bag::{self, BagError, BagLimits};
pub use crate::routing::envelope::{Envelope, Receipt, Settled};
use crate::stats::{BlockStatus, Counters, WorkerStatus};

/// Why something was not queued.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// The queue stayed full.
    #[error("the queue is full")]
    Full,
    /// The bag is larger than the block accepts.
    #[error("the bag is larger than the limit of {limit} bytes")]
    TooLarge {
        /// The block's limit, in bytes.
        limit: usize,
    },
    /// The bag is not a bag the block accepts (not one JSON object, too deep, host keys).
    #[error("{0}")]
    Invalid(String),
    /// The block takes nothing any more (its task ended).
    #[error("the block has stopped taking bags")]
    Closed,
}

impl From<BagError> for Refusal {
    fn from(e: BagError) -> Self {
        match e {
            BagError::TooLarge { limit, .. } => Refusal::TooLarge { limit },
            other => Refusal::Invalid(other.to_string()),
        }
    }
}

/// An envelope in the queue, with the permit for its bytes.
struct Queued {
    envelope: Envelope,
    _bytes: Option<OwnedSemaphorePermit>,
}

/// A place reserved in a block's queue for the outcome of a call the block made, or for the
/// end of one of its streams: what goes there is never refused for want of room. Dropped
/// unfilled, the place is free again, unless it was given an envelope to leave there then
/// ([`ReplySlot::leaving`]: a call's outcome is never lost, even when the one filling it is
/// stopped halfway).
pub struct ReplySlot {
    permit: Option<mpsc::OwnedPermit<Queued>>,
    queue: BlockQueue,
    /// Left in the place if it is dropped unfilled.
    orphan: Option<Envelope>,
}

impl ReplySlot {
    /// The queue the place is in.
    pub fn queue(&self) -> &BlockQueue {
        &self.queue
    }

    /// This place, leaving `envelope` (which holds no bytes) in it if dropped unfilled.
    pub fn leaving(mut self, envelope: Envelope) -> Self {
        self.orphan = Some(envelope);
        self
    }

    /// Frees the place without filling it.
    pub fn free(mut self) {
        self.orphan = None;
    }

    /// Puts `envelope` into the place without taking bytes for it: for a failed call's outcome
    /// or a stream's end, which hold none ([`Envelope::bytes`]).
    pub fn fill(mut self, envelope: Envelope) {
        self.orphan = None;
        self.send(envelope, None);
    }

    fn send(&mut self, envelope: Envelope, bytes: Option<OwnedSemaphorePermit>) {
        debug_assert!(bytes.is_some() || envelope.bytes() == 0, "only an envelope without bytes goes in unbudgeted");
        let Some(permit) = self.permit.take() else { return };
        if matches!(envelope, Envelope::Reply { outcome: Err(_), .. }) {
            Counters::bump(&self.queue.status.counters.calls_failed);
        }
        permit.send(Queued { envelope, _bytes: bytes });
        self.queue.accepted();
    }

    /// Puts `envelope` into the place once the queue has room for its bytes, waiting up to
    /// `timeout`; hands the place back when the bytes did not come (or can never fit).
    pub async fn fill_within(mut self, envelope: Envelope, timeout: Duration) -> Result<(), (Refusal, ReplySlot)> {
        let n = match self.queue.permits(&envelope) {
            Ok(n) => n,
            Err(refusal) => return Err((refusal, self)),
        };
        let bytes = self.queue.bytes.clone();
        let permit = match tokio::time::timeout(timeout, bytes.acquire_many_owned(n)).await {
            Ok(Ok(permit)) => permit,
            Ok(Err(_)) => return Err((Refusal::Closed, self)),
            Err(_) => return Err((Refusal::Full, self)),
        };
        self.orphan = None;
        self.send(envelope, Some(permit));
        Ok(())
    }
}

impl Drop for ReplySlot {
    fn drop(&mut self) {
        if let Some(envelope) = self.orphan.take() {
            self.send(envelope, None);
        }
    }
}

/// A place and the bytes for one envelope, reserved in a queue: sending into it cannot be
/// refused. Dropped unused, both are free again.
pub struct Reservation {
    permit: mpsc::OwnedPermit<Queued>,
    bytes: Option<OwnedSemaphorePermit>,
    reserved: usize,
    queue: BlockQueue,
}

impl Reservation {
    /// Puts `envelope` (of the size reserved) into the place.
    pub fn send(self, envelope: Envelope) {
        debug_assert_eq!(envelope.bytes(), self.reserved, "an envelope of the size reserved");
        self.permit.send(Queued { envelope, _bytes: self.bytes });
        self.queue.accepted();
    }
}

/// The sending side of one block's queue, the only way into it. Cheap to clone.
#[derive(Clone)]
pub struct BlockQueue {
    tx: mpsc::Sender<Queued>,
    /// Permits for the bytes the queue may hold (`queue_bytes`).
    bytes: Arc<Semaphore>,
    max_bytes: usize,
    status: Arc<BlockStatus>,
    /// What bags must keep to, shared by every clone: a manifest edit changes it for all paths
    /// in (other blocks, the server, the cluster) at once.
    limits: Arc<SharedLimits>,
    /// A worker's queue, fed by its group from the block's queue, which counted what it took.
    relay: bool,
}

/// Bag limits every clone of a queue sees, changed in place.
#[derive(Debug)]
struct SharedLimits {
    max_bytes: AtomicUsize,
    max_depth: AtomicUsize,
}

impl std::fmt::Debug for BlockQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlockQueue").field("block", &self.status.responsibility).finish_non_exhaustive()
    }
}

/// The receiving side of a block's queue: the block's task. Taking an envelope out frees its
/// bytes.
pub struct QueueReceiver {
    rx: mpsc::Receiver<Queued>,
    /// Closed with the queue, so that a sender waiting for bytes is refused at once too.
    bytes: Arc<Semaphore>,
    /// Whose queue it is, to count what is left in it if it is dropped unsettled.
    status: Arc<BlockStatus>,
    /// A worker's queue counts what its worker took out.
    worker: Option<Arc<WorkerStatus>>,
}

/// A block task settles its queue when it ends (dead letters or lost, logged); a receiver dropped
/// with bags still in it (a task that ended abnormally) counts them as lost, so no bag leaves
/// the counts silently.
impl Drop for QueueReceiver {
    fn drop(&mut self) {
        self.close();
        let mut left = 0u64;
        while let Ok(queued) = self.rx.try_recv() {
            if queued.envelope.is_bag() {
                left += 1;
            }
        }
        if left > 0 {
            self.status.counters.lost.fetch_add(left, Ordering::Relaxed);
            tracing::error!(event = "lost", bags = left, "{left} queued bags were dropped with the block's queue");
        }
    }
}

impl QueueReceiver {
    /// The next envelope; `None` once the queue is closed and empty.
    pub async fn recv(&mut self) -> Option<Envelope> {
        let envelope = self.rx.recv().await.map(|q| q.envelope);
        self.took(envelope.as_ref());
        envelope
    }

    /// The next envelope if one is waiting.
    pub fn try_recv(&mut self) -> Result<Envelope, TryRecvError> {
        let envelope = self.rx.try_recv().map(|q| q.envelope);
        self.took(envelope.as_ref().ok());
        envelope
    }

    /// A worker's progress counts what its group handed it ([`Envelope::counts_for_worker`]).
    fn took(&self, took: Option<&Envelope>) {
        if let (Some(worker), Some(env)) = (&self.worker, took) {
            if env.counts_for_worker() {
                worker.taken.fetch_add(1, Ordering::AcqRel);
            } else {
                worker.took_uncounted();
            }
        }
    }

    /// Refuses everything from now on (senders waiting for room included); what is queued can
    /// still be taken out.
    pub fn close(&mut self) {
        self.rx.close();
        self.bytes.close();
    }
}

impl BlockQueue {
    /// A queue of at most `capacity` envelopes and `max_bytes` bytes for the block `status`, whose
    /// bags keep to `limits`; the receiver is the block task's.
    pub fn new(
        capacity: usize,
        max_bytes: usize,
        status: Arc<BlockStatus>,
        limits: BagLimits,
    ) -> (Self, QueueReceiver) {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        let max_bytes = max_bytes.clamp(1, Semaphore::MAX_PERMITS);
        let bytes = Arc::new(Semaphore::new(max_bytes));
        let limits = Arc::new(SharedLimits {
            max_bytes: AtomicUsize::new(limits.max_bytes),
            max_depth: AtomicUsize::new(limits.max_depth),
        });
        let receiver = QueueReceiver { rx, bytes: bytes.clone(), status: status.clone(), worker: None };
        (Self { tx, bytes, max_bytes, status, limits, relay: false }, receiver)
    }

    /// The queue of one worker of the group whose queue is `group`: the same bag limits (shared)
    /// and budget; what the group hands it was counted on the way into the block's queue, and
    /// what the worker takes out counts as `worker`'s.
    pub fn for_worker(group: &BlockQueue, capacity: usize, worker: Arc<WorkerStatus>) -> (Self, QueueReceiver) {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        let bytes = Arc::new(Semaphore::new(group.max_bytes));
        let status = group.status.clone();
        let receiver = QueueReceiver { rx, bytes: bytes.clone(), status: status.clone(), worker: Some(worker) };
        let queue = Self { tx, bytes, max_bytes: group.max_bytes, status, limits: group.limits.clone(), relay: true };
        (queue, receiver)
    }

    /// What bags for this block must keep to.
    pub fn limits(&self) -> BagLimits {
        BagLimits {
            max_bytes: self.limits.max_bytes.load(Ordering::Relaxed),
            max_depth: self.limits.max_depth.load(Ordering::Relaxed),
        }
    }

    /// From now on, bags for this block must keep to `limits` (whichever way they come); the size
    /// limit is capped by what the queue's bytes hold.
    pub fn set_limits(&self, limits: BagLimits) {
        // What the queue's bytes cannot hold (with the host's keys) is never a bag for it.
        let max_bytes = limits.max_bytes.min(self.max_bytes.saturating_sub(crate::defaults::STAMP_BYTES));
        self.limits.max_bytes.store(max_bytes, Ordering::Relaxed);
        self.limits.max_depth.store(limits.max_depth, Ordering::Relaxed);
    }

    /// Whose queue it is.
    pub fn status_arc(&self) -> Arc<BlockStatus> {
        self.status.clone()
    }

    /// The most bytes the queue holds; nothing larger can ever be queued.
    pub fn max_bytes(&self) -> usize {
        self.max_bytes
    }

    /// Places free now.
    pub fn free(&self) -> usize {
        self.tx.capacity()
    }

    /// Envelopes waiting now.
    pub fn depth(&self) -> u64 {
        (self.tx.max_capacity() - self.tx.capacity()) as u64
    }

    /// How many envelopes the queue holds at most.
    pub fn capacity(&self) -> usize {
        self.tx.max_capacity()
    }

    /// Checks a block's bag against this block's limits and stamps the host's keys on it (a
    /// refusal is counted).
    pub fn stamp(&self, bag: &str, from: &str, seq: u64) -> Result<String, Refusal> {
        bag::stamp(bag, from, seq, self.limits()).map_err(|e| self.refused(e.into(), false))
    }

    /// Checks a bag stamped elsewhere (by another host, or from a server message) against this
    /// block's limits (a refusal is counted).
    pub fn check(&self, bag: &str) -> Result<(), Refusal> {
        bag::check_inbound(bag, self.limits()).map_err(|e| self.refused(e.into(), false))
    }

    /// Counts a bag refused before it was checked (e.g. one too large to read).
    pub fn refuse(&self, refusal: Refusal) -> Refusal {
        self.refused(refusal, false)
    }

    /// Reserves a place for the outcome of a call the block makes; refused when the queue is
    /// full (or closed). Not counted as a refusal: nothing was sent.
    pub fn reserve(&self) -> Result<ReplySlot, Refusal> {
        match self.tx.clone().try_reserve_owned() {
            Ok(permit) => Ok(ReplySlot { permit: Some(permit), queue: self.clone(), orphan: None }),
            Err(TrySendError::Full(_)) => Err(Refusal::Full),
            Err(TrySendError::Closed(_)) => Err(Refusal::Closed),
        }
    }

    /// Reserves room for one envelope of `bytes` bytes, waiting up to `timeout` for it (with
    /// zero, only if there is room now). A refusal is counted.
    pub async fn reserve_within(&self, bytes: usize, timeout: Duration) -> Result<Reservation, Refusal> {
        if bytes > self.max_bytes {
            return Err(self.refused(Refusal::TooLarge { limit: self.max_bytes }, false));
        }
        let n = u32::try_from(bytes).map_err(|_| self.refused(Refusal::TooLarge { limit: self.max_bytes }, false))?;
        let wait = async {
            let bytes = match n {
                0 => None,
                n => Some(self.bytes.clone().acquire_many_owned(n).await.map_err(|_| Refusal::Closed)?),
            };
            let permit = self.tx.clone().reserve_owned().await.map_err(|_| Refusal::Closed)?;
            Ok((permit, bytes))
        };
        match tokio::time::timeout(timeout, wait).await {
            Ok(Ok((permit, held))) => Ok(Reservation { permit, bytes: held, reserved: bytes, queue: self.clone() }),
            Ok(Err(refusal)) => Err(self.refused(refusal, false)),
            Err(_) => Err(self.refused(Refusal::Full, false)),
        }
    }

    /// Queues a copy of a topic's bag for a lossy subscription if there is room now; a full
    /// queue drops it, counted as `topic_dropped`. Returns whether it was queued.
    pub fn offer_lossy(&self, envelope: Envelope) -> bool {
        match self.offer(envelope) {
            Ok(()) => true,
            Err((Refusal::Full, _)) => {
                Counters::bump(&self.status.counters.topic_dropped);
                false
            }
            Err((refusal, _)) => {
                self.refused(refusal, false);
                false
            }
        }
    }

    /// Queues `envelope` if there is room now; a full queue refuses it (counted) and hands it back.
    pub fn try_push(&self, envelope: Envelope) -> Result<(), (Refusal, Envelope)> {
        self.offer(envelope).map_err(|(refusal, envelope)| {
            let datagram = matches!(envelope, Envelope::Datagram { .. });
            (self.refused(refusal, datagram), envelope)
        })
    }

    /// Queues `envelope` if there is room now. A refusal is handed back uncounted (a full queue:
    /// the caller then waits for room with [`BlockQueue::push_within`]); the caller counts it with
    /// [`BlockQueue::refuse`] when it gives up.
    pub fn offer(&self, envelope: Envelope) -> Result<(), (Refusal, Envelope)> {
        let permit = match self.permits(&envelope) {
            Err(too_large) => return Err((too_large, envelope)),
            Ok(0) => None,
            Ok(n) => match self.bytes.clone().try_acquire_many_owned(n) {
                Ok(permit) => Some(permit),
                Err(TryAcquireError::NoPermits) => return Err((Refusal::Full, envelope)),
                Err(TryAcquireError::Closed) => return Err((Refusal::Closed, envelope)),
            },
        };
        match self.tx.try_send(Queued { envelope, _bytes: permit }) {
            Ok(()) => {
                self.accepted();
                Ok(())
            }
            Err(TrySendError::Full(q)) => Err((Refusal::Full, q.envelope)),
            Err(TrySendError::Closed(q)) => Err((Refusal::Closed, q.envelope)),
        }
    }

    /// Queues `envelope`, waiting up to `timeout` for room.
    pub async fn push_within(&self, envelope: Envelope, timeout: Duration) -> Result<(), Refusal> {
        match tokio::time::timeout(timeout, self.push_waiting(envelope)).await {
            Ok(Ok(())) => {
                self.accepted();
                Ok(())
            }
            Ok(Err(refusal)) => Err(self.refused(refusal, false)),
            Err(_) => Err(self.refused(Refusal::Full, false)),
        }
    }

    /// Queues `envelope`, waiting as long as the queue is full (flow control: the caller stops
    /// reading its source meanwhile). Fails only when the block takes nothing any more, or when
    /// the envelope is larger than the whole queue may hold.
    pub async fn push(&self, envelope: Envelope) -> Result<(), Refusal> {
        match self.push_waiting(envelope).await {
            Ok(()) => {
                self.accepted();
                Ok(())
            }
            Err(refusal) => Err(self.refused(refusal, false)),
        }
    }

    /// Waits for room for `envelope`'s bytes, then for a place in the queue.
    async fn push_waiting(&self, envelope: Envelope) -> Result<(), Refusal> {
        let permit = match self.permits(&envelope)? {
            0 => None,
            n => Some(self.bytes.clone().acquire_many_owned(n).await.map_err(|_| Refusal::Closed)?),
        };
        self.tx.send(Queued { envelope, _bytes: permit }).await.map_err(|_| Refusal::Closed)
    }

    /// The permits `envelope` needs; more than the queue may ever hold is too large.
    fn permits(&self, envelope: &Envelope) -> Result<u32, Refusal> {
        let bytes = envelope.bytes();
        if bytes > self.max_bytes {
            return Err(Refusal::TooLarge { limit: self.max_bytes });
        }
        u32::try_from(bytes).map_err(|_| Refusal::TooLarge { limit: self.max_bytes })
    }

    fn accepted(&self) {
        if self.relay {
            return;
        }
        let counters = &self.status.counters;
        Counters::bump(&counters.received);
        // Read first: a new high is rare, and a read leaves the line shared.
        let depth = self.depth();
        if depth > counters.queue_high_water.load(Ordering::Relaxed) {
            counters.queue_high_water.fetch_max(depth, Ordering::Relaxed);
        }
    }

    /// Counts `refusal` (a full queue drops a datagram: counted as such, nobody was told).
    fn refused(&self, refusal: Refusal, datagram: bool) -> Refusal {
        let counters = &self.status.counters;
        match &refusal {
            Refusal::Full if datagram => Counters::bump(&counters.udp_dropped),
            Refusal::Full => Counters::bump(&counters.refused_full),
            Refusal::TooLarge { .. } => Counters::bump(&counters.refused_too_large),
            Refusal::Invalid(_) => Counters::bump(&counters.refused_invalid),
            Refusal::Closed => {}
        }
        refusal
    }
}

#[cfg(test)]
#[path = "queue_tests.rs"]
mod tests;
