//! What a block's task does after a fault: account for the bag that was being processed, then
//! restart as the block's policy says.

use std::time::Instant;

use tokio::sync::mpsc;

use super::{BlockTask, Command, Event, Fault, Life, Outcome, Retry};
use crate::bindings::{BlockState, CallFailure, StreamEnd};
use crate::block::ctx::BlockParts;
use crate::error::CallError;
use crate::restart::{Restart, jitter};
use crate::routing::deadletter::{DeadLetter, now_ms};
use crate::routing::queue::Envelope;
use crate::stats::Counters;

impl BlockTask {
    /// Handles a fault: accounts for the bag, then restarts as the policy says. `Ok(Some(cmd))`:
    /// the supervisor's command that came during a restart's backoff, to obey next; `Err`: the
    /// task must end.
    pub(super) async fn recover(&mut self, fault: Fault) -> Result<Option<Command>, Outcome> {
        let Fault { mut error, bag } = fault;
        self.fault_at.get_or_insert_with(Instant::now);
        // A block that was told to run runs again; one that was only initialised waits for `Run`.
        let runs = self.life.wants_run();
        let down = || if runs { Life::Faulted } else { Life::Down };
        self.life = down();
        let status = self.parts.status.clone();
        status.note_fault();
        if let Some(worker) = &self.worker {
            Counters::bump(&worker.status.faults);
        }
        tracing::error!(event = "fault", "block faulted: {error}");
        if let Some(tap) = &self.parts.links.tap {
            tap.fault(&status.responsibility, &error);
        }
        if let Some(bag) = bag {
            self.account(*bag, &error, false);
        }
        // Its streams end with the fault: their other sides are told.
        self.parts.links.streams.end_block(&status.responsibility, &StreamEnd::Faulted(error.to_string()));
        match self.spec.policy.restart {
            Restart::None | Restart::Escalate => return Err(Outcome::Failed { error, gave_up: false }),
            Restart::All => {
                self.set_state(BlockState::Restarting);
                let event = Event::RestartAll { index: self.index, error: error.clone() };
                // Never wait here: the supervisor may be busy resetting this very block. A full
                // channel means a restart of everything is pending already.
                return match self.events.try_send(event) {
                    Ok(()) | Err(mpsc::error::TrySendError::Full(_)) => Ok(None),
                    Err(mpsc::error::TrySendError::Closed(_)) => Err(Outcome::Failed { error, gave_up: false }),
                };
            }
            Restart::One => {}
        }
        loop {
            self.consecutive += 1;
            let allowed = self.intensity.lock().unwrap_or_else(|p| p.into_inner()).allow(Instant::now());
            if !allowed {
                tracing::error!(
                    event = "gave_up",
                    "restarted {} times within {:?}: giving up",
                    self.spec.policy.max_restarts,
                    self.spec.policy.window
                );
                return Err(Outcome::Failed { error, gave_up: true });
            }
            let delay = self.spec.policy.backoff.delay(self.consecutive, jitter());
            self.set_state(BlockState::Restarting);
            Counters::bump(&status.counters.restarts);
            if let Some(worker) = &self.worker {
                Counters::bump(&worker.status.restarts);
            }
            tracing::info!(
                event = "restarting",
                attempt = self.consecutive,
                delay_ms = delay.as_millis() as u64,
                "restarting"
            );
            // The supervisor's word goes before this block's own restart (a restart of everything,
            // or shutdown): stop restarting and obey it. Also without a backoff.
            match self.control.try_recv() {
                Ok(cmd) => return Ok(Some(cmd)),
                Err(mpsc::error::TryRecvError::Disconnected) => return Err(Outcome::Abandoned),
                Err(mpsc::error::TryRecvError::Empty) => {}
            }
            tokio::select! {
                biased;
                cmd = self.control.recv() => return cmd.map(Some).ok_or(Outcome::Abandoned),
                () = tokio::time::sleep(delay), if !delay.is_zero() => {}
                () = tokio::task::yield_now(), if delay.is_zero() => {}
            }
            let started = match self.ready_instance(&self.component.clone(), &self.spec.clone(), None).await {
                Ok(instance) if runs => self.start_running(instance, None).await,
                Ok(instance) => {
                    self.set_state(BlockState::Starting);
                    self.life = Life::Ready(instance);
                    Ok(())
                }
                Err(e) => Err(e.into()),
            };
            match started {
                Ok(()) => {
                    tracing::info!(event = "restarted", "restarted");
                    return Ok(None);
                }
                Err(fault) => {
                    tracing::error!("restart failed: {}", fault.error);
                    status.note_fault();
                    self.life = down();
                    error = fault.error;
                }
            }
        }
    }

    /// Counts a delivery of `bag` that faulted; past `max_attempts`, or on the `last` chance,
    /// it becomes a dead letter.
    /// A request (from a call) is never delivered again: its caller is told at once that the
    /// block faulted, and decides. Nor is anything of a stream (the fault ended it).
    pub(super) fn account(&mut self, bag: Envelope, error: &CallError, last: bool) {
        if (matches!(bag, Envelope::Call { .. }) || bag.of_stream())
            && self.retry.as_ref().is_some_and(|r| r.bag == bag)
        {
            // It was waiting to be delivered again: it is not, any more.
            self.retry = None;
        }
        if let Envelope::Call { call, .. } = &bag {
            call.end(CallFailure::Faulted(error.to_string()));
            return;
        }
        // The fault ended the stream: nothing of it is delivered again.
        if bag.of_stream() {
            return;
        }
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
        dead_letter(&self.parts, bag, error, attempts);
    }
}

/// Gives up on `bag` (delivered `attempts` times): a dead letter, or whatever stands for one.
pub(crate) fn dead_letter(parts: &BlockParts, bag: Envelope, error: String, attempts: u32) {
    // Given up on here: a durable one goes to the cluster's dead-letter stream, and is
    // acknowledged (not delivered again and again) once that stream stored it. Its server
    // side counts and records it then, once, as it does a bag on its last delivery.
    if matches!(bag, Envelope::Durable { .. }) {
        bag.dead(&error, attempts);
        return;
    }
    // What is left of a stream goes with it: its other side is told the stream ended.
    if bag.of_stream() {
        return;
    }
    // A request's caller is told instead: it is not a dead letter, its call ends.
    if let Envelope::Call { call, .. } = &bag {
        call.end(CallFailure::Unavailable(error));
        return;
    }
    Counters::bump(&parts.status.counters.dead_letters);
    let letter = DeadLetter {
        at_ms: now_ms(),
        block: parts.status.responsibility.clone(),
        component: parts.status.name.clone(),
        error,
        attempts,
        bag: bag.describe(),
    };
    parts.links.dead_letters.add(letter, &parts.links.router);
}
