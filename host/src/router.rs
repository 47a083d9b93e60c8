//! The router: which responsibility is which block, and where its queue is.
//!
//! Architecture invariant: the router does no I/O and never waits. It maps names to routes;
//! sending (and waiting for room) is the caller's business, see `controller`. Every queue is
//! bounded; the router never holds a bag.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use tokio::sync::mpsc;

use crate::bag::BagLimits;
use crate::defaults::BUILTIN_RESPONSIBILITIES;
use crate::stats::BlockStatus;

/// What travels through a block's queue: bags, and the events of the sockets the host holds
/// for the block, in the order they happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Envelope {
    /// A checked and stamped bag, as JSON text.
    Bag(String),
    /// A client connected to one of the block's listeners.
    Accept {
        /// The connection's id.
        conn: u64,
        /// The listener, as bound.
        listener: String,
        /// The client's `ip:port`.
        peer: String,
    },
    /// Bytes arrived on a connection.
    Data {
        /// The connection's id.
        conn: u64,
        /// The bytes.
        data: Vec<u8>,
    },
    /// A connection closed.
    Closed {
        /// The connection's id.
        conn: u64,
    },
    /// A bag from the block's durable stream; acknowledged once `on-enqueue` returned.
    Durable {
        /// The bag, as JSON text.
        bag: String,
        /// Acknowledges it to the stream.
        ack: Acker,
    },
    /// A datagram arrived.
    Datagram {
        /// The UDP listener, as bound.
        listener: String,
        /// The sender's `ip:port`.
        peer: String,
        /// The datagram.
        data: Vec<u8>,
    },
}

impl Envelope {
    /// A JSON description, for dead letters and logs (a bag is itself).
    pub fn describe(&self) -> serde_json::Value {
        let text = |d: &[u8]| String::from_utf8_lossy(&d[..d.len().min(1024)]).into_owned();
        match self {
            Envelope::Bag(bag) | Envelope::Durable { bag, .. } => {
                serde_json::from_str(bag).unwrap_or_else(|_| serde_json::Value::String(bag.clone()))
            }
            Envelope::Accept { conn, listener, peer } => {
                serde_json::json!({"net": "accept", "conn": conn, "listener": listener, "peer": peer})
            }
            Envelope::Data { conn, data } => {
                serde_json::json!({"net": "data", "conn": conn, "bytes": data.len(), "text": text(data)})
            }
            Envelope::Closed { conn } => serde_json::json!({"net": "close", "conn": conn}),
            Envelope::Datagram { listener, peer, data } => serde_json::json!({
                "net": "datagram", "listener": listener, "peer": peer, "bytes": data.len(), "text": text(data)
            }),
        }
    }
}

/// Acknowledges one message of a durable stream, once.
#[derive(Clone)]
pub struct Acker(std::sync::Arc<std::sync::Mutex<Option<async_nats::jetstream::Message>>>);

impl Acker {
    /// Wraps a message to acknowledge later.
    pub fn new(message: async_nats::jetstream::Message) -> Self {
        Self(std::sync::Arc::new(std::sync::Mutex::new(Some(message))))
    }

    /// Acknowledges the message (only the first call does anything).
    pub async fn ack(&self) {
        let message = self.0.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(message) = message
            && let Err(e) = message.ack().await
        {
            tracing::warn!("acknowledging a durable bag failed (it will be delivered again): {e}");
        }
    }
}

impl Acker {
    /// Where to tell the server the bag is still being worked on; `None` once acknowledged.
    pub fn pending_reply(&self) -> Option<async_nats::Subject> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).as_ref().and_then(|m| m.reply.clone())
    }

    /// Whether a clone other than this one still holds the bag (it was not dropped unacknowledged).
    pub fn held_elsewhere(&self) -> bool {
        std::sync::Arc::strong_count(&self.0) > 1
    }
}

impl std::fmt::Debug for Acker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Acker")
    }
}

impl PartialEq for Acker {
    fn eq(&self, other: &Self) -> bool {
        std::sync::Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for Acker {}

/// How to reach one block.
#[derive(Debug)]
pub struct Route {
    /// The block's state and counters.
    pub status: Arc<BlockStatus>,
    /// Its queue; `None` when the block takes no bags (no `enqueue-hook`, or built in).
    pub queue: Option<mpsc::Sender<Envelope>>,
    /// What bags it accepts.
    pub limits: BagLimits,
    /// Bags to it go through the server even from this host (`durable` or `shared` blocks).
    pub via_server: bool,
}

impl Route {
    /// Bags waiting in the queue now.
    pub fn queue_depth(&self) -> u64 {
        self.queue.as_ref().map_or(0, |q| (q.max_capacity() - q.capacity()) as u64)
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
                limits: BagLimits { max_bytes: 0, max_depth: 0 },
                via_server: false,
            });
        }
        router
    }

    /// Adds a route, or replaces the one with the same responsibility (keeping its place).
    pub fn insert(&self, route: Route) {
        let route = Arc::new(route);
        let mut table = self.write();
        let name = route.status.responsibility.clone();
        if let Some(pos) = table.order.iter().position(|r| r.status.responsibility == name) {
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

    fn route(name: &str, capacity: usize) -> (Route, mpsc::Receiver<Envelope>) {
        let (tx, rx) = mpsc::channel(capacity);
        let status = Arc::new(BlockStatus::new(name, name, true));
        (Route { status, queue: Some(tx), limits: BagLimits { max_bytes: 10, max_depth: 2 }, via_server: false }, rx)
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
        assert_eq!(router.resolve("a").map(|r| r.queue.as_ref().map(|q| q.max_capacity())), Some(Some(5)));
        assert!(router.remove("a").is_some());
        assert!(router.resolve("a").is_none());
        assert_eq!(names(&router), ["initiator", "finisher", "b"]);
    }

    #[test]
    fn queue_depth_counts_waiting_bags() {
        let (r, _rx) = route("a", 3);
        r.queue.as_ref().unwrap().try_send(Envelope::Bag("{}".into())).unwrap();
        assert_eq!(r.queue_depth(), 1);
    }
}
