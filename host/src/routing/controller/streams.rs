//! The `streams` import: opening streams to other blocks, sending on them, ending them (the
//! table of open streams is [`crate::routing::streams`]).
//!
//! Invariants: `open` never waits (a target without room is `queue-full` at once); `send` waits
//! at most the enqueue timeout, for the window and then for room in the target's queue, and not
//! again in a call whose earlier wait ran out; only a stream's opener sends on it. Every bag is
//! checked and stamped like any bag (`__from`, `__seq`).

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use super::{ControllerCtx, refusal, unknown};
use crate::bindings::bagpipe::block::streams::{self, StreamError};
use crate::bindings::{EnqueueError, StreamEnd};
use crate::routing::queue::{Envelope, Refusal};
use crate::routing::streams::{NotOpened, NotSending, StreamsRef, WindowPermit};
use crate::stats::Counters;

impl streams::Host for ControllerCtx {
    fn open(&mut self, target: String, bag: String) -> Result<u64, EnqueueError> {
        let unavailable = |why: String| Err(EnqueueError::Unavailable(why));
        if !self.takes_streams {
            return unavailable(
                "this block does not export stream-hook (list `streams` in export_block!), so it could never \
                 hear how its streams end"
                    .to_owned(),
            );
        }
        let Some(inbox) = self.inbox.clone() else {
            return unavailable("this block has no queue for the ends of its streams".to_owned());
        };
        let Some(route) = self.links.router.resolve(&target) else { return Err(unknown(&target)) };
        if route.via_server {
            return unavailable(format!(
                "`{target}` is reached through the server, and streams go to this host's blocks only"
            ));
        }
        let Some(queue) = &route.streams else {
            return unavailable(format!("`{target}` does not export stream-hook, so it takes no streams"));
        };
        if !route.status.takes_bags() {
            let state = crate::stats::state_name(route.status.state());
            return unavailable(format!("`{target}` is {state} and takes no streams"));
        }
        let seq = self.next_seq();
        let stamped = queue.stamp(&bag, &self.me.responsibility, seq).map_err(|r| refusal(&target, r))?;
        let table = self.links.streams.clone();
        let id = match table.open(&self.me.responsibility, &inbox, &target, queue) {
            Ok(id) => id,
            Err(NotOpened::TargetQueue) => return Err(EnqueueError::QueueFull),
            Err(NotOpened::OwnQueue) => {
                return unavailable("this block's own queue has no room for the place a stream's end needs".to_owned());
            }
            Err(NotOpened::TooMany(n)) => {
                Counters::bump(&self.me.counters.budget_refusals);
                return unavailable(format!("this block has {n} streams open, as many as it may"));
            }
        };
        let open = Envelope::StreamOpen {
            stream: id,
            from: self.me.responsibility.clone(),
            bag: stamped,
            streams: StreamsRef(table.clone()),
        };
        if let Err((r, _)) = queue.offer(open) {
            table.cancel(id);
            return Err(refusal(&target, queue.refuse(r)));
        }
        self.me.seq.fetch_max(seq, Ordering::Relaxed);
        Counters::bump(&self.me.counters.sent);
        Ok(id)
    }

    async fn send(&mut self, stream: u64, bag: String) -> Result<(), StreamError> {
        let table = self.links.streams.clone();
        let sending = table.sending(stream, &self.me.responsibility).map_err(|e| match e {
            NotSending::NotOpen => StreamError::NotOpen(stream),
            NotSending::NotSender => StreamError::NotSender(stream),
        })?;
        let seq = self.next_seq();
        let stamped = sending.queue.stamp(&bag, &self.me.responsibility, seq).map_err(|r| match r {
            Refusal::TooLarge { limit } => StreamError::TooLarge(limit as u64),
            other => StreamError::InvalidBag(other.to_string()),
        })?;
        // One wait for the window and the queue together, up to the enqueue timeout.
        let timeout = if self.clock.waited_in_vain() { Duration::ZERO } else { self.links.settings.enqueue_timeout };
        let deadline = tokio::time::Instant::now() + timeout;
        let permit = match sending.window.clone().try_acquire_owned() {
            Ok(permit) => permit,
            Err(_) => {
                let wait = tokio::time::timeout_at(deadline, sending.window.clone().acquire_owned());
                match self.clock.waiting(wait).await {
                    Ok(Ok(permit)) => permit,
                    _ => {
                        self.clock.note_wait_in_vain();
                        return Err(StreamError::Busy);
                    }
                }
            }
        };
        let data = Envelope::StreamData {
            stream,
            bag: stamped,
            wanted: sending.wanted.clone(),
            window: WindowPermit(Arc::new(permit)),
        };
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        match self.clock.waiting(sending.queue.push_within(data, left)).await {
            Ok(()) => {}
            Err(Refusal::Closed) => return Err(StreamError::NotOpen(stream)),
            Err(_) => {
                self.clock.note_wait_in_vain();
                return Err(StreamError::Busy);
            }
        }
        self.me.seq.fetch_max(seq, Ordering::Relaxed);
        Counters::bump(&self.me.counters.sent);
        Ok(())
    }

    fn end(&mut self, stream: u64, reason: String) -> bool {
        self.links.streams.end(stream, &self.me.responsibility, StreamEnd::Ended(reason))
    }
}
