//! The router: which responsibility is which block, and where its queue is.
//!
//! Architecture invariant: the router does no I/O and never waits. It maps names to routes;
//! queueing (and waiting for room) goes through the route's `BlockQueue`. Every queue is bounded;
//! the router never holds a bag.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use crate::defaults::BUILTIN_RESPONSIBILITIES;
use crate::routing::queue::BlockQueue;
use crate::stats::BlockStatus;

/// How to reach one block.
#[derive(Debug)]
pub struct Route {
    /// The block's state and counters.
    pub status: Arc<BlockStatus>,
    /// Its queue (which knows what bags it accepts); `None` when the block takes no bags (no
    /// `enqueue-hook`, or built in).
    pub queue: Option<BlockQueue>,
    /// Bags to it go through the server even from this host (`durable` or `shared` blocks).
    pub via_server: bool,
    /// Its queue when it takes streams (exports `stream-hook`).
    pub streams: Option<BlockQueue>,
}

impl Route {
    /// Bags waiting in the queue now.
    pub fn queue_depth(&self) -> u64 {
        self.queue.as_ref().map_or(0, BlockQueue::depth)
    }

    /// The block's stats, with its queue's depth and capacity.
    pub fn snapshot(&self) -> crate::stats::StatsSnapshot {
        let capacity = self.queue.as_ref().map_or(0, |q| q.capacity() as u64);
        self.status.snapshot(self.queue_depth(), capacity)
    }
}

/// Every route, in start order.
#[derive(Debug)]
pub struct Router {
    table: RwLock<Table>,
}

#[derive(Debug, Default)]
struct Table {
    by_name: HashMap<String, Arc<Route>>,
    order: Vec<Arc<Route>>,
}

impl Router {
    /// A router that knows only the built-in blocks.
    pub fn new() -> Self {
        let router = Self { table: RwLock::new(Table::default()) };
        for name in BUILTIN_RESPONSIBILITIES {
            router.insert(Route {
                status: Arc::new(BlockStatus::builtin(name)),
                queue: None,
                via_server: false,
                streams: None,
            });
        }
        router
    }

    /// Adds a route, or replaces the one with the same responsibility (keeping its place).
    pub fn insert(&self, route: Route) {
        let route = Arc::new(route);
        let mut table = self.write();
        let name = route.status.responsibility.clone();
        // Only a replacement looks for its place (adding 10,000 blocks stays linear).
        if table.by_name.contains_key(&name)
            && let Some(pos) = table.order.iter().position(|r| r.status.responsibility == name)
        {
            table.order[pos] = route.clone();
        } else {
            table.order.push(route.clone());
        }
        table.by_name.insert(name, route);
    }

    /// Removes the route of `responsibility`.
    pub fn remove(&self, responsibility: &str) -> Option<Arc<Route>> {
        let mut table = self.write();
        table.order.retain(|r| r.status.responsibility != responsibility);
        table.by_name.remove(responsibility)
    }

    /// The route of `responsibility`.
    pub fn resolve(&self, responsibility: &str) -> Option<Arc<Route>> {
        self.read().by_name.get(responsibility).cloned()
    }

    /// Every route, built-in ones first, then in start order.
    pub fn routes(&self) -> Vec<Arc<Route>> {
        self.read().order.clone()
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Table> {
        // The table is only ever replaced whole under the lock; a poisoned lock still holds a
        // consistent table.
        self.table.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Table> {
        self.table.write().unwrap_or_else(|p| p.into_inner())
    }
}

impl Default for Router {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::routing::bag::BagLimits;
    use crate::routing::queue::{Envelope, QueueReceiver};

    fn route(name: &str, capacity: usize) -> (Route, QueueReceiver) {
        let status = Arc::new(BlockStatus::new(name, name, true));
        let (queue, rx) = BlockQueue::new(capacity, 1 << 20, status.clone(), BagLimits { max_bytes: 10, max_depth: 2 });
        (Route { status, queue: Some(queue), via_server: false, streams: None }, rx)
    }

    #[test]
    fn resolves_lists_in_order_and_replaces_in_place() {
        let router = Router::new();
        let (a, _ra) = route("a", 2);
        let (b, _rb) = route("b", 2);
        router.insert(a);
        router.insert(b);
        let names = |r: &Router| r.routes().iter().map(|r| r.status.responsibility.clone()).collect::<Vec<_>>();
        assert_eq!(names(&router), ["initiator", "finisher", "a", "b"]);
        assert!(router.resolve("initiator").is_some_and(|r| r.queue.is_none() && r.status.builtin));
        let (a2, _ra2) = route("a", 5);
        router.insert(a2);
        assert_eq!(names(&router), ["initiator", "finisher", "a", "b"]);
        assert_eq!(router.resolve("a").map(|r| r.queue.as_ref().map(|q| q.capacity())), Some(Some(5)));
        assert!(router.remove("a").is_some());
        assert!(router.resolve("a").is_none());
        assert_eq!(names(&router), ["initiator", "finisher", "b"]);
    }

    #[test]
    fn queue_depth_counts_waiting_bags() {
        let (r, _rx) = route("a", 3);
        r.queue.as_ref().unwrap().try_push(Envelope::Bag("{}".into())).unwrap();
        assert_eq!(r.queue_depth(), 1);
    }
}
