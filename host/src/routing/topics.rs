//! Topics between blocks: who is subscribed to what ([`Topics`]). Emitting is the controller's
//! (`controller/topics.rs`).
//!
//! Invariants: a block has at most one subscription per pattern; a topic reaches each block at
//! most once however many of its patterns cover it (blocking if any of them is); the table does
//! no I/O and never waits, and it holds only queues' sending sides, so a finished block's
//! subscriptions refuse nothing but themselves.

use std::sync::{Arc, RwLock};

use crate::manifest::TopicSub;
use crate::manifest::subject::covers;
use crate::routing::queue::BlockQueue;

/// The key a bag bridged to the server carries first: the host that emitted it, so that the
/// host does not take its own bags back from the server.
pub const HOST_KEY: &str = "__host";

/// Where a block's emits on bridged topics go besides its subscribers: the block's outbox to
/// the server (the server side implements it; `routing` names no network type).
pub trait TopicOutbox: Send + Sync {
    /// Queues `payload` for the server subject `subject`, in order after what the block
    /// published before; errs (saying how full it is) when the outbox has no room.
    fn push(&self, subject: &str, payload: Vec<u8>) -> Result<(), String>;
}

/// The topics this host bridges to the server, and how its bags are told from other hosts'.
#[derive(Debug, Clone, Default)]
pub struct Bridge {
    /// The bridged topic patterns (`[host] bridge_topics`).
    pub patterns: Vec<String>,
    /// This host's name in [`HOST_KEY`].
    pub host: String,
}

impl Bridge {
    /// Whether `topic` is bridged.
    pub fn covers(&self, topic: &str) -> bool {
        self.patterns.iter().any(|p| covers(p, topic))
    }

    /// What a bag of this host looks like from its first bytes.
    pub fn own_prefix(&self) -> String {
        format!("{{\"{HOST_KEY}\":{}", serde_json::Value::from(self.host.as_str()))
    }
}

/// One block's subscription to one pattern.
#[derive(Debug)]
pub struct Subscription {
    /// The subscriber's responsibility.
    pub block: String,
    /// The topics it covers.
    pub pattern: String,
    /// A full queue drops the copy instead of making the emitter wait.
    pub lossy: bool,
    /// The subscriber's queue.
    pub queue: BlockQueue,
}

/// Every subscription of this host, in the order they were made.
#[derive(Debug, Default)]
pub struct Topics {
    subs: RwLock<Vec<Arc<Subscription>>>,
}

/// Where a topic's bag goes: a subscriber, and whether it is lossy.
pub struct Target {
    /// The subscriber's responsibility.
    pub block: String,
    /// Lossy: none of its subscriptions that cover the topic makes the emitter wait.
    pub lossy: bool,
    /// Its queue.
    pub queue: BlockQueue,
}

impl Topics {
    fn read(&self) -> std::sync::RwLockReadGuard<'_, Vec<Arc<Subscription>>> {
        self.subs.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Vec<Arc<Subscription>>> {
        self.subs.write().unwrap_or_else(|p| p.into_inner())
    }

    /// Subscribes `block` (whose queue is `queue`) to `sub`; subscribing again to the same
    /// pattern only changes whether it is lossy. Returns whether the subscription is new.
    pub fn subscribe(&self, block: &str, queue: &BlockQueue, sub: &TopicSub) -> bool {
        let mut subs = self.write();
        let new = Arc::new(Subscription {
            block: block.to_owned(),
            pattern: sub.pattern.clone(),
            lossy: sub.lossy,
            queue: queue.clone(),
        });
        match subs.iter().position(|s| s.block == block && s.pattern == sub.pattern) {
            Some(i) => {
                subs[i] = new;
                false
            }
            None => {
                subs.push(new);
                true
            }
        }
    }

    /// Ends `block`'s subscription to `pattern`; returns whether there was one.
    pub fn unsubscribe(&self, block: &str, pattern: &str) -> bool {
        let mut subs = self.write();
        let before = subs.len();
        subs.retain(|s| !(s.block == block && s.pattern == pattern));
        subs.len() != before
    }

    /// Keeps only the subscriptions of `block` whose pattern `keep` accepts.
    pub fn retain_block(&self, block: &str, keep: impl Fn(&str) -> bool) {
        self.write().retain(|s| s.block != block || keep(&s.pattern));
    }

    /// Ends every subscription of `block` (taken out of the manifest).
    pub fn remove_block(&self, block: &str) {
        self.write().retain(|s| s.block != block);
    }

    /// How many subscriptions `block` holds.
    pub fn count(&self, block: &str) -> usize {
        self.read().iter().filter(|s| s.block == block).count()
    }

    /// Whether `block` is subscribed to `pattern` already.
    pub fn targets_pattern(&self, block: &str, pattern: &str) -> bool {
        self.read().iter().any(|s| s.block == block && s.pattern == pattern)
    }

    /// The subscribers `topic` goes to, each once, in the order they first subscribed.
    pub fn targets(&self, topic: &str) -> Vec<Target> {
        let mut targets: Vec<Target> = Vec::new();
        for s in self.read().iter().filter(|s| covers(&s.pattern, topic)) {
            match targets.iter_mut().find(|t| t.block == s.block) {
                Some(t) => t.lossy &= s.lossy,
                None => targets.push(Target { block: s.block.clone(), lossy: s.lossy, queue: s.queue.clone() }),
            }
        }
        targets
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::routing::bag::BagLimits;
    use crate::stats::BlockStatus;

    fn queue(name: &str) -> BlockQueue {
        let status = Arc::new(BlockStatus::new(name, name, true));
        BlockQueue::new(8, 1 << 20, status, BagLimits { max_bytes: 1 << 16, max_depth: 8 }).0
    }

    fn sub(pattern: &str, lossy: bool) -> TopicSub {
        TopicSub { pattern: pattern.into(), lossy }
    }

    #[test]
    fn a_topic_reaches_each_subscriber_once_blocking_if_any_pattern_is() {
        let topics = Topics::default();
        let (a, b) = (queue("a"), queue("b"));
        assert!(topics.subscribe("a", &a, &sub("orders.*", true)));
        assert!(topics.subscribe("a", &a, &sub("orders.>", false)));
        assert!(topics.subscribe("b", &b, &sub("orders.paid", true)));
        assert!(!topics.subscribe("b", &b, &sub("orders.paid", true)), "the same pattern again");
        let targets: Vec<(String, bool)> =
            topics.targets("orders.paid").into_iter().map(|t| (t.block, t.lossy)).collect();
        assert_eq!(targets, [("a".to_owned(), false), ("b".to_owned(), true)]);
        assert_eq!(topics.targets("orders.new").len(), 1);
        assert!(topics.targets("other").is_empty());
        assert!(topics.unsubscribe("a", "orders.>"));
        assert!(!topics.unsubscribe("a", "orders.>"));
        assert_eq!(topics.targets("orders.paid.late").len(), 0);
        topics.remove_block("b");
        assert_eq!(topics.count("b"), 0);
        assert_eq!(topics.count("a"), 1);
    }
}
