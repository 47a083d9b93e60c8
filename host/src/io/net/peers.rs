//! The peers a UDP listener has heard from: the only addresses `send-datagram` may reach from it
//! without a `connect` grant (a block answers whoever sent to it; it cannot aim datagrams at
//! anyone else). Only peers whose datagram was queued count. Bounded: the peers first heard
//! from are forgotten first.

use std::collections::{HashSet, VecDeque};
use std::net::SocketAddr;
use std::sync::Mutex;

use crate::defaults::MAX_UDP_PEERS;

/// The recent peers of one UDP listener.
#[derive(Default)]
pub(super) struct Peers {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    set: HashSet<SocketAddr>,
    order: VecDeque<SocketAddr>,
}

impl Peers {
    /// Remembers that `peer` sent a datagram.
    pub(super) fn heard(&self, peer: SocketAddr) {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if !inner.set.insert(peer) {
            return;
        }
        inner.order.push_back(peer);
        if inner.order.len() > MAX_UDP_PEERS
            && let Some(oldest) = inner.order.pop_front()
        {
            inner.set.remove(&oldest);
        }
    }

    /// Whether `peer` sent to this listener (among the last [`MAX_UDP_PEERS`] peers).
    pub(super) fn knows(&self, peer: &SocketAddr) -> bool {
        self.inner.lock().unwrap_or_else(|p| p.into_inner()).set.contains(peer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn knows_recent_peers_only() {
        let peers = Peers::default();
        let addr = |port: u16| SocketAddr::from(([127, 0, 0, 1], port));
        for port in 0..=MAX_UDP_PEERS as u16 {
            peers.heard(addr(port));
        }
        peers.heard(addr(5));
        assert!(!peers.knows(&addr(0)), "the oldest is forgotten");
        assert!(peers.knows(&addr(1)) && peers.knows(&addr(MAX_UDP_PEERS as u16)));
        assert!(!peers.knows(&addr(60_000)));
    }
}
