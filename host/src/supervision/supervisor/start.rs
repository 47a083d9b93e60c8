//! Starting blocks: `init` in dependency order (independent blocks in parallel, failed ones
//! retried as each block allows), then `run` on every block that initialised.

use std::future::Future;

use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::{Signal, Supervisor, command};
use crate::bindings::BlockState;
use crate::defaults::INIT_RETRY_BACKOFF;
use crate::error::{CallError, RunError};
use crate::restart::jitter;
use crate::supervision::task::Command;

impl Supervisor {
    /// Initialises the blocks `which` as their dependencies allow (the others count as started),
    /// independent ones in parallel, retrying failed `init`s as each block allows. An optional
    /// block that still fails is left out; a required one stops start-up (after the `init`s in
    /// progress end).
    pub(super) async fn start_blocks<F: Future<Output = ()>>(
        &mut self,
        which: &[usize],
        signal: &mut Signal<F>,
    ) -> Result<(), RunError> {
        let mut others = vec![true; self.slots.len()];
        for &i in which {
            if let Some(other) = others.get_mut(i) {
                *other = false;
            }
        }
        let mut order = self.graph.starting(&others);
        let mut starting: JoinSet<(usize, Result<(), CallError>)> = JoinSet::new();
        let cancel = CancellationToken::new();
        let mut failure = None;
        loop {
            // Blocks that are gone count as ready at once, which can make more blocks startable:
            // ask again until nothing new can start.
            let mut more = failure.is_none() && !signal.fired && !self.shutdown.is_cancelled();
            while more {
                more = false;
                for i in order.take() {
                    let slot = &self.slots[i];
                    let Some(control) = slot.control.clone() else {
                        order.done(i);
                        more = true;
                        continue;
                    };
                    slot.status.set_state(BlockState::Starting);
                    let retries = slot.spec.init_retries;
                    let cancel = cancel.clone();
                    let span = tracing::info_span!("block", responsibility = %slot.spec.responsibility);
                    starting
                        .spawn(async move { (i, init_with_retries(control, retries, cancel).await) }.instrument(span));
                }
            }
            if starting.is_empty() {
                break;
            }
            tokio::select! {
                Some(joined) = starting.join_next() => {
                    let Ok((i, result)) = joined else {
                        return Err(RunError::Host(anyhow::anyhow!("a start-up task failed")));
                    };
                    order.done(i);
                    match result {
                        Ok(()) => self.slots[i].inited = true,
                        Err(error) => {
                            let slot = &mut self.slots[i];
                            let responsibility = slot.spec.responsibility.clone();
                            if slot.spec.required {
                                tracing::error!(block = %responsibility, "init failed: {error}; stopping start-up");
                                cancel.cancel();
                                failure.get_or_insert(RunError::Init { responsibility, error });
                            } else {
                                tracing::warn!(event = "left_out", block = %responsibility, "optional block failed to initialise, running without it: {error}");
                                slot.status.set_state(BlockState::Failed);
                                slot.control = None;
                                self.report.failed.push((responsibility, error));
                            }
                        }
                    }
                }
                () = signal.wait(), if !signal.fired => cancel.cancel(),
                () = self.shutdown.cancelled(), if !cancel.is_cancelled() => cancel.cancel(),
            }
        }
        failure.map_or(Ok(()), Err)
    }

    /// Calls `run` on the blocks `which` that initialised; each runs in its own task, so a
    /// block's first bags wait in the queues of blocks whose `run` has not happened yet.
    pub(super) async fn run_blocks(&mut self, which: &[usize]) {
        let mut replies = Vec::new();
        for slot in which.iter().filter_map(|&i| self.slots.get(i)) {
            let (reply, rx) = oneshot::channel();
            if slot.inited
                && let Some(control) = &slot.control
                && control.send(Command::Run { reply }).await.is_ok()
            {
                replies.push((slot.spec.responsibility.clone(), rx));
            }
        }
        for (responsibility, rx) in replies {
            if let Ok(Err(e)) = rx.await {
                tracing::error!(block = %responsibility, "run failed: {e}");
            }
        }
    }
}

/// Sends `Init` until it succeeds, at most `1 + retries` times, with exponential backoff in
/// between; stops retrying when `cancel` fires.
async fn init_with_retries(
    control: mpsc::Sender<Command>,
    retries: u32,
    cancel: CancellationToken,
) -> Result<(), CallError> {
    let mut attempt = 0;
    loop {
        let error = match command(control.clone(), |reply| Command::Init { reply }).await {
            Ok(()) => return Ok(()),
            Err(e) => e,
        };
        if attempt >= retries || cancel.is_cancelled() {
            return Err(error);
        }
        attempt += 1;
        let delay = INIT_RETRY_BACKOFF.delay(attempt + 1, jitter());
        tracing::warn!(delay_ms = delay.as_millis() as u64, "init failed ({error}); retry {attempt} of {retries}");
        tokio::select! {
            () = cancel.cancelled() => return Err(error),
            () = tokio::time::sleep(delay) => {}
        }
    }
}
