//! Streams between blocks: the table of open streams ([`Streams`]). The `streams` import is the
//! controller's (`controller/streams.rs`).
//!
//! A stream goes from its opener to its target. Opening reserves, in each side's queue, the
//! place for the end that side may be told ([`ReplySlot`]), so an end is never refused for room;
//! each bag sent holds a permit of the stream's window until the target has handled it, so a
//! sender can be at most a window ahead.
//!
//! Invariants: a stream ends once; its end is told to the other side only (the side that ended
//! it, or faulted, or finished, knows). When the opener's side ends it, the target gets every
//! bag sent before, then the end (the end goes into the same queue, after them); when the
//! target's side ends it, what is still queued of it is not delivered (`Wanted`). A stream belongs to its two blocks, not to their instances: only
//! a fault or the end of a block's task ends its streams, never a swap. The lock is never held
//! across a wait.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::Semaphore;

use crate::bindings::StreamEnd;
use crate::defaults::{MAX_OPEN_STREAMS, STREAM_WINDOW};
use crate::routing::queue::{BlockQueue, Envelope, ReplySlot};

/// Every open stream of this host.
#[derive(Default)]
pub struct Streams {
    next: AtomicU64,
    table: Mutex<HashMap<u64, Stream>>,
}

struct Stream {
    opener: String,
    target: String,
    target_queue: BlockQueue,
    window: Arc<Semaphore>,
    /// Whether its target still wants its bags: false once the target's side ended it.
    wanted: Wanted,
    /// Where the opener hears the end, and where the target does.
    opener_end: ReplySlot,
    target_end: ReplySlot,
}

/// What sending on a stream needs: where its bags go and its window.
pub struct Sending {
    /// The target's queue.
    pub queue: BlockQueue,
    /// The stream's window.
    pub window: Arc<Semaphore>,
    /// Whether the target still wants the stream's bags.
    pub wanted: Wanted,
}

/// Why a stream was not opened.
#[derive(Debug, PartialEq, Eq)]
pub enum NotOpened {
    /// The opener has this many streams open, as many as it may.
    TooMany(usize),
    /// The opener's own queue has no room for the place the end needs (or is closed).
    OwnQueue,
    /// The target's queue has no room for it (or is closed).
    TargetQueue,
}

/// Why a block may not send on a stream.
#[derive(Debug, PartialEq, Eq)]
pub enum NotSending {
    /// No such open stream of this block.
    NotOpen,
    /// The block is its target, not its opener.
    NotSender,
}

impl Streams {
    fn lock(&self) -> MutexGuard<'_, HashMap<u64, Stream>> {
        self.table.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Opens a stream from `opener` to `target`, reserving a place for the end in each queue;
    /// the open itself is the caller's to queue (and to [`Streams::cancel`] if it cannot).
    pub fn open(
        &self,
        opener: &str,
        opener_queue: &BlockQueue,
        target: &str,
        target_queue: &BlockQueue,
    ) -> Result<u64, NotOpened> {
        let open = self.lock().values().filter(|s| s.opener == opener).count();
        if open >= MAX_OPEN_STREAMS {
            return Err(NotOpened::TooMany(open));
        }
        let opener_end = opener_queue.reserve().map_err(|_| NotOpened::OwnQueue)?;
        let target_end = target_queue.reserve().map_err(|_| NotOpened::TargetQueue)?;
        let id = self.next.fetch_add(1, Ordering::Relaxed) + 1;
        let stream = Stream {
            opener: opener.to_owned(),
            target: target.to_owned(),
            target_queue: target_queue.clone(),
            window: Arc::new(Semaphore::new(STREAM_WINDOW)),
            wanted: Wanted(Arc::new(AtomicBool::new(true))),
            opener_end,
            target_end,
        };
        self.lock().insert(id, stream);
        Ok(id)
    }

    /// Forgets stream `id` without telling anyone: its open was never queued.
    pub fn cancel(&self, id: u64) {
        self.lock().remove(&id);
    }

    /// Whether stream `id` is open.
    pub fn is_open(&self, id: u64) -> bool {
        self.lock().contains_key(&id)
    }

    /// Where `block` sends the bags of stream `id`, if it is its opener.
    pub fn sending(&self, id: u64, block: &str) -> Result<Sending, NotSending> {
        let table = self.lock();
        let stream = table.get(&id).ok_or(NotSending::NotOpen)?;
        if stream.opener != block {
            return Err(if stream.target == block { NotSending::NotSender } else { NotSending::NotOpen });
        }
        Ok(Sending { queue: stream.target_queue.clone(), window: stream.window.clone(), wanted: stream.wanted.clone() })
    }

    /// Ends stream `id`, which `by` (one of its sides) ends: the other side is told `end`.
    /// Returns whether it was open and `by`'s.
    pub fn end(&self, id: u64, by: &str, end: StreamEnd) -> bool {
        let stream = {
            let mut table = self.lock();
            match table.get(&id) {
                Some(s) if s.opener == by || s.target == by => table.remove(&id),
                _ => None,
            }
        };
        let Some(stream) = stream else { return false };
        // Ended by its target's side, what is still queued of it is not delivered; ended by its
        // opener's side, what it sent before is, then the end.
        if stream.target == by {
            stream.wanted.0.store(false, Ordering::Relaxed);
        }
        let end = match end {
            StreamEnd::Ended(why) => StreamEnd::Ended(crate::defaults::detail(&why)),
            StreamEnd::Refused(why) => StreamEnd::Refused(crate::defaults::detail(&why)),
            StreamEnd::Faulted(why) => StreamEnd::Faulted(crate::defaults::detail(&why)),
            StreamEnd::Finished => StreamEnd::Finished,
        };
        let (other, own) = if stream.opener == by {
            (stream.target_end, stream.opener_end)
        } else {
            (stream.opener_end, stream.target_end)
        };
        own.free();
        other.fill(Envelope::StreamEnd { stream: id, end });
        true
    }

    /// The target of stream `id` refused it: its opener is told.
    pub fn refuse(&self, id: u64, why: &str) {
        let target = self.lock().get(&id).map(|s| s.target.clone());
        if let Some(target) = target {
            self.end(id, &target, StreamEnd::Refused(why.to_owned()));
        }
    }

    /// Ends every stream `block` is a side of (it faulted, or its task ended): each other side
    /// is told `end`.
    pub fn end_block(&self, block: &str, end: &StreamEnd) {
        let ids: Vec<u64> =
            self.lock().iter().filter(|(_, s)| s.opener == block || s.target == block).map(|(id, _)| *id).collect();
        for id in ids {
            self.end(id, block, end.clone());
        }
    }
}

/// A handle on the stream table an envelope of a stream carries: to tell whether its stream is
/// still open, and to refuse an open.
#[derive(Clone)]
pub struct StreamsRef(pub Arc<Streams>);

impl std::fmt::Debug for StreamsRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StreamsRef")
    }
}

impl PartialEq for StreamsRef {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for StreamsRef {}

/// Whether a stream's target still wants its bags, shared by every bag of it.
#[derive(Clone)]
pub struct Wanted(pub Arc<AtomicBool>);

impl Wanted {
    /// Whether the target still wants the bag.
    pub fn get(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

impl std::fmt::Debug for Wanted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Wanted({})", self.get())
    }
}

impl PartialEq for Wanted {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for Wanted {}

/// The window permit a bag of a stream holds until its target has handled it.
#[derive(Clone)]
pub struct WindowPermit(pub Arc<tokio::sync::OwnedSemaphorePermit>);

impl std::fmt::Debug for WindowPermit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WindowPermit")
    }
}

impl PartialEq for WindowPermit {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for WindowPermit {}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::routing::bag::BagLimits;
    use crate::routing::queue::QueueReceiver;
    use crate::stats::BlockStatus;

    fn queue(name: &str, capacity: usize) -> (BlockQueue, QueueReceiver) {
        let status = Arc::new(BlockStatus::new(name, name, true));
        BlockQueue::new(capacity, 1 << 20, status, BagLimits { max_bytes: 1 << 16, max_depth: 8 })
    }

    fn ended(rx: &mut QueueReceiver) -> Option<(u64, StreamEnd)> {
        match rx.try_recv() {
            Ok(Envelope::StreamEnd { stream, end }) => Some((stream, end)),
            _ => None,
        }
    }

    #[test]
    fn only_the_other_side_hears_the_end_once() {
        let streams = Streams::default();
        let ((a, mut a_rx), (b, mut b_rx)) = (queue("a", 4), queue("b", 4));
        let id = streams.open("a", &a, "b", &b).unwrap();
        assert!(streams.sending(id, "a").is_ok());
        assert_eq!(streams.sending(id, "b").err(), Some(NotSending::NotSender));
        assert_eq!(streams.sending(id, "c").err(), Some(NotSending::NotOpen));
        assert!(!streams.end(id, "c", StreamEnd::Finished), "not a side");
        assert!(streams.end(id, "b", StreamEnd::Ended("enough".into())));
        assert!(!streams.end(id, "a", StreamEnd::Finished), "ended once");
        assert_eq!(ended(&mut a_rx), Some((id, StreamEnd::Ended("enough".into()))));
        assert_eq!(ended(&mut b_rx), None, "the side that ended it is not told");
        assert!(!streams.is_open(id));
    }

    #[test]
    fn a_block_that_goes_ends_its_streams_both_ways() {
        let streams = Streams::default();
        let ((a, mut a_rx), (b, mut b_rx), (c, _c_rx)) = (queue("a", 4), queue("b", 4), queue("c", 4));
        let out = streams.open("b", &b, "a", &a).unwrap();
        let into = streams.open("a", &a, "b", &b).unwrap();
        let other = streams.open("c", &c, "a", &a).unwrap();
        streams.end_block("b", &StreamEnd::Faulted("trap".into()));
        let mut told: Vec<u64> = std::iter::from_fn(|| ended(&mut a_rx).map(|(id, _)| id)).collect();
        told.sort_unstable();
        assert_eq!(told, [out, into]);
        assert_eq!(ended(&mut b_rx), None);
        assert!(streams.is_open(other));
    }

    #[test]
    fn an_opener_has_at_most_so_many_streams_open() {
        let streams = Streams::default();
        let ((a, _a_rx), (b, _b_rx)) = (queue("a", 1024), queue("b", 1024));
        let ids: Vec<u64> = (0..MAX_OPEN_STREAMS).map(|_| streams.open("a", &a, "b", &b).unwrap()).collect();
        assert_eq!(streams.open("a", &a, "b", &b), Err(NotOpened::TooMany(MAX_OPEN_STREAMS)));
        assert!(streams.open("b", &b, "a", &a).is_ok(), "the limit is the opener's");
        assert!(streams.end(ids[0], "a", StreamEnd::Finished));
        assert!(streams.open("a", &a, "b", &b).is_ok(), "one ended, one more may open");
    }

    #[test]
    fn opening_needs_room_for_both_ends() {
        let streams = Streams::default();
        let ((a, _a_rx), (b, _b_rx)) = (queue("a", 1), queue("b", 1));
        let id = streams.open("a", &a, "b", &b).unwrap();
        assert_eq!(streams.open("a", &a, "b", &b), Err(NotOpened::OwnQueue), "each queue holds one place, taken");
        streams.cancel(id);
        assert!(streams.open("a", &a, "b", &b).is_ok(), "the places are free again");
    }
}
