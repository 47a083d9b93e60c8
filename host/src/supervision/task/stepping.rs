//! A block's task driven from outside, one step at a time, instead of by its own loop
//! ([`BlockTask::run`]): the test kit runs a block this way, so that a test knows when the block
//! has done everything it was given (no step is ready).
//!
//! Invariant: a step is exactly one step of `run`'s loop (the same `next` and the same `step`),
//! so a block behaves the same whichever drives it.

use futures_util::FutureExt as _;

use super::{BlockTask, Command, Next, Outcome, Step};

/// A task and where its loop is.
pub struct Stepping {
    task: Option<Box<BlockTask>>,
    /// A command that came during a restart's backoff, to obey first.
    obey: Option<Command>,
    outcome: Option<Outcome>,
}

impl Stepping {
    /// `task`, not started: its first step takes whatever is ready.
    pub fn new(task: BlockTask) -> Self {
        Self { task: Some(Box::new(task)), obey: None, outcome: None }
    }

    /// Takes one step if one is ready now (a command, a bag, a timer that is due, a server
    /// transition); false when nothing is ready, or the task has ended.
    pub async fn step(&mut self) -> bool {
        let Some(mut task) = self.task.take() else { return false };
        let next = match self.obey.take() {
            Some(cmd) => Next::Command(Some(cmd)),
            // Every source `next` selects on is cancel-safe: a poll that finds nothing ready
            // loses nothing.
            None => match task.next().now_or_never() {
                Some(next) => next,
                None => {
                    self.task = Some(task);
                    return false;
                }
            },
        };
        match task.step(next).await {
            Step::Going(task, cmd) => {
                self.task = Some(task);
                self.obey = cmd;
            }
            Step::Ended(outcome) => self.outcome = Some(outcome),
        }
        true
    }

    /// How the task ended, once it has.
    pub fn outcome(&self) -> Option<&Outcome> {
        self.outcome.as_ref()
    }
}
