//! How a group ends: finishing (hand out what is left in the block's queue within the drain
//! timeout, then every worker finishes, draining its own queue), failing (a worker ended failed:
//! the others finish), and settling what is left as one block would (dead letters after a fault,
//! lost otherwise), then the block's streams, calls, sockets and server side.

use futures_util::future::join_all;
use tokio::sync::oneshot;

use super::{Group, Life, ask, until};
use crate::bindings::BlockState;
use crate::error::CallError;
use crate::routing::queue::Envelope;
use crate::supervision::task::{Command, Outcome, end_streams_and_calls, failure, settle, shut_down};

type Reply = oneshot::Sender<Result<(), CallError>>;

impl Group {
    pub(super) async fn finish(mut self, reply: Reply) -> Outcome {
        self.ending = true;
        self.parts.status.set_state(BlockState::Finishing);
        if self.life == Life::Down {
            let _ = reply.send(Err(CallError::Gone));
            return self.end(Outcome::Abandoned).await;
        }
        let deadline = tokio::time::Instant::now() + self.parts.links.settings.drain_timeout;
        self.drain_deadline = Some(deadline);
        if let Some(queue) = self.queue.as_mut() {
            queue.close();
        }
        let mut failure = None;
        if self.life == Life::Running {
            failure = self.hand_out_the_rest(deadline).await;
        }
        let finished = join_all(self.workers.iter().map(|w| ask(&w.control, |reply| Command::Finish { reply }))).await;
        // A worker that was not running (it never initialised) has nothing to finish.
        let r = match finished.iter().find_map(|r| r.clone().err().filter(|e| *e != CallError::Gone)) {
            Some(e) => Err(e),
            None if finished.iter().any(Result::is_ok) => Ok(()),
            None => Err(CallError::Gone),
        };
        self.workers.clear();
        while let Some(ended) = self.tasks.join_next().await {
            if let Some(outcome) = self.worker_ended(ended) {
                failure.get_or_insert(outcome);
            }
        }
        let _ = reply.send(r);
        self.end(failure.unwrap_or(Outcome::Finished)).await
    }

    /// Hands what is left in the (closed) block's queue to the workers, until `deadline`; a worker
    /// that ends failed meanwhile ends the group (its outcome).
    async fn hand_out_the_rest(&mut self, deadline: tokio::time::Instant) -> Option<Outcome> {
        loop {
            if self.pending.is_none() {
                let Some(Ok(env)) = self.queue.as_mut().map(|q| q.try_recv()) else { return None };
                let key = super::dispatch::key_of(&env, self.partition.as_deref());
                self.pending = Some((env, key));
            }
            self.place();
            if self.pending.is_none() {
                continue;
            }
            tokio::select! {
                () = self.progress.notified() => {}
                () = tokio::time::sleep(until(deadline)) => return None,
                Some(ended) = self.tasks.join_next() => {
                    if let Some(outcome) = self.worker_ended(ended) {
                        return Some(outcome);
                    }
                }
            }
        }
    }

    /// A worker ended failed: the others finish (each draining its queue), then the group ends
    /// as one failed block would.
    pub(super) async fn fail(mut self, outcome: Outcome) -> Outcome {
        self.ending = true;
        self.parts.status.set_state(BlockState::Failed);
        join_all(self.workers.iter().map(|w| ask(&w.control, |reply| Command::Finish { reply }))).await;
        self.workers.clear();
        while let Some(ended) = self.tasks.join_next().await {
            let _ = self.worker_ended(ended);
        }
        self.end(outcome).await
    }

    /// Settles the group: workers still there are let go (and joined), then what is left in the
    /// block's queue becomes dead letters (after a fault) or is counted as lost, and the block's
    /// streams, calls, sockets and server side end.
    pub(super) async fn end(mut self, outcome: Outcome) -> Outcome {
        self.ending = true;
        let failed = failure(&outcome, &self.parts);
        self.parts.status.set_state(if failed.is_some() { BlockState::Failed } else { BlockState::Finished });
        // Their control channels close: each worker ends (settling its own queue) and is joined.
        self.workers.clear();
        while let Some(ended) = self.tasks.join_next().await {
            let _ = self.worker_ended(ended);
        }
        let mut left: Vec<(Envelope, u32)> = self.pending.take().map(|(env, _)| (env, 0)).into_iter().collect();
        let mut queue = self.queue.take();
        if let Some(queue) = queue.as_mut() {
            queue.close();
        }
        end_streams_and_calls(&self.parts, failed.as_deref());
        if let Some(mut queue) = queue {
            while let Some(env) = queue.recv().await {
                if !matches!(env, Envelope::Reply { .. }) && !env.of_stream() {
                    left.push((env, 0));
                }
            }
        }
        settle(&self.parts, left, failed);
        self.parts.log_rate.flush();
        // The outbox gets a drain timeout of its own: the workers' drains came after the
        // group's and may have used all of it.
        shut_down(&mut self.parts, None).await;
        outcome
    }
}
