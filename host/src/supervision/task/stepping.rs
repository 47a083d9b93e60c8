//! A block's task driven from outside, one step at a time, instead of by its own loop
//! ([`BlockTask::run`]): the test kit runs a block this way, so that a test knows when the block
//! has done everything it was given (no step is ready).
//!
//! Invariant: a step is exactly one step of `run`'s loop (the same `next` and the same `step`),
//! so a block behaves the same whichever drives it.

use futures_util::FutureExt as _;

use super::{BlockTask, Command, Next, Outcome};

/// What [`Stepping::step`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stepped {
    /// It took a step.
    Took,
    /// Nothing was ready.
    Idle,
    /// The task has ended (or was lost: a step future dropped half-way, a panic outside its
    /// steps' guard).
    Gone,
}

/// A task and where its loop is.
pub struct Stepping {
    task: Option<BlockTask>,
    /// A command that came during a restart's backoff, to obey first.
    obey: Option<Command>,
    outcome: Option<Outcome>,
}

impl Stepping {
    /// `task`, not started: its first step takes whatever is ready.
    pub fn new(task: BlockTask) -> Self {
        Self { task: Some(task), obey: None, outcome: None }
    }

    /// Takes one step if one is ready now (a command, a bag, a timer that is due, a server
    /// transition).
    ///
    /// Every source `next` selects on is cancel-safe, so a poll that finds nothing ready loses
    /// nothing. A source may also look not ready when it is (tokio's per-task budget makes a
    /// ready `recv` return `Pending` once the task has used it up): whoever takes "idle" as
    /// final must first yield to the runtime, which refills the budget, and ask again.
    pub async fn step(&mut self) -> Stepped {
        let Some(mut task) = self.task.take() else { return Stepped::Gone };
        let next = match self.obey.take() {
            Some(cmd) => Next::Command(Some(cmd)),
            None => match task.next().now_or_never() {
                Some(next) => next,
                None => {
                    self.task = Some(task);
                    return Stepped::Idle;
                }
            },
        };
        match task.step(next).await {
            Ok(cmd) => {
                self.task = Some(task);
                self.obey = cmd;
            }
            Err(ending) => self.outcome = Some(task.ending(ending).await),
        }
        Stepped::Took
    }

    /// How the task ended, once it has.
    pub fn outcome(&self) -> Option<&Outcome> {
        self.outcome.as_ref()
    }
}
