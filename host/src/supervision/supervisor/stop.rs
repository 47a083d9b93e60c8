//! Stopping blocks: one on request, or all in reverse dependency order (to shut down, or before
//! starting them all again).

use tokio::task::JoinSet;

use super::{Supervisor, command};
use crate::error::CallError;
use crate::supervision::task::Command;

impl Supervisor {
    /// Asks block `i` to finish and waits for it.
    pub(super) async fn finish_one(&mut self, i: usize) {
        let slot = &mut self.slots[i];
        let Some(control) = slot.control.take() else { return };
        let inited = std::mem::take(&mut slot.inited);
        let responsibility = slot.spec.responsibility.clone();
        if !inited {
            return;
        }
        match command(control, |reply| Command::Finish { reply }).await {
            Ok(()) => tracing::info!(event = "finished", block = %responsibility, "finished"),
            Err(CallError::Gone) => tracing::warn!(block = %responsibility, "was not running when asked to finish"),
            Err(e) => self.report.finish_errors.push((responsibility, e)),
        }
    }

    /// Sends `Finish` (or, with `finishing == false`, `Reset`) to every live block, a block only
    /// once every block after it is done, independent blocks in parallel. `Finish` also lets go
    /// of each block.
    pub(super) async fn in_reverse_order(&mut self, finishing: bool) {
        let done: Vec<bool> = self.slots.iter().map(|s| s.control.is_none() || (finishing && !s.inited)).collect();
        let mut order = self.graph.finishing(&done);
        let mut pending: JoinSet<(usize, Result<(), CallError>)> = JoinSet::new();
        loop {
            for i in order.take() {
                let slot = &mut self.slots[i];
                let control = if finishing { slot.control.take() } else { slot.control.clone() };
                slot.inited = false;
                match control {
                    Some(control) if finishing => {
                        pending.spawn(async move { (i, command(control, |reply| Command::Finish { reply }).await) });
                    }
                    Some(control) => {
                        pending.spawn(async move { (i, command(control, |reply| Command::Reset { reply }).await) });
                    }
                    None => order.done(i),
                }
            }
            let Some(joined) = pending.join_next().await else {
                if order.has_ready() {
                    continue;
                }
                break;
            };
            let Ok((i, result)) = joined else { continue };
            order.done(i);
            let responsibility = self.slots[i].spec.responsibility.clone();
            match result {
                Ok(()) if finishing => tracing::info!(event = "finished", block = %responsibility, "finished"),
                Ok(()) | Err(CallError::Gone) => {}
                Err(e) if finishing => self.report.finish_errors.push((responsibility, e)),
                Err(e) => tracing::warn!(block = %responsibility, "finish before restart failed: {e}"),
            }
        }
    }

    /// Finishes every initialised block in reverse dependency order, then joins every task.
    pub(super) async fn stop_all(&mut self) {
        self.in_reverse_order(true).await;
        for slot in &mut self.slots {
            slot.control = None;
        }
        while let Some(joined) = self.tasks.join_next_with_id().await {
            // Escalation is moot now: we are stopping anyway.
            let _ = self.reap(joined);
        }
    }
}
