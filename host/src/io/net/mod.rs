//! Sockets the host owns for a block: its listeners (from `listen` grants), the TCP connections
//! accepted on them or opened with `connect`, and its UDP sockets.
//!
//! A [`NetHub`] lives as long as the block, not as long as an instance: a swap or a restart of
//! the block keeps every socket open, and the next instance gets the next bytes. Socket events
//! go into the block's own queue, in order with its bags: a TCP reader waits while the queue is
//! full, so the host stops reading and TCP flow control slows the peer; a UDP datagram that
//! finds the queue full is counted as dropped.
//!
//! Invariants: every task (accept loops, UDP receivers, one reader and one writer per connection)
//! is tracked by the hub and stopped and joined by [`NetHub::shutdown`]; nothing a guest sends
//! can make the host wait longer than the enqueue timeout; a block reaches only what it was
//! granted.

mod calls;
mod grants;
mod peers;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use anyhow::Context as _;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::defaults::{ACCEPT_BACKOFF, CONNECT_TIMEOUT, DATAGRAM_BYTES, MAX_CONNECTIONS, READ_CHUNK, WRITE_QUEUE};
use crate::manifest::{BlockSpec, Listen, Protocol};

use crate::routing::queue::{BlockQueue, Envelope};
use crate::stats::{BlockStatus, Counters};
pub use calls::NetCtx;

/// One bound listener.
struct Bound {
    /// The grant it serves.
    grant: Listen,
    /// As bound, e.g. `tcp://127.0.0.1:40123`.
    url: String,
    /// The UDP socket, for `send-datagram`, and the peers it heard from.
    udp: Option<(Arc<UdpSocket>, Arc<peers::Peers>)>,
    /// Stops this listener (not the connections accepted on it).
    cancel: CancellationToken,
    /// Its accept loop or datagram receiver, which owns the socket.
    task: tokio::task::JoinHandle<()>,
    /// Among the grants in force (false: on its way out, see `grants.rs`).
    granted: bool,
}

/// A listener bound for a grant but not yet served.
struct Opened {
    grant: Listen,
    url: String,
    socket: Socket,
}

enum Socket {
    Tcp(TcpListener),
    Udp(Arc<UdpSocket>),
}

/// A writer's work.
enum Write {
    /// Bytes to write, holding their part of the block's send buffer (and of the connection's
    /// share of it) until written.
    Data(Vec<u8>, SendPermits),
    Close,
}

/// What one write holds until it is written: its bytes of the block's send buffer, and of the
/// connection's share (at most half the buffer), so one peer that stops reading cannot take the
/// whole buffer from the others.
struct SendPermits {
    _block: OwnedSemaphorePermit,
    _conn: OwnedSemaphorePermit,
}

/// One open connection.
struct Conn {
    writes: mpsc::Sender<Write>,
    /// The connection's share of the send buffer (half of it).
    share: Arc<Semaphore>,
    cancel: CancellationToken,
    /// The listener it was accepted on; `None` when the block opened it.
    listener: Option<String>,
    peer: String,
    /// The block has been told of it (its `Accept` was delivered, or the block opened it).
    told: bool,
    /// The worker that opened it, for a block served by several.
    opener: Option<u32>,
}

/// What a hub has passed on so far, for whoever waits for sockets to be quiet (the test kit):
/// events queued for the block, and writes done.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NetCounts {
    /// Connections announced (`Accept` queued).
    pub accepted: u64,
    /// Bytes read from connections and queued (`Data`).
    pub bytes_in: u64,
    /// Connection ends queued (`Closed`).
    pub closed: u64,
    /// Datagrams received (queued or dropped).
    pub datagrams: u64,
    /// Writes done (written, or failed).
    pub writes: u64,
}

/// Every socket of one block.
pub struct NetHub {
    responsibility: String,
    bound: Mutex<Vec<Bound>>,
    connect_grants: Mutex<Vec<String>>,
    conns: Mutex<HashMap<u64, Conn>>,
    next_id: AtomicU64,
    queue: BlockQueue,
    status: Arc<BlockStatus>,
    /// The bytes the block may have waiting to be written, over all its connections
    /// (`send_buffer_bytes`).
    send_buffer: Arc<Semaphore>,
    send_buffer_bytes: usize,
    /// What it passed on so far, when someone watches (the test kit): `None` costs nothing.
    progress: Option<Arc<tokio::sync::watch::Sender<NetCounts>>>,
    tasks: TaskTracker,
    cancel: CancellationToken,
}

impl NetHub {
    /// Binds every `listen` grant of `spec` and starts serving them into `queue`.
    pub async fn bind(spec: &BlockSpec, queue: BlockQueue, status: Arc<BlockStatus>) -> anyhow::Result<Arc<Self>> {
        Self::bind_watched(spec, queue, status, false).await
    }

    /// The same; with `watched`, it counts what it passes on ([`NetHub::progress`]).
    pub async fn bind_watched(
        spec: &BlockSpec,
        queue: BlockQueue,
        status: Arc<BlockStatus>,
        watched: bool,
    ) -> anyhow::Result<Arc<Self>> {
        let hub = Arc::new(NetHub {
            responsibility: spec.responsibility.clone(),
            bound: Mutex::new(Vec::new()),
            connect_grants: Mutex::new(spec.connect.clone()),
            conns: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(1),
            queue,
            status,
            send_buffer: Arc::new(Semaphore::new(spec.limits.send_buffer_bytes.min(Semaphore::MAX_PERMITS))),
            send_buffer_bytes: spec.limits.send_buffer_bytes,
            progress: watched.then(|| Arc::new(tokio::sync::watch::Sender::new(NetCounts::default()))),
            tasks: TaskTracker::new(),
            cancel: CancellationToken::new(),
        });
        let opened = open(&spec.listen).await?;
        hub.serve(opened);
        Ok(hub)
    }

    /// Serves listeners bound by [`open`] (closes them when the hub has shut down).
    fn serve(self: &Arc<Self>, opened: Vec<Opened>) {
        // Checked under the lock that `shutdown` clears the listeners with, after cancelling.
        let mut bound = lock(&self.bound);
        if self.cancel.is_cancelled() {
            return;
        }
        for Opened { grant, url, socket } in opened {
            tracing::info!(event = "listening", block = %self.responsibility, url = %url, "listening on {url}");
            let cancel = self.cancel.child_token();
            let (udp, task) = match socket {
                Socket::Tcp(listener) => {
                    (None, self.tasks.spawn(self.clone().accept_loop(listener, url.clone(), cancel.clone())))
                }
                Socket::Udp(socket) => {
                    let peers = Arc::new(peers::Peers::default());
                    let receiving =
                        self.clone().datagram_loop(socket.clone(), peers.clone(), url.clone(), cancel.clone());
                    (Some((socket, peers)), self.tasks.spawn(receiving))
                }
            };
            bound.push(Bound { grant, url, udp, cancel, task, granted: true });
        }
    }

    /// The listeners as bound.
    pub fn listeners(&self) -> Vec<String> {
        lock(&self.bound).iter().filter(|b| b.granted).map(|b| b.url.clone()).collect()
    }

    /// Closes every socket and waits for every task of the hub to end.
    pub async fn shutdown(&self) {
        self.cancel.cancel();
        self.tasks.close();
        self.tasks.wait().await;
        self.lock().clear();
        lock(&self.bound).clear();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Conn>> {
        lock(&self.conns)
    }

    async fn accept_loop(self: Arc<Self>, listener: TcpListener, url: String, cancel: CancellationToken) {
        loop {
            tokio::select! {
                () = cancel.cancelled() => return,
                accepted = listener.accept() => match accepted {
                    Ok((stream, peer)) => {
                        let accept = Some((url.clone(), peer.to_string()));
                        self.adopt(stream, accept, None);
                    }
                    Err(e) => {
                        // Out of file descriptors, say: back off instead of spinning.
                        tracing::warn!(block = %self.responsibility, "accepting on {url} failed: {e}");
                        tokio::select! {
                            () = cancel.cancelled() => return,
                            () = tokio::time::sleep(ACCEPT_BACKOFF) => {}
                        }
                    }
                },
            }
        }
    }

    async fn datagram_loop(
        self: Arc<Self>,
        socket: Arc<UdpSocket>,
        peers: Arc<peers::Peers>,
        url: String,
        cancel: CancellationToken,
    ) {
        let mut buf = vec![0u8; DATAGRAM_BYTES];
        loop {
            let received = tokio::select! {
                () = cancel.cancelled() => return,
                r = socket.recv_from(&mut buf) => r,
            };
            match received {
                Ok((n, peer)) => {
                    let event =
                        Envelope::Datagram { listener: url.clone(), peer: peer.to_string(), data: buf[..n].to_vec() };
                    // A full queue drops the datagram (counted by the queue); only a peer whose
                    // datagram the block will see may be answered.
                    let pushed = self.queue.try_push(event);
                    self.note(|c| c.datagrams += 1);
                    match pushed {
                        Ok(()) => peers.heard(peer),
                        Err((crate::routing::queue::Refusal::Closed, _)) => return,
                        Err(_) => {}
                    }
                }
                Err(e) => tracing::debug!(block = %self.responsibility, "receiving on {url}: {e}"),
            }
        }
    }

    /// Takes over a connected stream: registers it and starts its reader and writer. `accept`
    /// is the listener and peer when it was accepted (an `Accept` event goes first).
    fn adopt(
        self: &Arc<Self>,
        stream: TcpStream,
        accept: Option<(String, String)>,
        opener: Option<u32>,
    ) -> Option<u64> {
        if self.lock().len() >= MAX_CONNECTIONS {
            Counters::bump(&self.status.counters.refused_connections);
            tracing::warn!(block = %self.responsibility, "too many connections ({MAX_CONNECTIONS}); closing a new one");
            return None;
        }
        let _ = stream.set_nodelay(true);
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let cancel = self.cancel.child_token();
        let (writes, rx) = mpsc::channel(WRITE_QUEUE);
        let (listener, peer, told) = match &accept {
            Some((listener, peer)) => (Some(listener.clone()), peer.clone(), false),
            None => (None, stream.peer_addr().map(|a| a.to_string()).unwrap_or_default(), true),
        };
        let share = Arc::new(Semaphore::new(self.conn_share()));
        // Recorded before its reader starts: its first event already finds its opener.
        self.lock().insert(id, Conn { writes, share, cancel: cancel.clone(), listener, peer, told, opener });
        Counters::bump(&self.status.counters.connections);
        let (read, write) = stream.into_split();
        self.tasks.spawn(self.clone().reader(id, read, accept, cancel.clone()));
        self.tasks.spawn(writer(write, rx, cancel, self.progress.clone()));
        Some(id)
    }

    async fn reader(
        self: Arc<Self>,
        id: u64,
        mut read: tokio::net::tcp::OwnedReadHalf,
        accept: Option<(String, String)>,
        cancel: CancellationToken,
    ) {
        // Once the block has heard of the connection, it hears of its end too, however it ends.
        let announced = match accept {
            Some((listener, peer)) => {
                let pushed = self.push(Envelope::Accept { conn: id, listener, peer }, &cancel).await;
                if pushed {
                    self.note(|c| c.accepted += 1);
                }
                pushed
            }
            None => true,
        };
        if announced {
            self.pump(id, &mut read, &cancel).await;
        }
        self.forget(id, &cancel);
        if announced {
            // Fails at once when the block takes no more events.
            if self.queue.push(Envelope::Closed { conn: id }).await.is_ok() {
                self.note(|c| c.closed += 1);
            }
        }
    }

    /// Queues what arrives on connection `id` until it ends, is cancelled or the block takes no
    /// more events.
    async fn pump(&self, id: u64, read: &mut tokio::net::tcp::OwnedReadHalf, cancel: &CancellationToken) {
        // A read never holds more than the queue may: a small `queue_bytes` means small reads.
        let mut buf = vec![0u8; READ_CHUNK.min(self.queue.max_bytes()).max(1)];
        loop {
            let n = tokio::select! {
                () = cancel.cancelled() => return,
                r = read.read(&mut buf) => match r {
                    Ok(0) | Err(_) => return,
                    Ok(n) => n,
                },
            };
            // Waits while the block's queue is full: the host stops reading this socket.
            if !self.push(Envelope::Data { conn: id, data: buf[..n].to_vec() }, cancel).await {
                return;
            }
            self.note(|c| c.bytes_in += n as u64);
        }
    }

    /// Queues `event`; false when the block takes no more events or the connection is cancelled.
    async fn push(&self, event: Envelope, cancel: &CancellationToken) -> bool {
        tokio::select! {
            () = cancel.cancelled() => false,
            sent = self.queue.push(event) => sent.is_ok(),
        }
    }

    fn forget(&self, id: u64, cancel: &CancellationToken) {
        cancel.cancel();
        self.lock().remove(&id);
    }

    /// Notes that the block has been told of connection `id` (its `Accept` was delivered).
    pub fn told(&self, id: u64) {
        if let Some(conn) = self.lock().get_mut(&id) {
            conn.told = true;
        }
    }

    /// The open connections the block has been told of, oldest first: (id, listener, peer).
    fn connections(&self) -> Vec<(u64, Option<String>, String)> {
        let mut open: Vec<_> = self
            .lock()
            .iter()
            .filter(|(_, c)| c.told)
            .map(|(&id, c)| (id, c.listener.clone(), c.peer.clone()))
            .collect();
        open.sort_unstable_by_key(|(id, ..)| *id);
        open
    }

    /// The write queue of connection `id`, and its share of the send buffer.
    fn writes(&self, id: u64) -> Option<(mpsc::Sender<Write>, Arc<Semaphore>)> {
        self.lock().get(&id).map(|c| (c.writes.clone(), c.share.clone()))
    }

    /// Bytes of the send buffer one connection may hold: half of it (at least one byte).
    fn conn_share(&self) -> usize {
        (self.send_buffer_bytes / 2).clamp(1, Semaphore::MAX_PERMITS)
    }

    /// Whether `address` is granted by a `connect` grant.
    fn may_connect(&self, address: &str) -> bool {
        lock(&self.connect_grants).iter().any(|g| g == address)
    }

    fn udp(&self, listener: &str) -> Option<(Arc<UdpSocket>, Arc<peers::Peers>)> {
        lock(&self.bound).iter().find(|b| b.granted && b.url == listener).and_then(|b| b.udp.clone())
    }

    async fn connect(self: &Arc<Self>, address: &str, opener: Option<u32>) -> std::io::Result<Option<u64>> {
        let stream = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(address))
            .await
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "connecting timed out"))??;
        Ok(self.adopt(stream, None, opener))
    }

    /// What the hub has passed on so far, to wait on; `None` unless it was bound watched.
    pub fn progress(&self) -> Option<tokio::sync::watch::Receiver<NetCounts>> {
        self.progress.as_ref().map(|p| p.subscribe())
    }

    fn note(&self, count: impl FnOnce(&mut NetCounts)) {
        if let Some(progress) = &self.progress {
            progress.send_modify(count);
        }
    }

    /// Whether everything the block sent has been written (or dropped with its connection).
    pub fn flushed(&self) -> bool {
        self.send_buffer.available_permits() >= self.send_buffer_bytes.min(Semaphore::MAX_PERMITS)
    }

    /// The worker that opened connection `id` (a block served by several workers), while it is
    /// open.
    pub fn opener(&self, id: u64) -> Option<u32> {
        self.lock().get(&id).and_then(|c| c.opener)
    }

    fn cancel_conn(&self, id: u64) {
        if let Some(conn) = self.lock().get(&id) {
            conn.cancel.cancel();
        }
    }
}

async fn writer(
    mut write: tokio::net::tcp::OwnedWriteHalf,
    mut rx: mpsc::Receiver<Write>,
    cancel: CancellationToken,
    progress: Option<Arc<tokio::sync::watch::Sender<NetCounts>>>,
) {
    loop {
        let op = tokio::select! {
            () = cancel.cancelled() => break,
            op = rx.recv() => op,
        };
        match op {
            Some(Write::Data(data, budget)) => {
                let written = tokio::select! {
                    () = cancel.cancelled() => break,
                    r = write.write_all(&data) => r,
                };
                drop(budget);
                if let Some(progress) = &progress {
                    progress.send_modify(|c| c.writes += 1);
                }
                if written.is_err() {
                    break;
                }
            }
            Some(Write::Close) | None => {
                let _ = write.shutdown().await;
                break;
            }
        }
    }
    // What was still queued gives its send buffer back now.
    drop(rx);
    if let Some(progress) = &progress {
        progress.send_modify(|c| c.writes += 1);
    }
    // Ends the reader too, which reports the close.
    cancel.cancel();
}

/// Binds a listener for each of `grants`, serving none yet.
async fn open(grants: &[Listen]) -> anyhow::Result<Vec<Opened>> {
    let mut opened = Vec::with_capacity(grants.len());
    for grant in grants {
        let Listen { protocol, addr } = grant;
        let asked = Listen::url(*protocol, *addr);
        let (socket, local) = match protocol {
            Protocol::Tcp => {
                let listener = TcpListener::bind(addr).await.with_context(|| format!("cannot listen on {asked}"))?;
                let local = listener.local_addr()?;
                (Socket::Tcp(listener), local)
            }
            Protocol::Udp => {
                let socket = UdpSocket::bind(addr).await.with_context(|| format!("cannot listen on {asked}"))?;
                let local = socket.local_addr()?;
                (Socket::Udp(Arc::new(socket)), local)
            }
        };
        opened.push(Opened { grant: grant.clone(), url: Listen::url(*protocol, local), socket });
    }
    Ok(opened)
}

/// Locks plain data: a panic elsewhere cannot leave it half-changed.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// A `SocketAddr` from `ip:port` text.
fn socket_addr(text: &str) -> Option<SocketAddr> {
    text.parse().ok()
}
