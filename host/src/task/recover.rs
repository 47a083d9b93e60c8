//! What a block's task does after a fault: account for the bag that was being processed, then
//! restart as the block's policy says.

use std::time::Instant;

use tokio::sync::mpsc;

use super::{BlockTask, Event, Fault, Outcome, Retry};
use crate::bindings::BlockState;
use crate::deadletter::{DeadLetter, now_ms};
use crate::error::CallError;
use crate::restart::{Restart, jitter};
use crate::router::Envelope;
use crate::stats::Counters;

impl BlockTask {
    /// Handles a fault: accounts for the bag, then restarts as the policy says. `Some(outcome)`
    /// when the task must end.
    pub(super) async fn recover(&mut self, fault: Fault) -> Option<Outcome> {
        let Fault { mut error, bag } = fault;
        self.fault_at.get_or_insert_with(Instant::now);
        self.instance = None;
        self.running = false;
        Counters::bump(&self.status.counters.faults);
        tracing::error!("block faulted: {error}");
        if let Some(bag) = bag {
            self.account(*bag, &error, false);
        }
        match self.spec.policy.restart {
            Restart::None | Restart::Escalate => {
                return Some(Outcome::Failed { error, gave_up: false });
            }
            Restart::All => {
                self.status.set_state(BlockState::Restarting);
                let event = Event::RestartAll { index: self.index, error: error.clone() };
                // Never wait here: the supervisor may be busy resetting this very block. A full
                // channel means a restart of everything is pending already.
                return match self.events.try_send(event) {
                    Ok(()) | Err(mpsc::error::TrySendError::Full(_)) => None,
                    Err(mpsc::error::TrySendError::Closed(_)) => Some(Outcome::Failed { error, gave_up: false }),
                };
            }
            Restart::One => {}
        }
        loop {
            self.consecutive += 1;
            if !self.intensity.allow(Instant::now()) {
                tracing::error!(
                    "restarted {} times within {:?}: giving up",
                    self.spec.policy.max_restarts,
                    self.spec.policy.window
                );
                return Some(Outcome::Failed { error, gave_up: true });
            }
            let delay = self.spec.policy.backoff.delay(self.consecutive, jitter());
            self.status.set_state(BlockState::Restarting);
            Counters::bump(&self.status.counters.restarts);
            tracing::info!(attempt = self.consecutive, delay_ms = delay.as_millis() as u64, "restarting");
            if !delay.is_zero() {
                tokio::select! {
                    biased;
                    // The supervisor's word goes before this block's own restart (a restart of
                    // everything, or shutdown): stop restarting and let the loop obey it.
                    cmd = self.control.recv() => match cmd {
                        Some(cmd) => {
                            self.pending = Some(cmd);
                            return None;
                        }
                        None => return Some(Outcome::Abandoned),
                    },
                    () = tokio::time::sleep(delay) => {}
                }
            }
            let started = match self.start_instance().await {
                Ok(()) => match self.instance.as_mut() {
                    Some(instance) => instance.run().await,
                    None => Err(CallError::Gone),
                },
                Err(e) => Err(e),
            };
            match started {
                Ok(()) => {
                    self.status.set_state(BlockState::Running);
                    self.running = true;
                    tracing::info!("restarted");
                    if let Err(fault) = self.sync_server().await {
                        error = fault.error;
                        self.instance = None;
                        continue;
                    }
                    return None;
                }
                Err(e) => {
                    tracing::error!("restart failed: {e}");
                    Counters::bump(&self.status.counters.faults);
                    self.instance = None;
                    error = e;
                }
            }
        }
    }

    /// Counts a delivery of `bag` that faulted; past `max_attempts`, or on the `last` chance,
    /// it becomes a dead letter.
    pub(super) fn account(&mut self, bag: Envelope, error: &CallError, last: bool) {
        let before = match self.retry.take() {
            Some(r) if r.bag == bag => r.attempts,
            _ => 0,
        };
        let attempts = before + 1;
        if attempts < self.spec.policy.max_attempts && !last {
            self.retry = Some(Retry { bag, attempts });
            return;
        }
        self.dead_letter(bag, error.to_string(), attempts);
    }

    pub(super) fn dead_letter(&self, bag: Envelope, error: String, attempts: u32) {
        if let Envelope::Durable { ack, .. } = &bag {
            // Given up on here: the stream must not deliver it again and again.
            let ack = ack.clone();
            if let Some(server) = &self.server {
                server.spawn_ack(ack);
            }
        }
        Counters::bump(&self.status.counters.dead_letters);
        let letter = DeadLetter {
            at_ms: now_ms(),
            block: self.status.responsibility.clone(),
            component: self.status.name.clone(),
            error,
            attempts,
            bag: bag.describe(),
        };
        self.links.dead_letters.add(letter, &self.links.router);
    }
}
