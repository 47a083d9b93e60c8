//! How a block's task ends: finishing (drain the queue within the drain timeout, call `finish`)
//! and settling what is left (dead letters after a fault, lost bags otherwise), then its sockets
//! and server subscriptions.

use super::{BlockTask, Fault, Life, Outcome, Reply};
use crate::bindings::BlockState;
use crate::block::ctx::BlockParts;
use crate::error::CallError;
use crate::routing::queue::Envelope;

impl BlockTask {
    pub(super) async fn finish(mut self, reply: Reply) -> Outcome {
        self.set_state(BlockState::Finishing);
        if let Some(queue) = self.queue.as_mut() {
            queue.close();
        }
        if matches!(self.life, Life::Faulted) {
            // Told to finish during a restart's backoff: the queued bags are owed their drain,
            // so the fresh instance starts now instead of after the backoff.
            let component = self.component.clone();
            let spec = self.spec.clone();
            let started = match self.ready_instance(&component, &spec, None).await {
                Ok(instance) => self.start_running(instance, None).await,
                Err(error) => Err(error.into()),
            };
            if let Err(fault) = started {
                return self.end_finish_with_fault(reply, fault).await;
            }
        }
        if self.life.instance().is_none() {
            let _ = reply.send(Err(CallError::Gone));
            return self.end(Outcome::Abandoned).await;
        }
        if self.life.is_running() {
            let deadline = tokio::time::Instant::now() + self.parts.links.settings.drain_timeout;
            self.drain_deadline = Some(deadline);
            if let Err(fault) = self.redeliver().await {
                return self.end_finish_with_fault(reply, fault).await;
            }
            while tokio::time::Instant::now() < deadline
                && let Some(queue) = self.queue.as_mut()
            {
                // As while running: no bag while the outbox is over half full (it may empty
                // before the deadline; what is left then is counted when the block ends).
                if let Some(outbox) = self.parts.server.as_ref().map(|s| s.outbox())
                    && tokio::time::timeout_at(deadline, outbox.room()).await.is_err()
                {
                    break;
                }
                // Closed, the queue only takes what goes into places held in it (the outcomes of
                // the block's calls, the ends of its streams), which are not waited for: what is
                // in it now is all the drain owes.
                let Ok(env) = queue.try_recv() else { break };
                if let Err(fault) = self.deliver(env).await {
                    return self.end_finish_with_fault(reply, fault).await;
                }
            }
        }
        let r = match self.life.instance() {
            Some(instance) => {
                instance.ctx().controller.timers.clear();
                instance.finish().await
            }
            None => Err(CallError::Gone),
        };
        if let Err(e) = &r {
            tracing::warn!("finish failed: {e}");
        }
        let fault = r.as_ref().err().filter(|e| e.is_fault()).cloned();
        let _ = reply.send(r);
        match fault {
            Some(error) => {
                self.parts.status.note_fault();
                self.end(Outcome::Failed { error, gave_up: false }).await
            }
            None => self.end(Outcome::Finished).await,
        }
    }

    async fn end_finish_with_fault(mut self, reply: Reply, fault: Fault) -> Outcome {
        self.parts.status.note_fault();
        tracing::error!("faulted while finishing: {}", fault.error);
        if let Some(bag) = fault.bag {
            // No instance will come to deliver it again.
            self.account(*bag, &fault.error, true);
        }
        let _ = reply.send(Err(fault.error.clone()));
        self.end(Outcome::Failed { error: fault.error, gave_up: false }).await
    }

    /// Settles the block's state and accounts for every bag still queued: after a fault that
    /// ended the block they become dead letters (no instance will ever take them); otherwise
    /// (shutdown, drain timeout) they are counted as lost. Either way they are logged.
    pub(super) async fn end(mut self, outcome: Outcome) -> Outcome {
        let failed = failure(&outcome, &self.parts);
        let state = if failed.is_some() { BlockState::Failed } else { BlockState::Finished };
        self.set_state(state);
        self.life = Life::Down;
        // The queue closes first: socket readers and server feeds waiting to queue an event are
        // refused at once, so shutting them down below cannot hang; and no stream or call can
        // reserve a place in it any more.
        // (bag, deliveries so far)
        let mut left: Vec<(Envelope, u32)> = self.retry.take().map(|r| (r.bag, r.attempts)).into_iter().collect();
        let mut queue = self.queue.take();
        if let Some(queue) = queue.as_mut() {
            queue.close();
        }
        // Its streams end with it (their other sides are told), and its calls with `unavailable`:
        // the places they hold in its queue are given back, so the drain below ends.
        // A worker leaves them to its group, which ends them when the whole group ends; its own
        // queue then holds no place that is waited for (the group retires only a worker whose
        // queue is empty), so what is in it now is all there is.
        if self.worker.is_none() {
            end_streams_and_calls(&self.parts, failed.as_deref());
        }
        if let Some(queue) = queue.as_mut().filter(|_| self.worker.is_some()) {
            while let Ok(env) = queue.try_recv() {
                if !matches!(env, Envelope::Reply { .. }) && !env.of_stream() {
                    left.push((env, 0));
                }
            }
        } else if let Some(mut queue) = queue {
            // After `close`, `recv` ends once the queue is empty and no sender is midway through
            // a send (or holds a place in it), so a bag a sender was told was delivered is never
            // missed.
            while let Some(env) = queue.recv().await {
                // The outcomes of its calls and what is left of its streams are nobody's now.
                if !matches!(env, Envelope::Reply { .. }) && !env.of_stream() {
                    left.push((env, 0));
                }
            }
        }
        settle(&self.parts, left, failed);
        // What its last lines over the log rate were, said once.
        self.parts.log_rate.flush();
        // A worker's sockets and server side are its group's.
        if self.worker.is_none() {
            shut_down(&mut self.parts, self.drain_deadline).await;
        }
        outcome
    }
}

/// Why a block that ends with `outcome` failed, if it did (logged once here).
pub(crate) fn failure(outcome: &Outcome, parts: &BlockParts) -> Option<String> {
    match outcome {
        Outcome::Failed { error, gave_up } => {
            tracing::error!(event = "failed", gave_up, "block ended by a fault: {error}");
            Some(error.to_string())
        }
        // The supervisor gave up on this block (an optional block that never initialised, or
        // one that restarted everything too often) and marked it failed before letting go.
        Outcome::Abandoned if parts.status.state() == BlockState::Failed => {
            Some("the host gave up on the block".to_owned())
        }
        Outcome::Finished | Outcome::Abandoned => None,
    }
}

/// A block's streams end with it (their other sides are told), and its calls with
/// `unavailable`: the places they hold in its queue are given back.
pub(crate) fn end_streams_and_calls(parts: &BlockParts, failed: Option<&str>) {
    let me = &parts.status.responsibility;
    let stream_end = match failed {
        Some(why) => crate::bindings::StreamEnd::Faulted(crate::defaults::detail(why)),
        None => crate::bindings::StreamEnd::Finished,
    };
    parts.links.streams.end_block(me, &stream_end);
    parts.links.calls.end_caller(me, "the caller has ended");
}

/// Shuts a block's sockets and server side down (after its dead letters: acknowledging a
/// durable one needs the server side), within what is left of `drain_deadline` (all of the
/// drain timeout when the block did not finish).
pub(crate) async fn shut_down(parts: &mut BlockParts, drain_deadline: Option<tokio::time::Instant>) {
    if let Some(net) = parts.net.take() {
        net.shutdown().await;
    }
    if let Some(server) = parts.server.take() {
        let drain = match drain_deadline {
            Some(deadline) => deadline.saturating_duration_since(tokio::time::Instant::now()),
            None => parts.links.settings.drain_timeout,
        };
        server.shutdown(drain).await;
    }
}

/// Accounts for the bags left when a block's task ends: after a fault that ended the block
/// (`failed`) they become dead letters; otherwise they are counted as lost (durable ones go
/// back to their stream). Either way they are logged.
pub(crate) fn settle(parts: &BlockParts, left: Vec<(Envelope, u32)>, failed: Option<String>) {
    if left.is_empty() {
        return;
    }
    match failed {
        Some(error) => {
            tracing::warn!(event = "left_dead", bags = left.len(), "{} queued bags become dead letters", left.len());
            for (bag, attempts) in left {
                super::recover::dead_letter(parts, bag, format!("the block failed: {error}"), attempts);
            }
        }
        None => {
            // Durable ones are not acknowledged: their stream delivers them again.
            let (durable, lost): (Vec<_>, Vec<_>) =
                left.into_iter().partition(|(bag, _)| matches!(bag, Envelope::Durable { .. }));
            let counters = &parts.status.counters;
            if !durable.is_empty() {
                counters.returned.fetch_add(durable.len() as u64, std::sync::atomic::Ordering::Relaxed);
                tracing::info!(
                    event = "returned",
                    bags = durable.len(),
                    "{} queued durable bags go back to their stream",
                    durable.len()
                );
            }
            if !lost.is_empty() {
                counters.lost.fetch_add(lost.len() as u64, std::sync::atomic::Ordering::Relaxed);
                tracing::warn!(event = "lost", bags = lost.len(), "{} queued bags were never delivered", lost.len());
            }
        }
    }
}
