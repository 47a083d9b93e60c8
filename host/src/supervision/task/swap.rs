//! Hot swap: replace a running block's instance with one of a new version (or a new config)
//! between two bags. The queue is the task's and stays as it is, so nothing queued is lost or
//! duplicated, and order is kept.
//!
//! Order: snapshot the old instance (when both versions carry state), new instance, `init`,
//! `restore`, old `finish`, new `run`. Anything failing on the new side before the old one
//! finishes leaves the old instance running untouched. If the new version traps in `run`, after
//! the old one finished, the task goes back to the old version: a fresh instance of it, restored
//! from the same snapshot.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use super::{BlockTask, Fault, Life, Reply, Told};
use crate::block::component::BlockComponent;
use crate::error::CallError;
use crate::manifest::BlockSpec;
use crate::restart::Intensity;
use crate::runtime::hooks::Hooks;
use crate::stats::Counters;

impl BlockTask {
    pub(super) async fn swap(
        &mut self,
        component: Arc<BlockComponent>,
        spec: Arc<BlockSpec>,
        reply: Reply,
    ) -> Result<(), Fault> {
        let version = component.hash.short();
        if let Some(why) = incompatible(self.component.hooks, component.hooks) {
            let error = CallError::Guest(format!("{why}; restart the host to change that"));
            return self.refuse(reply, &version, error);
        }
        if let Life::Down | Life::Faulted = self.life {
            // No instance now (restarting, or not initialised yet): the next one is of the new
            // version. A block that was running (a swap interrupted its restart backoff) starts
            // it at once: the new version may be the fix.
            self.adopt(component, spec);
            // A swap with no pause (nothing was running) and no snapshot, counted and logged as
            // every swap is.
            let counters = &self.parts.status.counters;
            Counters::bump(&counters.swaps);
            counters.last_swap_pause_us.store(0, Ordering::Relaxed);
            counters.last_swap_at_ms.store(crate::stats::unix_ms(), Ordering::Relaxed);
            tracing::info!(event = "swapped", version = %version, pause_us = 0u64, "swapped (no instance was running)");
            let _ = reply.send(Ok(()));
            if !self.life.wants_run() {
                return Ok(());
            }
            let instance = self.ready_instance(&self.component.clone(), &self.spec.clone(), None).await?;
            return self.start_running(instance, None).await;
        }
        let paused = Instant::now();
        let state = match (component.hooks.state, self.life.instance()) {
            (true, Some(old)) => match old.snapshot().await {
                Ok(state) => state,
                Err(e) => {
                    // The old instance died taking its snapshot: that is its own fault.
                    Counters::bump(&self.parts.status.counters.swaps_failed);
                    let _ = reply.send(Err(e.clone()));
                    return Err(e.into());
                }
            },
            _ => None,
        };
        let mut new = match self.ready_instance(&component, &spec, state.as_deref()).await {
            Ok(new) => new,
            Err(e) => return self.refuse(reply, &version, e),
        };
        let running = self.life.is_running();
        if let Some(old) = std::mem::replace(&mut self.life, Life::Down).instance() {
            old.ctx().controller.timers.clear();
            if let Err(e) = old.finish().await {
                tracing::warn!("the old version's finish failed during the swap: {e}");
            }
        }
        if running && let Err(e) = new.run().await {
            tracing::error!(event = "swap_reverted", version = %version, "version {version} failed in run after the swap: {e}; going back to the old version");
            Counters::bump(&self.parts.status.counters.swaps_failed);
            let _ = reply.send(Err(e));
            let old = self.ready_instance(&self.component.clone(), &self.spec.clone(), state.as_deref()).await?;
            return self.start_running(old, None).await;
        }
        self.life = if running { Life::Running(new, Told::default()) } else { Life::Ready(new) };
        self.adopt(component, spec);
        let pause = paused.elapsed();
        let status = &self.parts.status;
        Counters::bump(&status.counters.swaps);
        status.counters.last_swap_pause_us.store(pause.as_micros() as u64, Ordering::Relaxed);
        status.counters.last_swap_at_ms.store(crate::stats::unix_ms(), Ordering::Relaxed);
        status.swap_pause.record(pause);
        tracing::info!(event = "swapped", version = %version, pause_us = pause.as_micros() as u64, "swapped");
        let _ = reply.send(Ok(()));
        // The new version hears of the server after the swap is done (a trap there is its own
        // fault, handled as any other).
        self.sync_server().await
    }

    fn refuse(&mut self, reply: Reply, version: &str, error: CallError) -> Result<(), Fault> {
        Counters::bump(&self.parts.status.counters.swaps_failed);
        tracing::warn!(event = "swap_refused", version = %version, "version {version} refused, the running version carries on: {error}");
        let _ = reply.send(Err(error));
        Ok(())
    }

    /// From now on, new instances are of `component` with `spec`.
    fn adopt(&mut self, component: Arc<BlockComponent>, spec: Arc<BlockSpec>) {
        self.parts.status.set_version(component.hash.short());
        if spec.policy.max_restarts != self.spec.policy.max_restarts || spec.policy.window != self.spec.policy.window {
            *self.intensity.lock().unwrap_or_else(|p| p.into_inner()) =
                Intensity::new(spec.policy.max_restarts, spec.policy.window);
        }
        self.component = component;
        self.spec = spec;
    }
}

/// Why a version with hooks `new` cannot replace one with `old` while the block runs: whether a
/// block takes bags, socket events, the outcomes of its calls and streams decides its queue, its
/// sockets and its routes, which outlive instances.
fn incompatible(old: Hooks, new: Hooks) -> Option<&'static str> {
    match (old.net, new.net, old.enqueue, new.enqueue) {
        (false, true, ..) => return Some("the new version exports net-hook and the running one does not"),
        (true, false, ..) => return Some("the new version does not export net-hook like the running one"),
        (.., false, true) => return Some("the new version exports enqueue-hook and the running one does not"),
        (.., true, false) => return Some("the new version does not export enqueue-hook like the running one"),
        _ => {}
    }
    match (old.reply, new.reply, old.stream, new.stream) {
        (false, true, ..) => Some("the new version exports reply-hook and the running one does not"),
        (true, false, ..) => Some("the new version does not export reply-hook like the running one"),
        (.., false, true) => Some("the new version exports stream-hook and the running one does not"),
        (.., true, false) => Some("the new version does not export stream-hook like the running one"),
        _ => None,
    }
}
