//! A block's task: the one owner of a block instance. It takes lifecycle commands from the
//! supervisor, bags from the block's queue and the block's due timers, and makes every call into
//! the guest, one at a time.
//!
//! Invariants: only this task touches the instance; lifecycle commands go before bags and timers;
//! bags are delivered only after `run` and in queue order; when the task ends every bag left in
//! the queue is counted as lost and logged, never dropped silently.

use std::future::poll_fn;
use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use crate::bindings::BlockState;
use crate::defaults::{QUEUE_BATCH, Settings};
use crate::error::CallError;
use crate::instance::BlockInstance;
use crate::router::Envelope;
use crate::stats::{BlockStatus, Counters};

/// A lifecycle command from the supervisor; each is answered on its `reply`.
#[derive(Debug)]
pub enum Command {
    /// Call `init(config)`.
    Init {
        /// Where the outcome goes.
        reply: oneshot::Sender<Result<(), CallError>>,
    },
    /// Call `run()` and start delivering bags and timers.
    Run {
        /// Where the outcome goes.
        reply: oneshot::Sender<Result<(), CallError>>,
    },
    /// Stop taking bags, deliver the ones queued (within the drain timeout), call `finish()`.
    Finish {
        /// Where the outcome goes.
        reply: oneshot::Sender<Result<(), CallError>>,
    },
}

/// How a block's task ended.
#[derive(Debug)]
pub enum Outcome {
    /// `finish` was called (its error, if any, went to the supervisor with the reply).
    Finished,
    /// The supervisor went away before asking for `finish` (shutdown before `init`).
    Abandoned,
    /// A fault ended the instance.
    Failed(CallError),
}

/// Everything the task owns.
pub struct BlockTask {
    /// The instance: only this task calls it.
    pub instance: BlockInstance,
    /// `init`'s argument: the block's config as JSON.
    pub config: String,
    /// The block's state and counters, shared with the router and supervisor.
    pub status: Arc<BlockStatus>,
    /// Lifecycle commands.
    pub control: mpsc::Receiver<Command>,
    /// The block's bags; `None` for a block without `enqueue-hook`.
    pub queue: Option<mpsc::Receiver<Envelope>>,
    /// Host settings (drain timeout).
    pub settings: Arc<Settings>,
}

enum Next {
    Command(Option<Command>),
    Timer(String),
    Envelope(Envelope),
}

impl BlockTask {
    /// Runs until the block is finished or fails.
    pub async fn run(mut self) -> Outcome {
        let mut running = false;
        loop {
            let next = {
                let timers = &mut self.instance.ctx().timers;
                let queue = self.queue.as_mut();
                tokio::select! {
                    biased;
                    cmd = self.control.recv() => Next::Command(cmd),
                    Some(tag) = poll_fn(|cx| timers.poll_due(cx)), if running => Next::Timer(tag),
                    Some(env) = async { match queue { Some(q) => q.recv().await, None => None } }, if running => {
                        Next::Envelope(env)
                    }
                }
            };
            let step = match next {
                Next::Command(None) => return self.end(Outcome::Abandoned),
                Next::Command(Some(Command::Init { reply })) => {
                    let r = self.instance.init(&self.config).await;
                    self.answer(reply, r)
                }
                Next::Command(Some(Command::Run { reply })) => {
                    self.status.set_state(BlockState::Running);
                    running = true;
                    let r = self.instance.run().await;
                    self.answer(reply, r)
                }
                Next::Command(Some(Command::Finish { reply })) => return self.finish(reply, running).await,
                Next::Timer(tag) => {
                    Counters::bump(&self.status.counters.timers_fired);
                    self.instance.on_timer(&tag).await
                }
                Next::Envelope(env) => self.deliver_batch(env).await,
            };
            if let Err(fault) = step {
                return self.end(Outcome::Failed(fault));
            }
        }
    }

    /// Sends `r` to the supervisor; hands a fault back to the loop to end the task.
    fn answer(&self, reply: oneshot::Sender<Result<(), CallError>>, r: Result<(), CallError>) -> Result<(), CallError> {
        let fault = r.as_ref().err().filter(|e| e.is_fault()).cloned();
        let _ = reply.send(r);
        fault.map_or(Ok(()), Err)
    }

    /// Delivers `first` and then up to a batch of the bags already waiting, without going back
    /// to the runtime in between.
    async fn deliver_batch(&mut self, first: Envelope) -> Result<(), CallError> {
        self.deliver(first).await?;
        for _ in 1..QUEUE_BATCH {
            let Some(queue) = self.queue.as_mut() else { break };
            match queue.try_recv() {
                Ok(env) => self.deliver(env).await?,
                Err(_) => break,
            }
        }
        Ok(())
    }

    async fn deliver(&mut self, env: Envelope) -> Result<(), CallError> {
        let Envelope::Bag(bag) = env;
        match self.instance.on_enqueue(bag).await {
            Ok(()) => {
                Counters::bump(&self.status.counters.processed);
                Ok(())
            }
            Err(CallError::Guest(why)) => {
                Counters::bump(&self.status.counters.failed);
                tracing::warn!("on-enqueue refused a bag: {why}");
                Ok(())
            }
            Err(fault) => {
                // The bag being processed dies with the instance.
                Counters::bump(&self.status.counters.lost);
                Err(fault)
            }
        }
    }

    async fn finish(mut self, reply: oneshot::Sender<Result<(), CallError>>, running: bool) -> Outcome {
        self.status.set_state(BlockState::Finishing);
        if let Some(queue) = self.queue.as_mut() {
            queue.close();
        }
        if running {
            let deadline = Instant::now() + self.settings.drain_timeout;
            while let Some(queue) = self.queue.as_mut() {
                let Ok(Some(env)) = tokio::time::timeout_at(deadline, queue.recv()).await else { break };
                if let Err(fault) = self.deliver(env).await {
                    let _ = reply.send(Err(fault.clone()));
                    return self.end(Outcome::Failed(fault));
                }
            }
        }
        self.instance.ctx().timers.clear();
        let r = self.instance.finish().await;
        if let Err(e) = &r {
            tracing::warn!("finish failed: {e}");
        }
        let fault = r.as_ref().err().filter(|e| e.is_fault()).cloned();
        let _ = reply.send(r);
        match fault {
            Some(fault) => self.end(Outcome::Failed(fault)),
            None => self.end(Outcome::Finished),
        }
    }

    /// Settles the block's state and accounts for every bag still queued.
    fn end(mut self, outcome: Outcome) -> Outcome {
        let state = match &outcome {
            Outcome::Failed(e) => {
                Counters::bump(&self.status.counters.faults);
                tracing::error!("block failed: {e}");
                BlockState::Failed
            }
            Outcome::Finished | Outcome::Abandoned => BlockState::Finished,
        };
        self.status.set_state(state);
        self.instance.ctx().timers.clear();
        if let Some(mut queue) = self.queue.take() {
            queue.close();
            let mut left = 0u64;
            while queue.try_recv().is_ok() {
                left += 1;
            }
            if left > 0 {
                self.status.counters.lost.fetch_add(left, std::sync::atomic::Ordering::Relaxed);
                tracing::warn!("{left} queued bags were never delivered");
            }
        }
        outcome
    }
}
