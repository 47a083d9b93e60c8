//! Changes while running: a new version of a component (hot swap of every instance of it) and a
//! new manifest (blocks added, removed, or swapped to a new config or component).
//!
//! Invariant: a change is applied only once it is known to be valid: the reloader has compiled
//! and checked every component and the manifest before anything arrives here; a block that
//! refuses a swap keeps its running version.

use std::future::Future;
use std::sync::Arc;

use tokio::sync::oneshot;

use super::{Signal, Supervisor, command};
use crate::block::component::BlockComponent;
use crate::deps::Graph;
use crate::error::CallError;
use crate::manifest::{BlockSpec, Manifest};
use crate::routing::bag::BagLimits;
use crate::supervision::task::Command;

/// A change for the supervisor to apply.
#[derive(Debug)]
pub enum Reload {
    /// Swap every instance of the component `name` to `component`.
    Component {
        /// The component's name (its file without `.wasm`).
        name: String,
        /// The new version, compiled and checked.
        component: Arc<BlockComponent>,
        /// How each instance took it.
        done: oneshot::Sender<SwapOutcome>,
    },
    /// Make the running set match `manifest`.
    Manifest {
        /// The new manifest, checked.
        manifest: Box<Manifest>,
        /// Its blocks' components, in its order, compiled and checked.
        components: Vec<Arc<BlockComponent>>,
        /// Signalled when applied.
        done: oneshot::Sender<SwapOutcome>,
    },
}

/// How a change went, per block.
#[derive(Debug, Default)]
pub struct SwapOutcome {
    /// Blocks that run the new version or config now.
    pub swapped: Vec<String>,
    /// Blocks that refused it, and why; they run what they ran before.
    pub refused: Vec<(String, CallError)>,
}

impl Supervisor {
    pub(super) async fn reload<F: Future<Output = ()>>(&mut self, reload: Reload, signal: &mut Signal<F>) {
        match reload {
            Reload::Component { name, component, done } => {
                let targets: Vec<usize> = self.live().filter(|&i| self.slots[i].spec.name == name).collect();
                let mut outcome = SwapOutcome::default();
                for i in targets {
                    let spec = self.slots[i].spec.clone();
                    let _ = self.swap(i, component.clone(), spec, &mut outcome).await;
                }
                let _ = done.send(outcome);
            }
            Reload::Manifest { manifest, components, done } => {
                let outcome = self.apply_manifest(&manifest, components, signal).await;
                let _ = done.send(outcome);
            }
        }
    }

    /// Indices of the blocks in the running set.
    fn live(&self) -> impl Iterator<Item = usize> + '_ {
        (0..self.slots.len()).filter(|&i| !self.slots[i].removed && self.slots[i].control.is_some())
    }

    async fn swap(
        &mut self,
        i: usize,
        component: Arc<BlockComponent>,
        spec: Arc<BlockSpec>,
        outcome: &mut SwapOutcome,
    ) -> bool {
        let responsibility = self.slots[i].spec.responsibility.clone();
        let Some(control) = self.slots[i].control.clone() else { return false };
        let spec_for_task = spec.clone();
        match command(control, move |reply| Command::Swap { component, spec: spec_for_task, reply }).await {
            Ok(()) => {
                self.slots[i].spec = spec;
                outcome.swapped.push(responsibility);
                true
            }
            Err(e) => {
                outcome.refused.push((responsibility, e));
                false
            }
        }
    }

    /// Brings running block `i` to its edited entry `spec`: new grants, and a swap when its
    /// component, config, policy or limits changed. All of it or none: a block that refuses the
    /// swap keeps its old grants too.
    async fn change_block(
        &mut self,
        i: usize,
        spec: &Arc<BlockSpec>,
        component: Arc<BlockComponent>,
        outcome: &mut SwapOutcome,
    ) {
        let (spec, routing_changed) = spec.keeping_routing_of(&self.slots[i].spec);
        if routing_changed {
            tracing::warn!(
                block = %spec.responsibility,
                "a changed `durable`, `shared`, `publish_to_stream`, `outbox`, `workers` or `partition` applies when the host restarts; it keeps its current routing"
            );
        }
        let spec = Arc::new(spec);
        let old = self.slots[i].spec.clone();
        let net_changed = old.listen != spec.listen || old.connect != spec.connect;
        let server_changed = old.publish != spec.publish || old.subscribe != spec.subscribe;
        let needs_swap = old.name != spec.name
            || old.config != spec.config
            || old.policy != spec.policy
            || old.limits != spec.limits
            || old.control != spec.control
            // Topic grants live in the instance: a new one takes them.
            || old.topics != spec.topics
            || self.slots[i].status.version() != component.hash.short();
        if !(net_changed || server_changed || needs_swap) {
            self.slots[i].spec = spec;
            return;
        }
        // The new grants are the ones in force from the new instance's `init` on; listeners and
        // subscriptions they drop end once the block took the change.
        let net = self.slots[i].net.clone().filter(|_| net_changed);
        if let Some(hub) = &net {
            match hub.prepare(&spec.listen).await {
                Ok(regrant) => hub.open(regrant),
                Err(e) => {
                    tracing::warn!(event = "grants_refused", block = %spec.responsibility, "its new grants cannot be served: {e:#}");
                    outcome.refused.push((spec.responsibility.clone(), CallError::Guest(format!("{e:#}"))));
                    return;
                }
            }
            hub.grant(&spec.listen, &spec.connect);
        }
        let server = self.slots[i].server.clone().filter(|_| server_changed);
        if let Some(server) = &server {
            server.grant(&spec.publish, &spec.subscribe);
        }
        let took = if needs_swap {
            if restart_only(&old.limits) != restart_only(&spec.limits) {
                tracing::warn!(
                    block = %spec.responsibility,
                    "new queue, send buffer, subscription, log or outbox limits apply when the host restarts; \
                     the new instance runs with the rest of the change"
                );
            }
            tracing::info!(block = %spec.responsibility, "its manifest entry changed: swapping");
            self.swap(i, component, spec.clone(), outcome).await
        } else {
            tracing::info!(block = %spec.responsibility, "its grants changed");
            self.slots[i].spec = spec.clone();
            true
        };
        if took
            && (old.limits.max_bag_bytes, old.limits.max_bag_depth)
                != (spec.limits.max_bag_bytes, spec.limits.max_bag_depth)
            && let Some(queue) = self.router.resolve(&spec.responsibility).and_then(|r| r.queue.clone())
        {
            // Whichever way bags come (other blocks, the server, the cluster), the new limits hold.
            queue.set_limits(BagLimits { max_bytes: spec.limits.max_bag_bytes, max_depth: spec.limits.max_bag_depth });
        }
        if took && old.topics != spec.topics {
            self.regrant_topics(&old, &spec);
        }
        if !took {
            if let Some(hub) = &net {
                hub.grant(&old.listen, &old.connect);
            }
            if let Some(server) = &server {
                server.grant(&old.publish, &old.subscribe);
            }
        }
        if let Some(hub) = &net {
            hub.close_ungranted().await;
        }
        if let Some(server) = &server {
            server.end_ungranted();
        }
    }

    /// Brings a block's topic subscriptions to its edited entry: the ones its old entry listed
    /// and the new one does not end, the new ones begin, and the ones made at run time that the
    /// new `subscribe_topics` no longer covers end.
    fn regrant_topics(&self, old: &BlockSpec, spec: &BlockSpec) {
        let topics = &self.links.topics;
        let me = &spec.responsibility;
        let listed = |s: &BlockSpec, pattern: &str| s.topics.topics.iter().any(|t| t.pattern == pattern);
        topics.retain_block(me, |pattern| {
            listed(spec, pattern)
                || (!listed(old, pattern)
                    && spec.topics.subscribe.iter().any(|grant| crate::manifest::subject::covers(grant, pattern)))
        });
        if let Some(queue) = self.router.resolve(me).and_then(|r| r.queue.clone()) {
            for sub in &spec.topics.topics {
                topics.subscribe(me, &queue, sub);
            }
        }
        tracing::info!(block = %me, "its topics changed");
    }

    async fn apply_manifest<F: Future<Output = ()>>(
        &mut self,
        manifest: &Manifest,
        components: Vec<Arc<BlockComponent>>,
        signal: &mut Signal<F>,
    ) -> SwapOutcome {
        let mut outcome = SwapOutcome::default();
        // Blocks taken out of the manifest finish, the most recently started first.
        let gone: Vec<usize> =
            self.live().filter(|&i| manifest.block(&self.slots[i].spec.responsibility).is_none()).collect();
        for &i in gone.iter().rev() {
            let responsibility = self.slots[i].spec.responsibility.clone();
            tracing::info!(block = %responsibility, "taken out of the manifest: finishing it");
            self.finish_one(i).await;
            self.slots[i].removed = true;
            self.router.remove(&responsibility);
            self.links.topics.remove_block(&responsibility);
        }
        // Blocks whose entry changed swap to the new config or component.
        let mut added = Vec::new();
        for (spec, component) in manifest.blocks.iter().zip(components) {
            let spec = Arc::new(spec.clone());
            let running = self.live().find(|&i| self.slots[i].spec.responsibility == spec.responsibility);
            match running {
                Some(i) => self.change_block(i, &spec, component, &mut outcome).await,
                None => {
                    tracing::info!(block = %spec.responsibility, "new in the manifest: starting it");
                    match self.add_block(spec.clone(), component).await {
                        Ok(i) => added.push(i),
                        Err(e) => {
                            tracing::error!(block = %spec.responsibility, "cannot add the block: {e:#}");
                            outcome.refused.push((spec.responsibility.clone(), CallError::Guest(format!("{e:#}"))));
                        }
                    }
                }
            }
        }
        if *self.links.settings != manifest.settings {
            tracing::warn!("changed [host] settings apply when the host restarts");
        }
        self.rebuild_graph(manifest);
        if !added.is_empty() {
            if let Err(e) = self.start_blocks(&added, signal).await {
                tracing::error!("a new block failed to start and is left out: {e}");
            }
            for &i in &added {
                if !self.slots[i].inited {
                    self.slots[i].control = None;
                    self.slots[i].removed = true;
                    let responsibility = self.slots[i].spec.responsibility.clone();
                    self.router.remove(&responsibility);
                    self.links.topics.remove_block(&responsibility);
                } else {
                    outcome.swapped.push(self.slots[i].spec.responsibility.clone());
                }
            }
            self.run_blocks(&added).await;
        }
        outcome
    }

    /// The dependency graph over every slot, from `manifest`; removed slots depend on nothing.
    fn rebuild_graph(&mut self, manifest: &Manifest) {
        let names: Vec<String> = self
            .slots
            .iter()
            .enumerate()
            .map(|(i, s)| if s.removed { format!("\u{0}removed-{i}") } else { s.spec.responsibility.clone() })
            .collect();
        let afters: Vec<Vec<String>> = self
            .slots
            .iter()
            .map(|s| if s.removed { Vec::new() } else { manifest.explicit_after(&s.spec.responsibility) })
            .collect();
        let pairs: Vec<(&str, Option<&[String]>)> =
            names.iter().zip(&afters).map(|(n, a)| (n.as_str(), Some(a.as_slice()))).collect();
        match Graph::new(&pairs) {
            Ok(graph) => self.graph = graph,
            Err(e) => tracing::error!("the new dependencies cannot be ordered ({e:?}); keeping the old order"),
        }
    }
}

/// The limits that belong to the block rather than to an instance (its queue, its sockets, its
/// server side, its log and output rates): a swap does not change them.
fn restart_only(limits: &crate::defaults::Limits) -> impl PartialEq {
    (
        limits.queue,
        limits.queue_bytes,
        limits.send_buffer_bytes,
        limits.max_subscriptions,
        limits.log_lines_per_sec,
        limits.stdout_bytes_per_sec,
        limits.stderr_bytes_per_sec,
        limits.outbox_bytes,
    )
}
