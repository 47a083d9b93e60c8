//! Sending bags, the controller's `enqueue` and `enqueue-many`: to a block of this host through
//! its queue, or through the cluster to the host that runs it.
//!
//! Invariant: a bag is checked and stamped (`__from`, `__seq`) here whichever way it goes; the
//! block's sequence number moves only past bags that were taken, so `__seq` counts what its
//! receivers got (a block served by several workers reserves its numbers instead: each is
//! given once, with gaps where a bag was not taken). A list stops at the first bag not taken: none after it is sent. Each wait for
//! room is bounded by the enqueue timeout and off the call's deadline, never for the caller's
//! own queue (which cannot drain while the caller is in a call), and none follows one that ran
//! out in the same call.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use super::{Cluster, ControllerCtx, refusal, unknown};
use crate::bindings::EnqueueError;
use crate::bindings::bagpipe::block::controller::Sent;
use crate::routing::bag;
use crate::routing::queue::{Envelope, Refusal};
use crate::routing::router::Route;
use crate::stats::Counters;

impl ControllerCtx {
    /// `enqueue(target, bag)`.
    pub(super) async fn send_one(&mut self, target: &str, bag: String) -> Result<bool, EnqueueError> {
        let route = self.routes.resolve(&self.links.router, target);
        if let Some(cluster) = self.cluster_for(route.as_deref()) {
            let sent = self.send_remote(cluster.as_ref(), target, vec![bag]).await;
            return sent.error.map_or(Ok(sent.queued), Err);
        }
        self.send_local(route.as_deref(), target, bag).await
    }

    /// `enqueue-many(target, bags)`.
    pub(super) async fn send_many(&mut self, target: &str, bags: Vec<String>) -> Sent {
        let route = self.routes.resolve(&self.links.router, target);
        if let Some(cluster) = self.cluster_for(route.as_deref()) {
            return self.send_remote(cluster.as_ref(), target, bags).await;
        }
        let mut sent = Sent { taken: 0, queued: true, error: None };
        if route.is_none() {
            sent.error = Some(unknown(target));
            return sent;
        }
        for bag in bags {
            match self.send_local(route.as_deref(), target, bag).await {
                Ok(queued) => {
                    sent.taken += 1;
                    sent.queued = queued;
                }
                Err(e) => {
                    sent.error = Some(e);
                    break;
                }
            }
        }
        sent
    }

    /// The cluster, when bags for `route` go through it: the target is not on this host, or is
    /// shared with the cluster or durable.
    pub(super) fn cluster_for(&self, route: Option<&Route>) -> Option<Arc<dyn Cluster>> {
        self.links.cluster.clone().filter(|_| route.is_none_or(|r| r.via_server))
    }

    /// One bag into the queue of a block of this host.
    async fn send_local(&mut self, route: Option<&Route>, target: &str, bag: String) -> Result<bool, EnqueueError> {
        let Some(route) = route else { return Err(unknown(target)) };
        let Some(queue) = &route.queue else {
            // The target exists but takes no bags: say so, deliver nothing. The bag is still
            // checked, so a bad bag is reported wherever it was going.
            bag::stamp(&bag, &self.me.responsibility, self.next_seq(), self.limits)
                .map_err(|e| refusal(target, e.into()))?;
            return Ok(false);
        };
        if !route.status.takes_bags() {
            return Err(EnqueueError::Unavailable(format!(
                "`{target}` is {} and takes no bags",
                crate::stats::state_name(route.status.state())
            )));
        }
        let seq = self.next_seq();
        let stamped = queue.stamp(&bag, &self.me.responsibility, seq).map_err(|r| refusal(target, r))?;
        let sent = match queue.offer(Envelope::Bag(stamped)) {
            Ok(()) => Ok(()),
            // The caller's own queue only drains after this call returns: waiting cannot help.
            // Nor does waiting again in a call that already waited in vain.
            Err((Refusal::Full, _)) if route.status.responsibility == self.me.responsibility => {
                Err(queue.refuse(Refusal::Full))
            }
            Err((Refusal::Full, _)) if self.clock.waited_in_vain() => Err(queue.refuse(Refusal::Full)),
            Err((Refusal::Full, envelope)) => {
                let timeout = self.links.settings.enqueue_timeout;
                let waited = self.clock.waiting(queue.push_within(envelope, timeout)).await;
                if waited == Err(Refusal::Full) {
                    self.clock.note_wait_in_vain();
                }
                waited
            }
            Err((other, _)) => Err(queue.refuse(other)),
        };
        sent.map_err(|r| refusal(target, r))?;
        self.me.seq.fetch_max(seq, Ordering::Relaxed);
        Counters::bump(&self.me.counters.sent);
        Ok(true)
    }

    /// Bags through the cluster: checked and stamped here, answered by the host that takes
    /// them (one bag: one request; more: as few requests as the server's message size allows).
    async fn send_remote(&mut self, cluster: &dyn Cluster, target: &str, bags: Vec<String>) -> Sent {
        let mut sent = Sent { taken: 0, queued: true, error: None };
        // Like a local queue: a call whose earlier wait ran out does not wait again.
        if self.clock.waited_in_vain() {
            sent.error = Some(EnqueueError::QueueFull);
            return sent;
        }
        let first = self.next_seqs(bags.len() as u64);
        let mut stamped = Vec::with_capacity(bags.len());
        for (seq, bag) in (first..).zip(&bags) {
            match bag::stamp(bag, &self.me.responsibility, seq, self.limits) {
                Ok(s) => stamped.push(s),
                Err(e) => {
                    // Only the bags before it go; if they are all taken, this is why it was not.
                    sent.error = Some(refusal(target, e.into()));
                    break;
                }
            }
        }
        let timeout = self.links.settings.enqueue_timeout;
        let (taken, answer) = match stamped.len() {
            0 => (0, Ok(true)),
            1 => {
                let one = stamped.swap_remove(0);
                let answer = self.clock.waiting(cluster.enqueue(target, one, timeout)).await;
                (u32::from(answer.is_ok()), answer)
            }
            _ => self.clock.waiting(cluster.enqueue_many(target, stamped, timeout)).await,
        };
        match answer {
            Ok(queued) => sent.queued = queued,
            Err(e) => {
                if matches!(e, EnqueueError::QueueFull) {
                    self.clock.note_wait_in_vain();
                }
                sent.error = Some(e);
            }
        }
        sent.taken = taken;
        if taken > 0 {
            self.me.seq.fetch_max(first + u64::from(taken) - 1, Ordering::Relaxed);
            self.me.counters.sent.fetch_add(u64::from(taken), Ordering::Relaxed);
        }
        sent
    }

    /// The sequence number the next bag this block sends gets.
    pub(super) fn next_seq(&self) -> u64 {
        self.next_seqs(1)
    }

    /// The first of `n` sequence numbers for the next bags this block sends. A block served by
    /// several workers reserves them (its workers send at once, each number goes to one bag,
    /// and one not taken leaves a gap); one instance takes them as it uses them (no gaps).
    pub(super) fn next_seqs(&self, n: u64) -> u64 {
        match self.me.pool.get() {
            Some(_) => self.me.seq.fetch_add(n, Ordering::Relaxed) + 1,
            None => self.me.seq.load(Ordering::Relaxed) + 1,
        }
    }
}
