//! Calls between blocks, the controller's `call` and `reply` (see [`crate::routing::calls`]).
//!
//! Invariant: `call` never waits (a full target is `queue-full` at once, so calls in a cycle
//! cannot deadlock); when it errs, no call was opened and nothing was sent, and when it returns
//! an id, the request is in the target's queue and the call will end exactly once. A request
//! and an answer are checked and stamped like any bag (`__from`, `__seq`); a request also
//! carries `__reply`, its call's handle.

use std::sync::atomic::Ordering;
use std::time::Duration;

use super::{ControllerCtx, refusal, unknown};
use crate::bindings::{CallFailure, EnqueueError};
use crate::routing::bag;
use crate::routing::calls::CallToken;
use crate::routing::queue::Envelope;
use crate::stats::Counters;

impl ControllerCtx {
    /// `call(target, bag, timeout-ms)`.
    pub(super) fn call_one(&mut self, target: &str, bag: String, timeout_ms: u64) -> Result<u64, EnqueueError> {
        let unavailable = |why: String| Err(EnqueueError::Unavailable(why));
        if !self.takes_replies {
            return unavailable(
                "this block does not export reply-hook (list `on_reply` in export_block!), so it could \
                 never hear how its calls end"
                    .to_owned(),
            );
        }
        let Some(inbox) = self.inbox.clone() else {
            return unavailable("this block has no queue for the outcomes of its calls".to_owned());
        };
        let Some(route) = self.links.router.resolve(target) else { return Err(unknown(target)) };
        if route.via_server {
            return unavailable(format!(
                "`{target}` is reached through the server, and calls go to this host's blocks only"
            ));
        }
        let Some(queue) = &route.queue else {
            return unavailable(format!(
                "`{target}` takes no bags (it does not export enqueue-hook), so it cannot be called"
            ));
        };
        if !route.status.takes_bags() {
            let state = crate::stats::state_name(route.status.state());
            return unavailable(format!("`{target}` is {state} and takes no bags"));
        }
        let Ok(slot) = inbox.reserve() else {
            return unavailable(
                "this block's own queue has no room left for another outcome: let some calls end first".to_owned(),
            );
        };
        let calls = &self.links.calls;
        let Some(id) = calls.open(slot, Duration::from_millis(timeout_ms)) else {
            return unavailable("the host is shutting down".to_owned());
        };
        let seq = self.next_seq();
        let stamped = match queue.stamp(&bag, &self.me.responsibility, seq) {
            Ok(stamped) => stamped,
            Err(r) => {
                calls.cancel(id);
                return Err(refusal(target, r));
            }
        };
        let request = Envelope::Call {
            bag: bag::with_reply(&stamped, &calls.handle(id)),
            call: CallToken::new(calls.clone(), id),
        };
        if let Err((r, request)) = queue.offer(request) {
            // Forgotten before the request is dropped, so that its token ends nothing.
            calls.cancel(id);
            drop(request);
            return Err(refusal(target, queue.refuse(r)));
        }
        self.me.seq.store(seq, Ordering::Relaxed);
        Counters::bump(&self.me.counters.sent);
        Counters::bump(&self.me.counters.calls);
        Ok(id)
    }

    /// `reply(handle, bag)`.
    pub(super) async fn answer(&mut self, handle: &str, bag: String) -> Result<(), EnqueueError> {
        let calls = self.links.calls.clone();
        let ended = || EnqueueError::Unavailable("the call has already ended (answered, or timed out)".to_owned());
        let Some(id) = calls.id_of(handle) else {
            return Err(EnqueueError::Unavailable(format!("`{handle}` is not the handle of one of this host's calls")));
        };
        let Some(caller) = calls.caller_queue(id) else { return Err(ended()) };
        // Checked against what the caller takes before the call is taken: a bad answer leaves
        // the call waiting, to be answered again.
        let seq = self.next_seq();
        let stamped = caller.stamp(&bag, &self.me.responsibility, seq).map_err(|r| refusal("the caller", r))?;
        let Some(slot) = calls.take(id) else { return Err(ended()) };
        let timeout = if self.clock.waited_in_vain() { Duration::ZERO } else { self.links.settings.enqueue_timeout };
        let answer = Envelope::Reply { call: id, outcome: Ok(stamped) };
        match self.clock.waiting(slot.fill_within(answer, timeout)).await {
            Ok(()) => {
                self.me.seq.store(seq, Ordering::Relaxed);
                Counters::bump(&self.me.counters.sent);
                Ok(())
            }
            Err((r, slot)) => {
                self.clock.note_wait_in_vain();
                let why = format!("the answer found no room in the caller's queue: {r}");
                slot.fill(Envelope::Reply { call: id, outcome: Err(CallFailure::Unavailable(why)) });
                Err(refusal("the caller", caller.refuse(r)))
            }
        }
    }
}
