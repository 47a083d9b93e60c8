//! The test's side of the block's sockets: real loopback TCP connections to its listeners and a
//! UDP socket that sends it datagrams. After each action the bench waits until the hub has queued
//! what the action caused (an `Accept`, the bytes written, a `Closed`, a datagram), then
//! settles; what the block wrote back is read once the hub has written everything it sent.

use tokio::io::AsyncWriteExt;
use tokio::net::{TcpStream, UdpSocket};
use tokio::sync::watch;

use super::{Bench, TestError};
use crate::defaults::TEST_WAIT;
use crate::io::net::{NetCounts, NetHub};

/// The test's sockets.
#[derive(Default)]
pub(super) struct Sockets {
    conns: Vec<Option<TestConn>>,
    udp: Option<UdpSocket>,
}

/// The test's end of one connection.
pub(super) struct TestConn {
    stream: TcpStream,
    /// What the block wrote, read and not taken by the test yet.
    pending: Vec<u8>,
    /// The block closed it.
    eof: bool,
}

/// A connection the test opened to the block, by number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Conn(usize);

impl Bench {
    fn hub(&self) -> Result<&std::sync::Arc<NetHub>, TestError> {
        self.net.as_ref().ok_or_else(|| {
            TestError::Misuse("the block has no sockets (it does not export net-hook: list `on_accept`...)".to_owned())
        })
    }

    /// The block's listeners as bound (`tcp://127.0.0.1:40123`, `udp://...`): a grant's port 0
    /// is the port the system chose.
    pub fn listeners(&self) -> Vec<String> {
        self.net.as_ref().map(|hub| hub.listeners()).unwrap_or_default()
    }

    /// The address of the block's listener for `protocol` (`tcp` or `udp`): the first, or the
    /// one whose URL contains `which`.
    fn listener(&self, protocol: &str, which: Option<&str>) -> Result<std::net::SocketAddr, TestError> {
        let prefix = format!("{protocol}://");
        let url = self
            .listeners()
            .into_iter()
            .filter(|u| u.starts_with(&prefix))
            .find(|u| which.is_none_or(|w| u.contains(w)))
            .ok_or_else(|| {
                TestError::Misuse(format!("the block has no {protocol} listener (grant one with `listen`)"))
            })?;
        url[prefix.len()..].parse().map_err(|e| TestError::Misuse(format!("listener `{url}`: {e}")))
    }

    /// What the hub has passed on so far.
    fn counts(&self) -> Result<NetCounts, TestError> {
        Ok(self.progress()?.borrow().to_owned())
    }

    fn progress(&self) -> Result<watch::Receiver<NetCounts>, TestError> {
        self.hub()?.progress().ok_or_else(|| TestError::Misuse("the block's sockets are not watched".to_owned()))
    }

    /// Waits until the hub's counts pass `done`, letting the block take what is queued meanwhile
    /// (a reader waits while the block's queue is full).
    async fn hub_caught_up(&mut self, what: &str, done: impl Fn(&NetCounts) -> bool) -> Result<(), TestError> {
        let mut progress = self.progress()?;
        let deadline = tokio::time::Instant::now() + TEST_WAIT;
        loop {
            if done(&progress.borrow_and_update()) {
                return Ok(());
            }
            self.settle().await?;
            if done(&progress.borrow_and_update()) {
                return Ok(());
            }
            match tokio::time::timeout_at(deadline, progress.changed()).await {
                Ok(Ok(())) => {}
                _ => return Err(TestError::Timeout(what.to_owned())),
            }
        }
    }

    /// Waits until everything the block sent on its sockets was written.
    pub(super) async fn sockets_flushed(&self, deadline: std::time::Instant) -> Result<(), TestError> {
        let Some(hub) = &self.net else { return Ok(()) };
        let Some(mut progress) = hub.progress() else { return Ok(()) };
        let deadline = tokio::time::Instant::from_std(deadline);
        match tokio::time::timeout_at(deadline, progress.wait_for(|_| hub.flushed())).await {
            Ok(Ok(_)) => Ok(()),
            _ => Err(TestError::Timeout("what the block sent on its sockets to be written".to_owned())),
        }
    }

    /// Connects to the block's TCP listener (the first, or the one whose URL contains `which`),
    /// waits until the block is told, and settles.
    pub async fn connect(&mut self, which: Option<&str>) -> Result<Conn, TestError> {
        let addr = self.listener("tcp", which)?;
        let before = self.counts()?;
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        self.hub_caught_up("the block's listener to take the connection", |c| c.accepted > before.accepted).await?;
        self.sockets.conns.push(Some(TestConn { stream, pending: Vec::new(), eof: false }));
        self.settle().await?;
        Ok(Conn(self.sockets.conns.len() - 1))
    }

    fn conn(&mut self, conn: Conn) -> Result<&mut TestConn, TestError> {
        self.sockets
            .conns
            .get_mut(conn.0)
            .and_then(Option::as_mut)
            .ok_or_else(|| TestError::Misuse(format!("connection {} is closed (or was never opened)", conn.0)))
    }

    /// The test's end of `conn` (the peer address the block sees).
    pub fn local_addr(&mut self, conn: Conn) -> Result<std::net::SocketAddr, TestError> {
        Ok(self.conn(conn)?.stream.local_addr()?)
    }

    /// The address of the test's UDP socket (the peer the block sees), once a datagram was sent.
    pub fn udp_addr(&self) -> Option<std::net::SocketAddr> {
        self.sockets.udp.as_ref().and_then(|udp| udp.local_addr().ok())
    }

    /// Writes `bytes` on `conn`, waits until the block's queue has them all, and settles.
    pub async fn send(&mut self, conn: Conn, bytes: &[u8]) -> Result<(), TestError> {
        let before = self.counts()?;
        self.conn(conn)?.stream.write_all(bytes).await?;
        let want = before.bytes_in + bytes.len() as u64;
        self.hub_caught_up("the bytes written to reach the block", |c| c.bytes_in >= want).await?;
        self.settle().await
    }

    /// Reads what the block wrote on `conn` into its buffer, noting whether it closed it.
    async fn drain(&mut self, conn: Conn) -> Result<&mut TestConn, TestError> {
        self.settle().await?;
        let conn = self.conn(conn)?;
        let mut buf = vec![0u8; 64 * 1024];
        while !conn.eof {
            match read_now(&conn.stream, &mut buf) {
                Ok(0) => conn.eof = true,
                Ok(n) => conn.pending.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(_) => conn.eof = true,
            }
        }
        Ok(conn)
    }

    /// What the block wrote on `conn` since the last call (everything it sent has been written
    /// by then: the bench settled).
    pub async fn received(&mut self, conn: Conn) -> Result<Vec<u8>, TestError> {
        Ok(std::mem::take(&mut self.drain(conn).await?.pending))
    }

    /// Whether the block has closed `conn` (what it wrote before stays for `received`).
    pub async fn closed_by_block(&mut self, conn: Conn) -> Result<bool, TestError> {
        Ok(self.drain(conn).await?.eof)
    }

    /// Closes `conn` from the test's side, waits until the block's queue has the close, and
    /// settles.
    pub async fn close(&mut self, conn: Conn) -> Result<(), TestError> {
        // A connection the block closed first is gone from the hub already: nothing to wait for.
        let gone = self.drain(conn).await?.eof;
        let before = self.counts()?;
        let mut test_conn = self
            .sockets
            .conns
            .get_mut(conn.0)
            .and_then(Option::take)
            .ok_or_else(|| TestError::Misuse(format!("connection {} is closed (or was never opened)", conn.0)))?;
        // The block may have closed it meanwhile: then the shutdown finds it gone.
        let _ = test_conn.stream.shutdown().await;
        drop(test_conn);
        if !gone {
            self.hub_caught_up("the block's connection to close", |c| c.closed > before.closed).await?;
        }
        self.settle().await
    }

    /// Sends the datagram `bytes` to the block's UDP listener (the first, or the one whose URL
    /// contains `which`) from the test's UDP socket, waits until it reached the hub, and settles.
    pub async fn datagram(&mut self, which: Option<&str>, bytes: &[u8]) -> Result<(), TestError> {
        let addr = self.listener("udp", which)?;
        let before = self.counts()?;
        if self.sockets.udp.is_none() {
            self.sockets.udp = Some(UdpSocket::bind("127.0.0.1:0").await?);
        }
        if let Some(udp) = &self.sockets.udp {
            udp.send_to(bytes, addr).await?;
        }
        self.hub_caught_up("the datagram to reach the block", |c| c.datagrams > before.datagrams).await?;
        self.settle().await
    }

    /// The datagrams the block sent to the test's UDP socket since the last call.
    pub async fn datagrams(&mut self) -> Result<Vec<Vec<u8>>, TestError> {
        self.settle().await?;
        let Some(udp) = &self.sockets.udp else { return Ok(Vec::new()) };
        let mut out = Vec::new();
        let mut buf = vec![0u8; 65536];
        loop {
            match read_now(udp, &mut buf) {
                Ok(n) => out.push(buf[..n].to_vec()),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(e) => return Err(e.into()),
            }
        }
        Ok(out)
    }
}

/// Reads what the kernel holds for `socket` now (a TCP stream's bytes, or one datagram), without
/// waiting. Not tokio's `try_read`/`try_recv`: those answer `WouldBlock` until the runtime's
/// reactor has seen the socket become readable, which on a busy machine can be after the bench
/// settled, so a test would see nothing of what the block had already written.
fn read_now(socket: &impl std::os::fd::AsRawFd, buf: &mut [u8]) -> std::io::Result<usize> {
    // SAFETY: recv(2) into `buf`, which we own and whose length we pass, on the descriptor
    // `socket` keeps open for the duration of the call; MSG_DONTWAIT makes it never block.
    let n = unsafe { libc::recv(socket.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), libc::MSG_DONTWAIT) };
    if n < 0 { Err(std::io::Error::last_os_error()) } else { Ok(n as usize) }
}
