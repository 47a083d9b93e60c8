//! Calls between blocks, the controller's `call` and `reply` (see [`crate::routing::calls`]).
//!
//! Invariant: `call` never waits for an answer: to a block of this host it does not wait at all
//! (a full target is `queue-full` at once, so calls in a cycle cannot deadlock); to a block on
//! another host it waits only for that host to take the request, as `enqueue` does. When it
//! errs, no call was opened and nothing was delivered; when it returns an id, the request was
//! taken and the call will end exactly once. A request and an answer are checked and stamped
//! like any bag (`__from`, `__seq`); a request also carries `__reply`, its call's handle.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use super::{Cluster, ControllerCtx, refusal, unknown};
use crate::bindings::{CallFailure, EnqueueError};
use crate::routing::bag;
use crate::routing::calls::{CallToken, HANDLE_PREFIX};
use crate::routing::queue::{BlockQueue, Envelope};
use crate::routing::router::Route;
use crate::stats::Counters;

fn unavailable<T>(why: impl Into<String>) -> Result<T, EnqueueError> {
    Err(EnqueueError::Unavailable(why.into()))
}

impl ControllerCtx {
    /// `call(target, bag, timeout-ms)`.
    pub(super) async fn call_one(&mut self, target: &str, bag: String, timeout_ms: u64) -> Result<u64, EnqueueError> {
        if !self.takes_replies {
            return unavailable(
                "this block does not export reply-hook (list `on_reply` in export_block!), so it could \
                 never hear how its calls end",
            );
        }
        let Some(inbox) = self.inbox.clone() else {
            return unavailable("this block has no queue for the outcomes of its calls");
        };
        let timeout = Duration::from_millis(timeout_ms);
        let route = self.links.router.resolve(target);
        if let Some(cluster) = self.cluster_for(route.as_deref()) {
            return self.call_remote(cluster.as_ref(), &inbox, target, bag, timeout).await;
        }
        let Some(route) = route else { return Err(unknown(target)) };
        self.call_local(&route, &inbox, target, bag, timeout)
    }

    /// A call to a block of this host: never waits.
    fn call_local(
        &mut self,
        route: &Route,
        inbox: &BlockQueue,
        target: &str,
        bag: String,
        timeout: Duration,
    ) -> Result<u64, EnqueueError> {
        let Some(queue) = &route.queue else {
            return unavailable(format!(
                "`{target}` takes no bags (it does not export enqueue-hook), so it cannot be called"
            ));
        };
        if !route.status.takes_bags() {
            let state = crate::stats::state_name(route.status.state());
            return unavailable(format!("`{target}` is {state} and takes no bags"));
        }
        let calls = self.links.calls.clone();
        let id = open(&calls, inbox, &self.me.responsibility, target)?;
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
        calls.arm(id, timeout);
        self.called(seq);
        Ok(id)
    }

    /// A call to a block on another host of the cluster: waits for that host to take the
    /// request (bounded as `enqueue` is); the outcome comes back through the server.
    async fn call_remote(
        &mut self,
        cluster: &dyn Cluster,
        inbox: &BlockQueue,
        target: &str,
        bag: String,
        timeout: Duration,
    ) -> Result<u64, EnqueueError> {
        // Like a local queue: a call into the guest whose earlier wait ran out does not wait again.
        if self.clock.waited_in_vain() {
            return Err(EnqueueError::QueueFull);
        }
        let calls = self.links.calls.clone();
        let id = open(&calls, inbox, &self.me.responsibility, target)?;
        let seq = self.next_seq();
        let stamped = match bag::stamp(&bag, &self.me.responsibility, seq, self.limits) {
            Ok(stamped) => stamped,
            Err(e) => {
                calls.cancel(id);
                return Err(refusal(target, e.into()));
            }
        };
        let handle = calls.handle(id);
        let request = bag::with_reply(&stamped, &handle);
        let wait = self.links.settings.enqueue_timeout;
        let taken = self.clock.waiting(cluster.call(target, request, &handle, wait)).await;
        match taken {
            Ok(true) => {
                calls.arm(id, timeout);
                self.called(seq);
                Ok(id)
            }
            Ok(false) => {
                calls.cancel(id);
                unavailable(format!(
                    "`{target}` takes no bags (it does not export enqueue-hook), so it cannot be called"
                ))
            }
            Err(e) => {
                // Not taken (or not known to be): if the far host took it after all, its outcome
                // finds no call and is dropped.
                calls.cancel(id);
                if matches!(e, EnqueueError::QueueFull) {
                    self.clock.note_wait_in_vain();
                }
                Err(e)
            }
        }
    }

    /// A call was sent: its request's sequence number is used.
    fn called(&self, seq: u64) {
        self.me.seq.fetch_max(seq, Ordering::Relaxed);
        Counters::bump(&self.me.counters.sent);
        Counters::bump(&self.me.counters.calls);
    }

    /// `reply(handle, bag)`.
    pub(super) async fn answer(&mut self, handle: &str, bag: String) -> Result<(), EnqueueError> {
        let calls = self.links.calls.clone();
        let ended = || EnqueueError::Unavailable("the call has already ended (answered, or timed out)".to_owned());
        let Some(id) = calls.id_of(handle) else {
            if !handle.starts_with(HANDLE_PREFIX) {
                return unavailable(format!("`{handle}` is not the handle of a call"));
            }
            // Another host's call: checked against what this block may send; the caller's host
            // checks it against what the caller takes.
            let seq = self.next_seq();
            let stamped = bag::stamp(&bag, &self.me.responsibility, seq, self.limits)
                .map_err(|e| refusal("the caller", e.into()))?;
            if !calls.answer_remote(handle, Some(&self.me.responsibility), Ok(stamped)) {
                return Err(ended());
            }
            self.answered(seq);
            return Ok(());
        };
        // Only the call's target answers it (a handle seen elsewhere answers nothing).
        let Some(caller) = calls.caller_queue(id, &self.me.responsibility) else { return Err(ended()) };
        // Checked against what the caller takes before the call is taken: a bad answer leaves
        // the call waiting, to be answered again.
        let seq = self.next_seq();
        let stamped = caller.stamp(&bag, &self.me.responsibility, seq).map_err(|r| refusal("the caller", r))?;
        let Some(slot) = calls.take(id) else { return Err(ended()) };
        // Its own queue cannot drain while it is in a call: a block answering itself never waits.
        let own = Arc::ptr_eq(&caller.status_arc(), &self.me);
        let timeout =
            if own || self.clock.waited_in_vain() { Duration::ZERO } else { self.links.settings.enqueue_timeout };
        let answer = Envelope::Reply { call: id, outcome: Ok(stamped) };
        match self.clock.waiting(slot.fill_within(answer, timeout)).await {
            Ok(()) => {
                self.answered(seq);
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

    /// An answer was sent: its sequence number is used.
    fn answered(&self, seq: u64) {
        self.me.seq.fetch_max(seq, Ordering::Relaxed);
        Counters::bump(&self.me.counters.sent);
    }
}

/// Opens a call of `caller` to `target` whose outcome goes into a place reserved in `inbox`,
/// the caller's queue (its deadline is armed once the request was taken).
fn open(
    calls: &Arc<crate::routing::calls::Calls>,
    inbox: &BlockQueue,
    caller: &str,
    target: &str,
) -> Result<u64, EnqueueError> {
    let Ok(slot) = inbox.reserve() else {
        return unavailable("this block's own queue has no room left for another outcome: let some calls end first");
    };
    match calls.open(slot, caller, target) {
        Some(id) => Ok(id),
        None => unavailable("the host is shutting down"),
    }
}
