//! The `net` import: what a block can do with the sockets the host holds for it, and
//! [`NetCtx`], the part of a block's store it works on.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc::error::{SendTimeoutError, TrySendError};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::{NetHub, SendPermits, Write, socket_addr};
use crate::bindings::bagpipe::block::net::{self, NetError};
use crate::runtime::clock::CallClock;
use crate::stats::Counters;

/// The `net` capability's part of a block's store.
pub struct NetCtx {
    /// The block's sockets; `None` for a block without `net-hook`.
    net: Option<Arc<NetHub>>,
    clock: Arc<CallClock>,
    /// How long a call may wait for a full write queue (the enqueue timeout).
    timeout: Duration,
    /// The worker whose instance this is, for a block served by several.
    worker: Option<u32>,
}

impl NetCtx {
    /// The `net` capability of an instance of the block whose sockets `net` holds.
    pub fn new(net: Option<Arc<NetHub>>, clock: Arc<CallClock>, timeout: Duration) -> Self {
        Self { net, clock, timeout, worker: None }
    }

    /// The context of worker `worker` of a block served by several: the connections it opens
    /// are its own.
    pub fn of_worker(mut self, worker: Option<u32>) -> Self {
        self.worker = worker;
        self
    }
}

impl net::Host for NetCtx {
    async fn send(&mut self, conn: u64, data: Vec<u8>) -> Result<(), NetError> {
        let Some(hub) = self.net.clone() else { return Err(NetError::UnknownConnection(conn)) };
        let Some((writes, share)) = hub.writes(conn) else { return Err(NetError::UnknownConnection(conn)) };
        // The connection's share first: a peer that stops reading fills only its own.
        let conn_bytes = data.len().min(hub.conn_share());
        let share = self.send_budget(&hub, share, conn_bytes).await?;
        let block = self.send_budget(&hub, hub.send_buffer.clone(), data.len()).await?;
        match writes.try_send(Write::Data(data, SendPermits { _block: block, _conn: share })) {
            Ok(()) => Ok(()),
            Err(TrySendError::Closed(_)) => Err(NetError::UnknownConnection(conn)),
            Err(TrySendError::Full(_)) if self.clock.waited_in_vain() => Err(NetError::WouldBlock),
            Err(TrySendError::Full(op)) => {
                let waited = self.clock.waiting(writes.send_timeout(op, self.timeout)).await;
                match waited {
                    Ok(()) => Ok(()),
                    Err(SendTimeoutError::Timeout(_)) => {
                        // Like a full queue: later sends in this call do not wait again.
                        self.clock.note_wait_in_vain();
                        Err(NetError::WouldBlock)
                    }
                    Err(SendTimeoutError::Closed(_)) => Err(NetError::UnknownConnection(conn)),
                }
            }
        }
    }

    async fn close(&mut self, conn: u64) -> Result<(), NetError> {
        let Some(hub) = self.net.clone() else { return Err(NetError::UnknownConnection(conn)) };
        let Some((writes, _)) = hub.writes(conn) else { return Err(NetError::UnknownConnection(conn)) };
        // After what is queued; when the queue stays full past the enqueue timeout, at once.
        let queued = self.clock.waiting(tokio::time::timeout(self.timeout, writes.send(Write::Close))).await;
        if !matches!(queued, Ok(Ok(()))) {
            hub.cancel_conn(conn);
        }
        Ok(())
    }

    async fn send_datagram(&mut self, listener: String, peer: String, data: Vec<u8>) -> Result<(), NetError> {
        let Some(hub) = self.net.clone() else {
            return Err(self.refuse(&listener, format!("no UDP listener `{listener}` is granted to this block")));
        };
        let Some((socket, peers)) = hub.udp(&listener) else {
            return Err(self.refuse(&listener, format!("no UDP listener `{listener}` is granted to this block")));
        };
        let Some(to) = socket_addr(&peer) else {
            return Err(NetError::Io(format!("`{peer}` is not an IP:PORT address")));
        };
        // Only a peer that sent to this listener, or an address granted with `connect`.
        if !peers.knows(&to) && !hub.may_connect(&peer) {
            return Err(self.refuse(
                &peer,
                format!(
                    "sending to `{peer}` from `{listener}` is not granted: a listener answers the peers that \
                     sent to it; grant other addresses with connect = [\"{peer}\"]"
                ),
            ));
        }
        let sent = self.clock.waiting(tokio::time::timeout(self.timeout, socket.send_to(&data, to))).await;
        match sent {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(NetError::Io(e.to_string())),
            Err(_) => Err(NetError::WouldBlock),
        }
    }

    async fn connect(&mut self, address: String) -> Result<u64, NetError> {
        let hub = match &self.net {
            Some(hub) if hub.may_connect(&address) => hub.clone(),
            _ => {
                return Err(self.refuse(
                    &address,
                    format!(
                        "connecting to `{address}` is not granted to this block; grant it with connect = [\"{address}\"]"
                    ),
                ));
            }
        };
        let connected = self.clock.waiting(hub.connect(&address, self.worker)).await;
        match connected {
            Ok(Some(id)) => Ok(id),
            Ok(None) => Err(NetError::Io("too many connections".to_owned())),
            Err(e) => Err(NetError::Io(e.to_string())),
        }
    }

    fn listeners(&mut self) -> Vec<String> {
        self.net.as_ref().map(|hub| hub.listeners()).unwrap_or_default()
    }

    fn connections(&mut self) -> Vec<net::ConnectionInfo> {
        let open = self.net.as_ref().map(|hub| hub.connections()).unwrap_or_default();
        open.into_iter().map(|(conn, listener, peer)| net::ConnectionInfo { conn, listener, peer }).collect()
    }
}

impl NetCtx {
    /// Room for `n` bytes in `buffer` (the block's send buffer, or a connection's share of it),
    /// waiting (like for a full queue) at most the enqueue timeout, and not at all once a wait in
    /// this call ran out.
    async fn send_budget(
        &self,
        hub: &NetHub,
        buffer: Arc<Semaphore>,
        n: usize,
    ) -> Result<OwnedSemaphorePermit, NetError> {
        let spent = || {
            Counters::bump(&hub.status.counters.budget_refusals);
            NetError::WouldBlock
        };
        let permits = u32::try_from(n).ok().filter(|_| n <= hub.send_buffer_bytes).ok_or_else(|| {
            Counters::bump(&hub.status.counters.budget_refusals);
            NetError::Io(format!(
                "a send of {n} bytes is larger than the block's send buffer ({} bytes, send_buffer_bytes)",
                hub.send_buffer_bytes
            ))
        })?;
        if let Ok(permit) = buffer.clone().try_acquire_many_owned(permits) {
            return Ok(permit);
        }
        if self.clock.waited_in_vain() {
            return Err(spent());
        }
        let wait = tokio::time::timeout(self.timeout, buffer.acquire_many_owned(permits));
        match self.clock.waiting(wait).await {
            Ok(Ok(permit)) => Ok(permit),
            _ => {
                self.clock.note_wait_in_vain();
                Err(spent())
            }
        }
    }

    /// A refusal of something not granted: logged, and returned to the guest.
    fn refuse(&self, target: &str, why: String) -> NetError {
        tracing::warn!(event = "not_granted", target = %target, "refused: {why}");
        NetError::NotGranted(why)
    }
}
