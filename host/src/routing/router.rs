//! The router: which responsibility is which block, and where its queue is.
//!
//! Architecture invariant: the router does no I/O and never waits. It maps names to routes;
//! queueing (and waiting for room) goes through the route's `BlockQueue`. Every queue is bounded;
//! the router never holds a bag.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use crate::defaults::{BUILTIN_RESPONSIBILITIES, ROUTE_CACHE_ENTRIES};
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
    /// Moves on with every change to the table, so a [`RouteCache`] knows when it is stale.
    generation: AtomicU64,
}

#[derive(Debug, Default)]
struct Table {
    by_name: HashMap<String, Arc<Route>>,
    order: Vec<Arc<Route>>,
}

impl Router {
    /// A router that knows only the built-in blocks.
    pub fn new() -> Self {
        let router = Self { table: RwLock::new(Table::default()), generation: AtomicU64::new(0) };
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
        self.generation.fetch_add(1, Ordering::Release);
    }

    /// Removes the route of `responsibility`.
    pub fn remove(&self, responsibility: &str) -> Option<Arc<Route>> {
        let mut table = self.write();
        table.order.retain(|r| r.status.responsibility != responsibility);
        let removed = table.by_name.remove(responsibility);
        self.generation.fetch_add(1, Ordering::Release);
        removed
    }

    /// Which version of the table this is: it changes whenever a route is added, replaced or
    /// removed.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
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

/// A sender's own memory of the routes it used, so that sending a bag takes neither the router's
/// lock nor a hash of the target's name (every sender shares that lock: on the bag path its
/// cache line moved between cores with each bag).
///
/// Invariant: an entry is only used while the router's generation is the one it was read at, so
/// a route added, replaced or removed is seen by the next send, as with [`Router::resolve`].
#[derive(Debug, Default)]
pub struct RouteCache {
    generation: u64,
    entries: Vec<(Box<str>, Option<Arc<Route>>)>,
}

impl RouteCache {
    /// The route of `target` (as [`Router::resolve`] gives it).
    pub fn resolve(&mut self, router: &Router, target: &str) -> Option<Arc<Route>> {
        // Read before the table: a change after it makes the next call start again.
        let generation = router.generation();
        if generation != self.generation {
            self.entries.clear();
            self.generation = generation;
        }
        if let Some((_, route)) = self.entries.iter().find(|(name, _)| **name == *target) {
            return route.clone();
        }
        let route = router.resolve(target);
        if self.entries.len() < ROUTE_CACHE_ENTRIES {
            self.entries.push((target.into(), route.clone()));
        }
        route
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
    fn a_route_cache_sees_every_change_to_the_table() {
        let router = Router::new();
        let mut cache = RouteCache::default();
        let capacity = |r: Option<Arc<Route>>| r.and_then(|r| r.queue.as_ref().map(|q| q.capacity()));
        assert!(cache.resolve(&router, "a").is_none(), "not there yet");
        let (a, _ra) = route("a", 2);
        router.insert(a);
        assert_eq!(capacity(cache.resolve(&router, "a")), Some(2), "an unknown target, then added");
        let first = cache.resolve(&router, "a").unwrap();
        assert!(Arc::ptr_eq(&first, &cache.resolve(&router, "a").unwrap()), "the same route while nothing changed");
        let (a2, _ra2) = route("a", 5);
        router.insert(a2);
        assert_eq!(capacity(cache.resolve(&router, "a")), Some(5), "replaced");
        router.remove("a");
        assert!(cache.resolve(&router, "a").is_none(), "removed");
        // More targets than it remembers: the rest are looked up each time, and still right.
        let mut held = Vec::new();
        for i in 0..2 * ROUTE_CACHE_ENTRIES {
            let (r, rx) = route(&format!("t{i}"), i + 1);
            router.insert(r);
            held.push(rx);
        }
        for _ in 0..2 {
            for i in 0..2 * ROUTE_CACHE_ENTRIES {
                assert_eq!(capacity(cache.resolve(&router, &format!("t{i}"))), Some(i + 1));
            }
        }
    }

    #[test]
    fn queue_depth_counts_waiting_bags() {
        let (r, _rx) = route("a", 3);
        r.queue.as_ref().unwrap().try_push(Envelope::Bag("{}".into())).unwrap();
        assert_eq!(r.queue_depth(), 1);
    }
}
