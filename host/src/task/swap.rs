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
use std::time::Instant;

use super::{BlockTask, Fault, Reply};
use crate::component::BlockComponent;
use crate::error::CallError;
use crate::instance::BlockInstance;
use crate::manifest::BlockSpec;
use crate::net::NetHub;
use crate::server::BlockServer;
use crate::state::{BlockCtx, Links};
use crate::stats::{BlockStatus, Counters};
use wasmtime::Engine;

impl BlockTask {
    pub(super) async fn swap(
        &mut self,
        component: Arc<BlockComponent>,
        spec: Arc<BlockSpec>,
        reply: Reply,
    ) -> Result<(), Fault> {
        let version = component.hash.short();
        if component.hooks.net != self.component.hooks.net {
            let why = if component.hooks.net {
                "the new version exports net-hook and the running one does not"
            } else {
                "the new version does not export net-hook like the running one"
            };
            return self.refuse(reply, &version, CallError::Guest(format!("{why}; restart the host to change that")));
        }
        if component.hooks.enqueue != self.component.hooks.enqueue {
            let why = if component.hooks.enqueue {
                "the new version exports enqueue-hook and the running one does not"
            } else {
                "the new version does not export enqueue-hook like the running one"
            };
            return self.refuse(reply, &version, CallError::Guest(format!("{why}; restart the host to change that")));
        }
        if self.instance.is_none() {
            // No instance now (restarting, or not initialised yet): the next one is of the new
            // version. A block that was running (a swap interrupted its restart backoff) starts
            // it at once: the new version may be the fix.
            self.adopt(component, spec);
            let _ = reply.send(Ok(()));
            if self.wants_run {
                self.start_instance().await?;
                if let Some(instance) = self.instance.as_mut() {
                    instance.run().await?;
                }
                self.status.set_state(crate::bindings::BlockState::Running);
                self.running = true;
                self.sync_server().await?;
            }
            return Ok(());
        }
        let paused = Instant::now();
        let state = match (component.hooks.state, self.instance.as_mut()) {
            (true, Some(old)) => match old.snapshot().await {
                Ok(state) => state,
                Err(e) => {
                    // The old instance died taking its snapshot: that is its own fault.
                    Counters::bump(&self.status.counters.swaps_failed);
                    let _ = reply.send(Err(e.clone()));
                    return Err(e.into());
                }
            },
            _ => None,
        };
        let config = serde_json::Value::Object(spec.config.clone()).to_string();
        let parts = self.parts();
        let new = ready_instance(parts, &component, &spec, &config, state.as_deref()).await;
        let mut new = match new {
            Ok(new) => new,
            Err(e) => return self.refuse(reply, &version, e),
        };
        if let Some(mut old) = self.instance.take() {
            old.ctx().timers.clear();
            if let Err(e) = old.finish().await {
                tracing::warn!("the old version's finish failed during the swap: {e}");
            }
        }
        if self.running
            && let Err(e) = new.run().await
        {
            tracing::error!("version {version} failed in run after the swap: {e}; going back to the old version");
            Counters::bump(&self.status.counters.swaps_failed);
            let _ = reply.send(Err(e));
            return self.revert(state.as_deref()).await;
        }
        self.instance = Some(new);
        self.told = (false, 0);
        self.adopt(component, spec);
        let pause = paused.elapsed();
        Counters::bump(&self.status.counters.swaps);
        self.status.counters.last_swap_pause_us.store(pause.as_micros() as u64, std::sync::atomic::Ordering::Relaxed);
        self.status.swap_pause.record(pause);
        tracing::info!(version = %version, pause_us = pause.as_micros() as u64, "swapped");
        let _ = reply.send(Ok(()));
        // The new version hears of the server after the swap is done (a trap there is its own
        // fault, handled as any other).
        self.sync_server().await
    }

    /// The new version failed after the old one finished: run the old version again, restored
    /// from the snapshot taken for the swap.
    async fn revert(&mut self, state: Option<&[u8]>) -> Result<(), Fault> {
        let (component, spec, config) = (self.component.clone(), self.spec.clone(), self.config.clone());
        let parts = self.parts();
        let mut old = ready_instance(parts, &component, &spec, &config, state).await?;
        old.run().await?;
        self.instance = Some(old);
        self.told = (false, 0);
        self.sync_server().await
    }

    fn refuse(&mut self, reply: Reply, version: &str, error: CallError) -> Result<(), Fault> {
        Counters::bump(&self.status.counters.swaps_failed);
        tracing::warn!("version {version} refused, the running version carries on: {error}");
        let _ = reply.send(Err(error));
        Ok(())
    }

    /// From now on, new instances are of `component` with `spec`.
    fn adopt(&mut self, component: Arc<BlockComponent>, spec: Arc<BlockSpec>) {
        self.status.set_version(component.hash.short());
        self.config = serde_json::Value::Object(spec.config.clone()).to_string();
        if spec.policy.max_restarts != self.spec.policy.max_restarts || spec.policy.window != self.spec.policy.window {
            self.intensity = crate::restart::Intensity::new(spec.policy.max_restarts, spec.policy.window);
        }
        self.component = component;
        self.spec = spec;
    }
}

/// What a new instance is made with, besides its component and spec.
struct Parts {
    engine: Engine,
    status: Arc<BlockStatus>,
    links: Links,
    net: Option<Arc<NetHub>>,
    server: Option<Arc<BlockServer>>,
}

impl BlockTask {
    fn parts(&self) -> Parts {
        Parts {
            engine: self.engine.clone(),
            status: self.status.clone(),
            links: self.links.clone(),
            net: self.net.clone(),
            server: self.server.clone(),
        }
    }
}

/// A fresh instance of `component` with `config`, initialised and restored from `state`.
async fn ready_instance(
    Parts { engine, status, links, net, server }: Parts,
    component: &Arc<BlockComponent>,
    spec: &BlockSpec,
    config: &str,
    state: Option<&[u8]>,
) -> Result<BlockInstance, CallError> {
    let mut ctx = BlockCtx::new(status, component.hooks, &spec.limits, links);
    ctx.net = net;
    ctx.server = server;
    let mut instance = BlockInstance::new(&engine, component, ctx).await?;
    instance.init(config).await?;
    if let Some(state) = state {
        instance.restore(state).await?;
    }
    Ok(instance)
}
